//! Unit tests of the fleet pass's pure plan.

use kinesis_ingester_api::{
    AssignedShard, CheckpointPosition, Holder, KinesisWorkerStatus, WorkerShard,
};
use kinesis_protocol::handoff::{FenceReason, WorkerState};

use super::*;

fn ingester(spec: serde_json::Value) -> KinesisIngester {
    let mut base = serde_json::json!({"stream": {"name": "s"}, "sink": {"stdout": {}}});
    if let (Some(b), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
        b.extend(extra.clone());
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
        "metadata": {"name": "orders", "namespace": "ns", "uid": "u"},
        "spec": base,
    }))
    .expect("a valid ingester")
}

fn shard(id: &str, owner: Option<&str>, epoch: i64) -> AssignedShard {
    AssignedShard::new(id, owner, epoch)
}

fn spec_of(shards: Vec<AssignedShard>) -> KinesisShardAssignmentSpec {
    KinesisShardAssignmentSpec {
        ingester_uid: "u".into(),
        shards,
        ..Default::default()
    }
}

/// A worker object whose status reports `shards` as `(id, epoch, position)`.
fn worker(name: &str, sa: Option<&str>, shards: &[(&str, i64, &str)]) -> KinesisWorker {
    let mut w = KinesisWorker::new(
        name,
        KinesisWorkerSpec {
            ingester_uid: "u".into(),
            fences: vec![],
        },
    );
    if let Some(sa) = sa {
        w.labels_mut()
            .insert(SERVICE_ACCOUNT_LABEL.to_owned(), sa.to_owned());
    }
    w.status = Some(KinesisWorkerStatus {
        holder: Some(Holder {
            pod_uid: "p".into(),
            incarnation: "i".into(),
        }),
        shards: shards
            .iter()
            .map(|(id, epoch, pos)| WorkerShard {
                position: Some(CheckpointPosition {
                    sequence: (*pos).into(),
                    sub_sequence: None,
                }),
                millis_behind_latest: Some(0),
                ..WorkerShard::new(*id, *epoch)
            })
            .collect(),
        ..Default::default()
    });
    w
}

fn live(objects: Vec<KinesisWorker>) -> Workers {
    objects
        .into_iter()
        .map(|o| {
            (
                o.name_any(),
                WorkerState {
                    object: o,
                    liveness: Liveness::Live,
                },
            )
        })
        .collect()
}

fn plan_with(fp_spec: KinesisShardAssignmentSpec) -> FencePlan {
    FencePlan {
        spec: fp_spec,
        transitions: vec![],
        candidates: vec![],
        oversized: None,
    }
}

/// Defect 9.1.1: a fence that landed hands the shard on at the position the fenced object
/// holds, in the same plan that writes the table.
#[test]
fn a_fence_that_landed_releases_the_shard_at_the_fenced_position() {
    let ki = ingester(serde_json::json!({}));
    let fenced = worker("orders-worker-0", None, &[("s0", 1, "42")]);
    let workers = live(vec![fenced.clone()]);
    let c = FenceCandidate {
        worker: "orders-worker-0".into(),
        shard: "s0".into(),
        epoch: 1,
        reason: FenceReason::Expired,
    };
    let tp = table(
        &ki,
        plan_with(table_of(vec![shard("s0", Some("orders-worker-0"), 1)])),
        &[(c, fenced)],
        &workers,
        None,
        Sizing::ByShards,
        Now::read(),
    );
    let s0 = tp
        .spec
        .shards
        .iter()
        .find(|s| s.shard_id == "s0")
        .expect("s0");
    assert_eq!(
        s0.start_after.as_ref().map(|p| p.sequence.clone()),
        Some("42".to_owned())
    );
    assert!(
        tp.transitions
            .iter()
            .any(|t| matches!(t, Transition::AlreadyFenced { shard, .. } if shard == "s0"))
    );
    assert!(tp.too_large.is_none());
}

fn table_of(shards: Vec<AssignedShard>) -> KinesisShardAssignmentSpec {
    spec_of(shards)
}

#[test]
fn a_stream_problem_keeps_the_recorded_size_and_suspend_wants_none() {
    let ki = ingester(serde_json::json!({"workers": {"minReplicas": 2}}));
    let tp = table(
        &ki,
        plan_with(table_of(vec![shard("s0", None, 0)])),
        &[],
        &Workers::new(),
        None,
        Sizing::Recorded,
        Now::read(),
    );
    assert_eq!(tp.desired, 2);
    let suspended = ingester(serde_json::json!({"suspend": true}));
    assert_eq!(recorded_size(&suspended), 0);
    let one = table_of(vec![shard("s0", None, 0)]);
    assert_eq!(coalesced_size(&suspended, &one, Sizing::ByShards), 0);
    // Suspend wins over the autoscaler too.
    assert_eq!(coalesced_size(&suspended, &one, Sizing::Autoscaled(3)), 0);
}

#[test]
fn the_autoscaler_sizes_the_fleet_over_shards_and_replicas() {
    // replicas: 2 and 8 shards at 4 per worker would say 2; the autoscaler said 5.
    let ki = ingester(serde_json::json!({"workers": {"replicas": 2, "autoscaling": {}}}));
    let shards = (0..8).map(|i| shard(&format!("s{i}"), None, 0)).collect();
    let tp = table(
        &ki,
        plan_with(table_of(shards)),
        &[],
        &Workers::new(),
        None,
        Sizing::Autoscaled(5),
        Now::read(),
    );
    assert_eq!(tp.desired, 5);
}

#[test]
fn a_higher_ordinal_that_still_owns_shards_keeps_its_replica() {
    let t = table_of(vec![shard("s0", Some("orders-worker-3"), 1)]);
    assert_eq!(replicas("orders", 1, Some(&t)), 4);
    assert_eq!(replicas("orders", 1, None), 1);
    assert_eq!(replicas("orders", 5, Some(&t)), 5);
}

#[test]
fn missing_worker_objects_are_created_and_unlabelled_ones_relabelled() {
    let ki = ingester(serde_json::json!({}));
    let owner = OwnerReference {
        api_version: "kinesis-operator.dev/v1alpha1".into(),
        kind: "KinesisIngester".into(),
        name: "orders".into(),
        uid: "u".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let workers = live(vec![
        worker("orders-worker-0", Some("sa"), &[]),
        worker("orders-worker-1", None, &[]),
    ]);
    let writes = worker_objects(&ki, &owner, "u", "sa", 3, &workers);
    let summary: Vec<(bool, String, Option<String>)> = writes
        .iter()
        .map(|w| match w {
            WorkerWrite::Create(o) => (
                true,
                o.name_any(),
                o.labels().get(SERVICE_ACCOUNT_LABEL).cloned(),
            ),
            WorkerWrite::Relabel(o) => (
                false,
                o.name_any(),
                o.labels().get(SERVICE_ACCOUNT_LABEL).cloned(),
            ),
        })
        .collect();
    assert_eq!(
        summary,
        [
            (false, "orders-worker-1".into(), Some("sa".into())),
            (true, "orders-worker-2".into(), Some("sa".into())),
        ]
    );
}

#[test]
fn a_removed_worker_object_goes_only_once_it_owns_nothing_and_its_pod_is_gone() {
    let workers = live(vec![
        worker("orders-worker-0", None, &[]),
        worker("orders-worker-1", None, &[]),
        worker("orders-worker-2", None, &[]),
        worker("orders-worker-3", None, &[]),
    ]);
    let t = table_of(vec![shard("s0", Some("orders-worker-2"), 1)]);
    let pods: BTreeSet<String> = ["orders-worker-3".to_owned()].into();
    let gone: Vec<String> = removable_workers("orders", &workers, 1, Some(&t), &pods)
        .into_iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(gone, ["orders-worker-1"]);
}

#[test]
fn with_autoscaling_on_the_status_says_that_replicas_is_ignored() {
    let ki = ingester(serde_json::json!({"workers": {"replicas": 6, "autoscaling": {}}}));
    let t = table_of((0..8).map(|i| shard(&format!("s{i}"), None, 0)).collect());
    let mut history = crate::autoscale::History::default();
    let d = autoscale(&ki, &t, &Workers::new(), &mut history, Now::read(), false).expect("on");
    // No lag reported yet: it holds at minReplicas, whatever kubectl scale wrote.
    assert_eq!(d.size, 1);
    assert!(
        d.message
            .contains("spec.workers.replicas (6) is ignored while autoscaling is on"),
        "{}",
        d.message
    );
    // Off (or suspended): no decision, and the memory is forgotten.
    let off = ingester(serde_json::json!({"workers": {"autoscaling": {"enabled": false}}}));
    assert!(autoscale(&off, &t, &Workers::new(), &mut history, Now::read(), false).is_none());
    let suspended = ingester(serde_json::json!({"suspend": true, "workers": {"autoscaling": {}}}));
    assert!(
        autoscale(
            &suspended,
            &t,
            &Workers::new(),
            &mut history,
            Now::read(),
            false
        )
        .is_none()
    );
    // A stream problem sizes the fleet as recorded: no decision, so no Autoscaled event and no
    // new status.autoscaling while the stream cannot be read.
    assert!(autoscale(&ki, &t, &Workers::new(), &mut history, Now::read(), true).is_none());
}

//! A spec that passes admission never crashes the operator's planning: thousands of random
//! specs, every field drawn from its valid range and its edges (`ingester/api/src/bounds.rs` and
//! the CRD's ranges), kept when the client-side twin of admission accepts them, are run through
//! every pure step of a reconcile over random shard tables (splits and merges, owners live,
//! expired and gone) and random worker reports: sizing, topology merge, eligibility, fence
//! candidates, owner planning, the workload builders and the status. Seeded, so a failure
//! prints the seed and the spec that reproduces it. No cluster needed.

use std::time::Instant;

use kinesis_ingester_api::{
    AssignedShard, Holder, KinesisIngester, KinesisShardAssignmentSpec, KinesisWorker,
    KinesisWorkerSpec, KinesisWorkerStatus, WorkerShard, check_schema,
};
use kinesis_operator::autoscale;
use kinesis_operator::reconcile::{
    status::{StatusInput, compute},
    workload::{self, Names, WorkloadSettings},
};
use kinesis_protocol::handoff::{
    self, Expiries, ListedShard, Liveness, Timers, WorkerState, Workers,
};
use serde_json::{Value, json};

/// Specs per run; `PLANNING_SPECS` raises it (`PLANNING_SEED` picks the seed).
const SPECS: usize = 1_000;

fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
    from[rng.usize(..from.len())]
}

/// An integer in `lo..=hi`, at an edge one time in three.
fn int(rng: &mut fastrand::Rng, lo: i64, hi: i64) -> i64 {
    match rng.u8(..6) {
        0 => lo,
        1 => hi,
        _ => rng.i64(lo..=hi),
    }
}

/// A random spec: every field optional, drawn from its valid range and edges.
fn random_spec(rng: &mut fastrand::Rng) -> Value {
    let mut read = json!({});
    if rng.bool() {
        read["mode"] = json!(pick(rng, &["Polling", "EnhancedFanOut"]));
    }
    if rng.bool() {
        read["pollInterval"] = json!(pick(rng, &["200ms", "1s", "5m", "4m59s"]));
    }
    if rng.bool() {
        read["shardSyncInterval"] = json!(pick(rng, &["1s", "24h", "23h59m59s", "30s"]));
    }
    if rng.bool() {
        read["maxRecordsPerCall"] = json!(int(rng, 1, 10_000));
    }
    if rng.bool() {
        read["bufferPages"] = json!(int(rng, 1, 1024));
    }
    if rng.bool() {
        read["strictOrder"] = json!(rng.bool());
    }
    read["startingPosition"] = match rng.u8(..3) {
        0 => json!({"type": "Latest"}),
        1 => json!({"type": "TrimHorizon"}),
        _ => {
            json!({"type": "AtTimestamp", "timestamp": pick(rng, &["1970-01-01T00:00:00Z", "2026-11-26T12:00:00Z", "9999-12-31T23:59:59Z"])})
        }
    };
    let mut workers = json!({});
    let (min, max) = (int(rng, 1, 10_000), int(rng, 1, 10_000));
    workers["minReplicas"] = json!(min.min(max));
    workers["maxReplicas"] = json!(min.max(max));
    if rng.bool() {
        workers["shardsPerWorker"] = json!(int(rng, 1, 10_000));
    }
    if rng.bool() {
        workers["replicas"] = json!(int(rng, 0, 10_000));
    }
    if rng.bool() {
        workers["scratch"] = json!({"size": pick(rng, &["1Mi", "1Gi", "16Ti"])});
    }
    if rng.bool() {
        workers["autoscaling"] = json!({
            "enabled": rng.u8(..4) > 0,
            "targetLag": pick(rng, &["1s", "1m", "24h"]),
            "scaleUpStabilization": pick(rng, &["0s", "30s", "1h"]),
            "scaleDownStabilization": pick(rng, &["0s", "5m", "1h"]),
            "maxStep": int(rng, 1, 1000),
        });
    }
    if rng.bool() {
        workers["podLabels"] = json!({"team": "a", "example.com/x": "y"});
    }
    let sink = match rng.u8(..3) {
        0 => json!({"stdout": {}}),
        1 => {
            json!({"http": {"url": "http://127.0.0.1:9/x", "format": "Ndjson", "timeout": pick(rng, &["1s", "5m"])}})
        }
        _ => {
            json!({"http": {"url": "https://es:9200/_bulk", "format": "ElasticsearchBulk", "index": "logs"}})
        }
    };
    let mut sink = sink;
    sink["batch"] = json!({
        "maxRecords": int(rng, 1, 10_000),
        "maxAge": pick(rng, &["10ms", "15m", "1s"]),
    });
    let name = pick(rng, &["s", "orders", &"n".repeat(128)]).to_owned();
    json!({
        "stream": {"name": name, "region": pick(rng, &["us-east-1", "ap-southeast-2", "eu-central-1"])},
        "read": read,
        "decode": {
            "format": pick(rng, &["Raw", "CloudWatchLogs"]),
            "compression": pick(rng, &["None", "Gzip"]),
            "kplDeaggregation": rng.bool(),
        },
        "sink": sink,
        "workers": workers,
        "suspend": rng.u8(..8) == 0,
    })
}

/// A random stream: a few open shards, some closed parents with children (splits and merges).
fn random_topology(rng: &mut fastrand::Rng) -> Vec<ListedShard> {
    let n = rng.usize(0..40);
    let mut out: Vec<ListedShard> = Vec::new();
    for i in 0..n {
        let parents = match (out.len(), rng.u8(..4)) {
            (0, _) | (_, 0 | 1) => Vec::new(),
            (len, 2) => vec![out[rng.usize(..len)].shard_id.clone()],
            (len, _) => vec![
                out[rng.usize(..len)].shard_id.clone(),
                out[rng.usize(..len)].shard_id.clone(),
            ],
        };
        out.push(ListedShard {
            shard_id: format!("shardId-{i:012}"),
            parents,
            hash_range: ("0".into(), u128::MAX.to_string()),
            closed: rng.u8(..3) == 0,
        });
    }
    out
}

fn worker(name: &str, shards: &[(String, i64)], rng: &mut fastrand::Rng) -> KinesisWorker {
    let mut w = KinesisWorker::new(
        name,
        KinesisWorkerSpec {
            ingester_uid: "u1".into(),
            ..Default::default()
        },
    );
    w.status = rng.bool().then(|| KinesisWorkerStatus {
        holder: Some(Holder {
            pod_uid: "p".into(),
            incarnation: "i".into(),
        }),
        renew_time: None,
        stopped: rng.u8(..8) == 0,
        shards_held: 0,
        shards: shards
            .iter()
            .map(|(id, epoch)| WorkerShard {
                shard_id: id.clone(),
                epoch: *epoch,
                position: None,
                millis_behind_latest: rng.bool().then(|| rng.i64(0..=i64::MAX)),
                released: rng.u8(..4) == 0,
                finished: rng.u8(..6) == 0,
                last_delivery: None,
                delivery_stuck: None,
                read_error: None,
                waiting_seconds: None,
            })
            .collect(),
    });
    w
}

#[test]
fn random_admitted_specs_never_panic_the_operators_planning() {
    let seed = std::env::var("PLANNING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_126_u64);
    let specs = std::env::var("PLANNING_SPECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SPECS);
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut admitted, mut rejected) = (0usize, 0usize);
    let settings = WorkloadSettings {
        default_image: "kinesis-ingester:test".into(),
        worker_args: vec!["--report-interval".into(), "6s".into()],
        grace_period_seconds: 45,
    };
    for round in 0..specs {
        let spec = random_spec(&mut rng);
        let doc = json!({
            "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
            "metadata": {"name": "orders", "namespace": "team-a", "uid": "u1", "generation": 1},
            "spec": spec,
        });
        let schema = check_schema(&doc["spec"]);
        if !schema.is_empty() {
            if rejected < 3 {
                println!("rejected by the schema: {schema:?}");
            }
            rejected += 1;
            continue;
        }
        let Ok(ki) = serde_json::from_value::<KinesisIngester>(doc.clone()) else {
            rejected += 1;
            continue;
        };
        if let Err(e) = ki.validate_fleet() {
            if rejected < 3 {
                println!("rejected: {e}");
            }
            rejected += 1;
            continue;
        }
        if ki.start_at().is_err() {
            rejected += 1;
            continue;
        }
        admitted += 1;
        let context = format!("seed {seed}, round {round}: {doc}");
        let result = std::panic::catch_unwind(|| {
            let mut rng = fastrand::Rng::with_seed(seed ^ round as u64);
            plan_once(&ki, &settings, &mut rng);
        });
        assert!(result.is_ok(), "planning panicked for {context}");
    }
    println!(
        "FIGURE planning properties: {admitted} admitted specs planned without a panic ({rejected} random specs rejected by validation), seed {seed}"
    );
    assert!(
        admitted >= SPECS / 2,
        "only {admitted} of {SPECS} specs were valid: widen the generator"
    );
}

/// One reconcile's pure steps over a random table, workers and reports.
fn plan_once(ki: &KinesisIngester, settings: &WorkloadSettings, rng: &mut fastrand::Rng) {
    let strict = ki.spec.read.strict_order;
    let _ = (
        ki.stream_ref(),
        ki.consumer_name(),
        ki.fleet_consumer_name(),
    );
    let listed = random_topology(rng);
    let names: Vec<String> = (0..rng.usize(0..6))
        .map(|i| format!("orders-worker-{i}"))
        .collect();
    let mut table = KinesisShardAssignmentSpec {
        ingester_uid: "u1".into(),
        ..Default::default()
    };
    for s in &listed {
        if rng.bool() {
            continue;
        }
        table.shards.push(AssignedShard {
            shard_id: s.shard_id.clone(),
            parents: s.parents.clone(),
            owner: (!names.is_empty() && rng.bool())
                .then(|| names[rng.usize(..names.len())].clone()),
            epoch: rng.i64(0..5),
            draining: rng.u8(..5) == 0,
            starting_hash_key: None,
            ending_hash_key: None,
            start_after: None,
            start_at_timestamp: None,
            rewind: None,
        });
    }
    let mut workers = Workers::new();
    for name in &names {
        let owned: Vec<(String, i64)> = table
            .shards
            .iter()
            .filter(|s| s.owner.as_deref() == Some(name))
            .map(|s| (s.shard_id.clone(), s.epoch))
            .collect();
        let liveness = match rng.u8(..4) {
            0 => Liveness::Expired,
            1 => Liveness::NotStarted,
            2 => Liveness::Stopped,
            _ => Liveness::Live,
        };
        workers.insert(
            name.clone(),
            WorkerState {
                object: worker(name, &owned, rng),
                liveness,
            },
        );
    }
    let now = Instant::now();
    let mut timers = Timers::default();
    let expiries = Expiries {
        drain: std::time::Duration::from_secs(60),
        start: std::time::Duration::from_secs(60),
        gone: std::time::Duration::from_secs(14),
    };
    let _ = handoff::absorb_reports(&mut table, &workers, &mut timers, expiries, now);
    let candidates = handoff::fence_candidates(&table, &workers, &mut timers, expiries, now);
    for c in candidates.iter().take(3) {
        if let Some(w) = workers.get(&c.worker) {
            let _ = handoff::fences_with(&w.object, c, &table);
        }
    }
    let pin = (ki.spec.read.starting_position.kind
        == kinesis_ingester_api::StartingPositionType::Latest)
        .then(jiff::Timestamp::now);
    handoff::merge_topology(&mut table, &listed, pin);
    let eligible = handoff::eligible(&table, strict);
    let desired = kinesis_protocol::plan::fleet_size(&ki.spec, eligible.len());
    assert!(desired >= 0, "a negative worker count: {desired}");
    if let Some(policy) = autoscale::Policy::of(&ki.spec.workers) {
        let mut history = autoscale::History::default();
        let current = rng.i32(0..=10_000);
        for step in 0..3u64 {
            let signal = autoscale::Signal {
                current,
                lag_ms: autoscale::fleet_lag(&table, &workers),
                readable: eligible.len(),
                settling: rng.bool(),
            };
            let at = now + std::time::Duration::from_secs(step * 3600);
            let d = autoscale::decide(&policy, &signal, &mut history, at);
            let ceiling = policy
                .max
                .min(i32::try_from(eligible.len()).unwrap_or(i32::MAX));
            assert!(
                d.size >= policy.min && d.size <= ceiling.max(policy.min),
                "autoscaled out of bounds: {d:?} for {signal:?} and {policy:?}"
            );
        }
    }
    let assignable: Vec<String> = names
        .iter()
        .filter(|n| {
            workers
                .get(*n)
                .is_some_and(|w| w.liveness == Liveness::Live)
        })
        .cloned()
        .collect();
    let max = handoff::max_handoffs(eligible.len());
    handoff::plan_owners(&mut table, &assignable, &workers, strict, max);
    let _ = handoff::too_large(&table);
    let names = Names::of(ki, "team-a", "orders");
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "kinesis-operator.dev/v1alpha1".into(),
        kind: "KinesisIngester".into(),
        name: "orders".into(),
        uid: "u1".into(),
        ..Default::default()
    };
    let sts = workload::stateful_set(ki, &names, &owner, desired, settings);
    assert_eq!(sts.spec.replicas, Some(desired));
    let _ = (
        workload::service_account(&names, &owner),
        workload::role(&names, &owner),
        workload::role_binding(&names, &owner),
    );
    let input = StatusInput {
        generation: Some(1),
        stream_name: "orders".into(),
        table: Some(&table),
        workers: &workers,
        desired,
        ready_pods: rng.i32(0..=desired.max(0)),
        open_shards: Some(i32::try_from(listed.len()).unwrap_or(i32::MAX)),
        strict_order: strict,
        problem: None,
        selector: workload::selector_string("orders"),
        previous: None,
        suspended: ki.spec.suspend,
        autoscaling: None,
        recreated: None,
        now: jiff::Timestamp::now(),
    };
    let (status, _) = compute(&input);
    assert_eq!(status.conditions.len(), 3);
}

//! Operating a fleet on the real stack (local API server, kinesis-local, worker processes):
//! - `spec.suspend`: every worker hands its shards back and the fleet scales to zero with the
//!   shard table kept; records put meanwhile wait in the stream; `suspend: false` resumes exactly
//!   where it stopped: nothing lost, nothing delivered twice.
//! - `spec.workers.autoscaling`: a backlog built before the fleet reads makes it grow, the lag
//!   falls, and the fleet shrinks back after the scale-down window: nothing lost or duplicated.
//! - A stream deleted and created again under the same name (`Degraded=StreamRecreated`): every
//!   record of the new stream is delivered, none skipped for an old position.
//! - `spec.reset` (rewind): to a timestamp before a reshard re-delivers exactly the records put
//!   from then on, once each and in per-key order; the per-shard form replays one shard only.
//! - `spec.transform` that does not compile stops the fleet (`TransformInvalid`, no worker
//!   crash-loops); a fixed program applies from the checkpoints, and an edit while the fleet
//!   runs rolls the workers to the new program.

#[path = "faults/world.rs"]
mod world;

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context, Result};
use kinesis_ingester_api::KinesisShardAssignment;
use kinesis_operator::reconcile::workload::CONFIG_HASH_ANNOTATION;
use kinesis_testkit::ledger::{Delivery, figures, payload, produce, wait_delivered};
use kube::Api;
use world::{LONG, NAME, World, poll, scenario};

const TRIM: &str =
    "{startingPosition: {type: TrimHorizon}, pollInterval: 200ms, shardSyncInterval: 5s}";

async fn set_suspend(w: &World, suspend: bool) -> Result<()> {
    w.patch_spec(serde_json::json!({ "suspend": suspend }))
        .await
}

/// The reason and status of condition `type_`, and `status.workers`.
async fn conditions(w: &World) -> Option<(String, String, String)> {
    let ki = w.ingester().await.ok()?;
    let s = ki.status?;
    (s.observed_generation == ki.metadata.generation).then_some(())?;
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
    let progressing = s.conditions.iter().find(|c| c.type_ == "Progressing")?;
    Some((
        ready.reason.clone(),
        progressing.reason.clone(),
        s.workers.unwrap_or_default(),
    ))
}

#[tokio::test]
async fn suspend_stops_every_worker_and_resume_loses_and_duplicates_nothing() -> Result<()> {
    let (world, _) = World::start("suspend", 2, "{shardsPerWorker: 1}", TRIM, &[]).await?;
    scenario(world, |w| async move {
        produce(&w.kinesis, &w.stream, 0, 200).await?;
        wait_delivered(&w.sink, 200, LONG).await?;
        w.wait_ready("Ready with two workers").await?;

        set_suspend(&w, true).await?;
        poll("Suspended, every worker stopped", LONG, || async {
            let (ready, progressing, workers) = conditions(&w).await?;
            (ready == "Suspended"
                && progressing == "Suspended"
                && workers == "0/0 suspended"
                && w.kubelet().running().is_empty())
            .then_some(())
        })
        .await?;
        let table = Api::<KinesisShardAssignment>::namespaced(w.client.clone(), w.ns.name())
            .get(NAME)
            .await
            .context("the shard table is kept")?;
        for s in &table.spec.shards {
            assert_eq!(s.owner, None, "{} has no owner while suspended", s.shard_id);
            assert!(
                s.start_after.is_some(),
                "{} keeps its position: {s:?}",
                s.shard_id
            );
        }
        let before = w.sink.payloads().len();
        // Put while suspended: nobody reads them until the resume.
        produce(&w.kinesis, &w.stream, 200, 400).await?;
        assert!(w.kubelet().running().is_empty(), "no worker runs");
        assert_eq!(w.sink.payloads().len(), before, "nothing delivered");

        set_suspend(&w, false).await?;
        let got = wait_delivered(&w.sink, 400, LONG).await?;
        w.wait_ready("Ready again after the resume").await?;
        let f = figures(&got, 400);
        eprintln!("FIGURE suspend and resume: {f}");
        assert_eq!(f.lost, 0, "{f}");
        assert_eq!(
            f.duplicated, 0,
            "a planned handoff delivers nothing twice: {f}"
        );
        Ok(())
    })
    .await
}

/// A `spec.transform` patch: a program that drops the records whose payload ends in `digit`.
fn drop_ending_in(digit: char) -> serde_json::Value {
    let source = format!("if ends_with(string!(.), \"{digit}\") {{ abort }}");
    serde_json::json!({ "transform": { "vrl": { "source": source } } })
}

/// Waits until every record of `ids` whose payload does not end in `dropped` was delivered
/// after the sink's first `mark` deliveries; those records, and what was delivered.
async fn kept_after(
    w: &World,
    mark: usize,
    ids: std::ops::Range<usize>,
    dropped: char,
) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let want: BTreeSet<String> = ids.map(payload).filter(|p| !p.ends_with(dropped)).collect();
    let what = format!("the program dropping '{dropped}' applied");
    let got = poll(&what, LONG, || async {
        let got: BTreeSet<String> = w.sink.payloads()[mark..].iter().cloned().collect();
        want.is_subset(&got).then_some(got)
    })
    .await?;
    Ok((want, got))
}

#[tokio::test]
async fn a_transform_that_does_not_compile_stops_the_fleet_and_a_fixed_one_applies() -> Result<()> {
    let (world, _) = World::start("transform", 2, "{shardsPerWorker: 1}", TRIM, &[]).await?;
    scenario(world, |w| async move {
        produce(&w.kinesis, &w.stream, 0, 100).await?;
        wait_delivered(&w.sink, 100, LONG).await?;
        w.wait_ready("Ready with two workers").await?;

        w.patch_spec(serde_json::json!({"transform": {"vrl": {"source": ".a = nosuch(.b)"}}}))
            .await?;
        let message = poll("TransformInvalid, every worker stopped", LONG, || async {
            let ki = w.ingester().await.ok()?;
            let s = ki.status?;
            (s.observed_generation == ki.metadata.generation).then_some(())?;
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            let degraded = s.conditions.iter().find(|c| c.type_ == "Degraded")?;
            (ready.reason == "TransformInvalid"
                && ready.status == "False"
                && degraded.reason == "TransformInvalid"
                && s.workers.as_deref() == Some("0/0")
                && w.kubelet().running().is_empty())
            .then(|| degraded.message.clone())
        })
        .await?;
        assert!(
            message.contains("spec.transform.vrl.source") && message.contains("nosuch"),
            "{message}"
        );
        let before = w.sink.payloads().len();
        produce(&w.kinesis, &w.stream, 100, 200).await?;
        assert!(
            w.kubelet().running().is_empty(),
            "no worker runs, none crash-loops"
        );
        assert_eq!(w.sink.payloads().len(), before, "nothing delivered");

        // Fixed: records ending in 0 are dropped from now on, the rest pass unchanged.
        w.patch_spec(drop_ending_in('0')).await?;
        let (want, got) = kept_after(&w, before, 100..200, '0').await?;
        w.wait_ready("Ready again with the fixed program").await?;
        let dropped: Vec<_> = got.iter().filter(|p| p.ends_with('0')).collect();
        assert!(
            dropped.is_empty(),
            "dropped by the program, never delivered: {dropped:?}"
        );
        assert_eq!(
            got, want,
            "exactly the kept records of 100..200, none of 0..100 again"
        );
        assert_eq!(w.sink.payloads().len() - before, want.len(), "each once");

        // Edited while the fleet runs: the workers roll, and the new program applies from the
        // checkpoints (records ending in 5 are dropped now, those ending in 0 kept).
        let sts = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(
            w.client.clone(),
            w.ns.name(),
        );
        let hash = |s: &k8s_openapi::api::apps::v1::StatefulSet| {
            s.spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        };
        let old = hash(&sts.get(&format!("{NAME}-worker")).await?);
        w.patch_spec(drop_ending_in('5')).await?;
        poll("the workers rolled to the new spec", LONG, || async {
            let o = sts.get(&format!("{NAME}-worker")).await.ok()?;
            let rolled_to_new =
                hash(&o) != old && o.status.as_ref()?.observed_generation == o.metadata.generation;
            let s = o.status?;
            (rolled_to_new
                && s.update_revision.is_some()
                && s.current_revision == s.update_revision
                && s.updated_replicas == Some(s.replicas)
                && s.ready_replicas == Some(s.replicas)
                && s.replicas > 0)
                .then_some(())
        })
        .await?;
        w.wait_ready("Ready after the roll").await?;
        let mark = w.sink.payloads().len();
        produce(&w.kinesis, &w.stream, 200, 300).await?;
        let (want, got) = kept_after(&w, mark, 200..300, '5').await?;
        assert_eq!(got, want, "the new program, and nothing of 0..200 again");
        Ok(())
    })
    .await
}

/// `status.replicas`, `status.autoscaling.reason` and the lag, once the status describes the
/// current generation.
async fn autoscaled(w: &World) -> Option<(i32, String, Option<i64>)> {
    let ki = w.ingester().await.ok()?;
    let s = ki.status?;
    (s.observed_generation == ki.metadata.generation).then_some(())?;
    let a = s.autoscaling?;
    Some((s.replicas, a.reason, s.max_millis_behind_latest))
}

#[tokio::test]
async fn a_backlog_grows_the_fleet_and_it_shrinks_back_losing_and_duplicating_nothing() -> Result<()>
{
    // Pages of 50 records, so that the read position (and the lag) follows delivery; the sink
    // answers after 1 s, so one worker delivers about 100 records a second.
    const READ: &str = "{startingPosition: {type: TrimHorizon}, pollInterval: 200ms, shardSyncInterval: 5s, maxRecordsPerCall: 50}";
    const WORKERS: &str = "{minReplicas: 1, maxReplicas: 4, autoscaling: {targetLag: 3s, scaleUpStabilization: 0s, scaleDownStabilization: 10s, maxStep: 4}}";
    let (world, _) = World::start("autoscale", 4, WORKERS, READ, &[]).await?;
    scenario(world, |w| async move {
        // The backlog is built while the fleet is suspended: 20 s of records, about 4,000.
        set_suspend(&w, true).await?;
        poll("suspended before the backlog", LONG, || async {
            let (ready, _, _) = conditions(&w).await?;
            (ready == "Suspended" && w.kubelet().running().is_empty()).then_some(())
        })
        .await?;
        w.shared_sink.slow(Duration::from_secs(1)).await?;
        let producer = w.producer(0);
        poll("4,000 records put", LONG, || async {
            (producer.produced() >= 4000).then_some(())
        })
        .await?;
        let produced = producer.stop().await;

        set_suspend(&w, false).await?;
        let (grown, lag) = poll("the fleet grows on the lag", LONG, || async {
            let (replicas, _, lag) = autoscaled(&w).await?;
            (replicas >= 2).then_some((replicas, lag))
        })
        .await?;
        eprintln!("FIGURE autoscaling: grew to {grown} workers at lag {lag:?} ms");
        wait_delivered(&w.sink, produced, LONG).await?;
        w.shared_sink.restore().await?;
        let (last_lag, shrunk) = poll(
            "the lag falls and the fleet shrinks back to 1",
            LONG,
            || async {
                let (replicas, reason, lag) = autoscaled(&w).await?;
                (replicas == 1 && reason == "AtMinReplicas" && w.kubelet().running().len() == 1)
                    .then_some((lag, replicas))
            },
        )
        .await?;
        eprintln!("FIGURE autoscaling: back to {shrunk} worker, lag {last_lag:?} ms");
        assert!(
            last_lag.is_some_and(|l| l < 3000),
            "caught up: {last_lag:?}"
        );
        // Everything the sink received, through the shrink.
        let got = wait_delivered(&w.sink, produced, LONG).await?;
        let f = figures(&got, produced);
        eprintln!("FIGURE autoscaling ledger: {f}");
        assert_eq!(f.lost, 0, "{f}");
        assert_eq!(
            f.duplicated, 0,
            "scaling moves shards by planned handoffs: {f}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_stream_created_again_under_its_name_is_read_from_its_start() -> Result<()> {
    let (world, _) = World::start("recreate", 2, "{shardsPerWorker: 2}", TRIM, &[]).await?;
    scenario(world, |w| async move {
        produce(&w.kinesis, &w.stream, 0, 200).await?;
        wait_delivered(&w.sink, 200, LONG).await?;
        w.wait_ready("Ready on the first stream").await?;

        w.kinesis
            .delete_stream()
            .stream_name(&w.stream)
            .send()
            .await
            .context("deleting the stream")?;
        poll("the stream is gone", LONG, || async {
            let described = w
                .kinesis
                .describe_stream_summary()
                .stream_name(&w.stream)
                .send()
                .await;
            described
                .err()
                .filter(|e| {
                    e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception())
                })
                .map(|_| ())
        })
        .await?;
        w.kinesis
            .create_stream()
            .stream_name(&w.stream)
            .shard_count(2)
            .send()
            .await
            .context("creating the stream again")?;
        kinesis_testkit::wait_stream_active(&w.kinesis, &w.stream).await?;
        // The same shard ids, sequence numbers from the start again: an old position would skip
        // the first records of the new stream.
        produce(&w.kinesis, &w.stream, 200, 400).await?;

        poll("Degraded=StreamRecreated", LONG, || async {
            let ki = w.ingester().await.ok()?;
            let degraded = ki
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded")?;
            (degraded.reason == "StreamRecreated").then_some(())
        })
        .await?;
        let got = wait_delivered(&w.sink, 400, LONG).await?;
        let f = figures(&got, 400);
        eprintln!("FIGURE stream re-created: {f}");
        assert_eq!(f.lost, 0, "every record of both streams delivered: {f}");
        Ok(())
    })
    .await
}

/// Record indices of `deliveries`, with how many came twice and how many order breaks per key.
fn pass(deliveries: &[Delivery]) -> (BTreeSet<usize>, usize, usize) {
    let payloads: Vec<String> = deliveries.iter().map(|d| d.payload.clone()).collect();
    let f = figures(&payloads, 0);
    let ids: BTreeSet<usize> = payloads
        .iter()
        .filter_map(|p| p.rsplit_once('-')?.1.parse().ok())
        .collect();
    (ids, f.duplicated, f.order_breaks)
}

/// Waits until the deliveries after the first `from` hold every record of `want`; returns them.
async fn wait_redelivered(w: &World, from: usize, want: &BTreeSet<usize>) -> Result<Vec<Delivery>> {
    poll(
        &format!("the {} records re-delivered", want.len()),
        LONG,
        || async {
            let all = w.sink.deliveries();
            let again = all.get(from..)?.to_vec();
            want.is_subset(&pass(&again).0).then_some(again)
        },
    )
    .await
}

/// `status.reset` once it records `request_id` for the current generation.
async fn applied(w: &World, request_id: &str) -> Option<kinesis_ingester_api::AppliedReset> {
    let ki = w.ingester().await.ok()?;
    let s = ki.status?;
    (s.observed_generation == ki.metadata.generation).then_some(())?;
    s.reset.filter(|r| r.request_id == request_id)
}

#[tokio::test]
async fn a_rewind_redelivers_exactly_the_records_from_its_time_on_across_a_reshard() -> Result<()> {
    let (world, _) = World::start("rewind", 2, "{shardsPerWorker: 2}", TRIM, &[]).await?;
    scenario(world, |w| async move {
        // A: before the rewind time.
        produce(&w.kinesis, &w.stream, 0, 200).await?;
        wait_delivered(&w.sink, 200, LONG).await?;
        let at = jiff::Timestamp::now();
        poll("the clock past the rewind time", LONG, || async {
            (jiff::Timestamp::now() > at + jiff::SignedDuration::from_millis(100)).then_some(())
        })
        .await?;
        // B, then a split of shard 0 after the rewind time, then C into its children.
        produce(&w.kinesis, &w.stream, 200, 400).await?;
        let parent = "shardId-000000000000";
        let listed = w
            .kinesis
            .list_shards()
            .stream_name(&w.stream)
            .send()
            .await
            .context("listing shards")?;
        let range = listed
            .shards()
            .iter()
            .find(|s| s.shard_id() == parent)
            .and_then(|s| s.hash_key_range())
            .context("shard 0's hash range")?;
        let (lo, hi): (u128, u128) = (
            range.starting_hash_key().parse()?,
            range.ending_hash_key().parse()?,
        );
        w.kinesis
            .split_shard()
            .stream_name(&w.stream)
            .shard_to_split(parent)
            .new_starting_hash_key((lo + (hi - lo) / 2 + 1).to_string())
            .send()
            .await
            .context("splitting shard 0")?;
        kinesis_testkit::wait_stream_active(&w.kinesis, &w.stream).await?;
        produce(&w.kinesis, &w.stream, 400, 600).await?;
        let first = wait_delivered(&w.sink, 600, LONG).await?;
        let f = figures(&first, 600);
        assert_eq!((f.lost, f.duplicated), (0, 0), "before the rewind: {f}");
        poll("the parent finished, its children read", LONG, || async {
            let t = Api::<KinesisShardAssignment>::namespaced(w.client.clone(), w.ns.name())
                .get(NAME)
                .await
                .ok()?;
            t.spec.finished.iter().any(|f| f == parent).then_some(())
        })
        .await?;
        let before = w.sink.deliveries().len();

        w.patch_spec(serde_json::json!({ "reset": {
            "to": "AtTimestamp", "timestamp": at.to_string(), "requestId": "replay-1"
        }}))
        .await?;
        let r = poll("status.reset says replay-1 applied", LONG, || applied(&w, "replay-1")).await?;
        assert_eq!(r.shards, 4, "the finished parent, its two children and shard 1: {r:?}");
        let want: BTreeSet<usize> = (200..600).collect();
        let again = wait_redelivered(&w, before, &want).await?;
        let (ids, duplicated, breaks) = pass(&again);
        eprintln!(
            "FIGURE rewind to a timestamp across a split: {} re-delivered (want {}), {duplicated} twice, {breaks} order breaks",
            ids.len(),
            want.len()
        );
        assert_eq!(ids, want, "exactly the records from the rewind time on");
        assert_eq!(duplicated, 0, "each once");
        assert_eq!(breaks, 0, "per-key order across the split");

        // The per-shard form: replay shard 1 only, from its start.
        let one = "shardId-000000000001";
        let want: BTreeSet<usize> = pass(
            &w.sink.deliveries()[..before]
                .iter()
                .filter(|d| d.shard == one)
                .cloned()
                .collect::<Vec<_>>(),
        )
        .0;
        let before = w.sink.deliveries().len();
        w.patch_spec(serde_json::json!({ "reset": {
            "to": "TrimHorizon", "timestamp": null, "requestId": "replay-2", "shards": [one]
        }}))
        .await?;
        let r = poll("status.reset says replay-2 applied", LONG, || applied(&w, "replay-2")).await?;
        assert_eq!((r.shards, r.unknown_shards.len()), (1, 0), "{r:?}");
        let again = wait_redelivered(&w, before, &want).await?;
        let (ids, duplicated, breaks) = pass(&again);
        eprintln!(
            "FIGURE rewind of one shard: {} re-delivered (want {}), {duplicated} twice, {breaks} order breaks",
            ids.len(),
            want.len()
        );
        assert!(again.iter().all(|d| d.shard == one), "only {one} is read again");
        assert_eq!(ids, want, "every record of {one}");
        assert_eq!((duplicated, breaks), (0, 0));
        Ok(())
    })
    .await
}

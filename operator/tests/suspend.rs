//! `spec.suspend` on the real stack: every worker hands its shards back and the fleet scales to
//! zero with the shard table kept; records put meanwhile wait in the stream; `suspend: false`
//! resumes exactly where it stopped: nothing lost, nothing delivered twice.

#[path = "faults/world.rs"]
mod world;

use anyhow::{Context, Result};
use kinesis_ingester_api::{KinesisIngester, KinesisShardAssignment};
use kinesis_testkit::ledger::{figures, produce, wait_delivered};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use world::{LONG, NAME, World, poll, scenario};

const TRIM: &str =
    "{startingPosition: {type: TrimHorizon}, pollInterval: 200ms, shardSyncInterval: 5s}";

async fn set_suspend(w: &World, suspend: bool) -> Result<()> {
    Api::<KinesisIngester>::namespaced(w.client.clone(), w.ns.name())
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"suspend": suspend}})),
        )
        .await?;
    Ok(())
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

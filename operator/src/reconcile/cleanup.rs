//! Deletion (the finalizer's Cleanup): stop the workers, consolidate their final checkpoints into the shard table, apply the retention policy, deregister the enhanced fan-out consumer.

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kinesis_ingester_api::{
    CheckpointRetention, INGESTER_LABEL, KinesisIngester, KinesisShardAssignment, KinesisWorker,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::controller::Action,
};
use tokio::time::Instant;
use tracing::{info, warn};

use kinesis_client::{KinesisApi, SdkKinesis, SourceError};
use kinesis_protocol::handoff::Liveness;

use super::{key_of, labels, liveness, result_label, ssa, workload};
use crate::{
    context::Context,
    error::{Error, Result, is_not_found, kube as kerr},
};

/// Label on a shard table kept after its ingester was deleted.
pub const RETAINED_LABEL: &str = "kinesis-operator.dev/retained";

/// Runs one step of the cleanup; fails with `WaitingForWorkers` (retried soon) until the
/// workers are gone, because only a successful cleanup removes the finalizer.
pub async fn run(ki: &KinesisIngester, ctx: &Context) -> Result<Action> {
    let ns = ki.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = ki.name_any();
    let key = key_of(ki);
    let names = workload::Names::of(ki, &ns, &name);

    // 1. Stop the workers: they release every shard with its final checkpoint.
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    if sts
        .get_opt(&names.workload)
        .await
        .map_err(kerr("reading the StatefulSet"))?
        .is_some()
    {
        // The whole object: an apply is the field manager's entire intent, so a partial one
        // would drop the fields it leaves out.
        let owner = ki
            .controller_owner_ref(&())
            .ok_or(Error::MissingMetadata("uid"))?;
        let zero = workload::stateful_set(ki, &names, &owner, 0, &ctx.settings.workload);
        if let Err(e) = ssa(ki, &sts, &zero, ctx, "statefulset").await {
            warn!(error = %e, "cannot scale the workers down");
        }
    }
    // 2. Wait for the pods to go, up to the cleanup timeout.
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&workload::selector_string(&name)))
        .await
        .map_err(kerr("listing worker pods"))?
        .items;
    let since = *ctx
        .memory()
        .entry(key.clone())
        .or_default()
        .cleanup_since
        .get_or_insert_with(Instant::now);
    let workers: Api<KinesisWorker> = Api::namespaced(ctx.client.clone(), &ns);
    let reports = workers
        .list(&ListParams::default().labels(&format!("{INGESTER_LABEL}={name}")))
        .await
        .map_err(kerr("listing workers"))?
        .items;
    // A pod that is gone may still have a process writing its last report (a force delete, or
    // kwok): wait for every worker to say it stopped, or to expire.
    let still_live = {
        let mut memory = ctx.memory();
        let m = memory.entry(key.clone()).or_default();
        liveness(
            m,
            &reports,
            ctx.settings.worker_lease,
            tokio::time::Instant::now(),
        )
        .into_iter()
        .filter(|l| *l == Liveness::Live)
        .count()
    };
    let waiting = pods.len().max(still_live);
    if waiting > 0 && since.elapsed() < ctx.settings.cleanup_timeout {
        // An error keeps the finalizer: returning Ok would let the ingester go now.
        return Err(Error::WaitingForWorkers(waiting));
    }

    // 3. Consolidate the final positions into the table.
    let tables: Api<KinesisShardAssignment> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(mut table) = tables
        .get_opt(&name)
        .await
        .map_err(kerr("reading the shard table"))?
    {
        let consumer = table.spec.consumer_arn.clone();
        if table.spec.ingester_uid == ki.uid().unwrap_or_default() {
            for s in &mut table.spec.shards {
                let entry = s.owner.as_ref().and_then(|o| {
                    reports
                        .iter()
                        .find(|w| w.name_any() == *o)
                        .and_then(|w| w.status.as_ref()?.entry(&s.shard_id, s.epoch).cloned())
                });
                if let Some(p) = entry.and_then(|e| e.position) {
                    s.start_after = Some(p);
                }
                s.owner = None;
                s.draining = false;
            }
            // 4. Retention.
            match ki.spec.checkpoints.retention {
                CheckpointRetention::Retain => {
                    table.metadata.owner_references = None;
                    table
                        .metadata
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(RETAINED_LABEL.into(), "true".into());
                    let res = tables.replace(&name, &PostParams::default(), &table).await;
                    ctx.metrics
                        .write(&labels(ki), "assignment", result_label(&res));
                    res.map_err(kerr("retaining the shard table"))?;
                    info!("kept the shard table with the final checkpoints (retention: Retain)");
                }
                CheckpointRetention::Delete => {
                    match tables.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => info!("deleted the shard table (retention: Delete)"),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(kerr("deleting the shard table")(e)),
                    }
                }
            }
        }
        // 5. The consumer this ingester registered.
        if let Some(arn) = consumer {
            match ctx.settings.allow.check(&ki.spec.stream) {
                Ok(()) => deregister(ki, &arn).await?,
                // No AWS call with an endpoint or role the allow-lists refuse.
                Err(refused) => warn!(
                    consumer = %arn,
                    %refused,
                    "not deregistering the consumer: the spec is outside the allow-lists"
                ),
            }
        }
    }
    ctx.metrics.forget(&labels(ki));
    ctx.memory().remove(&key);
    Ok(Action::await_change())
}

async fn deregister(ki: &KinesisIngester, consumer_arn: &str) -> Result<()> {
    let api = SdkKinesis::from_spec(&ki.spec.stream).await;
    match api.deregister_consumer(consumer_arn).await {
        Ok(()) => {
            info!(
                consumer = consumer_arn,
                "deregistered the enhanced fan-out consumer"
            );
            Ok(())
        }
        // Already gone: nothing to clean up.
        Err(SourceError::NotFound { .. }) => Ok(()),
        Err(source) => Err(Error::Kinesis {
            stream: consumer_arn.to_owned(),
            source,
        }),
    }
}

//! The fleet pass's writes, in the protocol's order: fences, then the shard table (only
//! [`fence_all`] makes the [`Fenced`] token that [`write_table`] consumes), then worker objects,
//! the workload and status. Every `replace` is one compare-and-swap ([`cas_replace`]).

use kinesis_ingester_api::{KinesisShardAssignment, KinesisShardAssignmentSpec, KinesisWorker};
use kinesis_protocol::handoff::{self, FenceCandidate};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, PostParams, Preconditions},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{info, warn};

use super::{plan::WorkerWrite, result_label};
use crate::{
    context::Context,
    error::{Error, Result, is_conflict, is_not_found, kube as kerr},
    metrics::IngesterLabels,
};

/// What a compare-and-swap did.
#[derive(Debug)]
pub enum Cas<K> {
    /// Written; the object as stored.
    Written(K),
    /// Someone wrote the object since it was read: read again.
    Conflict,
}

/// `replace` with the object's `resourceVersion` (a compare-and-swap), counted in
/// `kinesis_operator_api_writes_total{kind}`. A conflict is an answer, not an error.
pub async fn cas_replace<K>(
    ctx: &Context,
    id: &IngesterLabels,
    api: &Api<K>,
    object: &K,
    kind: &'static str,
    what: &'static str,
) -> Result<Cas<K>>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let res = api
        .replace(&object.name_any(), &PostParams::default(), object)
        .await;
    ctx.metrics.write(id, kind, result_label(&res));
    match res {
        Ok(k) => Ok(Cas::Written(k)),
        Err(e) if is_conflict(&e) => Ok(Cas::Conflict),
        Err(e) => Err(kerr(what)(e)),
    }
}

/// Proof that this pass's fences were written (or given up on) before its table write: only
/// [`fence_all`] makes one, and [`write_table`] consumes it, so "table before fences" does not
/// compile.
#[derive(Debug)]
#[must_use = "the table write needs it"]
pub struct Fenced {
    landed: Vec<(FenceCandidate, KinesisWorker)>,
}

impl Fenced {
    /// The fences that are in their workers' specs, with each worker object as fenced (its
    /// status holds the last checkpoint the worker can ever store for that epoch).
    pub fn landed(&self) -> &[(FenceCandidate, KinesisWorker)] {
        &self.landed
    }
}

/// Writes each fence; one that cannot be written yet leaves its shard where it is. `judged`
/// gives the status (as JSON) that made a worker expired.
pub async fn fence_all(
    ctx: &Context,
    id: &IngesterLabels,
    api: &Api<KinesisWorker>,
    candidates: Vec<FenceCandidate>,
    table: &KinesisShardAssignmentSpec,
    judged: impl Fn(&FenceCandidate) -> Option<String>,
) -> Fenced {
    let mut landed = Vec::new();
    for c in candidates {
        // What this pass judged: an expired worker is fenced only while its status is still
        // the one seen expiring (a worker that reported since is alive, and keeps its shards).
        let judged = (c.reason == handoff::FenceReason::Expired)
            .then(|| judged(&c))
            .flatten();
        match fence(ctx, id, api, &c, table, judged.as_deref()).await {
            Ok(Fence::Renewed) => {
                info!(worker = %c.worker, shard = %c.shard, "the worker reported since it was judged expired; not fencing it");
            }
            Ok(Fence::Written(fenced)) => {
                ctx.metrics.fence(id, c.reason.label());
                ctx.metrics.handoff(id, c.reason.label());
                warn!(worker = %c.worker, shard = %c.shard, epoch = c.epoch, reason = c.reason.label(), "fenced a shard off its worker");
                landed.push((c, *fenced));
            }
            Err(e) => {
                warn!(worker = %c.worker, shard = %c.shard, error = %e, "cannot fence yet; the shard stays put");
            }
        }
    }
    Fenced { landed }
}

/// What [`fence`] did.
#[derive(Debug)]
enum Fence {
    /// The fence is in the worker's spec: the object as fenced.
    Written(Box<KinesisWorker>),
    /// Not written: the worker's status changed since it was judged expired, so it is alive.
    Renewed,
}

/// Writes the fence for `(shard, epoch)` into the worker's spec, from a fresh read, with a
/// `resourceVersion` precondition; retries on conflicts (the worker writes once per report
/// interval, so this converges at once). With `judged` (the status, as JSON, that made the
/// worker expired), writes nothing when the fresh status differs: the precondition makes that
/// check and the fence one atomic step, so a worker that reports again is never fenced for an
/// expiry it recovered from (found by the model checker, docs/model-check.md).
async fn fence(
    ctx: &Context,
    id: &IngesterLabels,
    api: &Api<KinesisWorker>,
    c: &FenceCandidate,
    table: &KinesisShardAssignmentSpec,
    judged: Option<&str>,
) -> Result<Fence> {
    for _ in 0..5 {
        let mut w = api
            .get(&c.worker)
            .await
            .map_err(kerr("reading a worker to fence it"))?;
        if w.spec.is_fenced(&c.shard, c.epoch) {
            return Ok(Fence::Written(Box::new(w)));
        }
        if judged.is_some_and(|j| serde_json::to_string(&w.status).unwrap_or_default() != j) {
            return Ok(Fence::Renewed);
        }
        w.spec.fences = handoff::fences_with(&w, c, table);
        match cas_replace(ctx, id, api, &w, "worker_fence", "fencing a worker").await? {
            Cas::Written(fenced) => return Ok(Fence::Written(Box::new(fenced))),
            Cas::Conflict => continue,
        }
    }
    Err(Error::Conflict)
}

/// Writes the planned table after this pass's fences (the token), as a compare-and-swap on
/// the table that was read: a conflict fails the pass, which plans again from a fresh read.
pub async fn write_table(
    ctx: &Context,
    id: &IngesterLabels,
    api: &Api<KinesisShardAssignment>,
    read: &KinesisShardAssignment,
    spec: KinesisShardAssignmentSpec,
    _fenced: Fenced,
) -> Result<KinesisShardAssignment> {
    if spec == read.spec {
        return Ok(read.clone());
    }
    let mut next = read.clone();
    next.spec = spec;
    match cas_replace(ctx, id, api, &next, "assignment", "writing the shard table").await? {
        Cas::Written(t) => Ok(t),
        Cas::Conflict => Err(Error::Conflict),
    }
}

/// Creates and relabels worker objects. A conflict waits a pass.
pub async fn write_workers(
    ctx: &Context,
    id: &IngesterLabels,
    api: &Api<KinesisWorker>,
    writes: Vec<WorkerWrite>,
) -> Result<()> {
    for write in writes {
        match write {
            WorkerWrite::Create(w) => {
                let res = api.create(&PostParams::default(), &w).await;
                ctx.metrics.write(id, "worker", result_label(&res));
                match res {
                    Ok(_) => {}
                    Err(e) if is_conflict(&e) => {}
                    Err(e) => return Err(kerr("creating a worker object")(e)),
                }
            }
            WorkerWrite::Relabel(w) => {
                // Labels are not status, so the worker's liveness is unaffected.
                if let Err(e) = cas_replace(ctx, id, api, &w, "worker", "labelling a worker").await
                {
                    warn!(worker = %w.name_any(), error = %e, "cannot label a worker object with its ServiceAccount");
                }
            }
        }
    }
    Ok(())
}

/// Deletes worker objects exactly as read. Failures are logged; the next pass tries again.
pub async fn delete_workers<'a>(
    api: &Api<KinesisWorker>,
    objects: impl IntoIterator<Item = &'a KinesisWorker>,
) {
    for w in objects {
        let res = api.delete(&w.name_any(), &delete_exactly(w)).await;
        if let Some(e) = res.as_ref().err().filter(|e| !is_not_found(e)) {
            warn!(worker = %w.name_any(), error = %e, "cannot delete a worker object");
        }
    }
}

/// Deletes exactly the object as read: a stale leader, or a decision made on an old read, must
/// not delete a worker object that was re-created or written since (its fences and
/// checkpoints are what keep a handoff safe).
fn delete_exactly(w: &KinesisWorker) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: w.metadata.uid.clone(),
            resource_version: w.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    }
}

//! Reconciliation of one KinesisIngester: observe (topology, shard table, workers, pods) → plan (pure functions in `kinesis_protocol::{handoff, plan}`, `status`, `workload`) → apply (fences first, then the table, then the workload) → status.

pub mod status;
pub mod workload;

mod adopt;
mod ca;
mod cleanup;
mod credentials;
mod fleet;
mod headers;
mod transform;

use std::{sync::Arc, time::Duration};

use kinesis_ingester_api::{
    KinesisIngester, KinesisShardAssignment, KinesisShardAssignmentSpec, ReadMode, bounds,
    worker_ordinal,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
        finalizer::{Event as Finalizer, finalizer},
    },
};
use tokio::time::Instant;
use tracing::{info, instrument, warn};

use crate::{
    context::{Context, Memory},
    error::{Error, Result, is_conflict, kube as kerr},
    metrics::IngesterLabels,
    topology,
};
use kinesis_client::{KinesisApi, SourceError};
use kinesis_protocol::handoff::{Liveness, Transition};
use status::StreamProblem;
use workload::Names;

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kinesis-operator";

/// Event and `Degraded` reason of a stream deleted and created again under the same name.
pub const STREAM_RECREATED: &str = "StreamRecreated";

/// How long `Degraded=StreamRecreated` is shown after the reset.
pub const STREAM_RECREATED_SHOWN_FOR: Duration = Duration::from_secs(300);

/// Finalizer that deregisters the consumer and applies the checkpoint retention policy.
pub const FINALIZER: &str = "kinesis-operator.dev/cleanup";

/// Entry point of the controller.
#[instrument(skip_all, fields(ingester = %ki.name_any(), namespace = ki.namespace().unwrap_or_default()))]
pub async fn reconcile(ki: Arc<KinesisIngester>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let ns = ki.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<KinesisIngester> = Api::namespaced(ctx.client.clone(), &ns);
    let id = labels(&ki);
    let result = finalizer(&api, FINALIZER, ki, |event| async {
        match event {
            Finalizer::Apply(ki) => apply(&ki, &ctx).await,
            Finalizer::Cleanup(ki) => cleanup::run(&ki, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconciled(
        &id,
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(Error::category),
    );
    result
}

/// Requeue policy on errors: conflicts at once, the rest with growing backoff.
pub fn error_policy(ki: Arc<KinesisIngester>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&ki);
    let failures = {
        let mut memory = ctx.memory();
        let m = memory.entry(key).or_default();
        m.failures = m.failures.saturating_add(1);
        m.failures
    };
    match error {
        Error::Conflict => return Action::requeue(Duration::from_millis(200)),
        Error::WaitingForWorkers(n) => {
            info!(
                pods = n,
                "waiting for the workers to stop before cleaning up"
            );
            return Action::requeue(Duration::from_secs(2));
        }
        _ => {}
    }
    let delay = backoff(failures);
    warn!(error = %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300))
}

fn key_of(ki: &KinesisIngester) -> String {
    format!("{}/{}", ki.namespace().unwrap_or_default(), ki.name_any())
}

/// Everything observed about one ingester.
struct Observed {
    names: Names,
    table: Option<KinesisShardAssignment>,
    problem: Option<StreamProblem>,
}

async fn apply(ki: &KinesisIngester, ctx: &Context) -> Result<Action> {
    let ns = ki.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = ki.name_any();
    let key = key_of(ki);
    let names = Names::of(ki, &ns, &name);

    // Observe the stream, at most once per shardSyncInterval (or when asked to). The interval
    // is clamped: a resource stored before its admission bounds existed may hold `0s`.
    let sync_interval = bounds::SHARD_SYNC_INTERVAL.clamp(&ki.spec.read.shard_sync_interval);
    let due = {
        let memory = ctx.memory();
        memory.get(&key).is_none_or(|m| {
            m.relist
                || m.topology
                    .as_ref()
                    .is_none_or(|t| t.at.elapsed() >= sync_interval || t.stream != ki.spec.stream)
        })
    };
    let mut problem = None;
    let mut listed = false;
    // The allow-lists come before any AWS call with the tenant's endpoint or role.
    if let Err(refused) = ctx.settings.allow.check(&ki.spec.stream) {
        ctx.metrics.topology_error(&labels(ki), "not_allowed");
        warn!(field = refused.field, message = %refused, "refused by the allow-lists");
        problem = Some(StreamProblem {
            reason: status::NOT_ALLOWED,
            message: refused.to_string(),
        });
    } else if due {
        let previous = ctx.memory().get(&key).and_then(|m| m.topology.clone());
        match topology::list(ki, previous.as_ref()).await {
            Ok(t) => {
                let mut memory = ctx.memory();
                let m = memory.entry(key.clone()).or_default();
                m.topology = Some(t);
                m.relist = false;
                listed = true;
            }
            Err(e) => {
                ctx.metrics.topology_error(&labels(ki), e.category());
                let p = topology::problem(ki, &e);
                warn!(reason = p.reason, message = %p.message, "cannot read the stream");
                problem = Some(p);
            }
        }
    }
    let topology = ctx.memory().get(&key).and_then(|m| m.topology.clone());
    let topology = if problem.is_some() { None } else { topology };

    // The shard table: create or adopt it once the stream is known.
    let tables: Api<KinesisShardAssignment> = Api::namespaced(ctx.client.clone(), &ns);
    let mut table = tables
        .get_opt(&name)
        .await
        .map_err(kerr("reading the shard table"))?;
    if let Some(t) = &topology {
        let stored = ensure_table(ki, ctx, &tables, table, t, listed, &mut problem).await?;
        table = Some(stored);
    }
    let observed = Observed {
        names,
        table,
        problem,
    };
    let in_flight = fleet::run(ki, ctx, observed, topology.as_ref()).await?;

    let mut memory = ctx.memory();
    let m = memory.entry(key).or_default();
    // A stream problem is reported in status and retried with growing backoff.
    m.failures = if in_flight.problem {
        m.failures.saturating_add(1)
    } else {
        0
    };
    if m.topology.is_some() && in_flight.refresh_topology {
        // A finished parent means children may have appeared: list again on the next pass.
        m.relist = true;
    }
    let periodic = if in_flight.problem {
        backoff(m.failures)
    } else if in_flight.busy {
        ctx.settings.busy_requeue
    } else {
        ctx.settings.requeue
    };
    // Just after the next possible expiry, so a dead worker's shards move promptly.
    let expiry = in_flight
        .next_expiry
        .map(|d| d + Duration::from_millis(100));
    let coalesced = in_flight.table_wait.map(|d| d + Duration::from_millis(10));
    let next = [expiry, coalesced]
        .into_iter()
        .flatten()
        .fold(periodic, Duration::min);
    Ok(Action::requeue(next))
}

/// Creates the table, adopts a retained one, or reports a mismatch.
async fn ensure_table(
    ki: &KinesisIngester,
    ctx: &Context,
    tables: &Api<KinesisShardAssignment>,
    existing: Option<KinesisShardAssignment>,
    topology: &topology::Topology,
    listed: bool,
    problem: &mut Option<StreamProblem>,
) -> Result<KinesisShardAssignment> {
    let uid = ki.uid().ok_or(Error::MissingMetadata("uid"))?;
    let owner = ki
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("uid"))?;
    let consumer_arn = match ki.spec.read.mode {
        ReadMode::Polling => None,
        ReadMode::EnhancedFanOut => existing
            .as_ref()
            .filter(|t| t.spec.ingester_uid == uid)
            .and_then(|t| t.spec.consumer_arn.clone()),
    };
    // With each listing, check that the consumer still exists: someone may have deregistered it
    // (the workers then get ResourceNotFound). Gone, deleting or replaced: register it again.
    let consumer_arn = match consumer_arn {
        Some(arn) if listed => {
            let name = ki.fleet_consumer_name();
            match topology
                .api
                .describe_consumer(&topology.stream_arn, &name)
                .await
            {
                Ok((current, true)) if current == arn => Some(arn),
                Ok(_) | Err(SourceError::NotFound { .. }) => {
                    warn!(consumer = %name, %arn, "the enhanced fan-out consumer is gone; registering it again");
                    None
                }
                Err(source) => {
                    return Err(Error::Kinesis {
                        stream: topology.stream_arn.clone(),
                        source,
                    });
                }
            }
        }
        other => other,
    };
    let consumer_arn = match (ki.spec.read.mode, consumer_arn) {
        (ReadMode::EnhancedFanOut, None) => {
            let consumer = ki.fleet_consumer_name();
            let arn = topology
                .api
                .register_consumer(&topology.stream_arn, &consumer)
                .await
                .map_err(|source| Error::Kinesis {
                    stream: topology.stream_arn.clone(),
                    source,
                })?;
            info!(%consumer, %arn, "enhanced fan-out consumer is active");
            Some(arn)
        }
        (_, arn) => arn,
    };
    match existing {
        Some(t) if t.spec.ingester_uid == uid => {
            if t.spec.consumer_arn != consumer_arn && consumer_arn.is_some() {
                let mut next = t.clone();
                next.spec.consumer_arn = consumer_arn;
                return replace_table(ki, ctx, tables, &next).await;
            }
            Ok(t)
        }
        Some(t) => {
            // A table kept by `retention: Retain` from an earlier ingester of the same name.
            let same_stream = t
                .spec
                .stream_arn
                .as_deref()
                .is_none_or(|a| a == topology.stream_arn);
            if !same_stream {
                *problem = Some(StreamProblem {
                    reason: "RetainedCheckpointsMismatch",
                    message: format!(
                        "a retained shard table {} belongs to stream {}, not {}; delete it (kubectl delete ksa {}) to start over",
                        t.name_any(),
                        t.spec.stream_arn.clone().unwrap_or_default(),
                        topology.stream_arn,
                        t.name_any()
                    ),
                });
                return Ok(t);
            }
            let mut next = t.clone();
            next.metadata.owner_references = Some(vec![owner]);
            if let Some(labels) = next.metadata.labels.as_mut() {
                labels.remove(cleanup::RETAINED_LABEL);
            }
            next.spec.ingester_uid = uid;
            next.spec.stream_arn = Some(topology.stream_arn.clone());
            next.spec.consumer_arn = consumer_arn;
            for s in &mut next.spec.shards {
                // The old workers are gone: their last positions were consolidated on deletion.
                s.owner = None;
                s.draining = false;
            }
            let adopted = replace_table(ki, ctx, tables, &next).await?;
            publish(
                ctx,
                ki,
                EventType::Normal,
                "AdoptedCheckpoints",
                "Adopt",
                format!(
                    "resuming from the retained shard table ({} shards)",
                    adopted.spec.shards.len()
                ),
            )
            .await;
            Ok(adopted)
        }
        None => {
            let mut t = KinesisShardAssignment::new(
                &ki.name_any(),
                KinesisShardAssignmentSpec {
                    ingester_uid: uid,
                    stream_arn: Some(topology.stream_arn.clone()),
                    consumer_arn,
                    stream_created: topology.created.clone(),
                    reset: None,
                    shards: Vec::new(),
                    finished: Vec::new(),
                    shard_count: 0,
                },
            );
            t.metadata.owner_references = Some(vec![owner]);
            t.metadata.labels = Some(
                [(
                    kinesis_ingester_api::INGESTER_LABEL.to_owned(),
                    ki.name_any(),
                )]
                .into(),
            );
            let created = tables.create(&PostParams::default(), &t).await;
            ctx.metrics
                .write(&labels(ki), "assignment", result_label(&created));
            created.map_err(|e| {
                if is_conflict(&e) {
                    Error::Conflict
                } else {
                    kerr("creating the shard table")(e)
                }
            })
        }
    }
}

/// Writes the table as a compare-and-swap on its `resourceVersion`.
async fn replace_table(
    ki: &KinesisIngester,
    ctx: &Context,
    tables: &Api<KinesisShardAssignment>,
    next: &KinesisShardAssignment,
) -> Result<KinesisShardAssignment> {
    match fleet::cas_replace(
        ctx,
        &labels(ki),
        tables,
        next,
        "assignment",
        "writing the shard table",
    )
    .await?
    {
        fleet::Cas::Written(t) => Ok(t),
        fleet::Cas::Conflict => Err(Error::Conflict),
    }
}

fn result_label<T>(r: &std::result::Result<T, kube::Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) if is_conflict(e) => "conflict",
        Err(_) => "error",
    }
}

/// Publishes an event on the ingester; failures are logged, never fatal.
async fn publish(
    ctx: &Context,
    ki: &KinesisIngester,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &ki.object_ref(&())).await {
        warn!(error = %e, reason, "cannot publish an event");
    }
}

/// Liveness of every worker from the operator's own observations: a worker is live while its
/// status changed within the lease duration, measured from when this replica first saw the
/// current status.
fn liveness(
    memory: &mut Memory,
    workers: &[kinesis_ingester_api::KinesisWorker],
    lease: Duration,
    now: Instant,
) -> Vec<Liveness> {
    memory
        .seen
        .retain(|name, _| workers.iter().any(|w| w.name_any() == *name));
    workers
        .iter()
        .map(|w| {
            // Only the worker writes status; the operator's fences change the object's
            // resourceVersion too, so they must not count as signs of life.
            let rv = serde_json::to_string(&w.status).unwrap_or_default();
            let seen = memory
                .seen
                .entry(w.name_any())
                .or_insert_with(|| (rv.clone(), now));
            if seen.0 != rv {
                *seen = (rv, now);
            }
            let status = w.status.as_ref();
            match status {
                None => Liveness::NotStarted,
                Some(s) if s.holder.is_none() => Liveness::NotStarted,
                Some(s) if s.stopped => Liveness::Stopped,
                Some(_) if now.saturating_duration_since(seen.1) >= lease => Liveness::Expired,
                Some(_) => Liveness::Live,
            }
        })
        .collect()
}

/// Labels of an ingester's metrics.
pub(crate) fn labels(ki: &KinesisIngester) -> IngesterLabels {
    IngesterLabels {
        namespace: ki.namespace().unwrap_or_default(),
        name: ki.name_any(),
    }
}

/// The worker ordinal of `worker` for `ingester`, or `i32::MAX` for a foreign name.
fn ordinal(ingester: &str, worker: &str) -> i32 {
    worker_ordinal(ingester, worker).unwrap_or(i32::MAX)
}

/// Describes transitions for events and logs.
fn describe(t: &Transition) -> (&'static str, String) {
    match t {
        Transition::Finished { shard, owner } => (
            "ShardFinished",
            format!("{shard} read to its end by {owner}"),
        ),
        Transition::Released { shard, owner } => {
            ("ShardReleased", format!("{owner} released {shard}"))
        }
        Transition::AlreadyFenced { shard, owner } => {
            ("ShardFenced", format!("{shard} was fenced off {owner}"))
        }
        Transition::OwnerGone { shard, owner } => {
            ("OwnerGone", format!("{owner} of {shard} is gone"))
        }
        Transition::Discovered { shard } => ("Resharded", format!("new shard {shard}")),
        Transition::Assigned {
            shard,
            owner,
            epoch,
        } => (
            "ShardAssigned",
            format!("{shard} → {owner} (epoch {epoch})"),
        ),
        Transition::Draining { shard, owner } => ("Rebalancing", format!("{owner} drains {shard}")),
        Transition::StreamRecreated { shards, was, now } => (
            STREAM_RECREATED,
            format!(
                "the stream was deleted and created again (created {now}, the positions were for the stream created {was}): every position was reset and its {shards} shards are read from spec.read.startingPosition; records of the old stream that were not delivered are gone with it"
            ),
        ),
        Transition::Rewound {
            request_id,
            shards,
            to,
            unknown,
        } => (
            "Rewound",
            if unknown.is_empty() {
                format!("spec.reset {request_id} applied: {shards} shards restart at {to}")
            } else {
                format!(
                    "spec.reset {request_id} applied: {shards} shards restart at {to}; the stream does not list {}, so they were not rewound: check spec.reset.shards and change spec.reset.requestId",
                    unknown.join(", ")
                )
            },
        ),
    }
}

/// Applies an object with server-side apply and the one field manager.
async fn ssa<K>(
    ki: &KinesisIngester,
    api: &Api<K>,
    obj: &K,
    ctx: &Context,
    what: &'static str,
) -> Result<K>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let res = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await;
    ctx.metrics.write(&labels(ki), what, result_label(&res));
    res.map_err(kerr(what))
}
mod budget;

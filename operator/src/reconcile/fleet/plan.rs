//! The fleet pass's plan: pure functions from what was observed (and which fences landed) to
//! what to write. No I/O; the clock is read once per pass and passed in ([`Now`]).

use std::collections::BTreeSet;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::OwnerReference, jiff::Timestamp};
use kinesis_ingester_api::{
    AutoscalingStatus, INGESTER_LABEL, KinesisIngester, KinesisShardAssignmentSpec, KinesisWorker,
    KinesisWorkerSpec, ORDINAL_LABEL, SERVICE_ACCOUNT_LABEL, ShardState, StartingPositionType,
    worker_name,
};
use kinesis_protocol::{
    handoff::{self, Expiries, FenceCandidate, Liveness, Timers, Transition, Workers},
    plan,
};
use kube::ResourceExt;

use super::super::{ordinal, status::StreamProblem, transform};
use crate::{autoscale, topology::Topology};

/// The clock, read once per pass: every decision of a pass sees the same moment.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// For the protocol's timers and the table-write gap.
    pub mono: std::time::Instant,
    /// For the operator's memory (worker liveness, write times).
    pub tokio: tokio::time::Instant,
    /// Wall-clock time, for status and `Latest` pins.
    pub wall: Timestamp,
}

impl Now {
    /// Reads the clock.
    pub fn read() -> Self {
        Self {
            mono: std::time::Instant::now(),
            tokio: tokio::time::Instant::now(),
            wall: Timestamp::now(),
        }
    }
}

/// The fleet size the status last recorded (at least `minReplicas`), or 0 when stopped
/// (suspended, or a transform that does not compile):
/// kept while the table is not planned in a pass.
pub fn recorded_size(ki: &KinesisIngester) -> i32 {
    if transform::stopped(ki) {
        return 0;
    }
    ki.status
        .as_ref()
        .map(|s| s.replicas)
        .unwrap_or(0)
        .max(ki.spec.workers.min_replicas)
}

/// What sizes the fleet in a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizing {
    /// The stream cannot be read: the fleet keeps its recorded size.
    Recorded,
    /// The shards that may be read ([`plan::fleet_size`]).
    ByShards,
    /// The lag-driven autoscaler decided this size (`spec.suspend` still wins).
    Autoscaled(i32),
}

impl Sizing {
    /// The fleet size for `readable` shards.
    fn size(self, ki: &KinesisIngester, readable: usize) -> i32 {
        match self {
            Self::Recorded => recorded_size(ki),
            Self::Autoscaled(size) if !transform::stopped(ki) => size,
            Self::Autoscaled(_) | Self::ByShards => plan::fleet_size(&ki.spec, readable),
        }
    }
}

/// The autoscaler's decision for this pass, when `spec.workers.autoscaling` is on (and the
/// ingester is not suspended): from the fleet's size in status, the lag the live owners report
/// and the shards that may be read. Pure but for `history`, the autoscaler's memory.
pub fn autoscale(
    ki: &KinesisIngester,
    table: &KinesisShardAssignmentSpec,
    workers: &Workers,
    history: &mut autoscale::History,
    now: Now,
    stream_problem: bool,
) -> Option<autoscale::Decision> {
    // A stream problem sizes the fleet as recorded: no decision to announce, and its windows
    // do not run on reports that say nothing about the load.
    if stream_problem {
        return None;
    }
    let Some(policy) = autoscale_policy(ki) else {
        history.clear();
        return None;
    };
    let status = ki.status.as_ref();
    let signal = autoscale::Signal {
        current: recorded_size(ki).max(policy.min),
        lag_ms: autoscale::fleet_lag(table, workers),
        readable: handoff::eligible(table, ki.spec.read.strict_order).len(),
        settling: status.is_some_and(|s| {
            s.ready_replicas < s.replicas
                || s.shards.iter().any(|sh| sh.state == ShardState::Draining)
        }),
    };
    let mut decision = autoscale::decide(&policy, &signal, history, now.mono);
    if let Some(replicas) = ki.spec.workers.replicas {
        decision.message.push_str(&format!(
            "; spec.workers.replicas ({replicas}) is ignored while autoscaling is on: kubectl scale and a HorizontalPodAutoscaler have no effect"
        ));
    }
    Some(decision)
}

/// The autoscaler's policy, while autoscaling is on and the fleet is not stopped.
pub fn autoscale_policy(ki: &KinesisIngester) -> Option<autoscale::Policy> {
    autoscale::Policy::of(&ki.spec.workers).filter(|_| !transform::stopped(ki))
}

/// The status of the autoscaler's `decision`: the last scale time moves when the size does.
pub fn autoscaling_status(
    ki: &KinesisIngester,
    decision: autoscale::Decision,
    now: Now,
) -> AutoscalingStatus {
    let previous = ki.status.as_ref().and_then(|s| s.autoscaling.as_ref());
    let scaled = decision.size != recorded_size(ki);
    AutoscalingStatus {
        desired_workers: decision.size,
        reason: decision.reason.as_str().to_owned(),
        message: decision.message,
        last_scale_time: if scaled {
            Some(now.wall.to_string())
        } else {
            previous.and_then(|p| p.last_scale_time.clone())
        },
    }
}

/// The fleet size while table writes are being coalesced: the table as it is decides.
pub fn coalesced_size(
    ki: &KinesisIngester,
    table: &KinesisShardAssignmentSpec,
    sizing: Sizing,
) -> i32 {
    let eligible = handoff::eligible(table, ki.spec.read.strict_order);
    sizing.size(ki, eligible.len())
}

/// Step 1 of the table: the workers' reports absorbed, and the shards to fence.
#[derive(Debug)]
pub struct FencePlan {
    /// The table after the reports.
    pub spec: KinesisShardAssignmentSpec,
    /// What the reports changed.
    pub transitions: Vec<Transition>,
    /// Fences to write, each before the table write that depends on it.
    pub candidates: Vec<FenceCandidate>,
    /// The table would exceed the size limit after this pass's listing: nothing is fenced, so
    /// that no fence lands without its table write.
    pub oversized: Option<usize>,
}

/// Absorbs the workers' reports and picks the shards to fence.
pub fn fences(
    ki: &KinesisIngester,
    table: &KinesisShardAssignmentSpec,
    workers: &Workers,
    timers: &mut Timers,
    expiries: Expiries,
    topology: Option<&Topology>,
    now: Now,
) -> FencePlan {
    let mut spec = table.clone();
    let transitions = handoff::absorb_reports(&mut spec, workers, timers, expiries, now.mono);
    let candidates = handoff::fence_candidates(&spec, workers, timers, expiries, now.mono);
    // The size check runs before any fence is written.
    let name = ki.name_any();
    let longest_owner = worker_name(&name, ki.spec.workers.max_replicas.max(recorded_size(ki)));
    let oversized =
        handoff::too_large_after(&spec, topology.map(|t| t.listed.as_slice()), &longest_owner);
    let candidates = if oversized.is_some() {
        Vec::new()
    } else {
        candidates
    };
    FencePlan {
        spec,
        transitions,
        candidates,
        oversized,
    }
}

/// Step 2 of the table: what to write once the fences that landed are known.
#[derive(Debug)]
pub struct TablePlan {
    /// The table to write (unchanged when nothing moved).
    pub spec: KinesisShardAssignmentSpec,
    /// Every transition of the pass, for logs, events and metrics.
    pub transitions: Vec<Transition>,
    /// Workers wanted.
    pub desired: i32,
    /// The table cannot be written (`AssignmentTooLarge`): nothing is written this pass.
    pub too_large: Option<StreamProblem>,
    /// Some shard started draining (a rebalance).
    pub rebalanced: bool,
    /// The first listing of the stream found shards: one event for all of them.
    pub shards_found: Option<String>,
    /// `spec.reset` cannot be applied.
    pub reset_error: Option<handoff::RewindError>,
}

/// Applies the fences that landed (each with the worker object as fenced, whose status holds
/// the position the fence freezes), merges the listing, sizes the fleet and plans the owners.
/// `sizing`: what sizes the fleet (see [`Sizing`]).
pub fn table(
    ki: &KinesisIngester,
    fp: FencePlan,
    landed: &[(FenceCandidate, KinesisWorker)],
    workers: &Workers,
    topology: Option<&Topology>,
    sizing: Sizing,
    now: Now,
) -> TablePlan {
    let FencePlan {
        mut spec,
        mut transitions,
        oversized,
        ..
    } = fp;
    for (c, fenced) in landed {
        handoff::apply_fence(&mut spec, fenced, &c.shard, c.epoch);
        transitions.push(Transition::AlreadyFenced {
            shard: c.shard.clone(),
            owner: c.worker.clone(),
        });
    }
    let mut shards_found = None;
    let mut reset_error = None;
    if let Some(t) = topology {
        let pin = (ki.spec.read.starting_position.kind == StartingPositionType::Latest)
            .then_some(now.wall);
        // A stream deleted and created again under the same name: no position holds (§4.5).
        match t.created.as_deref() {
            Some(created) if handoff::stream_recreated(&spec, Some(created)) => {
                let reset =
                    handoff::reset_for_new_stream(&mut spec, &t.listed, created, workers, pin);
                transitions.push(reset);
            }
            Some(created) if spec.stream_created.is_none() => {
                spec.stream_created = Some(created.to_owned());
            }
            _ => {}
        }
        // A new spec.reset (§4.7): applied once, recorded in this same table write.
        if let Some(reset) = ki
            .spec
            .reset
            .as_ref()
            .filter(|r| handoff::rewind_pending(&spec, r))
        {
            match handoff::rewind(&mut spec, &t.listed, reset, workers, now.wall) {
                Ok(rewound) => transitions.push(rewound),
                Err(e) => reset_error = Some(e),
            }
        }
        // The first listing of a stream is not a reshard: one event for all its shards.
        let first = spec.shards.is_empty() && spec.finished.is_empty();
        let merged = handoff::merge_topology(&mut spec, &t.listed, pin);
        if first && !merged.is_empty() {
            shards_found = Some(format!(
                "found {} shards of stream {}",
                merged.len(),
                ki.stream_ref().name()
            ));
            transitions.extend(
                merged
                    .into_iter()
                    .filter(|t| !matches!(t, Transition::Discovered { .. })),
            );
        } else {
            transitions.extend(merged);
        }
    }
    let eligible = handoff::eligible(&spec, ki.spec.read.strict_order);
    let desired = sizing.size(ki, eligible.len());
    let name = ki.name_any();
    let assignable: Vec<String> = workers
        .iter()
        .filter(|(n, w)| w.liveness == Liveness::Live && ordinal(&name, n) < desired)
        .map(|(n, _)| n.clone())
        .collect();
    let max_handoffs = handoff::max_handoffs(eligible.len());
    let mut planned = handoff::plan_owners(
        &mut spec,
        &assignable,
        workers,
        ki.spec.read.strict_order,
        max_handoffs,
    );
    if transform::stopped(ki) {
        planned.extend(handoff::drain_all(&mut spec, workers, max_handoffs));
    }
    let rebalanced = planned
        .iter()
        .any(|t| matches!(t, Transition::Draining { .. }));
    transitions.extend(planned);
    spec.count_shards();
    let too_large = oversized
        .or_else(|| handoff::too_large(&spec))
        .map(|bytes| StreamProblem {
            reason: "AssignmentTooLarge",
            message: format!(
                "the shard table would be {bytes} bytes, over the {} byte limit (about 3,000 active shards); split the stream across several ingesters",
                handoff::MAX_TABLE_BYTES
            ),
        });
    TablePlan {
        spec,
        transitions,
        desired,
        too_large,
        rebalanced,
        shards_found,
        reset_error,
    }
}

/// Workers in the StatefulSet: those wanted, and any higher ordinal that still owns shards
/// until it releases them.
pub fn replicas(name: &str, desired: i32, table: Option<&KinesisShardAssignmentSpec>) -> i32 {
    let owning_max = table
        .map(handoff::owning_workers)
        .unwrap_or_default()
        .iter()
        .map(|w| ordinal(name, w))
        .filter(|o| *o != i32::MAX)
        .max()
        .map_or(0, |o| o + 1);
    desired.max(owning_max)
}

/// A write to a worker object.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerWrite {
    /// A missing worker object, created before its pod so workers never need `create`.
    Create(Box<KinesisWorker>),
    /// The object with the ServiceAccount label set (made before the label existed, or
    /// `spec.workers.serviceAccountName` changed): the admission policy lets only this
    /// ServiceAccount write the worker's status.
    Relabel(Box<KinesisWorker>),
}

/// The worker objects to create or relabel for ordinals `0..replicas`.
pub fn worker_objects(
    ki: &KinesisIngester,
    owner: &OwnerReference,
    uid: &str,
    service_account: &str,
    replicas: i32,
    workers: &Workers,
) -> Vec<WorkerWrite> {
    let name = ki.name_any();
    (0..replicas)
        .filter_map(|n| {
            let wname = worker_name(&name, n);
            match workers.get(&wname) {
                None => {
                    let mut w = KinesisWorker::new(
                        &wname,
                        KinesisWorkerSpec {
                            ingester_uid: uid.to_owned(),
                            fences: vec![],
                        },
                    );
                    w.metadata.owner_references = Some(vec![owner.clone()]);
                    w.metadata.labels = Some(
                        [
                            (INGESTER_LABEL.to_owned(), name.clone()),
                            (ORDINAL_LABEL.to_owned(), n.to_string()),
                            (SERVICE_ACCOUNT_LABEL.to_owned(), service_account.to_owned()),
                        ]
                        .into(),
                    );
                    Some(WorkerWrite::Create(Box::new(w)))
                }
                Some(w)
                    if w.object
                        .labels()
                        .get(SERVICE_ACCOUNT_LABEL)
                        .map(String::as_str)
                        != Some(service_account) =>
                {
                    let mut o = w.object.clone();
                    o.labels_mut()
                        .insert(SERVICE_ACCOUNT_LABEL.to_owned(), service_account.to_owned());
                    Some(WorkerWrite::Relabel(Box::new(o)))
                }
                Some(_) => None,
            }
        })
        .collect()
}

/// Worker objects of removed ordinals whose pod is gone and that own nothing: deleted.
pub fn removable_workers<'a>(
    name: &str,
    workers: &'a Workers,
    replicas: i32,
    table: Option<&KinesisShardAssignmentSpec>,
    pods: &BTreeSet<String>,
) -> Vec<&'a KinesisWorker> {
    let owning = table.map(handoff::owning_workers).unwrap_or_default();
    workers
        .iter()
        .filter(|(n, _)| ordinal(name, n) >= replicas)
        .filter(|(n, _)| !owning.contains(*n) && !pods.contains(*n))
        .map(|(_, w)| &w.object)
        .collect()
}

/// When the next live worker expires if it does not report again: the pass after that moment
/// fences it without waiting for the periodic requeue.
pub fn next_expiry(
    workers: &Workers,
    seen: &std::collections::HashMap<String, (String, tokio::time::Instant)>,
    lease: std::time::Duration,
    now: Now,
) -> Option<std::time::Duration> {
    workers
        .iter()
        .filter(|(_, w)| w.liveness == Liveness::Live)
        .filter_map(|(n, _)| seen.get(n))
        .map(|(_, at)| (*at + lease).saturating_duration_since(now.tokio))
        .min()
}

#[cfg(test)]
mod tests;

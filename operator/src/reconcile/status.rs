//! Pure computation of a KinesisIngester's status: conditions, fleet size, lag and one entry per shard, from the shard table and the worker reports.

mod survey;
mod verdict;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kinesis_ingester_api::{AutoscalingStatus, KinesisIngesterStatus, KinesisShardAssignmentSpec};

use crate::metrics::FleetGauges;
use kinesis_protocol::handoff::{Liveness, Workers};

/// Reason of a spec that names a role, account or endpoint outside the operator's allow-lists.
pub const NOT_ALLOWED: &str = "NotAllowed";

/// Problems that are the spec's (or the cluster's) to fix, shown as the Ready reason itself.
const READY_REASONS: [&str; 4] = [
    NOT_ALLOWED,
    super::adopt::FOREIGN_OBJECT,
    super::transform::TRANSFORM_INVALID,
    super::transform::ROUTE_INVALID,
];

/// A failure that keeps the operator from knowing the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamProblem {
    /// Condition reason, e.g. `StreamNotFound`.
    pub reason: &'static str,
    /// What happened and what to do.
    pub message: String,
}

/// Everything the status is computed from.
#[derive(Debug)]
pub struct StatusInput<'a> {
    /// `metadata.generation` of the ingester.
    pub generation: Option<i64>,
    /// The stream's name.
    pub stream_name: String,
    /// The shard table after planning (none before the stream was first read).
    pub table: Option<&'a KinesisShardAssignmentSpec>,
    /// Workers and their reports.
    pub workers: &'a Workers,
    /// Desired worker count.
    pub desired: i32,
    /// Worker pods that are ready.
    pub ready_pods: i32,
    /// Open shards from the last ListShards.
    pub open_shards: Option<i32>,
    /// `spec.read.strictOrder`.
    pub strict_order: bool,
    /// Why the stream cannot be read, if it cannot.
    pub problem: Option<StreamProblem>,
    /// Label selector of the worker pods.
    pub selector: String,
    /// The status written last, to keep condition transition times.
    pub previous: Option<&'a KinesisIngesterStatus>,
    /// `spec.suspend`: the fleet is (being) scaled to zero on purpose.
    pub suspended: bool,
    /// The autoscaler's decision, while `spec.workers.autoscaling` is on.
    pub autoscaling: Option<AutoscalingStatus>,
    /// The stream was found deleted and created again lately: what the event said.
    pub recreated: Option<String>,
    /// Now.
    pub now: Timestamp,
}

/// `1.2s`, `3m4s`, `0s`: a lag for humans.
pub fn format_lag(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!(
            "{}s",
            if ms == 0 {
                "0".to_owned()
            } else {
                format!("0.{}", ms / 100)
            }
        );
    }
    if ms < 60_000 {
        return format!("{}.{}s", ms / 1000, (ms % 1000) / 100);
    }
    let s = ms / 1000;
    if s < 3600 {
        return format!("{}m{}s", s / 60, s % 60);
    }
    format!("{}h{}m", s / 3600, (s % 3600) / 60)
}

/// The status and the fleet gauges: one pass over the shard table ([`survey::survey`]), the
/// three conditions judged from it ([`verdict`]), and the figures.
pub fn compute(input: &StatusInput<'_>) -> (KinesisIngesterStatus, FleetGauges) {
    let survey = survey::survey(input);
    let count = |l: Liveness| input.workers.values().filter(|w| w.liveness == l).count() as i64;
    let fleet = verdict::Fleet {
        live: count(Liveness::Live),
        expired: count(Liveness::Expired),
    };
    let ready = verdict::ready(input, &survey, &fleet);
    let progressing = verdict::progressing(input, &survey, &fleet);
    let degraded = verdict::degraded(input, &survey, &fleet);
    let (is_ready, is_degraded) = (ready.status, degraded.status);
    let previous = input
        .previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let conditions = [
        ("Ready", ready),
        ("Progressing", progressing),
        ("Degraded", degraded),
    ]
    .into_iter()
    .map(|(type_, v)| condition(type_, v, input, previous))
    .collect();
    let max_lag = survey.max_lag;
    let stuck = &survey.stuck;
    let status = KinesisIngesterStatus {
        observed_generation: input.generation,
        conditions,
        stream_name: Some(input.stream_name.clone()),
        open_shards: input.open_shards,
        replicas: input.desired,
        ready_replicas: input.ready_pods,
        workers: Some(if input.suspended {
            format!("{}/{} suspended", input.ready_pods, input.desired)
        } else if input.autoscaling.is_some() {
            format!("{}/{} autoscaled", input.ready_pods, input.desired)
        } else {
            format!("{}/{}", input.ready_pods, input.desired)
        }),
        selector: Some(input.selector.clone()),
        max_millis_behind_latest: max_lag,
        lag: max_lag.map(format_lag),
        lag_measured_at: max_lag.and(survey.oldest_report).map(|t| t.to_string()),
        undelivered: if stuck.shards > 0 {
            Some(stuck.stalled())
        } else {
            (survey.waiting >= UNDELIVERED_SHOWN_AFTER_SECS)
                .then(|| format_lag(survey.waiting.saturating_mul(1000)))
        },
        autoscaling: input.autoscaling.clone(),
        reset: input
            .table
            .and_then(|t| t.reset.clone())
            .or_else(|| input.previous.and_then(|p| p.reset.clone())),
        shards: survey.shards,
    };
    let gauges = FleetGauges {
        shards: vec![
            ("pending", survey.pending as i64),
            ("reading", survey.reading as i64),
            ("draining", survey.draining as i64),
        ],
        workers: vec![
            ("live", fleet.live),
            ("not_started", count(Liveness::NotStarted)),
            ("stopped", count(Liveness::Stopped)),
            ("expired", fleet.expired),
        ],
        max_shards_per_worker: survey.max_shards_per_worker,
        max_millis_behind_latest: max_lag,
        ready: is_ready,
        degraded: is_degraded,
        suspended: input.suspended,
        stream: input.stream_name.clone(),
    };
    (status, gauges)
}

fn condition(
    type_: &str,
    verdict: verdict::Verdict,
    input: &StatusInput<'_>,
    previous: &[Condition],
) -> Condition {
    let verdict::Verdict {
        status,
        reason,
        message,
    } = verdict;
    let status = if status { "True" } else { "False" }.to_owned();
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(input.now));
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: input.generation,
        last_transition_time: since,
    }
}

/// Whether `next` differs from `previous` in anything but lag figures and checkpoints, which
/// change all the time and are written at most every status interval.
pub fn structurally_different(
    previous: &KinesisIngesterStatus,
    next: &KinesisIngesterStatus,
) -> bool {
    let strip = |s: &KinesisIngesterStatus| {
        let mut s = s.clone();
        s.max_millis_behind_latest = None;
        s.lag = None;
        s.lag_measured_at = None;
        // A figure like the lag: whether delivery is stuck is in the conditions.
        s.undelivered = None;
        for c in &mut s.conditions {
            c.message.clear();
        }
        // The message quotes the lag; the reason and the size are what matter.
        if let Some(a) = &mut s.autoscaling {
            a.message.clear();
        }
        for sh in &mut s.shards {
            sh.millis_behind_latest = None;
            sh.checkpoint = None;
            sh.last_checkpoint = None;
        }
        s
    };
    strip(previous) != strip(next)
}

/// Records waiting this long for the sink show in `status.undelivered` even before delivery
/// counts as stuck: a sink that acknowledges slowly (or batches for long) is visible.
pub const UNDELIVERED_SHOWN_AFTER_SECS: i64 = 5;

/// A lag change too large to wait for the status interval: the lag became known or unknown, or
/// at least doubled or halved by [`LAG_JUMP_FLOOR_MS`] or more. A lag growing without bound is
/// written once per doubling, and a stream that caught up says so at once.
pub fn lag_jumped(previous: Option<i64>, next: Option<i64>) -> bool {
    match (previous, next) {
        (None, None) => false,
        (None, Some(_)) | (Some(_), None) => true,
        (Some(a), Some(b)) => {
            let (low, high) = (a.min(b).max(0), a.max(b));
            high - low >= LAG_JUMP_FLOOR_MS && high >= low.saturating_mul(2)
        }
    }
}

/// Lag changes smaller than this wait for the status interval, however large the ratio (a
/// caught-up shard's lag moves between 0 and a second all the time).
pub const LAG_JUMP_FLOOR_MS: i64 = 5_000;

#[cfg(test)]
mod tests;

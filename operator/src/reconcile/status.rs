//! Pure computation of a KinesisIngester's status: conditions, fleet size, lag and one entry per shard, from the shard table and the worker reports.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kinesis_ingester_api::{
    DeliveryStuck, KinesisIngesterStatus, KinesisShardAssignmentSpec, ReadError, ShardState,
    ShardStatus,
};

use crate::metrics::FleetGauges;
use kinesis_protocol::handoff::{Liveness, Workers, eligible};

/// Reason of a spec that names a role, account or endpoint outside the operator's allow-lists.
pub const NOT_ALLOWED: &str = "NotAllowed";

/// Problems that are the spec's (or the cluster's) to fix, shown as the Ready reason itself.
const READY_REASONS: [&str; 2] = [NOT_ALLOWED, super::adopt::FOREIGN_OBJECT];

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

/// Shards whose live owner reports their delivery stuck: records waiting for the sink and
/// nothing acknowledged for longer than the worker's threshold.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stuck {
    shards: usize,
    /// Longest stall reported, in seconds.
    stalled_seconds: i64,
    /// The smallest threshold applied, in seconds.
    threshold_seconds: i64,
    /// Categories of the sinks' last errors, as reported.
    errors: std::collections::BTreeSet<String>,
}

impl Stuck {
    fn add(&mut self, d: &DeliveryStuck) {
        self.threshold_seconds = if self.shards == 0 {
            d.threshold_seconds
        } else {
            self.threshold_seconds.min(d.threshold_seconds)
        };
        self.shards += 1;
        self.stalled_seconds = self.stalled_seconds.max(d.stalled_seconds);
        if let Some(e) = &d.sink_error {
            self.errors.insert(e.clone());
        }
    }

    /// The error categories for a message: at most three, each a short label, whatever a
    /// worker wrote.
    fn errors(&self) -> String {
        const SHOWN: usize = 3;
        let label = |e: &String| -> String {
            e.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(32)
                .collect()
        };
        let mut out: Vec<String> = self.errors.iter().take(SHOWN).map(label).collect();
        if self.errors.len() > SHOWN {
            out.push(format!("{} more", self.errors.len() - SHOWN));
        }
        if out.is_empty() {
            "none (the sink hangs without failing)".to_owned()
        } else {
            out.join(", ")
        }
    }

    fn stalled(&self) -> String {
        format_lag(self.stalled_seconds.saturating_mul(1000))
    }
}

/// The status and the fleet gauges.
pub fn compute(input: &StatusInput<'_>) -> (KinesisIngesterStatus, FleetGauges) {
    let mut shards = Vec::new();
    let mut lags: std::collections::BTreeMap<&str, i64> = Default::default();
    let (mut pending, mut reading, mut draining) = (0, 0, 0);
    let mut per_worker: std::collections::BTreeMap<&str, i64> = Default::default();
    let mut stuck = Stuck::default();
    let mut failing: Vec<(&str, &ReadError)> = Vec::new();
    let mut oldest_report: Option<Timestamp> = None;
    // The longest any live owner's records have waited for the sink, in seconds.
    let mut waiting: i64 = 0;
    let readable: Vec<String> = input
        .table
        .map(|t| eligible(t, input.strict_order))
        .unwrap_or_default();
    for s in input.table.map(|t| t.shards.as_slice()).unwrap_or_default() {
        let owner = s
            .owner
            .as_ref()
            .and_then(|o| input.workers.get(o).map(|w| (o, w)));
        let entry = owner.and_then(|(_, w)| w.object.status.as_ref()?.entry(&s.shard_id, s.epoch));
        let live = owner.is_some_and(|(_, w)| w.liveness == Liveness::Live);
        if live && let Some(d) = entry.and_then(|e| e.delivery_stuck.as_ref()) {
            stuck.add(d);
        }
        if live && let Some(e) = entry.and_then(|e| e.read_error.as_ref()) {
            failing.push((s.shard_id.as_str(), e));
        }
        if live && let Some(w) = entry.and_then(|e| e.waiting_seconds) {
            waiting = waiting.max(w);
        }
        let state = match (entry, s.draining) {
            (Some(_), true) => ShardState::Draining,
            (Some(_), false) if live => ShardState::Reading,
            _ => ShardState::Pending,
        };
        match state {
            ShardState::Pending => pending += 1,
            ShardState::Reading => reading += 1,
            _ => draining += 1,
        }
        if let Some(o) = &s.owner {
            *per_worker.entry(o.as_str()).or_default() += 1;
        }
        let lag = entry.and_then(|e| e.millis_behind_latest);
        if let Some(l) = lag {
            lags.insert(s.shard_id.as_str(), l);
            let reported = owner.and_then(|(_, w)| {
                w.object
                    .status
                    .as_ref()?
                    .renew_time
                    .as_deref()?
                    .parse::<Timestamp>()
                    .ok()
            });
            if let Some(t) = reported {
                oldest_report = Some(oldest_report.map_or(t, |o: Timestamp| o.min(t)));
            }
        }
        let checkpoint = entry
            .and_then(|e| e.position.as_ref())
            .or(s.start_after.as_ref())
            .map(|p| match p.sub_sequence {
                Some(sub) => format!("{}/{sub}", p.sequence),
                None => p.sequence.clone(),
            });
        let before = input
            .previous
            .and_then(|p| p.shards.iter().find(|e| e.shard_id == s.shard_id));
        let last_checkpoint = match (before, entry.and_then(|e| e.position.as_ref())) {
            (Some(b), _) if b.checkpoint == checkpoint => b.last_checkpoint.clone(),
            (_, Some(_)) => owner.and_then(|(_, w)| w.object.status.as_ref()?.renew_time.clone()),
            _ => None,
        };
        shards.push(ShardStatus {
            shard_id: s.shard_id.clone(),
            parent_shard_ids: s.parents.clone(),
            owner: s.owner.clone(),
            state,
            millis_behind_latest: lag,
            checkpoint,
            last_checkpoint,
        });
    }
    let max_lag = max_known_lag(&lags, &readable);
    let live_workers = input
        .workers
        .values()
        .filter(|w| w.liveness == Liveness::Live)
        .count();
    let count = |l: Liveness| input.workers.values().filter(|w| w.liveness == l).count() as i64;
    let expired = count(Liveness::Expired);

    let handing_back = reading + draining;
    let (ready, ready_reason, ready_msg) = if input.suspended {
        let message = if handing_back > 0 {
            format!("spec.suspend is true: {handing_back} shards are being handed back")
        } else {
            "spec.suspend is true: no worker reads, every position is kept; spec.suspend: false resumes from them".to_owned()
        };
        (false, "Suspended", message)
    } else if let Some(p) = &input.problem {
        let reason = READY_REASONS
            .into_iter()
            .find(|r| *r == p.reason)
            .unwrap_or("StreamUnavailable");
        (false, reason, p.message.clone())
    } else if input.table.is_none() {
        (
            false,
            "ShardsNotReading",
            "the stream's shards were not read yet".to_owned(),
        )
    } else if (live_workers as i32) < input.desired {
        (
            false,
            "WorkersNotReady",
            format!("{live_workers} of {} workers are live", input.desired),
        )
    } else if reading < readable.len() {
        (
            false,
            "ShardsNotReading",
            format!(
                "{reading} of {} readable shards are being read",
                readable.len()
            ),
        )
    } else if !failing.is_empty() {
        (false, "ReadErrors", read_errors_message(&failing))
    } else if stuck.shards > 0 {
        (
            false,
            "NotDelivering",
            format!(
                "{} shards have records waiting and nothing delivered for {} (threshold {}s)",
                stuck.shards,
                stuck.stalled(),
                stuck.threshold_seconds
            ),
        )
    } else {
        (
            true,
            "AllShardsReading",
            format!("{reading} shards read by {live_workers} workers"),
        )
    };
    let (progressing, prog_reason, prog_msg) = if input.suspended {
        if handing_back > 0 || input.ready_pods > 0 {
            (
                true,
                "Suspending",
                format!(
                    "{handing_back} shards and {} worker pods to stop",
                    input.ready_pods
                ),
            )
        } else {
            (false, "Suspended", "every worker has stopped".to_owned())
        }
    } else if draining > 0 || reading < readable.len() {
        (
            true,
            "Rebalancing",
            format!(
                "{draining} shards draining, {} waiting for an owner",
                readable.len().saturating_sub(reading + draining)
            ),
        )
    } else if input.ready_pods != input.desired || live_workers as i32 != input.desired {
        (
            true,
            "Scaling",
            format!(
                "{} of {} worker pods ready",
                input.ready_pods, input.desired
            ),
        )
    } else {
        (
            false,
            "Stable",
            "no handoff or scaling in progress".to_owned(),
        )
    };
    let (degraded, deg_reason, deg_msg) = if let Some(p) = &input.problem {
        (true, p.reason, p.message.clone())
    } else if !failing.is_empty() {
        (true, "ReadErrors", read_errors_message(&failing))
    } else if stuck.shards > 0 {
        (
            true,
            "SinkFailing",
            format!(
                "the sink delivered nothing of {} shards for up to {}; last sink errors: {}",
                stuck.shards,
                stuck.stalled(),
                stuck.errors()
            ),
        )
    } else if expired > 0 {
        (
            true,
            "WorkerExpired",
            format!("{expired} workers stopped reporting; their shards move to live workers"),
        )
    } else {
        (false, "AsExpected", "no problem found".to_owned())
    };
    let previous = input
        .previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let conditions = vec![
        condition("Ready", ready, ready_reason, ready_msg, input, previous),
        condition(
            "Progressing",
            progressing,
            prog_reason,
            prog_msg,
            input,
            previous,
        ),
        condition("Degraded", degraded, deg_reason, deg_msg, input, previous),
    ];
    let status = KinesisIngesterStatus {
        observed_generation: input.generation,
        conditions,
        stream_name: Some(input.stream_name.clone()),
        open_shards: input.open_shards,
        replicas: input.desired,
        ready_replicas: input.ready_pods,
        workers: Some(if input.suspended {
            format!("{}/{} suspended", input.ready_pods, input.desired)
        } else {
            format!("{}/{}", input.ready_pods, input.desired)
        }),
        selector: Some(input.selector.clone()),
        max_millis_behind_latest: max_lag,
        lag: max_lag.map(format_lag),
        lag_measured_at: max_lag.and(oldest_report).map(|t| t.to_string()),
        undelivered: if stuck.shards > 0 {
            Some(stuck.stalled())
        } else {
            (waiting >= UNDELIVERED_SHOWN_AFTER_SECS)
                .then(|| format_lag(waiting.saturating_mul(1000)))
        },
        shards,
    };
    let gauges = FleetGauges {
        shards: vec![
            ("pending", pending as i64),
            ("reading", reading as i64),
            ("draining", draining as i64),
        ],
        workers: vec![
            ("live", count(Liveness::Live)),
            ("not_started", count(Liveness::NotStarted)),
            ("stopped", count(Liveness::Stopped)),
            ("expired", expired),
        ],
        max_shards_per_worker: per_worker.values().copied().max().unwrap_or(0),
        max_millis_behind_latest: max_lag,
        ready,
        degraded,
        suspended: input.suspended,
        stream: input.stream_name.clone(),
    };
    (status, gauges)
}

/// Which shards cannot be read and why: the category and call of the first, up to three shard
/// ids, and the first error message (each bounded by the worker).
fn read_errors_message(failing: &[(&str, &ReadError)]) -> String {
    let Some((_, first)) = failing.first() else {
        return String::new();
    };
    let mut shards: Vec<&str> = failing.iter().take(3).map(|(id, _)| *id).collect();
    if failing.len() > 3 {
        shards.push("…");
    }
    let longest = failing
        .iter()
        .map(|(_, e)| e.failing_seconds)
        .max()
        .unwrap_or_default();
    format!(
        "{} shards cannot be read ({}): {} failing for up to {longest}s with {}: {}",
        failing.len(),
        shards.join(", "),
        first.operation,
        first.category,
        first.message
    )
}

/// The largest lag, known only when every readable shard reports one: a shard not read yet, or
/// whose reader never got an answer from Kinesis, may be any distance behind, so the maximum is
/// unknown (absent), never 0.
fn max_known_lag(lags: &std::collections::BTreeMap<&str, i64>, readable: &[String]) -> Option<i64> {
    if readable.iter().any(|id| !lags.contains_key(id.as_str())) {
        return None;
    }
    lags.values().copied().max()
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    input: &StatusInput<'_>,
    previous: &[Condition],
) -> Condition {
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

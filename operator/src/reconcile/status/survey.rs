//! One pass over the shard table: each shard's entry of the status, and what the conditions
//! are judged from (counts by state, lags, stuck and failing shards of live owners).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kinesis_ingester_api::{
    AssignedShard, DeliveryStuck, ReadError, ShardState, ShardStatus, WorkerShard,
};
use kinesis_protocol::handoff::{Liveness, WorkerState, eligible};

use super::{StatusInput, format_lag};

/// Shards whose live owner reports their delivery stuck: records waiting for the sink and
/// nothing acknowledged for longer than the worker's threshold.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Stuck {
    pub(super) shards: usize,
    /// Longest stall reported, in seconds.
    pub(super) stalled_seconds: i64,
    /// The smallest threshold applied, in seconds.
    pub(super) threshold_seconds: i64,
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
            self.errors.insert(match &d.sink {
                Some(sink) => format!("{sink}/{e}"),
                None => e.clone(),
            });
        }
    }

    /// The error categories for a message: at most three, each a short label, whatever a
    /// worker wrote.
    pub(super) fn errors(&self) -> String {
        const SHOWN: usize = 3;
        let label = |e: &String| -> String {
            e.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
                .take(96)
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

    pub(super) fn stalled(&self) -> String {
        format_lag(self.stalled_seconds.saturating_mul(1000))
    }
}

/// What one pass over the shard table found.
#[derive(Debug, Default)]
pub(super) struct Survey<'a> {
    /// The status entry of every shard of the table, in its order.
    pub(super) shards: Vec<ShardStatus>,
    pub(super) pending: usize,
    pub(super) reading: usize,
    pub(super) draining: usize,
    /// Shards that may be read now (children of unfinished parents wait with `strictOrder`).
    pub(super) readable: usize,
    /// The largest lag, when every readable shard reports one ([`max_known_lag`]).
    pub(super) max_lag: Option<i64>,
    /// The oldest report a lag came from.
    pub(super) oldest_report: Option<Timestamp>,
    /// The longest any live owner's records have waited for the sink, in seconds.
    pub(super) waiting: i64,
    pub(super) stuck: Stuck,
    /// Shards a live owner cannot read, with the error it reports.
    pub(super) failing: Vec<(&'a str, &'a ReadError)>,
    pub(super) max_shards_per_worker: i64,
}

/// The table's shards, each with the report of its live owner.
pub(super) fn survey<'a>(input: &StatusInput<'a>) -> Survey<'a> {
    let mut out = Survey::default();
    let mut lags: BTreeMap<&str, i64> = BTreeMap::new();
    let mut per_worker: BTreeMap<&str, i64> = BTreeMap::new();
    let readable: Vec<String> = input
        .table
        .map(|t| eligible(t, input.strict_order))
        .unwrap_or_default();
    let table: &'a [_] = input.table.map(|t| t.shards.as_slice()).unwrap_or_default();
    for s in table {
        let owner = s
            .owner
            .as_ref()
            .and_then(|o| input.workers.get(o).map(|w| (o, w)));
        let entry = owner.and_then(|(_, w)| w.object.status.as_ref()?.entry(&s.shard_id, s.epoch));
        let live = owner.is_some_and(|(_, w)| w.liveness == Liveness::Live);
        if live && let Some(e) = entry {
            out.note_live_entry(&s.shard_id, e);
        }
        let state = match (entry, s.draining) {
            (Some(_), true) => ShardState::Draining,
            (Some(_), false) if live => ShardState::Reading,
            _ => ShardState::Pending,
        };
        match state {
            ShardState::Pending => out.pending += 1,
            ShardState::Reading => out.reading += 1,
            _ => out.draining += 1,
        }
        if let Some(o) = &s.owner {
            *per_worker.entry(o.as_str()).or_default() += 1;
        }
        let lag = entry.and_then(|e| e.millis_behind_latest);
        if let Some(l) = lag {
            lags.insert(s.shard_id.as_str(), l);
            if let Some(t) = owner.and_then(|(_, w)| reported_at(w)) {
                out.oldest_report = Some(out.oldest_report.map_or(t, |o| o.min(t)));
            }
        }
        out.shards.push(shard_status(
            input,
            s,
            owner.map(|(_, w)| w),
            entry,
            state,
            lag,
        ));
    }
    out.readable = readable.len();
    out.max_lag = max_known_lag(&lags, &readable);
    out.max_shards_per_worker = per_worker.values().copied().max().unwrap_or(0);
    out
}

impl<'a> Survey<'a> {
    /// What a live owner reports of a shard: stuck delivery, read errors, records waiting.
    fn note_live_entry(&mut self, shard: &'a str, e: &'a WorkerShard) {
        if let Some(d) = &e.delivery_stuck {
            self.stuck.add(d);
        }
        if let Some(err) = &e.read_error {
            self.failing.push((shard, err));
        }
        if let Some(w) = e.waiting_seconds {
            self.waiting = self.waiting.max(w);
        }
    }
}

/// When a worker wrote its report.
fn reported_at(w: &WorkerState) -> Option<Timestamp> {
    w.object
        .status
        .as_ref()?
        .renew_time
        .as_deref()?
        .parse()
        .ok()
}

/// A shard's entry of the status. Its checkpoint is the owner's reported position, else the
/// table's `startAfter`; `lastCheckpoint` is kept while the checkpoint stays, and is the report's
/// time when the owner's position moved.
fn shard_status(
    input: &StatusInput<'_>,
    s: &AssignedShard,
    owner: Option<&WorkerState>,
    entry: Option<&WorkerShard>,
    state: ShardState,
    lag: Option<i64>,
) -> ShardStatus {
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
        (_, Some(_)) => owner.and_then(|w| w.object.status.as_ref()?.renew_time.clone()),
        _ => None,
    };
    ShardStatus {
        shard_id: s.shard_id.clone(),
        parent_shard_ids: s.parents.clone(),
        owner: s.owner.clone(),
        state,
        millis_behind_latest: lag,
        checkpoint,
        last_checkpoint,
    }
}

/// Which shards cannot be read and why: the category and call of the first, up to three shard
/// ids, and the first error message (each bounded by the worker).
pub(super) fn read_errors_message(failing: &[(&str, &ReadError)]) -> String {
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
fn max_known_lag(lags: &BTreeMap<&str, i64>, readable: &[String]) -> Option<i64> {
    if readable.iter().any(|id| !lags.contains_key(id.as_str())) {
        return None;
    }
    lags.values().copied().max()
}

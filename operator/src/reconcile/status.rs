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
        }
        let checkpoint = entry
            .and_then(|e| e.position.as_ref())
            .or(s.start_after.as_ref())
            .map(|p| match p.sub_sequence {
                Some(sub) => format!("{}/{sub}", p.sequence),
                None => p.sequence.clone(),
            });
        shards.push(ShardStatus {
            shard_id: s.shard_id.clone(),
            parent_shard_ids: s.parents.clone(),
            owner: s.owner.clone(),
            state,
            millis_behind_latest: lag,
            checkpoint,
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

    let (ready, ready_reason, ready_msg) = if let Some(p) = &input.problem {
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
    let (progressing, prog_reason, prog_msg) = if draining > 0 || reading < readable.len() {
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
        workers: Some(format!("{}/{}", input.ready_pods, input.desired)),
        selector: Some(input.selector.clone()),
        max_millis_behind_latest: max_lag,
        lag: max_lag.map(format_lag),
        undelivered: (stuck.shards > 0).then(|| stuck.stalled()),
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
        // Whether delivery is stuck is structural (the conditions say so too); for how long
        // is not, like the lag.
        s.undelivered = s.undelivered.as_ref().map(|_| String::new());
        for c in &mut s.conditions {
            c.message.clear();
        }
        for sh in &mut s.shards {
            sh.millis_behind_latest = None;
            sh.checkpoint = None;
        }
        s
    };
    strip(previous) != strip(next)
}

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::{
        AssignedShard, Holder, KinesisWorker, KinesisWorkerSpec, KinesisWorkerStatus, WorkerShard,
    };

    use super::*;
    use kinesis_protocol::handoff::WorkerState;

    fn table(owners: &[Option<&str>]) -> KinesisShardAssignmentSpec {
        KinesisShardAssignmentSpec {
            ingester_uid: "u".into(),
            shards: owners
                .iter()
                .enumerate()
                .map(|(i, o)| AssignedShard {
                    shard_id: format!("s{i}"),
                    parents: vec![],
                    starting_hash_key: None,
                    ending_hash_key: None,
                    owner: o.map(str::to_owned),
                    epoch: 1,
                    draining: false,
                    start_after: None,
                    start_at_timestamp: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn workers(live: Liveness, lags: &[(usize, i64)]) -> Workers {
        let mut o = KinesisWorker::new(
            "w0",
            KinesisWorkerSpec {
                ingester_uid: "u".into(),
                fences: vec![],
            },
        );
        o.status = Some(KinesisWorkerStatus {
            holder: Some(Holder {
                pod_uid: "p".into(),
                incarnation: "i".into(),
            }),
            shards: lags
                .iter()
                .map(|(i, lag)| WorkerShard {
                    shard_id: format!("s{i}"),
                    epoch: 1,
                    position: None,
                    millis_behind_latest: Some(*lag),
                    released: false,
                    finished: false,
                    last_delivery: None,
                    delivery_stuck: None,
                    read_error: None,
                })
                .collect(),
            ..Default::default()
        });
        [(
            "w0".to_owned(),
            WorkerState {
                object: o,
                liveness: live,
            },
        )]
        .into()
    }

    fn input<'a>(t: &'a KinesisShardAssignmentSpec, w: &'a Workers) -> StatusInput<'a> {
        StatusInput {
            generation: Some(3),
            stream_name: "orders".into(),
            table: Some(t),
            workers: w,
            desired: 1,
            ready_pods: 1,
            open_shards: Some(2),
            strict_order: true,
            problem: None,
            selector: "a=b".into(),
            previous: None,
            now: Timestamp::UNIX_EPOCH,
        }
    }

    fn cond<'a>(s: &'a KinesisIngesterStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
    }

    #[test]
    fn all_shards_reading_is_ready_with_the_largest_lag() {
        let t = table(&[Some("w0"), Some("w0")]);
        let w = workers(Liveness::Live, &[(0, 1200), (1, 0)]);
        let (s, g) = compute(&input(&t, &w));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Ready").reason, "AllShardsReading");
        assert_eq!(cond(&s, "Progressing").status, "False");
        assert_eq!(cond(&s, "Degraded").reason, "AsExpected");
        assert_eq!(s.max_millis_behind_latest, Some(1200));
        assert_eq!(s.lag.as_deref(), Some("1.2s"));
        assert_eq!(s.workers.as_deref(), Some("1/1"));
        assert_eq!(s.observed_generation, Some(3));
        assert!(s.shards.iter().all(|e| e.state == ShardState::Reading));
        assert_eq!(g.max_shards_per_worker, 2);
        assert_eq!(g.max_millis_behind_latest, Some(1200));
    }

    #[test]
    fn an_unconfirmed_shard_is_pending_and_not_ready() {
        let t = table(&[Some("w0"), None]);
        let w = workers(Liveness::Live, &[(0, 5)]);
        let (s, _) = compute(&input(&t, &w));
        assert_eq!(cond(&s, "Ready").reason, "ShardsNotReading");
        assert_eq!(cond(&s, "Progressing").reason, "Rebalancing");
        assert_eq!(s.shards[1].state, ShardState::Pending);
    }

    #[test]
    fn a_stream_problem_is_degraded_with_its_reason() {
        let t = table(&[]);
        let w = workers(Liveness::Live, &[]);
        let mut i = input(&t, &w);
        i.problem = Some(StreamProblem {
            reason: "StreamNotFound",
            message: "stream orders not found".into(),
        });
        let (s, _) = compute(&i);
        assert_eq!(cond(&s, "Ready").reason, "StreamUnavailable");
        assert_eq!(cond(&s, "Degraded").reason, "StreamNotFound");
        assert!(cond(&s, "Degraded").message.contains("orders"));
    }

    #[test]
    fn an_expired_worker_is_degraded_and_transition_times_are_kept() {
        let t = table(&[Some("w0")]);
        let w = workers(Liveness::Expired, &[(0, 0)]);
        let (first, _) = compute(&input(&t, &w));
        assert_eq!(cond(&first, "Degraded").reason, "WorkerExpired");
        let mut i = input(&t, &w);
        i.previous = Some(&first);
        i.now = Timestamp::from_second(1000).expect("time");
        let (second, _) = compute(&i);
        assert_eq!(
            cond(&second, "Degraded").last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert!(!structurally_different(&first, &second));
    }

    #[test]
    fn a_shard_with_unknown_lag_makes_the_largest_lag_unknown_not_zero() {
        let t = table(&[Some("w0"), Some("w0")]);
        let mut w = workers(Liveness::Live, &[(0, 0), (1, 0)]);
        if let Some(st) = w.get_mut("w0").and_then(|w| w.object.status.as_mut()) {
            for e in &mut st.shards {
                e.millis_behind_latest = None;
            }
            st.shards[0].millis_behind_latest = Some(700);
        }
        let (s, g) = compute(&input(&t, &w));
        assert_eq!(s.max_millis_behind_latest, None, "s1's lag is unknown");
        assert_eq!(s.lag, None);
        assert_eq!(g.max_millis_behind_latest, None);
        assert_eq!(s.shards[0].millis_behind_latest, Some(700));
        assert_eq!(s.shards[1].millis_behind_latest, None);
    }

    #[test]
    fn a_worker_that_never_read_reports_no_lag() {
        let t = table(&[Some("w0")]);
        let mut w = workers(Liveness::Live, &[(0, 0)]);
        if let Some(st) = w.get_mut("w0").and_then(|w| w.object.status.as_mut()) {
            st.shards[0].millis_behind_latest = None;
        }
        let (s, g) = compute(&input(&t, &w));
        assert_eq!(s.max_millis_behind_latest, None);
        assert_eq!(g.max_millis_behind_latest, None);
        let (s, g) = compute(&input(&table(&[None]), &w));
        assert_eq!(
            s.max_millis_behind_latest, None,
            "a pending shard's lag is unknown"
        );
        assert_eq!(g.max_millis_behind_latest, None);
    }

    fn stuck(w: &mut Workers, shard: usize, error: Option<&str>) {
        if let Some(e) = w
            .get_mut("w0")
            .and_then(|w| w.object.status.as_mut())
            .and_then(|s| s.shards.get_mut(shard))
        {
            e.delivery_stuck = Some(DeliveryStuck {
                stalled_seconds: 95,
                threshold_seconds: 30,
                sink_error: error.map(str::to_owned),
            });
        }
    }

    #[test]
    fn shards_nobody_can_read_are_not_ready_and_degraded_naming_the_error() {
        let t = table(&[Some("w0"), Some("w0")]);
        let mut w = workers(Liveness::Live, &[(0, 0), (1, 0)]);
        let (s, g) = compute(&input(&t, &w));
        assert_eq!(cond(&s, "Ready").status, "True", "control");
        assert!(g.ready);
        if let Some(e) = w
            .get_mut("w0")
            .and_then(|w| w.object.status.as_mut())
            .and_then(|s| s.shards.get_mut(1))
        {
            e.millis_behind_latest = None;
            e.read_error = Some(ReadError {
                category: "credentials".into(),
                operation: "GetShardIterator".into(),
                message: "no credentials in the chain".into(),
                failing_seconds: 42,
            });
        }
        let (s, g) = compute(&input(&t, &w));
        let ready = cond(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ReadErrors")
        );
        for wanted in [
            "1 shards",
            "s1",
            "GetShardIterator",
            "credentials",
            "42s",
            "no credentials in the chain",
        ] {
            assert!(
                ready.message.contains(wanted),
                "{wanted}: {}",
                ready.message
            );
        }
        let degraded = cond(&s, "Degraded");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "ReadErrors")
        );
        assert!(!g.ready && g.degraded);
        assert_eq!(s.lag, None, "the unread shard's lag is unknown");
    }

    #[test]
    fn a_stuck_sink_is_not_ready_and_degraded_with_its_error_category() {
        let t = table(&[Some("w0"), Some("w0")]);
        let mut w = workers(Liveness::Live, &[(0, 0), (1, 0)]);
        stuck(&mut w, 1, Some("connect"));
        let (s, _) = compute(&input(&t, &w));
        let ready = cond(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "NotDelivering")
        );
        assert!(
            ready.message.contains("1 shards") && ready.message.contains("1m35s"),
            "{}",
            ready.message
        );
        assert_eq!(
            s.undelivered.as_deref(),
            Some("1m35s"),
            "a stuck sink shows how long records waited, whatever the read lag"
        );
        let degraded = cond(&s, "Degraded");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "SinkFailing")
        );
        assert!(degraded.message.contains("connect"), "{}", degraded.message);
        assert_eq!(
            s.lag.as_deref(),
            Some("0s"),
            "the lag is still what was read"
        );
    }

    #[test]
    fn a_sink_stuck_without_errors_says_so() {
        let t = table(&[Some("w0")]);
        let mut w = workers(Liveness::Live, &[(0, 0)]);
        stuck(&mut w, 0, None);
        let (s, _) = compute(&input(&t, &w));
        assert_eq!(cond(&s, "Degraded").reason, "SinkFailing");
        assert!(
            cond(&s, "Degraded")
                .message
                .contains("hangs without failing")
        );
    }

    #[test]
    fn sink_error_labels_in_the_message_are_bounded() {
        let t = table(&[Some("w0"), Some("w0"), Some("w0"), Some("w0"), Some("w0")]);
        let mut w = workers(Liveness::Live, &[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]);
        let long = "x".repeat(5000);
        for (i, e) in ["a", "b", "c", "d", long.as_str()].iter().enumerate() {
            stuck(&mut w, i, Some(e));
        }
        let (s, _) = compute(&input(&t, &w));
        let msg = &cond(&s, "Degraded").message;
        assert!(msg.len() < 200, "{msg}");
        assert!(msg.contains("2 more"), "{msg}");
    }

    #[test]
    fn the_stuck_report_of_an_expired_worker_is_not_trusted() {
        let t = table(&[Some("w0")]);
        let mut w = workers(Liveness::Expired, &[(0, 0)]);
        stuck(&mut w, 0, Some("connect"));
        let (s, _) = compute(&input(&t, &w));
        assert_eq!(cond(&s, "Degraded").reason, "WorkerExpired");
        assert_ne!(cond(&s, "Ready").reason, "NotDelivering");
    }

    #[test]
    fn a_stream_problem_outranks_a_stuck_sink_and_recovery_is_ready_again() {
        let t = table(&[Some("w0")]);
        let mut w = workers(Liveness::Live, &[(0, 0)]);
        stuck(&mut w, 0, Some("http_5xx"));
        let mut i = input(&t, &w);
        i.problem = Some(StreamProblem {
            reason: "StreamNotFound",
            message: "gone".into(),
        });
        let (s, _) = compute(&i);
        assert_eq!(cond(&s, "Degraded").reason, "StreamNotFound");
        let (stuck_status, _) = compute(&input(&t, &w));
        let healthy = workers(Liveness::Live, &[(0, 0)]);
        let mut i = input(&t, &healthy);
        i.previous = Some(&stuck_status);
        let (s, _) = compute(&i);
        assert_eq!(cond(&s, "Ready").reason, "AllShardsReading");
        assert_eq!(cond(&s, "Degraded").reason, "AsExpected");
        assert!(
            structurally_different(&stuck_status, &s),
            "the change is written"
        );
    }

    #[test]
    fn lags_read_well() {
        assert_eq!(format_lag(0), "0s");
        assert_eq!(format_lag(250), "0.2s");
        assert_eq!(format_lag(1200), "1.2s");
        assert_eq!(format_lag(185_000), "3m5s");
        assert_eq!(format_lag(7_300_000), "2h1m");
    }
}

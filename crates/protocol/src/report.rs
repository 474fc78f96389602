//! The worker's report, built purely from what it holds: one entry per shard, never one the operator fenced.

use std::{collections::BTreeMap, time::Duration};

use kinesis_ingester_api::{
    CheckpointPosition, DeliveryStuck, Holder, KinesisWorkerSpec, KinesisWorkerStatus, ReadError,
    WorkerShard, sequence::Position,
};

/// One shard in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportEntry {
    /// The table epoch it belongs to.
    pub epoch: i64,
    /// Its state.
    pub state: EntryState,
}

/// How a shard's position is reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Held: the position is what the sink acknowledged when the status is built.
    Live,
    /// A fixed position: carried over from the previous process, released, or finished.
    Frozen {
        /// The position.
        position: Option<Position>,
        /// What became of the shard.
        handed: Handed,
    },
}

/// What became of a shard whose position is fixed. Released and finished exclude each other,
/// so a state with both cannot be represented (the report's two flags could say both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    /// Carried over from the previous process and not handed back yet.
    Kept,
    /// Released: the handoff is acknowledged.
    Released,
    /// Read to its end and delivered.
    Finished,
}

impl Handed {
    /// From a report's flags; `finished` wins, as a finished shard is never read again.
    pub fn from_flags(released: bool, finished: bool) -> Self {
        match (released, finished) {
            (_, true) => Self::Finished,
            (true, false) => Self::Released,
            (false, false) => Self::Kept,
        }
    }

    /// Handed back: released or finished.
    pub fn is_back(self) -> bool {
        self != Self::Kept
    }
}

/// What the worker knows of a shard it reads, when the status is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveShard {
    /// The last position the sink acknowledged.
    pub acked: Option<Position>,
    /// MillisBehindLatest of the last read; `None` while unknown.
    pub millis_behind_latest: Option<i64>,
    /// When the sink last acknowledged records of the shard.
    pub last_delivery: Option<jiff::Timestamp>,
    /// While records wait for the sink: how long nothing was acknowledged.
    pub stalled_for: Option<Duration>,
    /// While Kinesis calls for the shard fail (throttling aside): the last failure.
    pub failing: Option<FailingReads>,
}

/// Kinesis calls of one shard that keep failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailingReads {
    /// The error's category (`SourceError::category`).
    pub category: &'static str,
    /// The call.
    pub operation: &'static str,
    /// The error.
    pub message: String,
    /// How long the calls have failed since the last success.
    pub failing_for: Duration,
}

/// Reads that failed for this long are reported: a retry or two are normal, a shard nobody can
/// read for 10 s is not.
pub const READ_ERROR_AFTER: Duration = Duration::from_secs(10);

/// Longest error message a report carries (it is written into every report until it clears).
pub const READ_ERROR_MESSAGE_LEN: usize = 256;

/// The report of reads failing for longer than [`READ_ERROR_AFTER`].
pub fn read_error(failing: Option<&FailingReads>) -> Option<ReadError> {
    let f = failing.filter(|f| f.failing_for >= READ_ERROR_AFTER)?;
    // One line: SDK errors list every credential provider they tried on lines of their own.
    let one_line = f.message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut message: String = one_line.chars().take(READ_ERROR_MESSAGE_LEN).collect();
    if message.len() < one_line.len() {
        message.push('…');
    }
    Some(ReadError {
        category: f.category.to_owned(),
        operation: f.operation.to_owned(),
        message,
        failing_seconds: i64::try_from(f.failing_for.as_secs()).unwrap_or(i64::MAX),
    })
}

/// The sink as a whole, when the status is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkHealth {
    /// Records waiting with nothing acknowledged for longer than this make delivery stuck.
    pub stuck_after: Duration,
    /// Category of the last failed send since the last delivery.
    pub last_error: Option<&'static str>,
    /// With several sinks: the name of the one that last failed.
    pub failing_sink: Option<String>,
}

/// Whether records stalled for `stalled_for` make delivery stuck, and the report if so.
pub fn delivery_stuck(stalled_for: Option<Duration>, sink: &SinkHealth) -> Option<DeliveryStuck> {
    let stalled = stalled_for.filter(|d| *d > sink.stuck_after)?;
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    Some(DeliveryStuck {
        stalled_seconds: secs(stalled),
        threshold_seconds: secs(sink.stuck_after),
        sink_error: sink.last_error.map(str::to_owned),
        sink: sink.failing_sink.clone(),
    })
}

/// A position as the CRDs store it.
pub fn to_checkpoint(p: &Position) -> CheckpointPosition {
    CheckpointPosition {
        sequence: p.sequence.to_string(),
        sub_sequence: p.sub_sequence,
    }
}

/// The whole status: `holder`, `renew_time` and one entry per shard, leaving out any shard
/// `spec` fences at its epoch (it must never be written again). `live` tells what the worker
/// knows of a shard it reads: position, lag and delivery; with `sink` it decides whether the
/// shard's delivery is stuck.
pub fn build_status(
    holder: &Holder,
    renew_time: jiff::Timestamp,
    stopped: bool,
    entries: &BTreeMap<String, ReportEntry>,
    spec: &KinesisWorkerSpec,
    live: impl Fn(&str) -> LiveShard,
    sink: &SinkHealth,
) -> KinesisWorkerStatus {
    let shards = entries
        .iter()
        .filter(|(id, e)| !spec.is_fenced(id, e.epoch))
        .map(|(id, e)| {
            let (live, released, finished) = match &e.state {
                EntryState::Live => (live(id), false, false),
                EntryState::Frozen { position, handed } => (
                    LiveShard {
                        acked: position.clone(),
                        ..LiveShard::default()
                    },
                    *handed == Handed::Released,
                    *handed == Handed::Finished,
                ),
            };
            WorkerShard {
                shard_id: id.clone(),
                epoch: e.epoch,
                position: live.acked.as_ref().map(to_checkpoint),
                millis_behind_latest: live.millis_behind_latest,
                released,
                finished,
                // Whole seconds: shown to people, and 10 bytes less per shard in every write.
                last_delivery: live
                    .last_delivery
                    .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string()),
                delivery_stuck: delivery_stuck(live.stalled_for, sink),
                read_error: read_error(live.failing.as_ref()),
                // Whole seconds, and only from one second on: a sink that keeps up is absent.
                waiting_seconds: live
                    .stalled_for
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                    .filter(|s| *s >= 1),
            }
        })
        .collect::<Vec<_>>();
    KinesisWorkerStatus {
        holder: Some(holder.clone()),
        renew_time: Some(renew_time.to_string()),
        stopped,
        shards_held: kinesis_ingester_api::count_i32(
            shards.iter().filter(|s| !s.released && !s.finished).count(),
        ),
        shards,
    }
}

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::Fence;

    use super::*;

    #[test]
    fn reads_failing_past_the_threshold_are_reported_bounded() {
        let failing = |secs, message: &str| FailingReads {
            category: "credentials",
            operation: "GetShardIterator",
            message: message.to_owned(),
            failing_for: Duration::from_secs(secs),
        };
        assert_eq!(read_error(None), None);
        assert_eq!(read_error(Some(&failing(9, "x"))), None, "a retry or two");
        let e =
            read_error(Some(&failing(12, "no credentials\n  Attempted:  env"))).expect("reported");
        assert_eq!(
            (
                e.category.as_str(),
                e.operation.as_str(),
                e.message.as_str(),
                e.failing_seconds
            ),
            (
                "credentials",
                "GetShardIterator",
                "no credentials Attempted: env",
                12
            )
        );
        let long = read_error(Some(&failing(60, &"é".repeat(10_000)))).expect("reported");
        assert_eq!(long.message.chars().count(), READ_ERROR_MESSAGE_LEN + 1);
        assert!(long.message.ends_with('…'));
    }

    fn pos(seq: &str) -> Position {
        Position::whole(seq.parse().expect("seq"))
    }

    #[test]
    fn the_status_holds_every_entry_except_fenced_ones() {
        let holder = Holder {
            pod_uid: "p".into(),
            incarnation: "i".into(),
        };
        let entries: BTreeMap<String, ReportEntry> = [
            ("a", 1, EntryState::Live),
            (
                "b",
                2,
                EntryState::Frozen {
                    position: Some(pos("7")),
                    handed: Handed::Released,
                },
            ),
            ("c", 1, EntryState::Live),
            ("d", 5, EntryState::Live),
        ]
        .into_iter()
        .map(|(id, epoch, state)| (id.to_owned(), ReportEntry { epoch, state }))
        .collect();
        let spec = KinesisWorkerSpec {
            ingester_uid: "u".into(),
            fences: vec![Fence {
                shard_id: "c".into(),
                epoch: 1,
                position: None,
            }],
        };
        let now: jiff::Timestamp = "2026-03-02T10:15:30Z".parse().expect("time");
        let sink = SinkHealth {
            stuck_after: Duration::from_secs(30),
            last_error: Some("connect"),
            failing_sink: None,
        };
        let delivered: jiff::Timestamp = "2026-03-02T10:13:59.6Z".parse().expect("time");
        let status = build_status(
            &holder,
            now,
            false,
            &entries,
            &spec,
            |id| match id {
                "a" => LiveShard {
                    acked: Some(pos("3")),
                    millis_behind_latest: Some(1200),
                    last_delivery: Some(delivered),
                    stalled_for: Some(Duration::from_secs(5)),
                    failing: None,
                },
                "d" => LiveShard {
                    stalled_for: Some(Duration::from_secs(31)),
                    ..LiveShard::default()
                },
                _ => LiveShard::default(),
            },
            &sink,
        );
        assert_eq!(status.renew_time.as_deref(), Some("2026-03-02T10:15:30Z"));
        assert_eq!(status.holder, Some(holder));
        let ids: Vec<_> = status.shards.iter().map(|s| s.shard_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "d"], "the fenced shard is left out");
        let a = status.entry("a", 1).expect("a");
        assert_eq!(a.position.as_ref().map(|p| p.sequence.as_str()), Some("3"));
        assert_eq!(a.millis_behind_latest, Some(1200));
        let b = status.entry("b", 2).expect("b");
        assert!(b.released && !b.finished);
        assert_eq!(b.position.as_ref().map(|p| p.sequence.as_str()), Some("7"));
        assert_eq!(a.last_delivery.as_deref(), Some("2026-03-02T10:14:00Z"));
        assert_eq!(a.delivery_stuck, None, "waiting, but not for long");
        assert_eq!(b.delivery_stuck, None);
        assert_eq!(b.last_delivery, None);
        let d = status.entry("d", 5).expect("d");
        assert_eq!(d.position, None, "claimed, nothing delivered yet");
        assert_eq!(d.millis_behind_latest, None, "unknown lag is absent");
        assert_eq!(
            d.delivery_stuck,
            Some(DeliveryStuck {
                stalled_seconds: 31,
                threshold_seconds: 30,
                sink_error: Some("connect".into()),
                sink: None,
            })
        );
    }

    #[test]
    fn delivery_is_stuck_only_while_records_wait_past_the_threshold() {
        let sink = SinkHealth {
            stuck_after: Duration::from_secs(30),
            last_error: None,
            failing_sink: None,
        };
        assert_eq!(delivery_stuck(None, &sink), None, "nothing waits");
        assert_eq!(delivery_stuck(Some(Duration::from_secs(30)), &sink), None);
        let stuck = delivery_stuck(Some(Duration::from_secs(90)), &sink).expect("stuck");
        assert_eq!(stuck.stalled_seconds, 90);
        assert_eq!(stuck.sink_error, None, "no send failed: a hung sink");
    }
}

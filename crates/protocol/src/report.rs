//! The worker's report, built purely from what it holds: one entry per shard, never one the operator fenced.

use std::collections::BTreeMap;

use kinesis_ingester_api::{
    CheckpointPosition, Holder, KinesisWorkerSpec, KinesisWorkerStatus, WorkerShard,
    sequence::Position,
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
        /// Released (handoff acknowledged).
        released: bool,
        /// Read to its end and delivered.
        finished: bool,
    },
}

/// A position as the CRDs store it.
pub fn to_checkpoint(p: &Position) -> CheckpointPosition {
    CheckpointPosition {
        sequence: p.sequence.to_string(),
        sub_sequence: p.sub_sequence,
    }
}

/// The whole status: `holder`, `renew_time` and one entry per shard, leaving out any shard
/// `spec` fences at its epoch (it must never be written again). `acked` gives a live shard's
/// position and `lag` its MillisBehindLatest.
pub fn build_status(
    holder: &Holder,
    renew_time: jiff::Timestamp,
    stopped: bool,
    entries: &BTreeMap<String, ReportEntry>,
    spec: &KinesisWorkerSpec,
    acked: impl Fn(&str) -> Option<Position>,
    lag: impl Fn(&str) -> Option<i64>,
) -> KinesisWorkerStatus {
    let shards = entries
        .iter()
        .filter(|(id, e)| !spec.is_fenced(id, e.epoch))
        .map(|(id, e)| {
            let (position, released, finished, millis) = match &e.state {
                EntryState::Live => (acked(id), false, false, lag(id)),
                EntryState::Frozen {
                    position,
                    released,
                    finished,
                } => (position.clone(), *released, *finished, None),
            };
            WorkerShard {
                shard_id: id.clone(),
                epoch: e.epoch,
                position: position.as_ref().map(to_checkpoint),
                millis_behind_latest: millis,
                released,
                finished,
            }
        })
        .collect();
    KinesisWorkerStatus {
        holder: Some(holder.clone()),
        renew_time: Some(renew_time.to_string()),
        stopped,
        shards,
    }
}

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::Fence;

    use super::*;

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
                    released: true,
                    finished: false,
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
        let status = build_status(
            &holder,
            now,
            false,
            &entries,
            &spec,
            |id| (id == "a").then(|| pos("3")),
            |id| (id == "a").then_some(1200),
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
        let d = status.entry("d", 5).expect("d");
        assert_eq!(d.position, None, "claimed, nothing delivered yet");
    }
}

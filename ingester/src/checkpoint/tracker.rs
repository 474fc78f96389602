//! Tracks, per shard, what the sink acknowledged and what is stored, and decides when a closed shard is finished.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::ShardCheckpoint;
use kinesis_ingester_api::sequence::Position;

#[derive(Debug, Default)]
struct Progress {
    /// Highest position the sink acknowledged.
    acked: Option<Position>,
    /// What the store holds.
    saved: Option<Position>,
    saved_finished: bool,
    /// Set when the reader reached SHARD_END: the position after the last record it sent
    /// (`None` when it sent none).
    end: Option<Option<Position>>,
    /// Highest position handed (or being handed) to the sink.
    read: Option<Position>,
    /// When the sink last acknowledged records of the shard: monotonic, and the wall clock to show.
    acked_at: Option<(Instant, jiff::Timestamp)>,
    /// When records started waiting for the sink (read, not acknowledged) after none did.
    waiting_since: Option<Instant>,
}

/// How the sink keeps up with one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryState {
    /// When the sink last acknowledged records of the shard (wall clock); none yet when absent.
    pub last_delivery: Option<jiff::Timestamp>,
    /// While records wait for the sink: how long since the last acknowledgement, or since they
    /// started waiting when that is later. `None` when nothing waits.
    pub stalled_for: Option<Duration>,
}

impl Progress {
    fn waiting(&self) -> bool {
        match (&self.read, &self.acked) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(r), Some(a)) => r > a,
        }
    }

    fn delivery(&self, now: Instant) -> DeliveryState {
        let stalled_for = self.waiting().then(|| {
            let since = match (self.waiting_since, self.acked_at.map(|(i, _)| i)) {
                (Some(w), Some(a)) => w.max(a),
                (w, a) => w.or(a).unwrap_or(now),
            };
            now.saturating_duration_since(since)
        });
        DeliveryState {
            last_delivery: self.acked_at.map(|(_, t)| t),
            stalled_for,
        }
    }

    fn finished(&self) -> bool {
        match &self.end {
            None => false,
            Some(None) => true,
            Some(Some(last)) => self.acked.as_ref().is_some_and(|a| a >= last),
        }
    }
}

/// Shared by the shard readers (shard end), the sink (acks) and the flusher (saves).
#[derive(Debug, Default)]
pub struct Tracker {
    shards: Mutex<HashMap<Arc<str>, Progress>>,
    /// Fleet mode: only shards given to [`Tracker::seed`] are tracked; acks for any other shard
    /// (one never owned, or forgotten after a release or a fence) are ignored.
    strict: bool,
    /// Woken when a shard may have become finished, so it is saved (and its children started)
    /// without waiting for the next periodic flush.
    pub changed: Notify,
}

impl Tracker {
    /// A tracker that starts from stored checkpoints.
    pub fn new(stored: impl IntoIterator<Item = ShardCheckpoint>) -> Self {
        let shards = stored
            .into_iter()
            .map(|cp| {
                let p = Progress {
                    acked: cp.position.clone(),
                    saved: cp.position,
                    saved_finished: cp.finished,
                    end: cp.finished.then_some(None),
                    ..Progress::default()
                };
                (Arc::from(cp.shard_id), p)
            })
            .collect();
        Self {
            shards: Mutex::new(shards),
            strict: false,
            changed: Notify::new(),
        }
    }

    /// A tracker for fleet mode: it tracks only the shards the worker owns ([`Tracker::seed`]),
    /// so late acks of a shard it no longer owns cannot move a checkpoint.
    pub fn strict() -> Self {
        Self {
            strict: true,
            ..Self::default()
        }
    }

    /// Starts tracking `shard` afresh from `position` (where its reader starts), dropping any
    /// earlier state. Later acks only move it forward: an ack from an earlier ownership at or
    /// below `position` is ignored, and one above it was delivered in shard order by this
    /// process's sink, so it is a true checkpoint.
    pub fn seed(&self, shard: &str, position: Option<Position>) {
        let p = Progress {
            acked: position.clone(),
            saved: position,
            ..Progress::default()
        };
        self.lock().insert(Arc::from(shard), p);
    }

    /// The reader of `shard` read records up to `position` and hands them to the sink: they
    /// wait until it acknowledges them.
    pub fn read(&self, shard: &str, position: &Position) {
        let now = Instant::now();
        let mut shards = self.lock();
        let p = match shards.get_mut(shard) {
            Some(p) => p,
            None if self.strict => return,
            None => shards.entry(Arc::from(shard)).or_default(),
        };
        if p.read.as_ref().is_none_or(|r| r < position) {
            if !p.waiting() {
                p.waiting_since = Some(now);
            }
            p.read = Some(position.clone());
        }
    }

    /// Forgets what was handed to the sink for `shard` (it was dropped undelivered and is read
    /// again from the acknowledged position); its last delivery is kept.
    pub fn rewind(&self, shard: &str) {
        if let Some(p) = self.lock().get_mut(shard) {
            p.read = None;
            p.waiting_since = None;
        }
    }

    /// How the sink keeps up with `shard` at `now`; `None` for a shard not tracked.
    pub fn delivery(&self, shard: &str, now: Instant) -> Option<DeliveryState> {
        self.lock().get(shard).map(|p| p.delivery(now))
    }

    /// Whether records of any shard have waited for the sink, with no acknowledgement, for
    /// longer than `threshold` at `now`.
    pub fn any_stuck(&self, now: Instant, threshold: Duration) -> bool {
        self.lock()
            .values()
            .any(|p| p.delivery(now).stalled_for.is_some_and(|d| d > threshold))
    }

    /// Stops tracking `shard`: its state is dropped and, in a strict tracker, later acks for it
    /// are ignored until it is seeded again.
    pub fn forget(&self, shard: &str) {
        self.lock().remove(shard);
    }

    /// Whether the sink acknowledged everything of `shard` up to `last_sent` (the last
    /// checkpoint its reader handed to the sink); true when nothing was sent.
    pub fn drained(&self, shard: &str, last_sent: Option<&Position>) -> bool {
        let Some(last) = last_sent else { return true };
        self.lock()
            .get(shard)
            .and_then(|p| p.acked.as_ref())
            .is_some_and(|a| a >= last)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Progress>> {
        // A panic elsewhere cannot leave a Progress half-updated, so a poisoned lock is usable.
        self.shards.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sink delivered everything of `shard` up to `position`.
    pub fn ack(&self, shard: &str, position: &Position) {
        let mut shards = self.lock();
        let p = match shards.get_mut(shard) {
            Some(p) => p,
            None if self.strict => return,
            None => shards.entry(Arc::from(shard)).or_default(),
        };
        if p.acked.as_ref().is_none_or(|a| a < position) {
            p.acked = Some(position.clone());
            // Only a new acknowledgement is a delivery; a late one of an earlier ownership is not.
            p.acked_at = Some((Instant::now(), jiff::Timestamp::now()));
            if !p.waiting() {
                p.waiting_since = None;
            }
        }
        let wake = p.end.is_some();
        drop(shards);
        if wake {
            self.changed.notify_one();
        }
    }

    /// The reader of `shard` reached SHARD_END; `last_sent` is the checkpoint of the last chunk
    /// it handed to the sink.
    pub fn mark_end(&self, shard: &str, last_sent: Option<Position>) {
        let mut shards = self.lock();
        match shards.get_mut(shard) {
            Some(p) => p.end = Some(last_sent),
            None if self.strict => return,
            None => shards.entry(Arc::from(shard)).or_default().end = Some(last_sent),
        }
        drop(shards);
        self.changed.notify_one();
    }

    /// The position `shard` resumes from, if any was delivered.
    pub fn acked(&self, shard: &str) -> Option<Position> {
        self.lock().get(shard).and_then(|p| p.acked.clone())
    }

    /// Whether the reader of `shard` reached SHARD_END (delivered or not). Such a shard is never
    /// read again: its remaining records are already on their way to the sink.
    pub fn reached_end(&self, shard: &str) -> bool {
        self.lock().get(shard).is_some_and(|p| p.end.is_some())
    }

    /// Whether `shard` is finished: read to its end and all of it delivered (saved or not).
    pub fn is_finished(&self, shard: &str) -> bool {
        self.lock().get(shard).is_some_and(Progress::finished)
    }

    /// Whether `shard` is finished and that is stored.
    pub fn is_saved_finished(&self, shard: &str) -> bool {
        self.lock().get(shard).is_some_and(|p| p.saved_finished)
    }

    /// Checkpoints that differ from what the store holds.
    pub fn unsaved(&self) -> Vec<ShardCheckpoint> {
        self.lock()
            .iter()
            .filter_map(|(id, p)| {
                let finished = p.finished();
                (p.acked != p.saved || finished != p.saved_finished).then(|| ShardCheckpoint {
                    shard_id: id.to_string(),
                    position: p.acked.clone(),
                    finished,
                })
            })
            .collect()
    }

    /// Records that `checkpoint` is now stored.
    pub fn saved(&self, checkpoint: &ShardCheckpoint) {
        let mut shards = self.lock();
        let p = shards
            .entry(Arc::from(checkpoint.shard_id.as_str()))
            .or_default();
        p.saved = checkpoint.position.clone();
        p.saved_finished = checkpoint.finished;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(seq: &str) -> Position {
        Position::whole(seq.parse().unwrap())
    }

    #[test]
    fn acks_only_move_forward_and_become_unsaved() {
        let t = Tracker::new([]);
        t.ack("a", &pos("10"));
        t.ack("a", &pos("9"));
        assert_eq!(t.acked("a"), Some(pos("10")));
        let unsaved = t.unsaved();
        assert_eq!(unsaved.len(), 1);
        t.saved(&unsaved[0]);
        assert!(t.unsaved().is_empty());
    }

    #[test]
    fn a_shard_is_finished_only_after_its_last_chunk_is_acked() {
        let t = Tracker::new([]);
        t.ack("a", &pos("5"));
        assert!(!t.reached_end("a"));
        t.mark_end("a", Some(pos("7")));
        assert!(t.reached_end("a"), "ended, so never read again");
        assert!(!t.is_finished("a"), "record 7 is not delivered yet");
        t.ack("a", &pos("7"));
        assert!(t.is_finished("a"));
        let cp = t.unsaved().pop().unwrap();
        assert!(cp.finished);
        assert!(!t.is_saved_finished("a"));
        t.saved(&cp);
        assert!(t.is_saved_finished("a"));
    }

    #[test]
    fn an_empty_closed_shard_is_finished_at_once_and_stored_state_is_resumed() {
        let t = Tracker::new([ShardCheckpoint {
            shard_id: "old".into(),
            position: Some(pos("3")),
            finished: true,
        }]);
        assert!(t.is_finished("old") && t.is_saved_finished("old"));
        assert!(t.unsaved().is_empty(), "nothing changed since loading");
        t.mark_end("empty", None);
        assert!(t.is_finished("empty"));
    }

    #[test]
    fn a_strict_tracker_ignores_acks_of_shards_it_does_not_own() {
        let t = Tracker::strict();
        t.ack("a", &pos("5"));
        t.mark_end("a", None);
        assert_eq!(t.acked("a"), None, "never seeded");
        assert!(!t.reached_end("a"));

        t.seed("a", Some(pos("10")));
        t.ack("a", &pos("7"));
        assert_eq!(
            t.acked("a"),
            Some(pos("10")),
            "an older ack cannot move it back"
        );
        t.ack("a", &pos("12"));
        assert_eq!(t.acked("a"), Some(pos("12")));

        t.forget("a");
        t.ack("a", &pos("20"));
        assert_eq!(t.acked("a"), None, "late acks after a release are ignored");
        t.seed("a", None);
        assert_eq!(t.acked("a"), None, "seeding starts afresh");
        assert!(t.unsaved().is_empty());
    }

    #[test]
    fn records_read_and_not_acknowledged_stall_until_the_sink_acknowledges_them() {
        let t = Tracker::strict();
        let start = Instant::now();
        let later = |s: u64| start + Duration::from_secs(s);
        t.read("a", &pos("1"));
        assert_eq!(t.delivery("a", later(60)), None, "not seeded: not tracked");
        t.seed("a", Some(pos("3")));
        let idle = t.delivery("a", later(60)).unwrap();
        assert_eq!(idle, DeliveryState::default(), "nothing waits");
        assert!(!t.any_stuck(later(60), Duration::from_secs(30)));

        t.read("a", &pos("9"));
        let d = t.delivery("a", later(40)).unwrap();
        assert_eq!(d.last_delivery, None, "nothing acknowledged yet");
        assert!(d.stalled_for.unwrap() >= Duration::from_secs(39));
        assert!(t.any_stuck(later(40), Duration::from_secs(30)));
        assert!(!t.any_stuck(later(10), Duration::from_secs(30)));

        t.ack("a", &pos("5"));
        let d = t.delivery("a", Instant::now()).unwrap();
        assert!(d.last_delivery.is_some());
        assert!(
            d.stalled_for.unwrap() < Duration::from_secs(30),
            "an acknowledgement restarts the clock while records still wait"
        );
        t.ack("a", &pos("9"));
        let d = t.delivery("a", later(600)).unwrap();
        assert_eq!(d.stalled_for, None, "everything read was acknowledged");
        assert!(!t.any_stuck(later(600), Duration::from_secs(30)));

        t.read("a", &pos("12"));
        let d = t
            .delivery("a", Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert!(
            d.stalled_for.unwrap() <= Duration::from_secs(6),
            "waiting starts when records are read, not at the last (old) acknowledgement"
        );
    }

    #[test]
    fn drained_compares_the_acked_position_with_the_last_one_sent() {
        let t = Tracker::strict();
        t.seed("a", Some(pos("3")));
        assert!(t.drained("a", None), "nothing sent");
        assert!(!t.drained("a", Some(&pos("9"))));
        t.ack("a", &pos("9"));
        assert!(t.drained("a", Some(&pos("9"))));
        assert!(!t.drained("b", Some(&pos("1"))), "unknown shard");
    }
}

//! Several sinks acknowledge one checkpoint: a shard's position is passed on only once every
//! sink acknowledged it.
//!
//! Every chunk goes to every sink (possibly with no records), so each sink acknowledges every
//! chunk's checkpoint, in shard order, though a batch acknowledges only its last chunk of a shard.
//! The join keeps, per shard, the checkpoints of chunks sent and not yet acknowledged by all, in
//! order, with the sinks that acknowledged each; the front ones every sink acknowledged are
//! passed on, the last of them to the inner [`AckFn`].

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use kinesis_ingester_api::sequence::Position;

use crate::record::AckFn;

/// Most sinks one join can wait for (bits of [`Pending::acked`]).
pub const MAX_JOINED: usize = 64;

#[derive(Debug)]
struct Pending {
    checkpoint: Position,
    /// Bit `i` set once sink `i` acknowledged this checkpoint (or a later one).
    acked: u64,
}

#[derive(Debug, Default)]
struct ShardJoin {
    generation: u64,
    pending: VecDeque<Pending>,
}

/// Joins the acknowledgements of `sinks` sinks into one per checkpoint.
pub struct AckJoin {
    all: u64,
    inner: AckFn,
    shards: Mutex<HashMap<Arc<str>, ShardJoin>>,
}

impl std::fmt::Debug for AckJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckJoin")
            .field("all", &self.all)
            .finish_non_exhaustive()
    }
}

impl AckJoin {
    /// A join of `sinks` sinks (1 to [`MAX_JOINED`]) passing checkpoints on to `inner`.
    pub fn new(sinks: usize, inner: AckFn) -> Arc<Self> {
        assert!((1..=MAX_JOINED).contains(&sinks), "1 to 64 sinks");
        let all = if sinks == MAX_JOINED {
            u64::MAX
        } else {
            (1u64 << sinks) - 1
        };
        Arc::new(Self {
            all,
            inner,
            shards: Mutex::new(HashMap::new()),
        })
    }

    /// A chunk of `shard`'s reading `generation` ending at `checkpoint` is about to go to every
    /// sink. A newer generation forgets the older one's checkpoints: they will never be passed
    /// on (the sinks drop that reading's chunks).
    pub fn sent(&self, shard: &Arc<str>, generation: u64, checkpoint: &Position) {
        let mut shards = self.shards.lock().expect("ack join lock");
        let join = shards.entry(shard.clone()).or_default();
        if generation != join.generation {
            join.generation = generation;
            join.pending.clear();
        }
        join.pending.push_back(Pending {
            checkpoint: checkpoint.clone(),
            acked: 0,
        });
    }

    /// The ack function of sink `index` (below the count given to [`Self::new`]).
    pub fn ack_fn(self: &Arc<Self>, index: usize) -> AckFn {
        let join = self.clone();
        Arc::new(move |shard, position| join.ack(index, shard, position))
    }

    /// Sink `index` acknowledged `shard` up to `position`: every chunk up to the one ending
    /// there. A position no pending chunk ends at (an earlier reading's) changes nothing.
    fn ack(&self, index: usize, shard: &str, position: &Position) {
        let bit = 1u64 << index;
        let mut shards = self.shards.lock().expect("ack join lock");
        let Some(join) = shards.get_mut(shard) else {
            return;
        };
        let Some(upto) = join
            .pending
            .iter()
            .position(|p| p.acked & bit == 0 && p.checkpoint == *position)
        else {
            return;
        };
        for p in join.pending.iter_mut().take(upto + 1) {
            p.acked |= bit;
        }
        let mut done = None;
        while join.pending.front().is_some_and(|p| p.acked == self.all) {
            done = join.pending.pop_front().map(|p| p.checkpoint);
        }
        // Passed on under the lock, so a shard's checkpoints reach `inner` in order.
        if let Some(checkpoint) = done {
            (self.inner)(shard, &checkpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_ingester_api::sequence::SequenceNumber;

    fn pos(n: u32) -> Position {
        Position {
            sequence: format!("{n:05}").parse::<SequenceNumber>().expect("digits"),
            sub_sequence: None,
        }
    }

    type Seen = Arc<Mutex<Vec<(String, Position)>>>;

    fn recorder() -> (AckFn, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let f: AckFn = Arc::new(move |shard, p| {
            s.lock().unwrap().push((shard.to_owned(), p.clone()));
        });
        (f, seen)
    }

    #[test]
    fn a_checkpoint_moves_only_once_every_sink_acknowledged_it() {
        let (inner, seen) = recorder();
        let join = AckJoin::new(3, inner);
        let shard: Arc<str> = Arc::from("s-0");
        for n in 1..=4 {
            join.sent(&shard, 0, &pos(n));
        }
        let (a, b, c) = (join.ack_fn(0), join.ack_fn(1), join.ack_fn(2));
        a("s-0", &pos(4)); // sink 0 acknowledged everything at once (one batch)
        b("s-0", &pos(2));
        assert!(
            seen.lock().unwrap().is_empty(),
            "sink 2 acknowledged nothing"
        );
        c("s-0", &pos(1));
        assert_eq!(
            seen.lock().unwrap().last().map(|s| s.1.clone()),
            Some(pos(1))
        );
        c("s-0", &pos(3));
        assert_eq!(
            seen.lock().unwrap().last().map(|s| s.1.clone()),
            Some(pos(2)),
            "sink 1 is at 2"
        );
        b("s-0", &pos(4));
        assert_eq!(
            seen.lock().unwrap().last().map(|s| s.1.clone()),
            Some(pos(3))
        );
        c("s-0", &pos(4));
        let all: Vec<Position> = seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
        assert_eq!(
            all,
            vec![pos(1), pos(2), pos(3), pos(4)],
            "in order, each once"
        );
    }

    #[test]
    fn a_new_reading_forgets_the_old_ones_checkpoints_and_stray_acks_change_nothing() {
        let (inner, seen) = recorder();
        let join = AckJoin::new(2, inner);
        let shard: Arc<str> = Arc::from("s-0");
        join.sent(&shard, 1, &pos(5));
        join.ack_fn(0)("s-0", &pos(5));
        join.sent(&shard, 2, &pos(3));
        join.ack_fn(1)("s-0", &pos(5)); // the old reading's: not pending any more
        join.ack_fn(1)("s-9", &pos(5)); // a shard never sent
        assert!(seen.lock().unwrap().is_empty());
        join.ack_fn(0)("s-0", &pos(3));
        join.ack_fn(1)("s-0", &pos(3));
        assert_eq!(
            seen.lock().unwrap().clone(),
            vec![("s-0".to_owned(), pos(3))]
        );
    }
}

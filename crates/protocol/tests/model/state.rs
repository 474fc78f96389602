//! The model's state in small hashable types: the API objects (table, worker objects), the worker processes, the operators' memory and passes in flight, and the ghost variables the properties read.

use kinesis_protocol::handoff::{FenceReason, Timers};

/// A position in a shard: 0 is "none" (before the first record), `k` is "just after record `k`"
/// (records are numbered from 1, so a position is the index of the last record it covers).
pub type Pos = u8;

/// One shard of the table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Row {
    pub shard: u8,
    pub owner: Option<u8>,
    pub epoch: u8,
    pub draining: bool,
    pub start_after: Pos,
    /// Set by a rewind: the owner starts at TRIM_HORIZON without a position.
    pub rewound: bool,
}

/// The shard table (`KinesisShardAssignmentSpec`). Parents and hash ranges never change, so they
/// live in the model's shard definitions, not here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Table {
    pub rows: Vec<Row>,
    pub finished: Vec<u8>,
    /// The rewind (`spec.reset`) is recorded as applied.
    pub reset: bool,
}

impl Table {
    pub fn row(&self, shard: u8) -> Option<&Row> {
        self.rows.iter().find(|r| r.shard == shard)
    }
}

/// A fence in a worker's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FenceC {
    pub shard: u8,
    pub epoch: u8,
    pub position: Pos,
}

/// One entry of a worker's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub shard: u8,
    pub epoch: u8,
    pub position: Pos,
    pub released: bool,
    pub finished: bool,
}

/// A worker's status: the holder's incarnation (0: none) and the entries. `renewTime` is left
/// out: that a write happened is in [`State::unseen`], and when in [`State::ages`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    pub holder: u8,
    pub shards: Vec<Entry>,
}

/// A `KinesisWorker` object. Its content stands for its `resourceVersion` in the worker's
/// precondition: only the worker writes the status, and every other write changes the content
/// for good (a fence is never removed while its epoch is still in the table, a takeover writes
/// a new incarnation, a re-created object has no holder), so "unchanged since this worker read
/// or wrote it" is "equal to what it read or wrote".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Object {
    pub fences: Vec<FenceC>,
    pub status: Option<Status>,
}

impl Object {
    pub fn entry(&self, shard: u8, epoch: u8) -> Option<&Entry> {
        self.status
            .as_ref()?
            .shards
            .iter()
            .find(|e| e.shard == shard && e.epoch == epoch)
    }

    /// The fence covering `(shard, epoch)`, as `KinesisWorkerSpec::fence` finds it.
    pub fn fence(&self, shard: u8, epoch: u8) -> Option<&FenceC> {
        self.fences
            .iter()
            .find(|f| f.shard == shard && f.epoch >= epoch)
    }
}

/// A held shard's phase, as in the worker's manager (`ingester/src/fleet/worker.rs`). The
/// reader stops at once when cancelled, so `Stopping` is folded into `Draining`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Reading,
    Paused {
        last_sent: Pos,
    },
    Draining {
        last_sent: Pos,
    },
    Ending,
    Frozen {
        position: Pos,
        released: bool,
        finished: bool,
    },
}

/// A shard held by a worker process at one epoch, with its reader position and its tracker
/// entry (`acked`, `end`); the tracker entry exists in every phase but `Frozen`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Held {
    pub shard: u8,
    pub epoch: u8,
    pub phase: Phase,
    /// Last position the reader handed to the sink.
    pub sent: Pos,
    /// The tracker's acknowledged position.
    pub acked: Pos,
    /// The tracker's end mark (`mark_end(last_sent)`), once the reader reached SHARD_END.
    pub end: Option<Pos>,
}

impl Held {
    pub fn tracked(&self) -> bool {
        !matches!(self.phase, Phase::Frozen { .. })
    }

    /// `Tracker::is_finished`.
    pub fn finished(&self) -> bool {
        self.end.is_some_and(|end| end == 0 || self.acked >= end)
    }
}

/// A record waiting in a worker's sink: shard, record, and the epoch it was read under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    pub shard: u8,
    pub record: Pos,
    pub epoch: u8,
}

/// A worker process. Down: everything but `incarnation` is reset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Proc {
    pub up: bool,
    pub incarnation: u8,
    /// The object as the status writer last read or wrote it: its precondition and its fences
    /// (the manager's fences are always the same here: a conflict hands them over at once).
    pub cached: Object,
    /// Every fence this process has read (the variant in which a worker keeps the fences it
    /// saw even after the operator prunes them; empty otherwise).
    pub remembered: Vec<FenceC>,
    /// The table as the watch last delivered it; `None` before the first snapshot.
    pub table: Option<Table>,
    pub held: Vec<Held>,
    /// Records handed to the sink and not delivered yet, oldest first.
    pub sink: Vec<Chunk>,
    /// Ticks since the start of the last successful status write (at most
    /// `SELF_FENCE_AFTER + 1`: every older write is as overdue).
    pub since_write: u8,
    pub self_fenced: bool,
}

impl Proc {
    pub fn held(&self, shard: u8) -> Option<&Held> {
        self.held.iter().find(|h| h.shard == shard)
    }

    pub fn held_mut(&mut self, shard: u8) -> Option<&mut Held> {
        self.held.iter_mut().find(|h| h.shard == shard)
    }
}

/// How a pass of the operator saw a worker (`handoff::Liveness`, or no object).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Live {
    Missing,
    NotStarted,
    /// `Liveness::Live`: its status changed within the lease.
    Renewing,
    Expired,
}

/// A fence candidate of a pass in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cand {
    pub worker: u8,
    pub shard: u8,
    pub epoch: u8,
    pub reason: FenceReason,
    /// Whether the fence is dropped if the worker wrote since the observation (the variant
    /// that re-checks an expiry; the leader only).
    pub recheck: bool,
}

/// An operator pass between its observation and its table write.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pass {
    /// The table as read: the precondition of the table write.
    pub read: Table,
    /// The table being planned (after absorbing reports and the fences written so far).
    pub spec: Table,
    /// Fences still to write, in order.
    pub candidates: Vec<Cand>,
    /// Liveness of each worker as observed.
    pub lives: Vec<Live>,
    /// Whether ListShards showed the split when the pass observed the stream.
    pub split: bool,
    /// Shards released because their owner's object was gone: (worker, shard, epoch).
    pub gone: Vec<(u8, u8, u8)>,
    /// The table as the rewind leaves it, when the pass applies one (`handoff::rewind`).
    pub rewound: Option<Table>,
}

/// What an operator keeps between passes: the handoff timers, kept relative to a fixed `now`
/// ([`Timers::elapse`]). When it last saw each worker's status change is [`State::ages`]: the
/// leader observes every change before the clock advances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Memory {
    pub timers: Timers,
}

/// Violation flags, set by the transition that broke the property (they stay set).
pub mod violation {
    /// A checkpoint moved backwards.
    pub const REGRESS: u8 = 1;
    /// A position beyond a fence's was stored at the fenced epoch while the table still gave
    /// the shard to the fenced owner at that epoch (a checkpoint readers would use).
    pub const ACK_AFTER_FENCE: u8 = 2;
    /// An entry at a fenced epoch was stored beyond the fence's position at all (the literal
    /// reading of "never write these again").
    pub const WRITE_AFTER_FENCE: u8 = 4;
    /// A worker delivered a record of a shard after it was moved off it for an expired lease
    /// or a missing object.
    pub const SHARED_DELIVERY: u8 = 8;
    /// A child's record was delivered before every record of its parents.
    pub const ORDER: u8 = 16;
    /// A worker's spec holds two fences of one shard (fences are not pruned: they grow with
    /// every handoff).
    pub const FENCES_UNBOUNDED: u8 = 32;
}

/// The whole model state. Time is relative: a tick ages every timer, and ages stop at the
/// longest expiry, so the clock needs no bound.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Whether the parent shard was split (closed, children listed).
    pub split: bool,
    pub table: Table,
    pub objects: Vec<Option<Object>>,
    pub procs: Vec<Proc>,
    /// Per worker: ticks since its status was last written (at most the lease).
    pub ages: Vec<u8>,
    /// Per worker: whether its status was written since the leader last observed.
    pub unseen: Vec<bool>,
    /// Whether anything else changed since the leader last observed (the table, a fence, the
    /// stream, an object deleted or created): the leader's watches trigger a pass before the
    /// clock advances.
    pub dirty: bool,
    /// The leader's memory and its pass in flight.
    pub memory: Memory,
    pub pass: Option<Pass>,
    /// A deposed leader's pass in flight, planned from an old observation.
    pub deposed: Option<Pass>,
    pub deposed_left: u8,
    /// Failed writes still allowed: a periodic status write that does not land, a fence or a
    /// table write that fails.
    pub faults_left: u8,
    pub crashes_left: u8,
    pub deletes_left: u8,
    /// Ghost: per shard, a bit per record delivered at least once.
    pub delivered: Vec<u8>,
    /// Records delivered since the rewind landed, per shard, as bits.
    pub redelivered: Vec<u8>,
    /// The user asked for a rewind to TRIM_HORIZON (`spec.reset`).
    pub rewind_asked: bool,
    /// Ghost: epochs covered by a fence written, (worker, shard, epoch, the position the
    /// worker's status held for that epoch when the first such fence landed).
    pub landed: Vec<(u8, u8, u8, Pos)>,
    /// Ghost: shards the leader moved off a worker for an expired lease or a missing object,
    /// (worker, shard, epoch).
    pub moved: Vec<(u8, u8, u8)>,
    pub violations: u8,
    /// Ghost: a shard reached an epoch beyond the model's bound; the path ends here.
    pub capped: bool,
}

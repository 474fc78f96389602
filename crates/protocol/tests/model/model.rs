//! The stateright model: its configuration, the steps any actor may take in any state, the checks each step runs, and the properties.

use std::time::{Duration, Instant};

use kinesis_protocol::handoff::Expiries;
use stateright::Property;

use crate::operator::Op;
pub use crate::properties::*;
use crate::state::{Memory, Object, Phase, Pos, Proc, Row, State, Table, violation};

/// The lease, in ticks: a worker whose status the operator saw unchanged this long is expired.
pub const LEASE: u8 = 2;
/// A worker self-fences when its last successful write started more than this many ticks ago
/// (here: in an earlier tick), so at the latest one tick before its lease can expire (as 12 s
/// is before 14 s).
pub const SELF_FENCE_AFTER: u8 = 0;
/// Records a worker's sink holds at most (its input channel is bounded).
pub const SINK_CAPACITY: u8 = 1;
/// `drainExpiry` and `startExpiry`, in ticks.
pub const HANDOFF_EXPIRY: u8 = 2;

/// The old code of issue 9's defects, put back one at a time, to show what the checker finds.
/// Each is the smallest change to the modelled steps that restores the old behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Variant {
    /// Defect 1: fences carry no position (so `absorb_reports` falls back to the owner's
    /// status entry, which the fenced worker drops at its next write).
    pub fence_without_position: bool,
    /// Defect 2: the sink keeps delivering and acknowledging records of shards the worker lost
    /// or while it is self-fenced.
    pub sink_delivers_revoked: bool,
    /// Defect 5: `Expiries::gone` is zero (a shard whose owner's object is missing moves
    /// at once).
    pub gone_at_once: bool,
    /// Defect 7: a worker reconciles before its first table snapshot (as if the table were
    /// empty), dropping the checkpoints it carried over.
    pub reconcile_before_table: bool,
    /// Defect 8: fences are never pruned (every fence ever written stays in the spec).
    pub fences_unpruned: bool,
    /// A possible fix explored: an expiry fence is not written when the worker's status changed
    /// since the pass observed it.
    pub fence_rechecks_expiry: bool,
    /// A possible fix explored: a worker keeps every fence it has read.
    pub worker_keeps_fences: bool,
    /// A rewind without the epoch floor: entries keep their epochs, and finished shards come
    /// back at epoch 0, instead of all going above every epoch held or reported.
    pub rewind_without_floor: bool,
}

/// The size of the model.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: &'static str,
    pub workers: u8,
    /// Records of the parent shard.
    pub parent_records: u8,
    /// Records of each child (the parent splits into as many children).
    pub children: Vec<u8>,
    /// Paths end when a shard's epoch passes this: it bounds the handoffs.
    pub max_epoch: u8,
    /// Failed writes allowed: periodic status writes that do not land (a worker cut off from
    /// the API server), fence writes and table writes that fail.
    pub faults: u8,
    /// Worker process crashes allowed.
    pub crashes: u8,
    /// Deletions of a worker's object allowed.
    pub deletes: u8,
    /// Passes of a deposed leader allowed.
    pub deposed: u8,
    pub strict_order: bool,
    /// The user may ask for one rewind of every shard to TRIM_HORIZON, at any time.
    pub rewind: bool,
    pub variant: Variant,
}

/// A shard of the abstract stream: records numbered from 1.
#[derive(Clone, Debug)]
pub struct ShardDef {
    pub name: String,
    pub parents: Vec<u8>,
    pub records: u8,
    pub hash: (String, String),
}

/// The model: a configuration over the protocol's pure functions.
#[derive(Debug)]
pub struct Model {
    pub cfg: Config,
    pub shards: Vec<ShardDef>,
    /// A fixed instant, the base of [`Model::now`].
    pub base: Instant,
}

/// A step of one actor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The clock advances one tick, and the workers in the mask (bit `w`) write their status
    /// as the report interval asks; the others' writes fail (or are late).
    Tick(u8),
    /// The parent shard is split: it closes, and its children are listed.
    Split,
    /// The user sets `spec.reset` (a rewind of every shard to TRIM_HORIZON).
    Rewind,
    /// A worker's object is deleted (by hand, or by a stale leader).
    Delete(u8),
    /// A worker process starts and takes its object over.
    Start(u8),
    Crash(u8),
    /// A worker's table watch delivers the current table.
    SeeTable(u8),
    /// A worker writes its status (or, on a conflict, reads its object again).
    Write(u8),
    SelfFence(u8),
    /// A worker's reader of a shard hands its next record to the sink (or reaches the end).
    Read(u8, u8),
    /// A worker's sink delivers its oldest record of a shard.
    Deliver(u8, u8),
    /// An operator observes and plans a pass.
    Observe(Op),
    /// An operator writes its pass's next fence (`false`: the write fails).
    Fence(Op, bool),
    /// An operator writes its pass's table (`false`: the write fails).
    WriteTable(Op, bool),
}

impl Model {
    pub fn new(cfg: Config) -> Self {
        let parent = ShardDef {
            name: "s0".into(),
            parents: Vec::new(),
            records: cfg.parent_records,
            hash: ("0".into(), "99".into()),
        };
        let n = u32::try_from(cfg.children.len()).unwrap_or(1).max(1);
        let width = 100 / n;
        let children = cfg.children.iter().enumerate().map(|(i, records)| {
            let i = u32::try_from(i).unwrap_or(0);
            let end = if i + 1 == n { 99 } else { (i + 1) * width - 1 };
            ShardDef {
                name: format!("s{}", i + 1),
                parents: vec![0],
                records: *records,
                hash: ((i * width).to_string(), end.to_string()),
            }
        });
        let shards = std::iter::once(parent).chain(children).collect();
        Self {
            cfg,
            shards,
            base: Instant::now(),
        }
    }

    pub fn expiries(&self) -> Expiries {
        let secs = |t: u8| Duration::from_secs(u64::from(t));
        Expiries {
            drain: secs(HANDOFF_EXPIRY),
            start: secs(HANDOFF_EXPIRY),
            gone: secs(if self.cfg.variant.gone_at_once {
                0
            } else {
                LEASE
            }),
        }
    }

    /// Whether the reader of `shard` reaches SHARD_END after its last record.
    pub fn closed(&self, shard: u8, split: bool) -> bool {
        split && self.shards[usize::from(shard)].parents.is_empty()
    }

    fn worker_ids(&self) -> std::ops::Range<u8> {
        0..self.cfg.workers
    }

    pub fn shard_ids(&self) -> std::ops::Range<u8> {
        0..u8::try_from(self.shards.len()).unwrap_or(0)
    }

    pub fn init(&self) -> State {
        let n = usize::from(self.cfg.workers);
        State {
            split: false,
            table: Table {
                rows: vec![Row {
                    shard: 0,
                    owner: None,
                    epoch: 0,
                    draining: false,
                    start_after: 0,
                    rewound: false,
                }],
                finished: Vec::new(),
                reset: false,
            },
            objects: vec![Some(Object::default()); n],
            procs: vec![Proc::default(); n],
            ages: vec![0; n],
            unseen: vec![false; n],
            dirty: true,
            memory: Memory::default(),
            pass: None,
            deposed: None,
            deposed_left: self.cfg.deposed,
            faults_left: self.cfg.faults,
            crashes_left: self.cfg.crashes,
            deletes_left: self.cfg.deletes,
            delivered: vec![0; self.shards.len()],
            redelivered: vec![0; self.shards.len()],
            rewind_asked: false,
            landed: Vec::new(),
            moved: Vec::new(),
            violations: 0,
            capped: false,
        }
    }

    pub fn all_delivered_of(&self, s: &State, shard: u8) -> bool {
        let all = (1u16 << self.shards[usize::from(shard)].records) - 1;
        u16::from(s.delivered[usize::from(shard)]) == all
    }

    pub fn all_delivered(&self, s: &State) -> bool {
        self.shard_ids()
            .all(|shard| self.all_delivered_of(s, shard))
    }

    /// The checkpoint of `shard` (docs/design.md §2.3, with the fence's position): the end of a
    /// finished shard; else the table's `startAfter`, or the owner's entry at the table's epoch,
    /// or the position held by the owner's fence of that epoch, whichever is furthest.
    pub fn checkpoint(&self, s: &State, shard: u8) -> Pos {
        if s.table.finished.contains(&shard) {
            return self.shards[usize::from(shard)].records;
        }
        let Some(row) = s.table.row(shard) else {
            return 0;
        };
        let object = row
            .owner
            .and_then(|w| s.objects.get(usize::from(w))?.as_ref());
        let Some(object) = object else {
            return row.start_after;
        };
        let entry = object.entry(shard, row.epoch).map_or(0, |e| e.position);
        let fence = object.fence(shard, row.epoch).map_or(0, |f| f.position);
        row.start_after.max(entry).max(fence)
    }

    /// Every record up to a checkpoint, or to a worker's acknowledged position, was delivered.
    pub fn no_loss(&self, s: &State) -> bool {
        let covered = |shard: u8, upto: Pos| {
            (1..=upto).all(|r| s.delivered[usize::from(shard)] & (1 << (r - 1)) != 0)
        };
        self.shard_ids()
            .all(|shard| covered(shard, self.checkpoint(s, shard)))
            && s.procs.iter().all(|p| {
                p.held
                    .iter()
                    .all(|h| !h.tracked() || covered(h.shard, h.acked))
            })
    }

    /// After the rewind landed, every record up to a checkpoint was delivered again: no report
    /// or fence of an epoch before the rewind moved a rewound position.
    pub fn rewind_no_loss(&self, s: &State) -> bool {
        !s.table.reset
            || self.shard_ids().all(|shard| {
                (1..=self.checkpoint(s, shard))
                    .all(|r| s.redelivered[usize::from(shard)] & (1 << (r - 1)) != 0)
            })
    }

    /// Whether a safety property is broken in `s`.
    pub fn broken(&self, s: &State) -> bool {
        s.violations != 0 || !self.no_loss(s) || !self.rewind_no_loss(s)
    }

    /// The transition checks: checkpoints moving backwards (except by deleting the object
    /// that held one), and positions stored at fenced epochs.
    fn check(&self, before: &State, after: &mut State, action: &Action) {
        // Deleting the object that held a checkpoint, and the rewind landing, move checkpoints
        // back by design.
        let rewound = after.table.reset && !before.table.reset;
        if !matches!(action, Action::Delete(_)) && !rewound {
            let regressed = self
                .shard_ids()
                .any(|shard| self.checkpoint(after, shard) < self.checkpoint(before, shard))
                || after.table.rows.iter().any(|r| {
                    before
                        .table
                        .row(r.shard)
                        .is_some_and(|b| b.start_after > r.start_after)
                })
                || after.objects.iter().zip(&before.objects).any(|(a, b)| {
                    let (Some(a), Some(b)) = (a, b) else {
                        return false;
                    };
                    a.status.iter().flat_map(|st| &st.shards).any(|e| {
                        b.entry(e.shard, e.epoch)
                            .is_some_and(|old| old.position > e.position)
                    })
                });
            if regressed {
                after.violations |= violation::REGRESS;
            }
        }
        let doubled = after.objects.iter().flatten().any(|o| {
            o.fences
                .iter()
                .enumerate()
                .any(|(i, f)| o.fences[..i].iter().any(|g| g.shard == f.shard))
        });
        if doubled {
            after.violations |= violation::FENCES_UNBOUNDED;
        }
        for (w, object) in after.objects.iter().enumerate() {
            let Some(status) = object.as_ref().and_then(|o| o.status.as_ref()) else {
                continue;
            };
            for e in &status.shards {
                let beyond = after.landed.iter().any(|(lw, ls, le, lp)| {
                    usize::from(*lw) == w && *ls == e.shard && e.epoch == *le && e.position > *lp
                });
                if !beyond {
                    continue;
                }
                after.violations |= violation::WRITE_AFTER_FENCE;
                let current = after
                    .table
                    .row(e.shard)
                    .is_some_and(|r| r.epoch == e.epoch && r.owner.map(usize::from) == Some(w));
                if current {
                    after.violations |= violation::ACK_AFTER_FENCE;
                }
            }
        }
    }

    /// The clock advances only between the leader's passes (a pass takes less than the margin
    /// between `selfFenceAfter` and the lease), after the leader observed every change (its
    /// watches trigger a pass; a later one would only fence later), and not past a worker's
    /// self-fence deadline (its check runs every 200 ms: no process pauses).
    fn tick_allowed(s: &State) -> bool {
        s.pass.is_none()
            && !s.dirty
            && !s.unseen.iter().any(|u| *u)
            && !s
                .procs
                .iter()
                .any(|p| p.up && !p.self_fenced && p.since_write > SELF_FENCE_AFTER)
    }

    /// Workers whose periodic write may land at a tick: up, with an object, and not
    /// self-fenced (a self-fenced worker's healing write is a step of its own).
    fn renewable(s: &State) -> u8 {
        s.procs
            .iter()
            .zip(&s.objects)
            .enumerate()
            .filter(|(_, (p, o))| p.up && !p.self_fenced && o.is_some())
            .fold(0, |mask, (w, _)| mask | (1 << w))
    }

    /// One tick: every age grows, up to the longest expiry; then the workers of `renew` write
    /// their status. A worker's write that changes its entries is a step of its own at any time;
    /// one that only renews its liveness happens here, once per tick.
    fn tick(&self, s: &mut State, renew: u8) {
        for p in s.procs.iter_mut().filter(|p| p.up) {
            p.since_write = (p.since_write + 1).min(SELF_FENCE_AFTER + 1);
        }
        for (age, object) in s.ages.iter_mut().zip(&s.objects) {
            *age = if object.is_some() {
                (*age + 1).min(LEASE)
            } else {
                0
            };
        }
        let cap = Duration::from_secs(u64::from(LEASE.max(HANDOFF_EXPIRY)));
        s.memory
            .timers
            .elapse(self.now(), Duration::from_secs(1), cap);
        for w in self.worker_ids().filter(|w| renew & (1 << w) != 0) {
            self.write(s, w, true);
        }
    }
}

impl stateright::Model for Model {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.init()]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        // A broken property ends the path (the first counterexample is the shortest one), and
        // so does the bound on handoffs.
        if self.broken(s) || s.capped {
            return;
        }
        if Self::tick_allowed(s) {
            let renewable = Self::renewable(s);
            actions.push(Action::Tick(renewable));
            if s.faults_left > 0 {
                for mask in (0..renewable).rev().filter(|m| m & !renewable == 0) {
                    actions.push(Action::Tick(mask));
                }
            }
        }
        if !s.split {
            actions.push(Action::Split);
        }
        if self.cfg.rewind && !s.rewind_asked {
            actions.push(Action::Rewind);
        }
        for w in self.worker_ids() {
            let p = &s.procs[usize::from(w)];
            let exists = s.objects[usize::from(w)].is_some();
            if s.deletes_left > 0 && exists {
                actions.push(Action::Delete(w));
            }
            if !p.up {
                if exists {
                    actions.push(Action::Start(w));
                }
                continue;
            }
            if s.crashes_left > 0 {
                actions.push(Action::Crash(w));
            }
            if p.table.as_ref() != Some(&s.table) {
                actions.push(Action::SeeTable(w));
            }
            actions.push(Action::Write(w));
            if !p.self_fenced && p.since_write > SELF_FENCE_AFTER {
                actions.push(Action::SelfFence(w));
            }
            for h in p.held.iter().filter(|h| h.phase == Phase::Reading) {
                actions.push(Action::Read(w, h.shard));
            }
            for shard in self.shard_ids() {
                if p.sink.iter().any(|c| c.shard == shard) {
                    actions.push(Action::Deliver(w, shard));
                }
            }
        }
        // The leader's watches trigger a pass on every change; with none, a pass would repeat
        // the last one.
        let changed = s.dirty || s.unseen.iter().any(|u| *u);
        for (op, pass, may_start) in [
            (Op::Leader, &s.pass, changed),
            (Op::Deposed, &s.deposed, s.deposed_left > 0),
        ] {
            match pass {
                None if may_start => actions.push(Action::Observe(op)),
                None => {}
                Some(p) if !p.candidates.is_empty() => {
                    actions.push(Action::Fence(op, true));
                    if s.faults_left > 0 {
                        actions.push(Action::Fence(op, false));
                    }
                }
                Some(_) => {
                    actions.push(Action::WriteTable(op, true));
                    // A deposed leader's table write fails on its precondition anyway.
                    if s.faults_left > 0 && op == Op::Leader {
                        actions.push(Action::WriteTable(op, false));
                    }
                }
            }
        }
    }

    fn next_state(&self, s: &State, action: Action) -> Option<State> {
        let mut next = s.clone();
        let changed = match action {
            Action::Tick(renew) => {
                if renew != Self::renewable(s) {
                    next.faults_left -= 1;
                }
                self.tick(&mut next, renew);
                // The leader requeues itself for the next expiry.
                next.dirty = true;
                true
            }
            Action::Split => {
                next.split = true;
                next.dirty = true;
                true
            }
            Action::Rewind => {
                next.rewind_asked = true;
                next.dirty = true;
                true
            }
            Action::Delete(w) => {
                next.objects[usize::from(w)] = None;
                // Its fences go with it: a re-created object is a new one.
                next.landed.retain(|(lw, ..)| *lw != w);
                next.deletes_left -= 1;
                next.dirty = true;
                true
            }
            Action::Start(w) => self.start(&mut next, w),
            Action::Crash(w) => {
                Self::crash(&mut next, w);
                next.crashes_left -= 1;
                true
            }
            Action::SeeTable(w) => self.see_table(&mut next, w),
            Action::Write(w) => self.write(&mut next, w, false),
            Action::SelfFence(w) => self.self_fence(&mut next, w),
            Action::Read(w, shard) => self.read(&mut next, w, shard),
            Action::Deliver(w, shard) => self.deliver(&mut next, w, shard),
            Action::Observe(op) => match self.observe(s, op) {
                Some(observed) => {
                    next = observed;
                    true
                }
                None => false,
            },
            Action::Fence(op, land) => {
                if !land {
                    next.faults_left -= 1;
                }
                self.fence(&mut next, op, land)
            }
            Action::WriteTable(op, land) => {
                if !land {
                    next.faults_left -= 1;
                }
                self.write_table(&mut next, op, land)
            }
        };
        if !changed {
            return None;
        }
        self.check(s, &mut next, &action);
        next.capped = next.table.rows.iter().any(|r| r.epoch > self.cfg.max_epoch);
        (next != *s).then_some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        crate::properties::all()
    }
}

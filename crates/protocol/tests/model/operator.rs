//! The operator's pass as operator/src/reconcile/fleet.rs runs it, cut at its writes: observe (liveness, `absorb_reports`, `fence_candidates`), one step per fence (`fences_with`, a CAS write, `apply_fence`), then the table write (`merge_topology`, `eligible`, `plan_owners`, a CAS write) and the creation of missing worker objects.

use kinesis_ingester_api::{KinesisWorker, KinesisWorkerSpec};
use kinesis_protocol::handoff::{
    FenceCandidate, FenceReason, Liveness, Transition, WorkerState, Workers, absorb_reports,
    apply_fence, eligible, fence_candidates, fences_with, max_handoffs, merge_topology,
    plan_owners, rewind, rewind_pending,
};

use crate::api::{UID, rewind_spec};
use crate::model::{LEASE, Model};
use crate::state::{Cand, Live, Object, Pass, State, Table};

/// Which operator takes the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// The leader: its memory persists, and its pass runs within one tick.
    Leader,
    /// A deposed leader: one pass, planned from what it observed (with the leader's memory as
    /// it was then), whose writes may land any time later.
    Deposed,
}

fn liveness_of(l: Live) -> Liveness {
    match l {
        Live::Missing | Live::NotStarted => Liveness::NotStarted,
        Live::Renewing => Liveness::Live,
        Live::Expired => Liveness::Expired,
    }
}

impl Model {
    /// `reconcile::liveness`: a worker whose status the operator saw unchanged for the lease is
    /// expired. The leader sees every status write within its tick, so that is the status's
    /// age; fences change the object but do not count.
    fn liveness(objects: &[Option<Object>], ages: &[u8]) -> Vec<Live> {
        objects
            .iter()
            .zip(ages)
            .map(|(object, age)| {
                let Some(object) = object else {
                    return Live::Missing;
                };
                match &object.status {
                    None => Live::NotStarted,
                    Some(st) if st.holder == 0 => Live::NotStarted,
                    Some(_) if *age >= LEASE => Live::Expired,
                    Some(_) => Live::Renewing,
                }
            })
            .collect()
    }

    fn workers(&self, objects: &[Option<Object>], lives: &[Live]) -> Workers {
        objects
            .iter()
            .zip(lives)
            .enumerate()
            .filter_map(|(w, (object, live))| {
                let w = u8::try_from(w).ok()?;
                let object = self.api_worker(w, object.as_ref()?);
                let liveness = liveness_of(*live);
                Some((self.worker_name(w), WorkerState { object, liveness }))
            })
            .collect()
    }

    /// The table a pass writes: topology merged and owners planned on top of `pass.spec`.
    /// `plan_owners` reads only the workers' liveness, so their objects are left empty.
    pub fn plan(&self, pass: &Pass) -> Table {
        let mut spec = self.api_table(pass.rewound.as_ref().unwrap_or(&pass.spec));
        merge_topology(&mut spec, &self.listed(pass.split), None);
        let open = eligible(&spec, self.cfg.strict_order).len();
        let workers: Workers = pass
            .lives
            .iter()
            .enumerate()
            .filter(|(_, l)| **l != Live::Missing)
            .filter_map(|(w, l)| {
                let name = self.worker_name(u8::try_from(w).ok()?);
                let object = KinesisWorker::new(
                    &name,
                    KinesisWorkerSpec {
                        ingester_uid: UID.into(),
                        fences: Vec::new(),
                    },
                );
                let liveness = liveness_of(*l);
                Some((name, WorkerState { object, liveness }))
            })
            .collect();
        let assignable: Vec<String> = workers
            .iter()
            .filter(|(_, w)| w.liveness == Liveness::Live)
            .map(|(n, _)| n.clone())
            .collect();
        plan_owners(
            &mut spec,
            &assignable,
            &workers,
            self.cfg.strict_order,
            max_handoffs(open),
        );
        self.table_of(&spec)
    }

    fn creates(pass: &Pass, s: &State) -> bool {
        pass.lives
            .iter()
            .zip(&s.objects)
            .any(|(l, o)| *l == Live::Missing && o.is_none())
    }

    /// The start of a pass: list the table and the workers, judge liveness, absorb reports and
    /// pick fence candidates. A pass with nothing to write is not kept in flight.
    pub fn observe(&self, s: &State, op: Op) -> Option<State> {
        let mut memory = s.memory.clone();
        let lives = Self::liveness(&s.objects, &s.ages);
        let workers = self.workers(&s.objects, &lives);
        let mut spec = self.api_table(&s.table);
        let now = self.now();
        let expiries = self.expiries();
        let transitions = absorb_reports(&mut spec, &workers, &mut memory.timers, expiries, now);
        let candidates = fence_candidates(&spec, &workers, &mut memory.timers, expiries, now);
        let gone = transitions
            .iter()
            .filter_map(|t| match t {
                Transition::OwnerGone { shard, owner } => {
                    let shard = self.shard_of(shard)?;
                    Some((self.worker_of(owner)?, shard, s.table.row(shard)?.epoch))
                }
                _ => None,
            })
            .collect();
        let recheck = op == Op::Leader && self.cfg.variant.fence_rechecks_expiry;
        let candidates: Vec<Cand> = candidates
            .iter()
            .filter_map(|c| {
                Some(Cand {
                    worker: self.worker_of(&c.worker)?,
                    shard: self.shard_of(&c.shard)?,
                    epoch: u8::try_from(c.epoch).ok()?,
                    reason: c.reason,
                    recheck: recheck && c.reason == FenceReason::Expired,
                })
            })
            .collect();
        // A new spec.reset: `plan::table` applies it over the fences and the reports, with the
        // workers as observed (their epochs set the floor).
        let reset = rewind_spec();
        let rewound = (s.rewind_asked && rewind_pending(&spec, &reset)).then(|| {
            let mut r = spec.clone();
            let at = jiff::Timestamp::UNIX_EPOCH;
            let _ = rewind(&mut r, &self.listed(s.split), &reset, &workers, at);
            if self.cfg.variant.rewind_without_floor {
                for e in &mut r.shards {
                    let old = spec.shards.iter().find(|o| o.shard_id == e.shard_id);
                    e.epoch = old.map_or(0, |o| o.epoch);
                }
            }
            self.table_of(&r)
        });
        let pass = Pass {
            read: s.table.clone(),
            spec: self.table_of(&spec),
            candidates,
            lives,
            split: s.split,
            gone,
            rewound,
        };
        let idle =
            pass.candidates.is_empty() && self.plan(&pass) == pass.read && !Self::creates(&pass, s);
        let mut next = s.clone();
        match op {
            Op::Leader => {
                next.memory = memory;
                next.unseen.iter_mut().for_each(|u| *u = false);
                next.dirty = false;
                if !idle {
                    next.pass = Some(pass);
                }
            }
            Op::Deposed => {
                if idle {
                    return None;
                }
                next.deposed = Some(pass);
                next.deposed_left = next.deposed_left.saturating_sub(1);
            }
        }
        (next != *s).then_some(next)
    }

    fn pass_mut(s: &mut State, op: Op) -> &mut Option<Pass> {
        match op {
            Op::Leader => &mut s.pass,
            Op::Deposed => &mut s.deposed,
        }
    }

    /// `fence()`: read the worker, write the next candidate's fence with the read object as
    /// precondition (or find it already there), then `apply_fence`. `land: false` is a failed
    /// read or write: the shard stays put.
    pub fn fence(&self, s: &mut State, op: Op, land: bool) -> bool {
        let Some(mut pass) = Self::pass_mut(s, op).take() else {
            return false;
        };
        if pass.candidates.is_empty() {
            *Self::pass_mut(s, op) = Some(pass);
            return false;
        }
        let c = pass.candidates.remove(0);
        let wi = usize::from(c.worker);
        let object = s.objects[wi].clone().filter(|_| land);
        if let Some(object) = object {
            let (shard, epoch) = (self.shard_name(c.shard).to_owned(), i64::from(c.epoch));
            let fresh = self.api_worker(c.worker, &object);
            let mut table = self.api_table(&pass.spec);
            let stale = c.recheck && s.unseen[wi];
            let fenced = if fresh.spec.is_fenced(&shard, epoch) {
                Some(fresh)
            } else if stale {
                None
            } else {
                let candidate = FenceCandidate {
                    worker: self.worker_name(c.worker),
                    shard: shard.clone(),
                    epoch,
                    reason: c.reason,
                };
                let mut fences = fences_with(&fresh, &candidate, &table);
                if self.cfg.variant.fences_unpruned {
                    let mut all: Vec<_> = fresh
                        .spec
                        .fences
                        .iter()
                        .filter(|f| !fences.contains(f))
                        .cloned()
                        .collect();
                    all.append(&mut fences);
                    fences = all;
                }
                if self.cfg.variant.fence_without_position {
                    for f in fences.iter_mut().filter(|f| f.shard_id == shard) {
                        f.position = None;
                    }
                }
                let mut written = object.clone();
                written.fences = self.fences_of(&fences);
                // The fence covers its epoch and every lower one: what each held then is the
                // most that may ever be stored for it.
                for epoch in 1..=c.epoch {
                    let known = s
                        .landed
                        .iter()
                        .any(|(lw, ls, le, _)| (*lw, *ls, *le) == (c.worker, c.shard, epoch));
                    if !known {
                        let stored = object.entry(c.shard, epoch).map_or(0, |e| e.position);
                        s.landed.push((c.worker, c.shard, epoch, stored));
                    }
                }
                s.objects[wi] = Some(written.clone());
                s.dirty = true;
                Some(self.api_worker(c.worker, &written))
            };
            if let Some(fenced) = fenced {
                if op == Op::Leader && c.reason == FenceReason::Expired {
                    s.moved.push((c.worker, c.shard, c.epoch));
                }
                apply_fence(&mut table, &fenced, &shard, epoch);
                pass.spec = self.table_of(&table);
            }
        }
        *Self::pass_mut(s, op) = Some(pass);
        true
    }

    /// The end of a pass: plan the table and write it with the table as read as precondition
    /// (`land: false` is a failed write), then create missing worker objects (only when the
    /// table write did not fail, as the reconciler returns on that error).
    pub fn write_table(&self, s: &mut State, op: Op, land: bool) -> bool {
        let Some(pass) = Self::pass_mut(s, op).take() else {
            return false;
        };
        if !pass.candidates.is_empty() {
            *Self::pass_mut(s, op) = Some(pass);
            return false;
        }
        let planned = self.plan(&pass);
        let writes = planned != pass.read;
        if !land && !writes {
            *Self::pass_mut(s, op) = Some(pass);
            return false;
        }
        let ok = !writes || (land && s.table == pass.read);
        // Busy or failed: the reconciler requeues at once.
        s.dirty = true;
        if writes && ok {
            s.table = planned;
            s.dirty = true;
            if op == Op::Leader {
                s.moved.extend(pass.gone.iter().copied());
            }
        }
        if ok {
            for (l, o) in pass.lives.iter().zip(s.objects.iter_mut()) {
                if *l == Live::Missing && o.is_none() {
                    *o = Some(Object::default());
                    s.dirty = true;
                }
            }
        }
        true
    }
}

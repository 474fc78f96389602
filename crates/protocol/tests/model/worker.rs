//! The worker's steps as ingester/src/fleet/{startup,report,worker}.rs take them: take the object over, follow the table, read, deliver through the sink, write the status with a precondition, self-fence; every decision is `owned::desired`, `owned::start_position` or `report::build_status`.

use std::collections::BTreeMap;

use kinesis_ingester_api::{Holder, StartAt};
use kinesis_protocol::{
    owned::{Owned, Want, desired, start_position},
    report::{EntryState, Handed, LiveShard, ReportEntry, SinkHealth, build_status},
};

use crate::api::{pos_of, position};
use crate::model::{Model, SINK_CAPACITY};
use crate::state::{Chunk, Held, Phase, Proc, State, Status, Table, violation};

/// Release step 2 (docs/design.md §3.5): the reader stops; the release completes in
/// [`progress`] once the sink acknowledged what it sent.
fn begin_release(h: &mut Held) {
    h.phase = match h.phase {
        Phase::Reading => Phase::Draining { last_sent: h.sent },
        Phase::Paused { last_sent } => Phase::Draining { last_sent },
        other => other,
    };
}

/// `State::progress`: completes releases whose records the sink acknowledged and shards whose
/// end was delivered; either forgets the shard in the tracker.
pub fn progress(p: &mut Proc) {
    for h in &mut p.held {
        let (released, finished) = match h.phase {
            Phase::Draining { last_sent } if last_sent == 0 || h.acked >= last_sent => {
                (true, false)
            }
            Phase::Ending if h.finished() => (false, true),
            _ => continue,
        };
        h.phase = Phase::Frozen {
            position: h.acked,
            released,
            finished,
        };
        (h.sent, h.acked, h.end) = (0, 0, None);
    }
}

impl Model {
    /// Start, or restart after a crash or a takeover by another incarnation (`startup::connect`):
    /// write a new holder with the object's entries, and hold the unfenced ones, frozen.
    pub fn start(&self, s: &mut State, w: u8) -> bool {
        let wi = usize::from(w);
        let Some(mut object) = s.objects[wi].clone() else {
            return false;
        };
        let incarnation = s.procs[wi].incarnation.saturating_add(1);
        let shards = object.status.take().map(|st| st.shards).unwrap_or_default();
        object.status = Some(Status {
            holder: incarnation,
            shards: shards.clone(),
        });
        let spec = self.api_spec(&object.fences);
        let held = shards
            .iter()
            .filter(|e| !spec.is_fenced(self.shard_name(e.shard), i64::from(e.epoch)))
            .map(|e| Held {
                shard: e.shard,
                epoch: e.epoch,
                phase: Phase::Frozen {
                    position: e.position,
                    released: e.released,
                    finished: e.finished,
                },
                sent: 0,
                acked: 0,
                end: None,
            })
            .collect();
        s.objects[wi] = Some(object.clone());
        s.unseen[wi] = true;
        s.ages[wi] = 0;
        let remembered = if self.cfg.variant.worker_keeps_fences {
            object.fences.clone()
        } else {
            Vec::new()
        };
        s.procs[wi] = Proc {
            up: true,
            incarnation,
            remembered,
            cached: object,
            table: None,
            held,
            sink: Vec::new(),
            since_write: 0,
            self_fenced: false,
        };
        true
    }

    /// The process dies: its readers, sink and tracker are gone.
    pub fn crash(s: &mut State, w: u8) {
        let p = &mut s.procs[usize::from(w)];
        *p = Proc {
            incarnation: p.incarnation,
            ..Proc::default()
        };
    }

    /// The table watch delivers the current table.
    pub fn see_table(&self, s: &mut State, w: u8) -> bool {
        let p = &mut s.procs[usize::from(w)];
        if p.table.as_ref() == Some(&s.table) {
            return false;
        }
        p.table = Some(s.table.clone());
        self.reconcile(p, w);
        true
    }

    /// `State::reconcile`: brings the held shards in line with the table, the fences and the
    /// self-fence, as `owned::desired` decides.
    pub fn reconcile(&self, p: &mut Proc, w: u8) {
        // Defect 9.1.7's fix: nothing before the first table snapshot. The old code (variant)
        // reconciled against an empty table, dropping the carried checkpoints.
        let empty = Table::default();
        let table = match &p.table {
            Some(t) => t,
            None if self.cfg.variant.reconcile_before_table => &empty,
            None => return,
        };
        let spec = self.api_spec(&[p.cached.fences.as_slice(), &p.remembered].concat());
        let wanted: BTreeMap<String, Owned> = desired(
            &self.api_table(table),
            &spec,
            &self.worker_name(w),
            p.self_fenced,
        );
        let wanted: Vec<(u8, Owned)> = wanted
            .into_iter()
            .filter_map(|(id, o)| Some((self.shard_of(&id)?, o)))
            .collect();
        // Revoked: another owner, a higher epoch, fenced or gone. The sink keeps what it holds.
        p.held.retain(|h| {
            wanted
                .iter()
                .any(|(s, o)| *s == h.shard && o.epoch == i64::from(h.epoch))
        });
        for (shard, o) in &wanted {
            let epoch = u8::try_from(o.epoch).unwrap_or(u8::MAX);
            let Some(h) = p.held_mut(*shard) else {
                if o.want == Want::Pause {
                    continue;
                }
                let (resume, _) = start_position(o, None, &StartAt::TrimHorizon);
                let resume = pos_of(resume.as_ref());
                let mut h = Held {
                    shard: *shard,
                    epoch,
                    phase: Phase::Reading,
                    sent: resume,
                    acked: resume,
                    end: None,
                };
                if o.want == Want::Release {
                    begin_release(&mut h);
                }
                p.held.push(h);
                continue;
            };
            match (o.want, h.phase) {
                (Want::Read, Phase::Paused { .. }) => {
                    // Resumes from the acknowledged position; the tracker is not seeded again.
                    h.phase = Phase::Reading;
                    h.sent = h.acked;
                }
                (
                    Want::Read,
                    Phase::Frozen {
                        position: stored,
                        released: false,
                        finished: false,
                    },
                ) => {
                    let (resume, _) =
                        start_position(o, position(stored).as_ref(), &StartAt::TrimHorizon);
                    let resume = pos_of(resume.as_ref());
                    (h.phase, h.sent, h.acked, h.end) = (Phase::Reading, resume, resume, None);
                }
                (Want::Release, Phase::Reading | Phase::Paused { .. }) => begin_release(h),
                (
                    Want::Release,
                    Phase::Frozen {
                        position,
                        released: false,
                        finished: false,
                    },
                ) => {
                    h.phase = Phase::Frozen {
                        position,
                        released: true,
                        finished: false,
                    };
                }
                (Want::Pause, Phase::Reading) => h.phase = Phase::Paused { last_sent: h.sent },
                _ => {}
            }
        }
        p.held.sort_by_key(|h| h.shard);
        progress(p);
        self.sync_deliverable(p);
    }

    /// The reader of `shard` hands its next record to the sink (when the sink has room: the
    /// channel between them is bounded), or reaches SHARD_END.
    pub fn read(&self, s: &mut State, w: u8, shard: u8) -> bool {
        let records = self.shards[usize::from(shard)].records;
        let closed = self.closed(shard, s.split);
        let p = &mut s.procs[usize::from(w)];
        let full = p.sink.len() >= usize::from(SINK_CAPACITY);
        let Some(h) = p.held_mut(shard).filter(|h| h.phase == Phase::Reading) else {
            return false;
        };
        if h.sent < records {
            if full {
                return false;
            }
            h.sent += 1;
            let chunk = Chunk {
                shard,
                record: h.sent,
                epoch: h.epoch,
            };
            p.sink.push(chunk);
        } else if closed {
            h.end = Some(h.sent);
            h.phase = Phase::Ending;
            progress(p);
        } else {
            return false;
        }
        true
    }

    /// The sink delivers the oldest record it holds for `shard` and acknowledges it into the
    /// tracker (ignored unless the shard is tracked: a strict tracker).
    pub fn deliver(&self, s: &mut State, w: u8, shard: u8) -> bool {
        let p = &mut s.procs[usize::from(w)];
        let Some(i) = p.sink.iter().position(|c| c.shard == shard) else {
            return false;
        };
        let chunk = p.sink.remove(i);
        if let Some(h) = p.held_mut(shard).filter(|h| h.tracked()) {
            h.acked = h.acked.max(chunk.record);
        }
        progress(p);
        let parents_done = self.shards[usize::from(shard)]
            .parents
            .iter()
            .all(|parent| self.all_delivered_of(s, *parent));
        if !parents_done {
            s.violations |= violation::ORDER;
        }
        if s.moved
            .iter()
            .any(|(mw, ms, me)| *mw == w && *ms == shard && chunk.epoch <= *me)
        {
            s.violations |= violation::SHARED_DELIVERY;
        }
        s.delivered[usize::from(shard)] |= 1 << (chunk.record - 1);
        if s.table.reset {
            s.redelivered[usize::from(shard)] |= 1 << (chunk.record - 1);
        }
        true
    }

    /// The status writer (`Reporter::write`): on a conflict the object is read again (its
    /// fences reach the manager at once) and the write retried, or the process stops if another
    /// holds the object now; then the status that `build_status` makes is stored. A missing
    /// object fails the write and changes nothing. Without `renew`, a write that would store
    /// the same entries is left to the periodic write at the next tick (see
    /// [`Model::tick`]), unless the worker is self-fenced: its first write since is the one
    /// that heals it, and it may land at any time.
    pub fn write(&self, s: &mut State, w: u8, renew: bool) -> bool {
        let wi = usize::from(w);
        let Some(server) = s.objects[wi].clone() else {
            return false;
        };
        let p = &mut s.procs[wi];
        let mut changed = false;
        if server != p.cached {
            let holder = server.status.as_ref().map_or(0, |st| st.holder);
            if holder != p.incarnation {
                Self::crash(s, w);
                return true;
            }
            if self.cfg.variant.worker_keeps_fences {
                for f in &server.fences {
                    if !p.remembered.contains(f) {
                        p.remembered.push(*f);
                    }
                }
            }
            p.cached = server.clone();
            self.reconcile(p, w);
            changed = true;
        }
        let entries: BTreeMap<String, ReportEntry> = p
            .held
            .iter()
            .map(|h| {
                let state = match h.phase {
                    Phase::Frozen {
                        position: at,
                        released,
                        finished,
                    } => EntryState::Frozen {
                        position: position(at),
                        handed: Handed::from_flags(released, finished),
                    },
                    _ => EntryState::Live,
                };
                let entry = ReportEntry {
                    epoch: i64::from(h.epoch),
                    state,
                };
                (self.shard_name(h.shard).to_owned(), entry)
            })
            .collect();
        let holder = Holder {
            pod_uid: format!("pod-{}", self.worker_name(w)),
            incarnation: p.incarnation.to_string(),
        };
        let acked = |id: &str| {
            let h = self.shard_of(id).and_then(|shard| p.held(shard))?;
            position(h.acked)
        };
        let built = build_status(
            &holder,
            jiff::Timestamp::UNIX_EPOCH,
            false,
            &entries,
            &self.api_spec(&p.cached.fences),
            |id| LiveShard {
                acked: acked(id),
                ..LiveShard::default()
            },
            &SinkHealth {
                stuck_after: std::time::Duration::from_secs(30),
                last_error: None,
                failing_sink: None,
            },
        );
        let status = self.status_of(&built);
        if server.status.as_ref() == Some(&status) && !renew && !p.self_fenced {
            return changed;
        }
        let mut stored = server;
        stored.status = Some(status);
        s.objects[wi] = Some(stored.clone());
        s.unseen[wi] = true;
        s.ages[wi] = 0;
        let p = &mut s.procs[wi];
        p.cached = stored;
        p.since_write = 0;
        if p.self_fenced {
            p.self_fenced = false;
            self.reconcile(p, w);
        }
        true
    }

    /// No write succeeded for longer than `selfFenceAfter`: every reader stops, and the sink
    /// delivers nothing more (defect 9.1.2's fix: no shard is deliverable while self-fenced);
    /// what it held is dropped, never acknowledged, so a release completes at the acknowledged
    /// position. The old code (variant) kept the sink delivering.
    pub fn self_fence(&self, s: &mut State, w: u8) -> bool {
        let p = &mut s.procs[usize::from(w)];
        p.self_fenced = true;
        self.reconcile(p, w);
        if !self.cfg.variant.sink_delivers_revoked {
            for h in &mut p.held {
                h.phase = match h.phase {
                    Phase::Paused { .. } | Phase::Ending => Phase::Paused { last_sent: h.acked },
                    Phase::Draining { .. } => Phase::Draining { last_sent: h.acked },
                    other => other,
                };
                if matches!(h.phase, Phase::Paused { .. }) {
                    h.end = None;
                }
            }
            progress(p);
            self.sync_deliverable(p);
        }
        true
    }

    /// `Manager::sync_deliverable` and the sink's `Deliverable` gate (defect 9.1.2's fix): the
    /// sink drops, before its next send and without acknowledging them, the records of every
    /// shard not held in a delivering phase (reading, draining, ending), and all of them while
    /// self-fenced. The gate knows shard ids, not epochs. The old code (variant) had no gate.
    pub fn sync_deliverable(&self, p: &mut Proc) {
        if self.cfg.variant.sink_delivers_revoked {
            return;
        }
        let held = p.held.clone();
        let self_fenced = p.self_fenced;
        p.sink.retain(|c| {
            !self_fenced
                && held.iter().any(|h| {
                    h.shard == c.shard
                        && matches!(
                            h.phase,
                            Phase::Reading | Phase::Draining { .. } | Phase::Ending
                        )
                })
        });
    }
}

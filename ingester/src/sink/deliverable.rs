//! Which readings of which shards the sink may still deliver: everything standalone; in a
//! fleet, only the current reading of each shard the worker holds and has not lost (revoked,
//! fenced or self-fenced), and nothing new of a shard being handed back.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::Notify;

use super::Batch;
use crate::record::Reading;

/// The sink checks this before every send and every retry, and again before it acknowledges a
/// batch: records of a shard that is no longer deliverable, or of an earlier reading of it, are
/// dropped from the batch and never acknowledged, so a worker that lost a shard delivers
/// nothing more of it once the loss is known (its new owner reads them again from the last
/// stored checkpoint), and a worker that took a shard back delivers only what its new reader
/// reads.
#[derive(Clone, Debug, Default)]
pub struct Deliverable(Option<Arc<Shared>>);

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

/// Under one lock, so that a request either starts before a shard is closed (and is waited
/// for) or leaves its records out.
#[derive(Debug, Default)]
struct State {
    /// Deliverable shards and their current reading.
    shards: HashMap<Arc<str>, Current>,
    /// Requests in flight per reading.
    sending: HashMap<Reading, usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    generation: u64,
    /// Being handed back: requests already in flight finish and are acknowledged; nothing new
    /// is sent.
    closing: bool,
}

impl State {
    fn allows(&self, r: &Reading) -> bool {
        self.shards
            .get(&r.shard_id)
            .is_some_and(|c| c.generation == r.generation)
    }

    fn sendable(&self, r: &Reading) -> bool {
        self.shards
            .get(&r.shard_id)
            .is_some_and(|c| c.generation == r.generation && !c.closing)
    }
}

/// Held while a request is in flight: the readings it carries count as sending until it is
/// dropped, after the batch's acknowledgements.
#[derive(Debug)]
#[must_use = "the readings count as sending only while the guard lives"]
pub struct Sending {
    shared: Option<Arc<Shared>>,
    readings: Vec<Reading>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else { return };
        let mut state = lock(shared);
        for r in &self.readings {
            if let Some(n) = state.sending.get_mut(r) {
                *n -= 1;
                if *n == 0 {
                    state.sending.remove(r);
                }
            }
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Deliverable {
    /// Every shard, always (the standalone ingester owns its whole stream).
    pub fn all() -> Self {
        Self(None)
    }

    /// Only the readings last passed to [`Deliverable::set`]; none at first.
    pub fn only_set() -> Self {
        Self(Some(Arc::default()))
    }

    /// Whether records of `reading` may be acknowledged now: its shard is held and this is its
    /// current reading.
    pub fn allows(&self, reading: &Reading) -> bool {
        self.0.as_ref().is_none_or(|s| lock(s).allows(reading))
    }

    /// Whether records of `reading` may go into a new request: allowed and not being handed
    /// back.
    pub fn sendable(&self, reading: &Reading) -> bool {
        self.0.as_ref().is_none_or(|s| lock(s).sendable(reading))
    }

    /// Drops from `batch` the records no new request may carry (returning how many) and counts
    /// the readings left as sending until the guard is dropped, in one step against
    /// [`Deliverable::close`].
    pub fn begin_send(&self, batch: &mut Batch) -> (usize, Sending) {
        let Some(shared) = &self.0 else {
            let guard = Sending {
                shared: None,
                readings: Vec::new(),
            };
            return (0, guard);
        };
        let mut state = lock(shared);
        let dropped = batch.retain_shards(|r| state.sendable(r));
        let mut readings = batch.shards().to_vec();
        readings.sort_unstable();
        readings.dedup();
        for r in &readings {
            *state.sending.entry(r.clone()).or_default() += 1;
        }
        let guard = Sending {
            shared: Some(shared.clone()),
            readings,
        };
        (dropped, guard)
    }

    /// Closes `shard` for a planned handoff: no new request carries its current reading;
    /// requests in flight finish and are acknowledged. No-op for [`Deliverable::all`].
    pub fn close(&self, shard: &str) {
        if let Some(shared) = &self.0
            && let Some(c) = lock(shared).shards.get_mut(shard)
        {
            c.closing = true;
        }
    }

    /// Whether `shard` is closed and no request carrying its current reading is in flight: its
    /// acknowledged position is final.
    pub fn closed_and_idle(&self, shard: &str) -> bool {
        self.0.as_ref().is_some_and(|shared| {
            let state = lock(shared);
            state.shards.get(shard).is_some_and(|c| {
                c.closing
                    && !state.sending.contains_key(&Reading {
                        shard_id: Arc::from(shard),
                        generation: c.generation,
                    })
            })
        })
    }

    /// Makes exactly `readings` (shard -> current generation) deliverable (no-op for
    /// [`Deliverable::all`]). A shard keeps being closed while its generation is unchanged; a
    /// new generation starts open. Returns whether the set changed.
    pub fn set(&self, readings: HashMap<Arc<str>, u64>) -> bool {
        let Some(shared) = &self.0 else { return false };
        let mut state = lock(shared);
        let same = state.shards.len() == readings.len()
            && readings
                .iter()
                .all(|(s, g)| state.shards.get(s).is_some_and(|c| c.generation == *g));
        if same {
            return false;
        }
        let shards = readings
            .into_iter()
            .map(|(s, generation)| {
                let closing = state
                    .shards
                    .get(&s)
                    .is_some_and(|c| c.generation == generation && c.closing);
                (
                    s,
                    Current {
                        generation,
                        closing,
                    },
                )
            })
            .collect();
        state.shards = shards;
        drop(state);
        shared.changed.notify_waiters();
        true
    }

    /// Resolves once some reading of `readings` may no longer be acknowledged; never for
    /// [`Deliverable::all`]. The sink races this against a send, so a request still in flight
    /// when the worker loses a shard is abandoned at once instead of after its timeout.
    pub async fn lost_any(&self, readings: &[Reading]) {
        let Some(shared) = &self.0 else {
            return std::future::pending().await;
        };
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if readings.iter().any(|r| !self.allows(r)) {
                return;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(shard: &str, generation: u64) -> Reading {
        Reading {
            shard_id: Arc::from(shard),
            generation,
        }
    }

    #[test]
    fn all_allows_everything_and_a_set_only_its_current_readings() {
        assert!(Deliverable::all().allows(&reading("s0", 7)));
        let d = Deliverable::only_set();
        assert!(!d.allows(&reading("s0", 1)));
        assert!(d.set([(Arc::from("s0"), 1)].into()));
        assert!(!d.set([(Arc::from("s0"), 1)].into()));
        assert!(d.allows(&reading("s0", 1)) && !d.allows(&reading("s1", 1)));
        assert!(!d.allows(&reading("s0", 0)), "an earlier reading");
        assert!(d.set([(Arc::from("s0"), 2)].into()), "a new generation");
        assert!(!d.allows(&reading("s0", 1)) && d.allows(&reading("s0", 2)));
        assert!(d.set(HashMap::new()));
        assert!(!d.allows(&reading("s0", 2)));
    }

    #[test]
    fn a_closed_shard_stays_closed_for_its_generation_and_a_new_one_starts_open() {
        let d = Deliverable::only_set();
        d.set([(Arc::from("s0"), 1), (Arc::from("s1"), 1)].into());
        d.close("s0");
        assert!(d.allows(&reading("s0", 1)) && !d.sendable(&reading("s0", 1)));
        assert!(d.closed_and_idle("s0") && !d.closed_and_idle("s1"));
        d.set([(Arc::from("s0"), 1)].into());
        assert!(!d.sendable(&reading("s0", 1)), "still closed");
        d.set([(Arc::from("s0"), 2)].into());
        assert!(d.sendable(&reading("s0", 2)) && !d.closed_and_idle("s0"));
    }
}

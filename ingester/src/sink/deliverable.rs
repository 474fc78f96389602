//! Which shards the sink may still deliver: every shard standalone; in a fleet, only those the worker holds and has not lost (revoked, fenced or self-fenced).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use super::Batch;

use tokio::sync::Notify;

/// The sink checks this before every send and every retry, and again before it acknowledges a
/// batch: records of a shard that is no longer deliverable are dropped from the batch and never
/// acknowledged, so a worker that lost a shard delivers nothing more of it once the loss is
/// known (its new owner reads them again from the last stored checkpoint).
#[derive(Clone, Debug, Default)]
pub struct Deliverable(Option<Arc<Shared>>);

#[derive(Debug, Default)]
struct Shared {
    shards: RwLock<HashSet<Arc<str>>>,
    changed: Notify,
    /// Shards being handed back and what the sink has in flight, under one lock so that a send
    /// either starts before a shard is closed (and is waited for) or leaves its records out.
    gate: Mutex<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    /// Shards whose records are no longer sent (a planned handoff): requests already in flight
    /// finish and are acknowledged, nothing new starts.
    closing: HashSet<Arc<str>>,
    /// Requests in flight per shard.
    sending: HashMap<Arc<str>, usize>,
}

/// Held while a request is in flight: the shards it carries count as sending until it is
/// dropped, after the batch's acknowledgements.
#[derive(Debug)]
#[must_use = "the shards count as sending only while the guard lives"]
pub struct Sending {
    shared: Option<Arc<Shared>>,
    shards: Vec<Arc<str>>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else { return };
        let mut gate = shared.gate.lock().unwrap_or_else(PoisonError::into_inner);
        for s in &self.shards {
            if let Some(n) = gate.sending.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    gate.sending.remove(s);
                }
            }
        }
    }
}

impl Deliverable {
    /// Every shard, always (the standalone ingester owns its whole stream).
    pub fn all() -> Self {
        Self(None)
    }

    /// Only the shards last passed to [`Deliverable::set`]; none at first.
    pub fn only_set() -> Self {
        Self(Some(Arc::default()))
    }

    /// Whether records of `shard` may be sent and acknowledged now.
    pub fn allows(&self, shard: &str) -> bool {
        match &self.0 {
            None => true,
            Some(shared) => shared
                .shards
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(shard),
        }
    }

    /// Whether records of `shard` may go into a new request: deliverable and not closing.
    pub fn sendable(&self, shard: &str) -> bool {
        self.allows(shard)
            && self.0.as_ref().is_none_or(|shared| {
                !shared
                    .gate
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .closing
                    .contains(shard)
            })
    }

    /// Drops from `batch` the records no new request may carry (returning how many) and counts
    /// the shards left as sending until the guard is dropped, in one step against
    /// [`Deliverable::close`].
    pub fn begin_send(&self, batch: &mut Batch) -> (usize, Sending) {
        let Some(shared) = &self.0 else {
            let guard = Sending {
                shared: None,
                shards: Vec::new(),
            };
            return (0, guard);
        };
        let mut gate = shared.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = batch.retain_shards(|s| self.allows(s) && !gate.closing.contains(s));
        let mut shards: Vec<Arc<str>> = batch.shards().to_vec();
        shards.sort_unstable();
        shards.dedup();
        for s in &shards {
            *gate.sending.entry(s.clone()).or_default() += 1;
        }
        let guard = Sending {
            shared: Some(shared.clone()),
            shards,
        };
        (dropped, guard)
    }

    /// Closes `shard` for a planned handoff: no new request carries its records; requests in
    /// flight finish and are acknowledged. No-op for [`Deliverable::all`].
    pub fn close(&self, shard: &str) {
        if let Some(shared) = &self.0 {
            let mut gate = shared.gate.lock().unwrap_or_else(PoisonError::into_inner);
            gate.closing.insert(Arc::from(shard));
        }
    }

    /// Whether `shard` is closed and no request carrying its records is in flight: its
    /// acknowledged position is final.
    pub fn closed_and_idle(&self, shard: &str) -> bool {
        self.0.as_ref().is_some_and(|shared| {
            let gate = shared.gate.lock().unwrap_or_else(PoisonError::into_inner);
            gate.closing.contains(shard) && !gate.sending.contains_key(shard)
        })
    }

    /// Makes exactly `shards` deliverable (no-op for [`Deliverable::all`]). Returns whether
    /// the set changed. A shard that leaves the set is no longer closing, so a later epoch of
    /// it starts open.
    pub fn set(&self, shards: HashSet<Arc<str>>) -> bool {
        let Some(shared) = &self.0 else { return false };
        let mut current = shared
            .shards
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *current == shards {
            return false;
        }
        shared
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closing
            .retain(|s| shards.contains(s));
        *current = shards;
        drop(current);
        shared.changed.notify_waiters();
        true
    }

    /// Resolves once some shard of `shards` is no longer deliverable; never for
    /// [`Deliverable::all`]. The sink races this against a send, so a request still in flight
    /// when the worker loses a shard is abandoned at once instead of after its timeout.
    pub async fn lost_any(&self, shards: &[Arc<str>]) {
        let Some(shared) = &self.0 else {
            return std::future::pending().await;
        };
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if shards.iter().any(|s| !self.allows(s)) {
                return;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_allows_everything_and_a_set_only_its_members() {
        assert!(Deliverable::all().allows("s0"));
        let d = Deliverable::only_set();
        assert!(!d.allows("s0"));
        assert!(d.set([Arc::from("s0")].into()));
        assert!(!d.set([Arc::from("s0")].into()));
        assert!(d.allows("s0") && !d.allows("s1"));
        assert!(d.set(HashSet::new()));
        assert!(!d.allows("s0"));
    }
}

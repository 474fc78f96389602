//! Which shards the sink may still deliver: every shard standalone; in a fleet, only those the worker holds and has not lost (revoked, fenced or self-fenced).

use std::{
    collections::HashSet,
    sync::{Arc, PoisonError, RwLock},
};

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

    /// Makes exactly `shards` deliverable (no-op for [`Deliverable::all`]). Returns whether
    /// the set changed.
    pub fn set(&self, shards: HashSet<Arc<str>>) -> bool {
        let Some(shared) = &self.0 else { return false };
        let mut current = shared
            .shards
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *current == shards {
            return false;
        }
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

//! Counters the sink updates once per batch, for the metrics layer to read.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
};

use super::SinkError;

/// Delivery counters. All are monotonic; read them with the getters.
#[derive(Debug, Default)]
pub struct SinkStats {
    records_out: AtomicU64,
    bytes_out: AtomicU64,
    batches: AtomicU64,
    retries: AtomicU64,
    acks: AtomicU64,
    dead_letters: AtomicU64,
    revoked: AtomicU64,
    errors: [AtomicU64; SinkError::CATEGORIES.len()],
    /// 1 + the category index of the last failed send since the last delivery; 0 for none.
    last_error: AtomicUsize,
    /// The ingester's totals, which every sink's counts are added to as well.
    parent: Option<Arc<SinkStats>>,
}

impl SinkStats {
    /// The counters of one of several sinks: what it counts is added to `parent` too.
    pub fn child_of(parent: Arc<SinkStats>) -> Self {
        Self {
            parent: Some(parent),
            ..Self::default()
        }
    }

    /// Records the destination acknowledged.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Relaxed)
    }

    /// Encoded bytes of the batches the destination acknowledged.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Relaxed)
    }

    /// Batches delivered.
    pub fn batches(&self) -> u64 {
        self.batches.load(Relaxed)
    }

    /// Send attempts that were repeated after a failure.
    pub fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    /// Chunk checkpoints passed to the ack function.
    pub fn acks(&self) -> u64 {
        self.acks.load(Relaxed)
    }

    /// Records written to (or, without a path, logged for) the dead-letter file.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Relaxed)
    }

    /// Records dropped undelivered and unacknowledged because their shard was lost.
    pub fn revoked(&self) -> u64 {
        self.revoked.load(Relaxed)
    }

    /// Failed send attempts of one [`SinkError::category`]; 0 for an unknown category.
    pub fn errors(&self, category: &str) -> u64 {
        SinkError::CATEGORIES
            .iter()
            .position(|c| *c == category)
            .map_or(0, |i| self.errors[i].load(Relaxed))
    }

    /// Failed send attempts by category, every category included.
    pub fn errors_by_category(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        SinkError::CATEGORIES
            .iter()
            .zip(&self.errors)
            .map(|(c, n)| (*c, n.load(Relaxed)))
    }

    /// The [`SinkError::category`] of the last failed send, unless a batch was delivered since.
    pub fn last_error(&self) -> Option<&'static str> {
        self.last_error
            .load(Relaxed)
            .checked_sub(1)
            .and_then(|i| SinkError::CATEGORIES.get(i).copied())
    }

    pub(crate) fn delivered(&self, records: usize, bytes: usize) {
        if let Some(p) = &self.parent {
            p.delivered(records, bytes);
        }
        self.last_error.store(0, Relaxed);
        self.records_out.fetch_add(records as u64, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
        self.batches.fetch_add(1, Relaxed);
    }

    pub(crate) fn failed(&self, error: &SinkError) {
        if let Some(p) = &self.parent {
            p.failed(error);
        }
        if let Some(i) = SinkError::CATEGORIES
            .iter()
            .position(|c| *c == error.category())
        {
            self.errors[i].fetch_add(1, Relaxed);
            self.last_error.store(i + 1, Relaxed);
        }
    }

    pub(crate) fn retried(&self) {
        if let Some(p) = &self.parent {
            p.retried();
        }
        self.retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn acked(&self) {
        if let Some(p) = &self.parent {
            p.acked();
        }
        self.acks.fetch_add(1, Relaxed);
    }

    pub(crate) fn dropped_revoked(&self, records: usize) {
        if let Some(p) = &self.parent {
            p.dropped_revoked(records);
        }
        self.revoked.fetch_add(records as u64, Relaxed);
    }

    pub(crate) fn dead_lettered(&self) {
        if let Some(p) = &self.parent {
            p.dead_lettered();
        }
        self.dead_letters.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_is_forgotten_once_a_batch_is_delivered() {
        let stats = SinkStats::default();
        assert_eq!(stats.last_error(), None);
        stats.failed(&SinkError::Config("x".into()));
        stats.failed(&SinkError::Status {
            status: 503,
            body: String::new(),
            retry_after: None,
        });
        assert_eq!(stats.last_error(), Some("http_5xx"));
        stats.delivered(1, 10);
        assert_eq!(stats.last_error(), None);
    }
}

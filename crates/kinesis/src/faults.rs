//! A [`KinesisApi`] wrapper that injects throttling and expired iterators, for tests (the emulator has neither).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use futures::{FutureExt, future::BoxFuture, stream::BoxStream};

use crate::api::{
    KinesisApi, RecordsPage, ShardInfo, SourceError, StartAt, StreamRef, SubscribeEvent,
};

/// Which calls fail: every `n`-th GetRecords call is throttled, every `m`-th returns an expired
/// iterator (0 turns a fault off). Counters record how many faults were injected.
#[derive(Debug)]
pub struct FaultyKinesis {
    inner: Arc<dyn KinesisApi>,
    throttle_every: u64,
    expire_every: u64,
    calls: AtomicU64,
    /// Throttles injected so far.
    pub throttled: AtomicU64,
    /// Expired iterators injected so far.
    pub expired: AtomicU64,
}

impl FaultyKinesis {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KinesisApi>, throttle_every: u64, expire_every: u64) -> Self {
        Self {
            inner,
            throttle_every,
            expire_every,
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }
}

impl KinesisApi for FaultyKinesis {
    fn list_shards<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<Vec<ShardInfo>, SourceError>> {
        self.inner.list_shards(stream)
    }

    fn get_shard_iterator<'a>(
        &'a self,
        stream: &'a StreamRef,
        shard_id: &'a str,
        start: &'a StartAt,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        self.inner.get_shard_iterator(stream, shard_id, start)
    }

    fn get_records<'a>(
        &'a self,
        iterator: &'a str,
        limit: i32,
    ) -> BoxFuture<'a, Result<RecordsPage, SourceError>> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.throttle_every > 0 && n.is_multiple_of(self.throttle_every) {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return async {
                Err(SourceError::Throttled {
                    operation: "GetRecords",
                    message: "Rate exceeded for shard (injected)".into(),
                })
            }
            .boxed();
        }
        if self.expire_every > 0 && n.is_multiple_of(self.expire_every) {
            self.expired.fetch_add(1, Ordering::Relaxed);
            return async {
                Err(SourceError::ExpiredIterator(
                    "Iterator expired (injected)".into(),
                ))
            }
            .boxed();
        }
        self.inner.get_records(iterator, limit)
    }

    fn stream_arn<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        self.inner.stream_arn(stream)
    }

    fn stream_summary<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<crate::StreamSummary, SourceError>> {
        self.inner.stream_summary(stream)
    }

    fn register_consumer<'a>(
        &'a self,
        stream_arn: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        self.inner.register_consumer(stream_arn, name)
    }

    fn deregister_consumer<'a>(
        &'a self,
        consumer_arn: &'a str,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        self.inner.deregister_consumer(consumer_arn)
    }

    fn subscribe(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        start: &StartAt,
    ) -> BoxStream<'static, Result<SubscribeEvent, SourceError>> {
        self.inner.subscribe(consumer_arn, shard_id, start)
    }
}

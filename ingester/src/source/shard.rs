//! One task per shard: poll GetRecords, decode, hand chunks to the sink (awaiting room: backpressure), and report the end of the shard.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use kinesis_client::{
    RawRecord,
    api::{ChildShard, KinesisApi, SourceError, StartAt, StreamRef},
    backoff::Backoff,
};
use kinesis_ingester_api::sequence::Position;

use crate::{
    checkpoint::Tracker,
    decode::{DecodeStats, Decoder},
    metrics::Metrics,
    record::{Chunk, DeadLetter, ShardContext},
    sink::{DeadLetterWriter, Outlets},
    transform::{Transform, TransformStats},
};

/// The dead-letter file, shared by every reader of the process.
pub type DeadLetters = Arc<tokio::sync::Mutex<DeadLetterWriter>>;

/// Polling settings of a shard reader.
#[derive(Clone, Debug)]
pub struct PollSettings {
    /// Wait between calls once caught up.
    pub poll_interval: Duration,
    /// Least time between two calls on one shard (Kinesis allows 5 per second).
    pub min_call_gap: Duration,
    /// Records per GetRecords call.
    pub max_records: i32,
}

/// How a shard reader ended.
#[derive(Debug)]
pub enum ShardOutcome {
    /// The shard is closed and was read to its end.
    Ended {
        /// Its children, from the last GetRecords response.
        children: Vec<ChildShard>,
        /// Checkpoint of the last chunk handed to the sink, if any.
        last_sent: Option<Position>,
    },
    /// Reading stopped for shutdown or a handoff.
    Stopped {
        /// Checkpoint of the last chunk handed to the sink, if any: a release waits until the
        /// sink acknowledged it.
        last_sent: Option<Position>,
    },
}

/// The reader was cancelled, or the sink is gone.
#[derive(Debug)]
pub(super) struct Stopped;

/// Everything one shard reader needs.
pub struct ShardReader {
    /// Kinesis.
    pub api: Arc<dyn KinesisApi>,
    /// The stream.
    pub stream: StreamRef,
    /// The shard.
    pub shard: Arc<ShardContext>,
    /// Where to start: the starting position, or just after the checkpoint.
    pub start: StartAt,
    /// Decoded records at or before this position are skipped (resuming inside an aggregated record).
    pub skip_until: Option<Position>,
    /// Polling settings.
    pub settings: PollSettings,
    /// The decoder.
    pub decoder: Arc<Decoder>,
    /// `spec.transform`, compiled: run on the decoded records before they go to the sink.
    pub transform: Option<Arc<Transform>>,
    /// Dead-letter output.
    pub dead_letters: DeadLetters,
    /// The sink's input; bounded, so a slow sink slows reading.
    pub chunks: Outlets,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Told what is handed to the sink, to know what waits for it.
    pub tracker: Arc<Tracker>,
    /// Stops reading.
    pub cancel: CancellationToken,
    /// This reading's generation, carried by every chunk (see [`crate::record::Reading`]).
    pub generation: u64,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader")
            .field("shard", &self.shard.shard_id)
            .finish()
    }
}

impl ShardReader {
    /// Reads until the shard ends or `cancel` fires. Errors are retried with backoff; an
    /// expired iterator is replaced by one starting after the last record handed to the sink.
    #[tracing::instrument(name = "shard", skip_all, fields(shard = %self.shard.shard_id))]
    pub async fn run(mut self) -> ShardOutcome {
        let mut backoff = Backoff::default();
        let mut last_sent: Option<Position> = None;
        let mut iterator: Option<String> = None;
        let mut last_call = tokio::time::Instant::now() - self.settings.min_call_gap;
        let shard_id = self.shard.shard_id.clone();
        info!(start = ?self.start, "reading shard");
        loop {
            if self.cancel.is_cancelled() {
                return ShardOutcome::Stopped { last_sent };
            }
            let it = match iterator.take() {
                Some(it) => it,
                None => {
                    let start = last_sent
                        .as_ref()
                        .map(StartAt::resume)
                        .unwrap_or_else(|| self.start.clone());
                    let call = self.api.get_shard_iterator(&self.stream, &shard_id, &start);
                    let Some(result) = self.unless_cancelled(call).await else {
                        return ShardOutcome::Stopped { last_sent };
                    };
                    match result {
                        Ok(it) => it,
                        Err(e) => {
                            if !self
                                .wait_after_error("GetShardIterator", &e, &mut backoff)
                                .await
                            {
                                return ShardOutcome::Stopped { last_sent };
                            }
                            continue;
                        }
                    }
                }
            };
            // Respect the per-shard call rate.
            if !self
                .sleep_until(last_call + self.settings.min_call_gap)
                .await
            {
                return ShardOutcome::Stopped { last_sent };
            }
            last_call = tokio::time::Instant::now();
            // A call in flight is abandoned on cancellation (nothing of it was used), so a
            // release or a shutdown does not wait out a slow or hanging GetRecords.
            let call = self.api.get_records(&it, self.settings.max_records);
            let Some(result) = self.unless_cancelled(call).await else {
                return ShardOutcome::Stopped { last_sent };
            };
            let page = match result {
                Ok(page) => {
                    backoff.reset();
                    page
                }
                Err(SourceError::ExpiredIterator(msg)) => {
                    debug!(%msg, "iterator expired; getting a new one after the last record read");
                    self.metrics.source_error("GetRecords", "expired_iterator");
                    continue;
                }
                Err(e) => {
                    iterator = Some(it);
                    if !self.wait_after_error("GetRecords", &e, &mut backoff).await {
                        return ShardOutcome::Stopped { last_sent };
                    }
                    continue;
                }
            };
            self.metrics.read_ok(&shard_id);
            if let Some(ms) = page.millis_behind_latest {
                self.metrics.set_millis_behind(&shard_id, ms);
            }
            let caught_up = page.records.is_empty() || page.millis_behind_latest == Some(0);
            match self.send_records(page.records, &mut backoff).await {
                Ok(Some(checkpoint)) => last_sent = Some(checkpoint),
                Ok(None) => {}
                Err(Stopped) => return ShardOutcome::Stopped { last_sent },
            }
            match page.next_iterator {
                None => {
                    info!(children = ?page.child_shards.iter().map(|c| &c.shard_id).collect::<Vec<_>>(), "reached the end of the shard");
                    self.metrics.clear_shard(&shard_id);
                    return ShardOutcome::Ended {
                        children: page.child_shards,
                        last_sent,
                    };
                }
                Some(next) => iterator = Some(next),
            }
            if caught_up
                && !self
                    .sleep_until(last_call + self.settings.poll_interval)
                    .await
            {
                return ShardOutcome::Stopped { last_sent };
            }
        }
    }

    /// Decodes `raw` (one page or event, in shard order) into a chunk and hands it to the sink,
    /// awaiting room (backpressure). Returns the chunk's checkpoint, or `None` when `raw` is empty.
    pub(super) async fn send_records(
        &mut self,
        raw: Vec<RawRecord>,
        backoff: &mut Backoff,
    ) -> Result<Option<Position>, Stopped> {
        let Some(last) = raw.last() else {
            return Ok(None);
        };
        let checkpoint = Position::whole(last.sequence_number.clone());
        let bytes: usize = raw.iter().map(|r| r.data.len()).sum();
        self.metrics.records_in(raw.len() as u64, bytes as u64);
        let mut records = Vec::with_capacity(raw.len());
        let mut dead = Vec::new();
        let mut stats = DecodeStats::default();
        for r in raw {
            self.decoder
                .decode(&self.shard, r, &mut records, &mut dead, &mut stats);
        }
        self.metrics.decoded(&stats);
        if let Some(skip) = self.skip_until.take() {
            records.retain(|r| r.position > skip);
        }
        if let Some(transform) = &self.transform {
            let mut stats = TransformStats::default();
            let applied = transform
                .apply(records, &mut dead, &mut stats, &self.cancel)
                .await;
            self.metrics.transformed(&stats);
            records = applied.ok_or(Stopped)?;
        }
        // Dead letters are stored before the chunk that covers them can be acknowledged.
        if !dead.is_empty() && !self.write_dead_letters(&dead, backoff).await {
            return Err(Stopped);
        }
        let chunk = Chunk {
            records,
            shard_id: self.shard.shard_id.clone(),
            generation: self.generation,
            checkpoint: checkpoint.clone(),
        };
        self.tracker.read(&self.shard.shard_id, &checkpoint);
        tokio::select! {
            sent = self.chunks.send(chunk) => if sent.is_err() {
                warn!("the sink stopped; stopping the reader");
                return Err(Stopped);
            },
            () = self.cancel.cancelled() => return Err(Stopped),
        }
        Ok(Some(checkpoint))
    }

    /// Writes dead letters, retrying until they are stored; false if cancelled first.
    async fn write_dead_letters(&self, dead: &[DeadLetter], backoff: &mut Backoff) -> bool {
        let mut writer = self.dead_letters.lock().await;
        for letter in dead {
            while let Err(e) = writer.write(letter).await {
                let delay = backoff.next_delay();
                warn!(error = %e, ?delay, "cannot write the dead-letter file; retrying");
                if !self.sleep_until(tokio::time::Instant::now() + delay).await {
                    return false;
                }
            }
        }
        true
    }

    /// `call`'s result, or `None` once the reader is cancelled (the call is dropped).
    async fn unless_cancelled<T>(&self, call: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            result = call => Some(result),
        }
    }

    /// Sleeps until `deadline`; false if cancelled first.
    pub(super) async fn sleep_until(&self, deadline: tokio::time::Instant) -> bool {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => true,
            () = self.cancel.cancelled() => false,
        }
    }

    /// Counts and logs an error, then waits out the backoff; false if cancelled first.
    pub(super) async fn wait_after_error(
        &self,
        operation: &'static str,
        e: &SourceError,
        backoff: &mut Backoff,
    ) -> bool {
        self.metrics.source_error(operation, e.category());
        self.metrics.read_failed(&self.shard.shard_id, operation, e);
        let delay = backoff.next_delay();
        match e {
            SourceError::Throttled { .. } => debug!(error = %e, ?delay, "throttled; backing off"),
            // Expected right after a restart, while the previous subscription is still open.
            SourceError::InUse { .. } => debug!(error = %e, ?delay, "in use; backing off"),
            _ => warn!(error = %e, ?delay, "Kinesis call failed; retrying"),
        }
        self.sleep_until(tokio::time::Instant::now() + delay).await
    }
}

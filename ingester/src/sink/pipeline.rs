//! The sink task: reads chunks, batches them, delivers each batch with retries, then acknowledges checkpoints in order.

use std::sync::Arc;

use tokio::{
    sync::{Notify, mpsc::Receiver},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use kinesis_client::backoff::Backoff;

use super::{
    Batch, BatchLimits, Batcher, DeadLetterWriter, Deliverable, Destination, SinkError, SinkStats,
    ndjson::Encoding, retry_after,
};
use crate::record::{AckFn, Chunk};

/// One destination fed by a bounded channel of chunks.
///
/// Batches are delivered one at a time, in order, and a batch's checkpoints are passed to the
/// ack function only after the destination accepted every record in it, so per-shard order
/// holds. While a batch is being retried no chunk is read: the channel fills and the shard
/// readers wait on it, which bounds memory to the channel plus one open batch.
pub struct SinkPipeline {
    destination: Box<dyn Destination>,
    batcher: Batcher,
    ack: AckFn,
    cancel: CancellationToken,
    stats: Arc<SinkStats>,
    backoff: Backoff,
    /// Records of the batch being delivered, for the cancellation log.
    in_flight: usize,
    /// When notified, everything received so far is delivered without waiting for
    /// `batch.maxAge` (a fleet release), as when the input closes.
    flush: Arc<Notify>,
    /// Shards whose records may still be sent and acknowledged.
    deliverable: Deliverable,
    /// Where `_bulk` items the destination rejects as invalid (400) go, and batches given up.
    dead_letters: DeadLetterWriter,
    /// `deadLetterAfter`: the sink's name and how long a batch may fail before it is
    /// dead-lettered; `None` retries forever.
    give_up: Option<(Arc<str>, std::time::Duration)>,
    /// When the destination started failing without a delivery since: once that is longer
    /// than `give_up`, each failing batch is dead-lettered after one attempt.
    failing_since: Option<Instant>,
}

impl std::fmt::Debug for SinkPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkPipeline")
            .field("batcher", &self.batcher)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl SinkPipeline {
    /// A pipeline that encodes with `encoding`, closes batches at `limits` and sends to
    /// `destination`.
    pub fn new(
        destination: Box<dyn Destination>,
        limits: BatchLimits,
        encoding: Encoding,
        ack: AckFn,
        cancel: CancellationToken,
        stats: Arc<SinkStats>,
    ) -> Self {
        Self {
            destination,
            batcher: Batcher::new(limits, encoding),
            ack,
            cancel,
            backoff: Backoff::default(),
            in_flight: 0,
            flush: Arc::new(Notify::new()),
            deliverable: Deliverable::all(),
            dead_letters: DeadLetterWriter::new(None, stats.clone()),
            give_up: None,
            failing_since: None,
            stats,
        }
    }

    /// Once a batch has failed for `after`, its items go to the dead-letter writer and its
    /// checkpoints are acknowledged (`deadLetterAfter` of the sink `sink`).
    pub fn with_give_up(mut self, sink: Arc<str>, after: Option<std::time::Duration>) -> Self {
        self.give_up = after.map(|a| (sink, a));
        self
    }

    /// Writes `_bulk` items rejected with status 400 to `writer` (by default they are only
    /// logged and counted), and does not send them again.
    pub fn with_dead_letters(mut self, writer: DeadLetterWriter) -> Self {
        self.dead_letters = writer;
        self
    }

    /// Delivers only records of shards `deliverable` allows, checked before every send and
    /// retry and before every acknowledgement (a fleet worker's held shards).
    pub fn with_deliverable(mut self, deliverable: Deliverable) -> Self {
        self.deliverable = deliverable;
        self
    }

    /// Records each item's partition, for the S3 sink (see [`Batcher::with_partitioner`]).
    pub fn with_partitioner(mut self, partitioner: Option<super::Partitioner>) -> Self {
        self.batcher.set_partitioner(partitioner);
        self
    }

    /// Takes a chunk into the open batch, unless its reading of the shard is no longer
    /// deliverable or is being handed back.
    fn take(&mut self, chunk: Chunk) -> Result<(), SinkError> {
        if !self.deliverable.sendable(&chunk.reading()) {
            self.stats.dropped_revoked(chunk.records.len());
            return Ok(());
        }
        self.batcher.push(chunk, Instant::now())?;
        Ok(())
    }

    /// Delivers everything received so far, without waiting for `batch.maxAge`, each time
    /// `flush` is notified: chunks already in the channel are taken into the batch first.
    pub fn with_flush(mut self, flush: Arc<Notify>) -> Self {
        self.flush = flush;
        self
    }

    /// Replaces the default retry delays (100 ms doubling to 30 s).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Runs until `rx` is closed and drained (the last partial batch is delivered and acked,
    /// then `Ok`), or until the token is cancelled (`Ok` at once; undelivered records are not
    /// acked and will be read again from the last checkpoint). Fails only on a record that
    /// cannot be encoded.
    pub async fn run(mut self, mut rx: Receiver<Chunk>) -> Result<(), SinkError> {
        let flush = self.flush.clone();
        loop {
            while let Some(batch) = self.batcher.pop_ready() {
                if !self.deliver(batch).await {
                    return self.cancelled();
                }
            }
            let deadline = self.batcher.deadline();
            let aged = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return self.cancelled(),
                () = aged => self.batcher.poll_age(Instant::now()),
                () = flush.notified() => {
                    while let Ok(chunk) = rx.try_recv() {
                        self.take(chunk)?;
                    }
                    self.batcher.flush();
                }
                chunk = rx.recv() => match chunk {
                    Some(chunk) => self.take(chunk)?,
                    None => {
                        self.batcher.flush();
                        while let Some(batch) = self.batcher.pop_ready() {
                            if !self.deliver(batch).await {
                                return self.cancelled();
                            }
                        }
                        tracing::debug!("chunk channel closed; every batch delivered");
                        return Ok(());
                    }
                },
            }
        }
    }

    /// Sends `batch` until the destination accepts it, then acks its checkpoints. False when
    /// cancelled first.
    async fn deliver(&mut self, mut batch: Batch) -> bool {
        let (records, bytes) = (batch.len(), batch.body().len());
        self.in_flight = records;
        let mut attempt = 0u32;
        let mut revoked_total = 0;
        let mut gave_up = false;
        // Counts the batch's readings as sending until its acknowledgements are made.
        let mut sending;
        loop {
            let (revoked, guard) = self.deliverable.begin_send(&mut batch);
            sending = guard;
            if revoked > 0 {
                self.stats.dropped_revoked(revoked);
                revoked_total += revoked;
                tracing::info!(
                    records = revoked,
                    "dropped records of shards this worker no longer holds, is handing back or has taken back since; they are read again"
                );
            }
            if batch.is_empty() {
                break;
            }
            let result = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return false,
                // Lost a shard of this batch mid-request: abandon the request, drop its records.
                () = self.deliverable.lost_any(batch.shards()) => continue,
                result = self.destination.send(&batch) => result,
            };
            let Err(error) = result else { break };
            self.stats.failed(&error);
            if let SinkError::BulkItems {
                failed, rejected, ..
            } = &error
                && !rejected.is_empty()
            {
                let mut retry = failed.clone();
                for item in rejected {
                    if let Err(e) = self
                        .dead_letters
                        .write_rejected(batch.item(item.index), item)
                        .await
                    {
                        // Not written down, so not dropped: it is sent (and refused) again.
                        tracing::error!(error = %e, "cannot dead-letter a rejected _bulk item; sending it again");
                        retry.push(item.index);
                    }
                }
                if retry.is_empty() {
                    break;
                }
                retry.sort_unstable();
                batch.retain_items(&retry);
                if retry.len() > failed.len() {
                    // Some of them only because the dead-letter file failed: back off fully.
                    tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => return false,
                        () = tokio::time::sleep(self.backoff.max) => {}
                    }
                    attempt = attempt.saturating_add(1);
                    self.stats.retried();
                    continue;
                }
            } else if let SinkError::BulkItems { failed, .. } = &error {
                batch.retain_items(failed);
            }
            let failing = *self.failing_since.get_or_insert_with(Instant::now);
            if let Some((sink, after)) = self.give_up.clone()
                && failing.elapsed() >= after
            {
                match self
                    .give_up_batch(&sink, &batch, &error, failing.elapsed())
                    .await
                {
                    Some(true) => {
                        gave_up = true;
                        break;
                    }
                    Some(false) => {}
                    None => return false,
                }
            }
            let delay = if error.is_retryable() {
                tracing::warn!(%error, category = error.category(), attempt, records = batch.len(), "batch delivery failed; retrying");
                retry_after::retry_delay(&error, self.backoff.delay(attempt))
            } else {
                tracing::error!(%error, category = error.category(), attempt, records = batch.len(), "batch rejected; retrying at the longest backoff so no record is dropped (fix the endpoint or its configuration)");
                self.backoff.max
            };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            attempt = attempt.saturating_add(1);
            self.stats.retried();
        }
        if !gave_up {
            self.failing_since = None;
            if records > revoked_total {
                self.stats.delivered(records - revoked_total, bytes);
            }
        }
        for (reading, checkpoint) in batch.checkpoints() {
            // Delivered, but a shard lost meanwhile is never acknowledged: its new owner
            // starts from the checkpoint the fence froze.
            if self.deliverable.allows(reading) {
                (self.ack)(&reading.shard_id, checkpoint);
                self.stats.acked();
            }
        }
        drop(sending);
        self.batcher.recycle(batch);
        self.in_flight = 0;
        true
    }

    /// Dead-letters every item of `batch` after its sink failed for `failing`: `Some(true)`
    /// once all are written, `Some(false)` when the dead-letter file failed (the batch is
    /// retried), `None` when cancelled.
    async fn give_up_batch(
        &mut self,
        sink: &str,
        batch: &Batch,
        error: &SinkError,
        failing: std::time::Duration,
    ) -> Option<bool> {
        tracing::error!(sink, %error, records = batch.len(), ?failing, "giving up on a batch (deadLetterAfter): its records go to the dead-letter file and its shards move on");
        for i in 0..batch.len() {
            if self.cancel.is_cancelled() {
                return None;
            }
            if let Err(e) = self
                .dead_letters
                .write_undelivered(sink, batch.item(i), error, failing)
                .await
            {
                tracing::error!(error = %e, "cannot dead-letter an undelivered batch; sending it again");
                return Some(false);
            }
        }
        Some(true)
    }

    fn cancelled(&self) -> Result<(), SinkError> {
        tracing::info!(
            undelivered = self.in_flight + self.batcher.pending_records(),
            "sink cancelled; undelivered records stay unacknowledged"
        );
        Ok(())
    }
}

//! One task per shard in enhanced fan-out mode: SubscribeToShard sessions from the checkpoint, renewed when a session ends, fails or stalls.

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use futures::StreamExt;
use tracing::{debug, info, warn};

use super::shard::{ShardOutcome, ShardReader, Stopped};
use kinesis_client::{
    api::{ChildShard, StartAt},
    backoff::Backoff,
};
use kinesis_ingester_api::sequence::{Position, SequenceNumber};

/// Enhanced fan-out settings of a shard reader.
#[derive(Clone, Debug)]
pub struct EfoSettings {
    /// ARN of the registered stream consumer, shared by the clones of these settings: the
    /// operator registers the consumer again when someone deregistered it, and every shard task
    /// subscribes with the new ARN from its next subscription on.
    pub consumer_arn: Arc<RwLock<Arc<str>>>,
    /// A session with no event for this long is treated as stalled and replaced (Kinesis sends
    /// an event at least every 5 seconds, even with no records).
    pub stall_timeout: Duration,
    /// Least time between two subscriptions to the shard (Kinesis allows one per second).
    pub min_subscribe_gap: Duration,
    /// While caught up, how often to check with GetRecords whether the shard was closed and read
    /// to its end, for services that never send the final event with the children (`None`: never).
    pub end_check_interval: Option<Duration>,
}

impl EfoSettings {
    /// Defaults for `consumer_arn`: 30 s stall timeout, 1 s between subscriptions, an end check
    /// every 10 s while caught up.
    pub fn new(consumer_arn: Arc<str>) -> Self {
        Self {
            consumer_arn: Arc::new(RwLock::new(consumer_arn)),
            stall_timeout: Duration::from_secs(30),
            min_subscribe_gap: Duration::from_secs(1),
            end_check_interval: Some(Duration::from_secs(10)),
        }
    }
}

impl EfoSettings {
    /// The consumer ARN to subscribe with now.
    pub fn consumer_arn(&self) -> Arc<str> {
        self.consumer_arn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Switches every clone of these settings to `arn`; whether it changed.
    pub fn set_consumer_arn(&self, arn: &str) -> bool {
        let mut current = self
            .consumer_arn
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if **current == *arn {
            return false;
        }
        *current = Arc::from(arn);
        true
    }
}

/// Reads one shard through SubscribeToShard. Takes the same inputs as a polling
/// [`ShardReader`] (whose `settings` it ignores) and reports the same [`ShardOutcome`].
#[derive(Debug)]
pub struct EfoReader {
    /// The shard, stream, start, decoder, sink and cancellation.
    pub reader: ShardReader,
    /// Subscription settings.
    pub settings: EfoSettings,
}

/// Where the next subscription starts: after the last continuation sequence number, else after
/// the last chunk handed to the sink, else at the reader's start.
pub fn resubscribe_at(
    continuation: Option<&SequenceNumber>,
    last_sent: Option<&Position>,
    start: &StartAt,
) -> StartAt {
    match (continuation, last_sent) {
        (Some(seq), _) => StartAt::AfterSequence(seq.clone()),
        (None, Some(position)) => StartAt::resume(position),
        (None, None) => start.clone(),
    }
}

impl EfoReader {
    /// Reads until the shard ends or `cancel` fires. A session that ends is renewed at once;
    /// one that fails is renewed after a backoff; one that stalls is dropped and renewed.
    #[tracing::instrument(name = "efo_shard", skip_all, fields(shard = %self.reader.shard.shard_id))]
    pub async fn run(self) -> ShardOutcome {
        let Self {
            mut reader,
            settings,
        } = self;
        let mut backoff = Backoff::default();
        let mut last_sent: Option<Position> = None;
        let mut continuation: Option<SequenceNumber> = None;
        let mut last_subscribe = tokio::time::Instant::now() - settings.min_subscribe_gap;
        let shard_id = reader.shard.shard_id.clone();
        let mut next_end_check = settings
            .end_check_interval
            .map(|every| tokio::time::Instant::now() + every);
        info!(start = ?reader.start, "subscribing to shard");
        loop {
            if !reader
                .sleep_until(last_subscribe + settings.min_subscribe_gap)
                .await
            {
                return ShardOutcome::Stopped { last_sent };
            }
            last_subscribe = tokio::time::Instant::now();
            let start = resubscribe_at(continuation.as_ref(), last_sent.as_ref(), &reader.start);
            debug!(?start, "SubscribeToShard");
            let consumer_arn = settings.consumer_arn();
            let mut events = reader.api.subscribe(&consumer_arn, &shard_id, &start);
            loop {
                let next = tokio::select! {
                    () = reader.cancel.cancelled() => return ShardOutcome::Stopped { last_sent },
                    next = tokio::time::timeout(settings.stall_timeout, events.next()) => next,
                };
                let event = match next {
                    Ok(Some(Ok(event))) => event,
                    Ok(None) => {
                        debug!("subscription ended; renewing it");
                        break;
                    }
                    Ok(Some(Err(e))) => {
                        if !reader
                            .wait_after_error("SubscribeToShard", &e, &mut backoff)
                            .await
                        {
                            return ShardOutcome::Stopped { last_sent };
                        }
                        break;
                    }
                    Err(_) => {
                        reader.metrics.source_error("SubscribeToShard", "stalled");
                        warn!(timeout = ?settings.stall_timeout, "no event from the subscription; renewing it");
                        break;
                    }
                };
                backoff.reset();
                reader.metrics.read_ok(&shard_id);
                tracing::trace!(records = event.records.len(), continuation = ?event.continuation_sequence_number, children = event.child_shards.len(), "event");
                if let Some(ms) = event.millis_behind_latest {
                    reader.metrics.set_millis_behind(&shard_id, ms);
                }
                let ends_shard = event.ends_shard();
                let idle = event.records.is_empty();
                match reader.send_records(event.records, &mut backoff).await {
                    Ok(Some(checkpoint)) => last_sent = Some(checkpoint),
                    Ok(None) => {}
                    Err(Stopped) => return ShardOutcome::Stopped { last_sent },
                }
                if ends_shard {
                    info!(children = ?event.child_shards.iter().map(|c| &c.shard_id).collect::<Vec<_>>(), "reached the end of the shard");
                    reader.metrics.clear_shard(&shard_id);
                    return ShardOutcome::Ended {
                        children: event.child_shards,
                        last_sent,
                    };
                }
                continuation = event.continuation_sequence_number;
                if let (true, Some(due), Some(every)) =
                    (idle, next_end_check, settings.end_check_interval)
                    && tokio::time::Instant::now() >= due
                {
                    next_end_check = Some(tokio::time::Instant::now() + every);
                    let after =
                        resubscribe_at(continuation.as_ref(), last_sent.as_ref(), &reader.start);
                    if let Some(children) = read_to_end(&reader, &after).await {
                        info!(children = ?children.iter().map(|c| &c.shard_id).collect::<Vec<_>>(), "the shard is closed and read to its end");
                        reader.metrics.clear_shard(&shard_id);
                        return ShardOutcome::Ended {
                            children,
                            last_sent,
                        };
                    }
                }
            }
        }
    }
}

/// Whether the shard is closed with nothing after `after`, by one GetRecords call; its
/// children if so. Errors count as "not known to be ended": the subscription goes on.
async fn read_to_end(reader: &ShardReader, after: &StartAt) -> Option<Vec<ChildShard>> {
    let checked = async {
        let iterator = reader
            .api
            .get_shard_iterator(&reader.stream, &reader.shard.shard_id, after)
            .await?;
        reader.api.get_records(&iterator, 1).await
    };
    let checked = tokio::select! {
        () = reader.cancel.cancelled() => return None,
        checked = checked => checked,
    };
    match checked {
        Ok(page) if page.next_iterator.is_none() && page.records.is_empty() => {
            Some(page.child_shards)
        }
        Ok(_) => None,
        Err(e) => {
            debug!(error = %e, "cannot check for the end of the shard; will check again");
            None
        }
    }
}

#[cfg(test)]
mod tests;

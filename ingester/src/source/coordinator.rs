//! Decides which shards to read: lists shards periodically, starts one reader per readable shard (parents first), and stores acknowledged checkpoints.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    efo::{EfoReader, EfoSettings},
    shard::{DeadLetters, PollSettings, ShardOutcome, ShardReader},
};
use kinesis_client::{
    api::{KinesisApi, ShardInfo, StartAt, StreamRef},
    backoff::Backoff,
};
use kinesis_ingester_api::{MIN_DELIVERY_STUCK_AFTER, sequence::Position};

use crate::{
    checkpoint::{CheckpointStore, Tracker},
    decode::Decoder,
    metrics::Metrics,
    record::ShardContext,
    sink::Outlets,
    transform::Transform,
};

/// Settings of the coordinator, from the spec and the command line.
#[derive(Clone, Debug)]
pub struct CoordinatorSettings {
    /// Where a shard without a checkpoint starts (children of a read parent start at TRIM_HORIZON).
    pub start: StartAt,
    /// Read children only after their parents are finished.
    pub strict_order: bool,
    /// How often to list shards.
    pub shard_sync_interval: Duration,
    /// How often to store acknowledged checkpoints.
    pub checkpoint_interval: Duration,
    /// Only these shards (all when `None`).
    pub only_shards: Option<HashSet<String>>,
    /// Polling settings of every reader.
    pub poll: PollSettings,
    /// How readers read.
    pub kind: ReaderKind,
    /// `spec.sink.tag`.
    pub tag: Option<Arc<str>>,
}

/// How shard readers read.
#[derive(Clone, Debug)]
pub enum ReaderKind {
    /// GetRecords, with [`CoordinatorSettings::poll`].
    Polling,
    /// SubscribeToShard through a registered consumer.
    EnhancedFanOut(EfoSettings),
}

/// What every shard reader of a process shares; [`ReaderParts::reader`] builds one. Used by the
/// [`Coordinator`] and by the fleet worker.
#[derive(Clone)]
pub struct ReaderParts {
    /// Kinesis.
    pub api: Arc<dyn KinesisApi>,
    /// The stream.
    pub stream: StreamRef,
    /// Polling settings.
    pub poll: PollSettings,
    /// How readers read.
    pub kind: ReaderKind,
    /// `spec.sink.tag`.
    pub tag: Option<Arc<str>>,
    /// The decoder.
    pub decoder: Arc<Decoder>,
    /// `spec.transform`, compiled.
    pub transform: Option<Arc<Transform>>,
    /// Dead-letter output.
    pub dead_letters: DeadLetters,
    /// The sink's input.
    pub chunks: Outlets,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// What the sink acknowledged, and what waits for it.
    pub tracker: Arc<Tracker>,
}

impl std::fmt::Debug for ReaderParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderParts")
            .field("stream", &self.stream)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl ReaderParts {
    /// A reader of `shard_id` (hash keys `hash_range`, for KPL filtering): just after `resume`
    /// when given (inside an aggregated record, skipping the user records already delivered),
    /// else at `start`. It runs until the shard ends or `cancel` fires, and tags its chunks with
    /// `generation`.
    pub fn reader(
        &self,
        shard_id: &str,
        hash_range: (u128, u128),
        resume: Option<Position>,
        start: StartAt,
        cancel: CancellationToken,
        generation: u64,
    ) -> BoxFuture<'static, ShardOutcome> {
        let reader = ShardReader {
            api: self.api.clone(),
            stream: self.stream.clone(),
            shard: Arc::new(ShardContext {
                stream: Arc::from(self.stream.name()),
                shard_id: Arc::from(shard_id),
                hash_range,
                tag: self.tag.clone(),
            }),
            start: resume.as_ref().map(StartAt::resume).unwrap_or(start),
            skip_until: resume.filter(|p| p.sub_sequence.is_some()),
            settings: self.poll.clone(),
            decoder: self.decoder.clone(),
            transform: self.transform.clone(),
            dead_letters: self.dead_letters.clone(),
            chunks: self.chunks.clone(),
            metrics: self.metrics.clone(),
            tracker: self.tracker.clone(),
            cancel,
            generation,
        };
        match &self.kind {
            ReaderKind::Polling => Box::pin(reader.run()),
            ReaderKind::EnhancedFanOut(settings) => Box::pin(
                EfoReader {
                    reader,
                    settings: settings.clone(),
                }
                .run(),
            ),
        }
    }
}

/// Runs the shard readers of one stream.
pub struct Coordinator {
    /// Kinesis.
    pub api: Arc<dyn KinesisApi>,
    /// The stream.
    pub stream: StreamRef,
    /// Settings.
    pub settings: CoordinatorSettings,
    /// Acknowledged positions.
    pub tracker: Arc<Tracker>,
    /// Where checkpoints are stored.
    pub store: Arc<dyn CheckpointStore>,
    /// The decoder.
    pub decoder: Arc<Decoder>,
    /// `spec.transform`, compiled.
    pub transform: Option<Arc<Transform>>,
    /// Dead-letter output.
    pub dead_letters: DeadLetters,
    /// The sink's input.
    pub chunks: Outlets,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `/readyz`: set while the shard list was read and the sink is not stuck.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("stream", &self.stream)
            .finish()
    }
}

/// Stores every checkpoint that changed since the last save.
pub async fn flush_checkpoints(tracker: &Tracker, store: &dyn CheckpointStore, metrics: &Metrics) {
    for cp in tracker.unsaved() {
        match store.save(&cp).await {
            Ok(()) => {
                tracker.saved(&cp);
                metrics.checkpoint_written(None);
                if cp.finished {
                    info!(shard = %cp.shard_id, "shard finished and checkpointed");
                }
            }
            Err(e) => {
                metrics.checkpoint_written(Some(e.category()));
                warn!(shard = %cp.shard_id, error = %e, "could not store checkpoint; will retry");
            }
        }
    }
}

/// `/readyz` of the standalone ingester: the shard list was read, no shard's Kinesis calls have
/// failed for 10 s, and the sink is not stuck (records waiting with nothing acknowledged for
/// longer than [`MIN_DELIVERY_STUCK_AFTER`]).
fn standalone_ready(listed: bool, failing: bool, stuck: bool) -> bool {
    listed && !failing && !stuck
}

impl Coordinator {
    /// Reads until `stop` fires, then waits for every reader to stop. Acknowledged checkpoints
    /// are stored periodically and as soon as a shard is finished; the caller stores the last
    /// ones after the sink has drained.
    pub async fn run(self, stop: CancellationToken) {
        let mut known: BTreeMap<String, ShardInfo> = BTreeMap::new();
        let mut running: HashSet<String> = HashSet::new();
        let mut tasks: JoinSet<(String, ShardOutcome)> = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut sync = tokio::time::interval(self.settings.shard_sync_interval);
        let mut flush = tokio::time::interval(self.settings.checkpoint_interval);
        let mut health = tokio::time::interval(Duration::from_secs(1));
        let mut listed = false;
        loop {
            if listed {
                self.start_readable(&known, &mut running, &mut tasks, &stop);
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(joined) = tasks.join_next() => match joined {
                    Ok((shard, ShardOutcome::Ended { children, last_sent })) => {
                        running.remove(&shard);
                        self.tracker.mark_end(&shard, last_sent);
                        for child in children {
                            known.entry(child.shard_id.clone()).or_insert_with(|| ShardInfo {
                                shard_id: child.shard_id,
                                parents: child.parents,
                                hash_range: child.hash_range.unwrap_or((0, u128::MAX)),
                                closed: false,
                            });
                        }
                    }
                    Ok((shard, ShardOutcome::Stopped { .. })) => { running.remove(&shard); }
                    Err(e) => warn!(error = %e, "a shard reader panicked"),
                },
                _ = sync.tick() => match self.api.list_shards(&self.stream).await {
                    Ok(shards) => {
                        backoff.reset();
                        listed = true;
                        for s in shards {
                            known.insert(s.shard_id.clone(), s);
                        }
                    }
                    Err(e) => {
                        self.metrics.source_error("ListShards", e.category());
                        let delay = backoff.next_delay().max(Duration::from_millis(100));
                        warn!(error = %e, ?delay, "cannot list shards; retrying");
                        sync.reset_after(delay);
                    }
                },
                _ = flush.tick() => flush_checkpoints(&self.tracker, self.store.as_ref(), &self.metrics).await,
                () = self.tracker.changed.notified() => {
                    flush_checkpoints(&self.tracker, self.store.as_ref(), &self.metrics).await;
                }
                _ = health.tick() => {}
            }
            self.metrics.set_shards_reading(running.len());
            if !stop.is_cancelled() {
                let now = tokio::time::Instant::now();
                let stuck = self.tracker.any_stuck(now, MIN_DELIVERY_STUCK_AFTER);
                let failing = self
                    .metrics
                    .any_failing_reads(now, kinesis_protocol::report::READ_ERROR_AFTER);
                kinesis_observability::server::set_ready(
                    &self.ready,
                    standalone_ready(listed, failing, stuck),
                );
            }
        }
        info!(readers = running.len(), "stopping the shard readers");
        while let Some(joined) = tasks.join_next().await {
            if let Ok((shard, ShardOutcome::Ended { last_sent, .. })) = joined {
                self.tracker.mark_end(&shard, last_sent);
            }
        }
        self.metrics.set_shards_reading(0);
    }

    /// What this coordinator's readers share.
    fn parts(&self) -> ReaderParts {
        ReaderParts {
            api: self.api.clone(),
            stream: self.stream.clone(),
            poll: self.settings.poll.clone(),
            kind: self.settings.kind.clone(),
            tag: self.settings.tag.clone(),
            decoder: self.decoder.clone(),
            transform: self.transform.clone(),
            dead_letters: self.dead_letters.clone(),
            chunks: self.chunks.clone(),
            metrics: self.metrics.clone(),
            tracker: self.tracker.clone(),
        }
    }

    /// Whether every parent of `shard` is finished (or not ours to wait for).
    fn parents_done(&self, shard: &ShardInfo, known: &BTreeMap<String, ShardInfo>) -> bool {
        shard.parents.iter().all(|p| {
            // A parent past retention is no longer listed; one outside `--shards` is another
            // process's to finish.
            !known.contains_key(p)
                || self
                    .settings
                    .only_shards
                    .as_ref()
                    .is_some_and(|only| !only.contains(p))
                || self.tracker.is_saved_finished(p)
        })
    }

    fn start_readable(
        &self,
        known: &BTreeMap<String, ShardInfo>,
        running: &mut HashSet<String>,
        tasks: &mut JoinSet<(String, ShardOutcome)>,
        stop: &CancellationToken,
    ) {
        for shard in known.values() {
            let id = &shard.shard_id;
            if running.contains(id)
                || self.tracker.reached_end(id)
                || self
                    .settings
                    .only_shards
                    .as_ref()
                    .is_some_and(|only| !only.contains(id))
                || (self.settings.strict_order && !self.parents_done(shard, known))
            {
                continue;
            }
            let resume = self.tracker.acked(id);
            // A child of a shard we know starts at its beginning, or records would be skipped.
            let start = if shard.parents.iter().any(|p| known.contains_key(p)) {
                StartAt::TrimHorizon
            } else {
                self.settings.start.clone()
            };
            running.insert(id.clone());
            let reader =
                self.parts()
                    .reader(id, shard.hash_range, resume, start, stop.child_token(), 0);
            let id = id.clone();
            tasks.spawn(async move { (id, reader.await) });
        }
    }
}

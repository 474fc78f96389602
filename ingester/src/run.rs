//! Runs one ingester: wires the readers, decoder, sink and checkpoints together, and shuts down in order.
//!
//! Shutdown order: stop reading, let the sink deliver what it holds (its input closes once every
//! reader has stopped), store the acknowledged checkpoints, exit. If the sink cannot finish
//! within the deadline it is cancelled; what it had not delivered is read again on the next start.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use kinesis_ingester_api::{KinesisIngester, ReadMode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    backoff::Backoff,
    checkpoint::{CheckpointError, CheckpointStore, FileStore, Tracker},
    config,
    decode::{DEFAULT_MAX_DECOMPRESSED_BYTES, Decoder},
    metrics::Metrics,
    server::{self, Health},
    sink::{self, SinkError, SinkStats},
    source::{
        api::{KinesisApi, SourceError, StreamRef},
        coordinator::{Coordinator, CoordinatorSettings, ReaderKind, flush_checkpoints},
        efo::EfoSettings,
        shard::PollSettings,
    },
};

/// Options that are not part of the KinesisIngester resource.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Directory of the local checkpoint store.
    pub checkpoint_dir: PathBuf,
    /// Read only these shards (all when `None`).
    pub only_shards: Option<HashSet<String>>,
    /// How often acknowledged checkpoints are stored.
    pub checkpoint_interval: Duration,
    /// Time allowed from the shutdown signal to exit.
    pub shutdown_timeout: Duration,
    /// Chunks buffered between the readers and the sink (each is one GetRecords page).
    pub channel_capacity: usize,
    /// Address of `/metrics`, `/healthz` and `/readyz`; none when `None`.
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            checkpoint_dir: PathBuf::from("checkpoints"),
            only_shards: None,
            checkpoint_interval: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            channel_capacity: 16,
            metrics_addr: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Everything read was delivered and checkpointed.
    Clean,
    /// The deadline passed before the sink finished; undelivered records will be read again.
    DeadlineExceeded,
}

/// Errors that stop an ingester.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The checkpoint store cannot be opened or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The sink cannot be built or failed for good.
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    /// The metrics endpoint cannot be bound.
    #[error("cannot serve metrics on {addr}: {source}; pick another --metrics-addr")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The spec is invalid.
    #[error("{0}")]
    Config(String),
    /// The enhanced fan-out consumer cannot be registered.
    #[error("cannot register the enhanced fan-out consumer: {0}")]
    Consumer(#[source] SourceError),
}

impl RunError {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Checkpoint(_) => "checkpoint",
            Self::Sink(_) => "sink",
            Self::Metrics { .. } => "metrics",
            Self::Config(_) => "config",
            Self::Consumer(_) => "consumer",
        }
    }
}

/// Reads `ingester`'s stream through `api` until `shutdown` fires.
pub async fn run(
    ingester: &KinesisIngester,
    api: Arc<dyn KinesisApi>,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let spec = &ingester.spec;
    let stream = config::stream_ref(ingester);
    let start = config::start_at(ingester).map_err(RunError::Config)?;
    let store: Arc<dyn CheckpointStore> =
        Arc::new(FileStore::open(&options.checkpoint_dir, stream.name())?);
    let stored = store.load().await?;
    info!(stream = stream.name(), checkpoints = stored.len(), dir = %options.checkpoint_dir.display(), "starting");
    let tracker = Arc::new(Tracker::new(stored.into_values()));
    let kind = match spec.read.mode {
        ReadMode::Polling => ReaderKind::Polling,
        ReadMode::EnhancedFanOut => {
            let name = config::consumer_name(ingester);
            match register_consumer(api.as_ref(), &stream, &name, &shutdown).await? {
                Some(arn) => ReaderKind::EnhancedFanOut(EfoSettings::new(Arc::from(arn))),
                None => return Ok(RunOutcome::Clean),
            }
        }
    };

    let sink_stats = Arc::new(SinkStats::default());
    let metrics = Arc::new(Metrics::new(sink_stats.clone()));
    let ready = Arc::new(AtomicBool::new(false));
    let server_stop = CancellationToken::new();
    if let Some(addr) = options.metrics_addr {
        let health = Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        };
        let bound = server::serve(addr, health, server_stop.clone())
            .await
            .map_err(|source| RunError::Metrics { addr, source })?;
        info!(%bound, "serving /metrics, /healthz and /readyz");
    }

    let (chunks_tx, chunks_rx) = mpsc::channel(options.channel_capacity.max(1));
    let ack_tracker = tracker.clone();
    let ack: crate::record::AckFn =
        Arc::new(move |shard, position| ack_tracker.ack(shard, position));
    let sink_cancel = CancellationToken::new();
    let mut sink_task = sink::spawn_sink(
        &spec.sink,
        stream.name(),
        chunks_rx,
        ack,
        sink_cancel.clone(),
        sink_stats.clone(),
    )?;
    let dead_letters = Arc::new(tokio::sync::Mutex::new(sink::dead_letter_writer(
        &spec.sink, sink_stats,
    )));

    let stop_reading = CancellationToken::new();
    let coordinator = Coordinator {
        api,
        stream: stream.clone(),
        settings: CoordinatorSettings {
            start,
            strict_order: spec.read.strict_order,
            shard_sync_interval: spec.read.shard_sync_interval.get(),
            checkpoint_interval: options.checkpoint_interval,
            only_shards: options.only_shards.clone(),
            poll: PollSettings {
                poll_interval: spec.read.poll_interval.get(),
                min_call_gap: Duration::from_millis(200),
                max_records: spec.read.max_records_per_call,
            },
            kind,
            tag: spec.sink.tag.as_deref().map(Arc::from),
        },
        tracker: tracker.clone(),
        store: store.clone(),
        decoder: Arc::new(Decoder::new(&spec.decode, DEFAULT_MAX_DECOMPRESSED_BYTES)),
        dead_letters,
        chunks: chunks_tx,
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let mut readers = tokio::spawn(coordinator.run(stop_reading.clone()));

    // Run until asked to stop, or until the sink fails for good.
    let mut sink_done = None;
    tokio::select! {
        () = shutdown.cancelled() => info!("shutting down: stop reading, deliver, checkpoint"),
        res = &mut sink_task => sink_done = Some(res),
        _ = &mut readers => warn!("the shard readers stopped on their own"),
    }
    server::set_ready(&ready, false);
    stop_reading.cancel();
    let deadline = tokio::time::Instant::now() + options.shutdown_timeout;
    let mut outcome = RunOutcome::Clean;

    if tokio::time::timeout_at(deadline, &mut readers)
        .await
        .is_err()
    {
        warn!("shard readers did not stop in time");
        readers.abort();
        outcome = RunOutcome::DeadlineExceeded;
    }
    let sink_result = match sink_done {
        Some(res) => Some(res),
        None => match tokio::time::timeout_at(deadline, &mut sink_task).await {
            Ok(res) => Some(res),
            Err(_) => {
                warn!(timeout = ?options.shutdown_timeout, "the sink did not finish in time; undelivered records will be read again on the next start");
                sink_cancel.cancel();
                outcome = RunOutcome::DeadlineExceeded;
                let _ = sink_task.await;
                None
            }
        },
    };
    flush_checkpoints(&tracker, store.as_ref(), &metrics).await;
    server_stop.cancel();
    match sink_result {
        Some(Ok(Ok(()))) | None => {
            info!(?outcome, "stopped");
            Ok(outcome)
        }
        Some(Ok(Err(e))) => {
            error!(error = %e, "the sink failed");
            Err(e.into())
        }
        Some(Err(join)) => Err(RunError::Config(format!("the sink task panicked: {join}"))),
    }
}

/// Registers (or finds) the consumer `name` and waits until it is ACTIVE. Throttling and
/// transient errors are retried with backoff; `None` if `shutdown` fires first.
async fn register_consumer(
    api: &dyn KinesisApi,
    stream: &StreamRef,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<Option<String>, RunError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let attempt = async {
            let stream_arn = api.stream_arn(stream).await?;
            api.register_consumer(&stream_arn, name).await
        };
        let result = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            result = attempt => result,
        };
        match result {
            Ok(arn) => {
                info!(consumer = name, %arn, "enhanced fan-out consumer is active");
                return Ok(Some(arn));
            }
            Err(e @ (SourceError::AccessDenied { .. } | SourceError::NotFound { .. })) => {
                return Err(RunError::Consumer(e));
            }
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(error = %e, ?delay, "cannot register the consumer yet; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

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

use futures::StreamExt;
use kinesis_ingester_api::{KinesisIngester, KinesisShardAssignment, ReadMode, ReadSpec, bounds};
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use kinesis_client::{
    api::{KinesisApi, SourceError, StreamRef},
    backoff::Backoff,
};
use kinesis_observability::server::{self, Health};

use crate::{
    checkpoint::{CheckpointError, CheckpointStore, FileStore, Tracker},
    decode::{DEFAULT_MAX_DECOMPRESSED_BYTES, Decoder},
    fleet::{self, FleetError},
    metrics::Metrics,
    sink::{self, Deliverable, SinkError, SinkStats},
    source::{
        coordinator::{
            Coordinator, CoordinatorSettings, ReaderKind, ReaderParts, flush_checkpoints,
        },
        efo::EfoSettings,
        shard::PollSettings,
    },
    transform::Transform,
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
    /// Chunks buffered between the readers and the sink (each is one GetRecords page); `None`
    /// takes the spec's `read.bufferPages`.
    pub channel_capacity: Option<usize>,
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
            channel_capacity: None,
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

/// Pages buffered between the readers and the sink: `--buffer-pages` when given, else the
/// spec's `read.bufferPages`; at least 1.
fn buffer_pages(options: &RunOptions, read: &ReadSpec) -> usize {
    options
        .channel_capacity
        .unwrap_or_else(|| usize::try_from(read.buffer_pages).unwrap_or(1))
        .max(1)
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
    /// Fleet mode failed (another process took the worker over, or the API cannot be used).
    #[error(transparent)]
    Fleet(#[from] FleetError),
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
            Self::Fleet(e) => e.category(),
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
    let stream = ingester.stream_ref();
    let start = ingester.start_at().map_err(RunError::Config)?;
    let store: Arc<dyn CheckpointStore> =
        Arc::new(FileStore::open(&options.checkpoint_dir, stream.name())?);
    let stored = store.load().await?;
    info!(stream = stream.name(), checkpoints = stored.len(), dir = %options.checkpoint_dir.display(), "starting");
    let tracker = Arc::new(Tracker::new(stored.into_values()));
    let kind = match spec.read.mode {
        ReadMode::Polling => ReaderKind::Polling,
        ReadMode::EnhancedFanOut => {
            let name = ingester.consumer_name();
            match register_consumer(api.as_ref(), &stream, &name, &shutdown).await? {
                Some(arn) => ReaderKind::EnhancedFanOut(EfoSettings::new(Arc::from(arn))),
                None => return Ok(RunOutcome::Clean),
            }
        }
    };

    let (mut pipeline, parts) =
        Pipeline::start(ingester, api, &tracker, &options, kind, Deliverable::all()).await?;
    let stop_reading = CancellationToken::new();
    let coordinator = Coordinator {
        api: parts.api,
        stream: parts.stream,
        settings: CoordinatorSettings {
            start,
            strict_order: spec.read.strict_order,
            shard_sync_interval: bounds::SHARD_SYNC_INTERVAL.clamp(&spec.read.shard_sync_interval),
            checkpoint_interval: options.checkpoint_interval,
            only_shards: options.only_shards.clone(),
            poll: parts.poll,
            kind: parts.kind,
            tag: parts.tag,
        },
        tracker: tracker.clone(),
        store: store.clone(),
        decoder: parts.decoder,
        transform: parts.transform,
        dead_letters: parts.dead_letters,
        chunks: parts.chunks,
        metrics: pipeline.metrics.clone(),
        ready: pipeline.ready.clone(),
    };
    let readers = tokio::spawn(coordinator.run(stop_reading.clone()));
    let stopped = pipeline
        .drive(readers, stop_reading, &shutdown, options.shutdown_timeout)
        .await;
    flush_checkpoints(&tracker, store.as_ref(), &pipeline.metrics).await;
    pipeline.finish(stopped.outcome, stopped.sink)
}

/// Runs one worker of a fleet (docs/design.md §6): the spec, the shards and the checkpoints
/// come from the Kubernetes API through `started`; on shutdown every shard is released in one
/// final status write with `stopped: true`.
pub async fn run_fleet(
    started: fleet::Started,
    fleet_options: &fleet::FleetOptions,
    api: Arc<dyn KinesisApi>,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunOutcome, RunError> {
    let fleet::Started {
        client,
        ingester,
        worker,
        holder,
        written_at,
        waited_for_twin,
    } = started;
    let start = ingester.start_at().map_err(RunError::Config)?;
    let tracker = Arc::new(Tracker::strict());
    let deliverable = Deliverable::only_set();
    let (mut pipeline, parts) = Pipeline::start(
        &ingester,
        api,
        &tracker,
        &options,
        ReaderKind::Polling,
        deliverable.clone(),
    )
    .await?;
    let namespace = fleet_options.namespace.as_str();
    let tables: Api<KinesisShardAssignment> = Api::namespaced(client.clone(), namespace);
    let selector = format!("metadata.name={}", fleet_options.ingester);
    let tables = watcher(tables, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let reporter = fleet::Reporter::new(
        Api::namespaced(client, namespace),
        holder,
        worker.clone(),
        pipeline.metrics.clone(),
        fleet_options.timings.report_interval(),
    );
    let manager = fleet::Worker {
        me: fleet_options.pod_name.clone(),
        ingester_uid: worker.spec.ingester_uid.clone(),
        parts,
        enhanced_fan_out: ingester.spec.read.mode == ReadMode::EnhancedFanOut,
        default_start: start,
        tracker: tracker.clone(),
        metrics: pipeline.metrics.clone(),
        sinks: pipeline.sinks.clone(),
        stuck_after: fleet_options.timings.delivery_stuck_after(),
        ready: pipeline.ready.clone(),
        sink_flush: pipeline.sink_flush.clone(),
        sink_cancel: pipeline.sink_cancel.clone(),
        deliverable,
        tables,
        carried: worker.status.map(|s| s.shards).unwrap_or_default(),
        report_interval: fleet_options.timings.report_interval(),
        self_fence_after: fleet_options.timings.self_fence_after(),
        drain_timeout: options.shutdown_timeout,
        written_at,
        self_fenced: waited_for_twin,
    };
    info!(worker = %fleet_options.pod_name, "reading the shards the operator assigns");
    let stop_reading = CancellationToken::new();
    let readers = tokio::spawn(manager.run(reporter, stop_reading.clone()));
    let stopped = pipeline
        .drive(readers, stop_reading, &shutdown, options.shutdown_timeout)
        .await;
    match stopped.readers {
        Some(Ok(Ok(exit))) => match exit.reporter {
            Some(mut reporter) => {
                let entries = fleet::final_entries(exit.entries, &tracker, &pipeline.metrics);
                let write = reporter.write(
                    true,
                    |holder, stopped, spec| {
                        kinesis_protocol::report::build_status(
                            holder,
                            jiff::Timestamp::now(),
                            stopped,
                            &entries,
                            spec,
                            // Every entry is frozen: released or finished.
                            |_| kinesis_protocol::report::LiveShard::default(),
                            &kinesis_protocol::report::SinkHealth {
                                stuck_after: fleet_options.timings.delivery_stuck_after(),
                                last_error: None,
                                failing_sink: None,
                            },
                        )
                    },
                    |_| {},
                );
                match write.await {
                    Ok(fleet::Written::Ok(_)) => {
                        info!(
                            shards = entries.len(),
                            "released every shard and marked the worker stopped"
                        );
                    }
                    Ok(fleet::Written::Failed) => {
                        warn!("the final status write failed; the operator will expire this worker")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => warn!("no final status write: the status writer failed"),
        },
        Some(Ok(Err(e))) => {
            pipeline.server_stop.cancel();
            return Err(e.into());
        }
        Some(Err(join)) => warn!(error = %join, "the worker task panicked"),
        None => {}
    }
    pipeline.finish(stopped.outcome, stopped.sink)
}

type SinkResult = Result<Result<(), SinkError>, tokio::task::JoinError>;

/// How [`Pipeline::drive`] ended.
struct Stopped<T> {
    outcome: RunOutcome,
    /// What the readers returned, unless they missed the deadline.
    readers: Option<Result<T, tokio::task::JoinError>>,
    /// What the sink returned, unless it missed the deadline.
    sink: Option<SinkResult>,
}

/// What standalone and fleet mode share: metrics, the HTTP endpoints and the sink.
struct Pipeline {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    server_stop: CancellationToken,
    sink_task: JoinHandle<Result<(), SinkError>>,
    sink_cancel: CancellationToken,
    sink_flush: sink::Flush,
    /// Each sink's counters.
    sinks: Arc<[sink::SinkHandle]>,
}

impl Pipeline {
    /// Serves the endpoints and starts the sink. Returns what the readers need; the sink's input
    /// closes once every copy of it is dropped.
    async fn start(
        ingester: &KinesisIngester,
        api: Arc<dyn KinesisApi>,
        tracker: &Arc<Tracker>,
        options: &RunOptions,
        kind: ReaderKind,
        deliverable: Deliverable,
    ) -> Result<(Self, ReaderParts), RunError> {
        let spec = &ingester.spec;
        let stream = ingester.stream_ref();
        let network = crate::net::load(spec).map_err(|e| RunError::Config(e.to_string()))?;
        let transform = Transform::from_spec_with(spec, &network)
            .map_err(|e| RunError::Config(e.to_string()))?;
        let sink_stats = Arc::new(SinkStats::default());
        let ack_tracker = tracker.clone();
        let ack: crate::record::AckFn =
            Arc::new(move |shard, position| ack_tracker.ack(shard, position));
        let sink_cancel = CancellationToken::new();
        let sinks = sink::spawn_sinks(
            spec,
            stream.name(),
            ack,
            &sink_stats,
            sink::SinkSettings {
                capacity: buffer_pages(options, &spec.read),
                cancel: sink_cancel.clone(),
                deliverable,
                network,
            },
        )?;
        let metrics = Arc::new(
            Metrics::new(sink_stats.clone()).with_sinks(sinks.sinks.clone(), sinks.routes.clone()),
        );
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

        let dead_letters = Arc::new(tokio::sync::Mutex::new(sink::reader_dead_letter_writer(
            spec,
            sink_stats.clone(),
        )));
        let parts = ReaderParts {
            api,
            stream,
            poll: PollSettings {
                poll_interval: bounds::POLL_INTERVAL.clamp(&spec.read.poll_interval),
                min_call_gap: Duration::from_millis(200),
                max_records: spec.read.max_records_per_call,
            },
            kind,
            // With several sinks, each puts its own tag into its records.
            tag: spec
                .sink
                .as_ref()
                .and_then(|s| s.tag.as_deref())
                .map(Arc::from),
            decoder: Arc::new(Decoder::new(&spec.decode, DEFAULT_MAX_DECOMPRESSED_BYTES)),
            transform,
            dead_letters,
            chunks: sinks.outlets,
            metrics: metrics.clone(),
            tracker: tracker.clone(),
        };
        let pipeline = Self {
            metrics,
            ready,
            server_stop,
            sink_task: sinks.task,
            sink_cancel,
            sink_flush: sinks.flush,
            sinks: sinks.sinks.into(),
        };
        Ok((pipeline, parts))
    }

    /// Runs until `shutdown` fires, the sink fails for good or the readers stop on their own;
    /// then stops in order: stop reading, wait for the readers, let the sink deliver what it
    /// holds, all within `timeout`.
    async fn drive<T>(
        &mut self,
        mut readers: JoinHandle<T>,
        stop_reading: CancellationToken,
        shutdown: &CancellationToken,
        timeout: Duration,
    ) -> Stopped<T> {
        let mut sink_done = None;
        let mut readers_done = None;
        tokio::select! {
            () = shutdown.cancelled() => info!("shutting down: stop reading, deliver, checkpoint"),
            res = &mut self.sink_task => sink_done = Some(res),
            res = &mut readers => {
                warn!("the shard readers stopped on their own");
                readers_done = Some(res);
            }
        }
        server::set_ready(&self.ready, false);
        stop_reading.cancel();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut outcome = RunOutcome::Clean;

        if readers_done.is_none() {
            match tokio::time::timeout_at(deadline, &mut readers).await {
                Ok(res) => readers_done = Some(res),
                Err(_) => {
                    warn!("shard readers did not stop in time");
                    readers.abort();
                    outcome = RunOutcome::DeadlineExceeded;
                }
            }
        }
        let sink = match sink_done {
            Some(res) => Some(res),
            None => match tokio::time::timeout_at(deadline, &mut self.sink_task).await {
                Ok(res) => Some(res),
                Err(_) => {
                    warn!(
                        ?timeout,
                        "the sink did not finish in time; undelivered records will be read again on the next start"
                    );
                    self.sink_cancel.cancel();
                    outcome = RunOutcome::DeadlineExceeded;
                    let _ = (&mut self.sink_task).await;
                    None
                }
            },
        };
        Stopped {
            outcome,
            readers: readers_done,
            sink,
        }
    }

    /// Stops the endpoints and reports how the run ended.
    fn finish(self, outcome: RunOutcome, sink: Option<SinkResult>) -> Result<RunOutcome, RunError> {
        self.server_stop.cancel();
        match sink {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_pages_come_from_the_flag_else_from_the_spec() {
        let spec = ReadSpec {
            buffer_pages: 64,
            ..ReadSpec::default()
        };
        let from_spec = RunOptions::default();
        assert_eq!(buffer_pages(&from_spec, &spec), 64);
        let flag = RunOptions {
            channel_capacity: Some(4),
            ..RunOptions::default()
        };
        assert_eq!(buffer_pages(&flag, &spec), 4, "--buffer-pages wins");
        let zero = RunOptions {
            channel_capacity: Some(0),
            ..RunOptions::default()
        };
        assert_eq!(buffer_pages(&zero, &spec), 1, "a channel needs one slot");
    }
}

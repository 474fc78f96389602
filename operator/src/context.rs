//! The operator's shared state: the client, event recorder, metrics and settings, plus the per-ingester memory (worker liveness, handoff timers, topology cache) that is rebuilt from scratch after a restart.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use kube::{Client, runtime::events::Recorder};
use tokio::time::Instant;

use kinesis_protocol::handoff::{Expiries, Timers};

use crate::{
    allow::AllowLists, metrics::Metrics, reconcile::workload::WorkloadSettings, topology::Topology,
};

/// Operator settings from flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How worker pods are built.
    pub workload: WorkloadSettings,
    /// A worker whose object has not changed for this long is expired.
    pub worker_lease: Duration,
    /// Drain and start expiries.
    pub expiries: Expiries,
    /// Requeue period when nothing is in flight (expiry checks, lag in status).
    pub requeue: Duration,
    /// Requeue period while handoffs are in flight.
    pub busy_requeue: Duration,
    /// Lag-only status changes are written at most this often (the workers' report interval);
    /// lag jumps and everything else are written at once.
    pub status_interval: Duration,
    /// How long deletion waits for workers to stop before it fences what is left.
    pub cleanup_timeout: Duration,
    /// What a spec may make the operator call with its own identity (nothing beyond its own
    /// account and the AWS endpoints by default).
    pub allow: AllowLists,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            workload: WorkloadSettings {
                default_image: format!("kinesis-ingester:{}", env!("CARGO_PKG_VERSION")),
                worker_args: Vec::new(),
                grace_period_seconds: 45,
            },
            worker_lease: Duration::from_secs(14),
            expiries: Expiries {
                drain: Duration::from_secs(60),
                start: Duration::from_secs(60),
                gone: Duration::from_secs(14),
            },
            requeue: Duration::from_secs(5),
            busy_requeue: Duration::from_secs(2),
            status_interval: Duration::from_secs(6),
            cleanup_timeout: Duration::from_secs(300),
            allow: AllowLists::default(),
        }
    }
}

/// What the operator remembers about one ingester between reconciles.
#[derive(Debug, Default)]
pub struct Memory {
    /// Per worker: the last `resourceVersion` seen and when it was first seen.
    pub seen: HashMap<String, (String, Instant)>,
    /// Handoff timers.
    pub timers: Timers,
    /// The last shard listing.
    pub topology: Option<Topology>,
    /// List the stream on the next pass without waiting for `shardSyncInterval` (a parent
    /// finished, so children may have appeared).
    pub relist: bool,
    /// Consecutive failures, for backoff.
    pub failures: u32,
    /// When status was last written.
    pub status_written: Option<Instant>,
    /// When the shard table was last written (writes are coalesced).
    pub table_written: Option<std::time::Instant>,
    /// Hash of the workload last applied, and when.
    pub applied: Option<(u64, Instant)>,
    /// When deletion started waiting for workers.
    pub cleanup_since: Option<Instant>,
    /// The autoscaler's recent recommendations.
    pub autoscale: crate::autoscale::History,
    /// When the stream was last found re-created, and what the event said.
    pub recreated: Option<(Instant, String)>,
}

/// Shared by every reconcile.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    memory: Mutex<HashMap<String, Memory>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Context {
    /// A context.
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            settings,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// The memory of all ingesters, keyed by `namespace/name`.
    pub fn memory(&self) -> MutexGuard<'_, HashMap<String, Memory>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

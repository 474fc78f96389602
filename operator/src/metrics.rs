//! Prometheus metrics of the operator, all named `kinesis_operator_*`, and the `/metrics`, `/healthz` and `/readyz` endpoints.
//!
//! Labels are `&'static str` categories plus the namespace and name of an ingester; there are
//! never shard or worker labels.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    result: &'static str,
    error_category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    object: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Labels naming one ingester.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngesterLabels {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngesterState {
    namespace: String,
    name: String,
    state: &'static str,
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    duration: Histogram,
    writes: Family<WriteLabels, Counter>,
    handoffs: Family<Reason, Counter>,
    fences: Family<Reason, Counter>,
    rebalances: Counter,
    shards: Family<IngesterState, Gauge>,
    workers: Family<IngesterState, Gauge>,
    max_shards_per_worker: Family<IngesterLabels, Gauge>,
    lag: Family<IngesterLabels, Gauge>,
    topology_errors: Family<Reason, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kinesis_operator");
        let m = Self {
            registry: Registry::default(),
            reconciles: Family::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            writes: Family::default(),
            handoffs: Family::default(),
            fences: Family::default(),
            rebalances: Counter::default(),
            shards: Family::default(),
            workers: Family::default(),
            max_shards_per_worker: Family::default(),
            lag: Family::default(),
            topology_errors: Family::default(),
            leader: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "reconciliations",
            "Reconciles by result and error category",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            m.duration.clone(),
        );
        r.register(
            "api_writes",
            "Kubernetes API writes by object kind and result",
            m.writes.clone(),
        );
        r.register(
            "handoffs",
            "Shards that changed owner, by reason",
            m.handoffs.clone(),
        );
        r.register(
            "fences",
            "Fences written on workers, by reason",
            m.fences.clone(),
        );
        r.register(
            "rebalances",
            "Plans that moved at least one shard between live workers",
            m.rebalances.clone(),
        );
        r.register("shards", "Shards of an ingester by state", m.shards.clone());
        r.register(
            "workers",
            "Workers of an ingester by liveness",
            m.workers.clone(),
        );
        r.register(
            "max_shards_per_worker",
            "Most shards owned by one worker of an ingester",
            m.max_shards_per_worker.clone(),
        );
        r.register(
            "max_millis_behind_latest",
            "Largest MillisBehindLatest of an ingester; absent while any readable shard's lag is unknown",
            m.lag.clone(),
        );
        r.register(
            "topology_refresh_errors",
            "Failed ListShards refreshes by category",
            m.topology_errors.clone(),
        );
        r.register("leader", "1 while this replica leads", m.leader.clone());
        Self { registry, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One reconcile ended.
    pub fn reconciled(&self, seconds: f64, error: Option<&'static str>) {
        self.duration.observe(seconds);
        let labels = ReconcileLabels {
            result: if error.is_some() { "error" } else { "ok" },
            error_category: error.unwrap_or(""),
        };
        self.reconciles.get_or_create(&labels).inc();
    }

    /// One API write: `result` is `ok`, `conflict` or `error`.
    pub fn write(&self, object: &'static str, result: &'static str) {
        self.writes
            .get_or_create(&WriteLabels { object, result })
            .inc();
    }

    /// A shard changed owner.
    pub fn handoff(&self, reason: &'static str) {
        self.handoffs.get_or_create(&Reason { reason }).inc();
    }

    /// A fence was written.
    pub fn fence(&self, reason: &'static str) {
        self.fences.get_or_create(&Reason { reason }).inc();
    }

    /// A plan moved shards between live workers.
    pub fn rebalanced(&self) {
        self.rebalances.inc();
    }

    /// ListShards failed.
    pub fn topology_error(&self, category: &'static str) {
        self.topology_errors
            .get_or_create(&Reason { reason: category })
            .inc();
    }

    /// Leadership changed.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The fleet gauges of one ingester.
    pub fn set_fleet(&self, id: &IngesterLabels, fleet: &FleetGauges) {
        for (state, n) in &fleet.shards {
            let l = IngesterState {
                namespace: id.namespace.clone(),
                name: id.name.clone(),
                state,
            };
            self.shards.get_or_create(&l).set(*n);
        }
        for (state, n) in &fleet.workers {
            let l = IngesterState {
                namespace: id.namespace.clone(),
                name: id.name.clone(),
                state,
            };
            self.workers.get_or_create(&l).set(*n);
        }
        self.max_shards_per_worker
            .get_or_create(id)
            .set(fleet.max_shards_per_worker);
        // An unknown lag is no series at all, never 0: alert on its absence.
        match fleet.max_millis_behind_latest {
            Some(ms) => {
                self.lag.get_or_create(id).set(ms);
            }
            None => {
                self.lag.remove(id);
            }
        }
    }

    /// Removes the series of a deleted ingester.
    pub fn forget(&self, id: &IngesterLabels) {
        for state in ["pending", "reading", "draining"] {
            self.shards.remove(&IngesterState {
                namespace: id.namespace.clone(),
                name: id.name.clone(),
                state,
            });
        }
        for state in ["live", "not_started", "stopped", "expired"] {
            self.workers.remove(&IngesterState {
                namespace: id.namespace.clone(),
                name: id.name.clone(),
                state,
            });
        }
        self.max_shards_per_worker.remove(id);
        self.lag.remove(id);
    }
}

/// Fleet gauges of one ingester, computed by the status step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetGauges {
    /// Shards by state label.
    pub shards: Vec<(&'static str, i64)>,
    /// Workers by liveness label.
    pub workers: Vec<(&'static str, i64)>,
    /// Most shards owned by one worker.
    pub max_shards_per_worker: i64,
    /// Largest MillisBehindLatest; `None` while any readable shard's lag is unknown.
    pub max_millis_behind_latest: Option<i64>,
}

impl kinesis_observability::server::Encode for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (ready while leading or standing by healthily)
/// on `addr` until `cancel` fires, with the ingester's endpoints; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let health = kinesis_observability::server::Health { metrics, ready };
    kinesis_observability::server::serve(addr, health, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_bounded_labels() {
        let m = Metrics::new();
        m.reconciled(0.02, Some("stream_not_found"));
        m.write("assignment", "conflict");
        m.fence("expired");
        let id = IngesterLabels {
            namespace: "ns".into(),
            name: "orders".into(),
        };
        m.set_fleet(
            &id,
            &FleetGauges {
                shards: vec![("reading", 4)],
                workers: vec![("live", 2)],
                max_shards_per_worker: 2,
                max_millis_behind_latest: Some(1500),
            },
        );
        let text = m.encode();
        for want in [
            "kinesis_operator_reconciliations_total{result=\"error\",error_category=\"stream_not_found\"} 1",
            "kinesis_operator_api_writes_total{object=\"assignment\",result=\"conflict\"} 1",
            "kinesis_operator_fences_total{reason=\"expired\"} 1",
            "kinesis_operator_shards{namespace=\"ns\",name=\"orders\",state=\"reading\"} 4",
            "kinesis_operator_max_shards_per_worker{namespace=\"ns\",name=\"orders\"} 2",
            "kinesis_operator_max_millis_behind_latest{namespace=\"ns\",name=\"orders\"} 1500",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        m.set_fleet(
            &id,
            &FleetGauges {
                max_millis_behind_latest: None,
                ..FleetGauges::default()
            },
        );
        assert!(
            !m.encode()
                .contains("kinesis_operator_max_millis_behind_latest{"),
            "an unknown lag is no series, never 0"
        );
        m.forget(&id);
        assert!(!m.encode().contains("state=\"reading\""));
    }
}

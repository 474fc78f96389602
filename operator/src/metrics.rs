//! Prometheus metrics of the operator, all named `kinesis_operator_*`, and the `/metrics`, `/healthz` and `/readyz` endpoints.
//!
//! Every series but the reconcile duration and `leader` carries the namespace and name of an
//! ingester, plus `&'static str` categories; there are never shard or worker labels. A deleted
//! ingester's series are removed.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    namespace: String,
    name: String,
    result: &'static str,
    error_category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    namespace: String,
    name: String,
    object: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngesterReason {
    namespace: String,
    name: String,
    reason: &'static str,
}

/// Labels naming one ingester.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    namespace: String,
    name: String,
    stream: String,
}

/// Label sets that name an ingester, so that its series can be removed when it is deleted.
trait OfIngester {
    fn of(&self, id: &IngesterLabels) -> bool;
}

macro_rules! of_ingester {
    ($($t:ty),*) => {$(
        impl OfIngester for $t {
            fn of(&self, id: &IngesterLabels) -> bool {
                self.namespace == id.namespace && self.name == id.name
            }
        }
    )*};
}
of_ingester!(
    ReconcileLabels,
    WriteLabels,
    IngesterReason,
    IngesterLabels,
    IngesterState,
    InfoLabels
);

/// A metric family per ingester that remembers its label sets (prometheus-client cannot list
/// them), so that [`Metrics::forget`] removes every series of a deleted ingester.
#[derive(Debug)]
struct PerIngester<L, M> {
    family: Family<L, M>,
    seen: Mutex<HashSet<L>>,
}

impl<L, M> Default for PerIngester<L, M>
where
    L: Clone + std::hash::Hash + Eq,
    M: Default,
{
    fn default() -> Self {
        Self {
            family: Family::default(),
            seen: Mutex::new(HashSet::new()),
        }
    }
}

impl<L, M> PerIngester<L, M>
where
    L: Clone + std::hash::Hash + Eq + OfIngester,
    M: Default,
{
    fn with<R>(&self, labels: L, f: impl FnOnce(&M) -> R) -> R {
        let r = f(&self.family.get_or_create(&labels));
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(labels);
        r
    }

    fn remove(&self, labels: &L) {
        self.family.remove(labels);
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(labels);
    }

    fn forget(&self, id: &IngesterLabels) {
        self.forget_except(id, None);
    }

    /// Removes the series of `id` other than `keep`, which stays exported throughout (a scrape
    /// never misses it).
    fn forget_except(&self, id: &IngesterLabels, keep: Option<&L>) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|l| {
            if l.of(id) && Some(l) != keep {
                self.family.remove(l);
                false
            } else {
                true
            }
        });
    }
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: PerIngester<ReconcileLabels, Counter>,
    duration: Histogram,
    writes: PerIngester<WriteLabels, Counter>,
    handoffs: PerIngester<IngesterReason, Counter>,
    fences: PerIngester<IngesterReason, Counter>,
    rebalances: PerIngester<IngesterLabels, Counter>,
    shards: PerIngester<IngesterState, Gauge>,
    workers: PerIngester<IngesterState, Gauge>,
    max_shards_per_worker: PerIngester<IngesterLabels, Gauge>,
    lag: PerIngester<IngesterLabels, Gauge>,
    ready: PerIngester<IngesterLabels, Gauge>,
    degraded: PerIngester<IngesterLabels, Gauge>,
    suspended: PerIngester<IngesterLabels, Gauge>,
    info: PerIngester<InfoLabels, Gauge>,
    topology_errors: PerIngester<IngesterReason, Counter>,
    worker_reports: Family<ReportLabels, Counter>,
    leader: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReportLabels {
    result: &'static str,
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
            reconciles: PerIngester::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            writes: PerIngester::default(),
            handoffs: PerIngester::default(),
            fences: PerIngester::default(),
            rebalances: PerIngester::default(),
            shards: PerIngester::default(),
            workers: PerIngester::default(),
            max_shards_per_worker: PerIngester::default(),
            lag: PerIngester::default(),
            ready: PerIngester::default(),
            degraded: PerIngester::default(),
            suspended: PerIngester::default(),
            info: PerIngester::default(),
            topology_errors: PerIngester::default(),
            worker_reports: Family::default(),
            leader: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "reconciliations",
            "Reconciles of an ingester by result and error category",
            m.reconciles.family.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            m.duration.clone(),
        );
        r.register(
            "api_writes",
            "Kubernetes API writes for an ingester by object kind and result",
            m.writes.family.clone(),
        );
        r.register(
            "handoffs",
            "Shards of an ingester that changed owner, by reason",
            m.handoffs.family.clone(),
        );
        r.register(
            "fences",
            "Fences written on workers of an ingester, by reason",
            m.fences.family.clone(),
        );
        r.register(
            "rebalances",
            "Plans of an ingester that moved at least one shard between live workers",
            m.rebalances.family.clone(),
        );
        r.register(
            "shards",
            "Shards of an ingester by state",
            m.shards.family.clone(),
        );
        r.register(
            "workers",
            "Workers of an ingester by liveness",
            m.workers.family.clone(),
        );
        r.register(
            "max_shards_per_worker",
            "Most shards owned by one worker of an ingester",
            m.max_shards_per_worker.family.clone(),
        );
        r.register(
            "max_millis_behind_latest",
            "Largest MillisBehindLatest of an ingester; absent while any readable shard's lag is unknown",
            m.lag.family.clone(),
        );
        r.register(
            "ready",
            "1 while the ingester's Ready condition is True, 0 while it is False",
            m.ready.family.clone(),
        );
        r.register(
            "degraded",
            "1 while the ingester's Degraded condition is True",
            m.degraded.family.clone(),
        );
        r.register(
            "suspended",
            "1 while the ingester is suspended (spec.suspend): not Ready on purpose",
            m.suspended.family.clone(),
        );
        r.register(
            "ingester_info",
            "1 for every ingester, with the stream it reads",
            m.info.family.clone(),
        );
        r.register(
            "topology_refresh_errors",
            "Failed ListShards refreshes of an ingester by category",
            m.topology_errors.family.clone(),
        );
        r.register(
            "worker_reports",
            "Worker status writes seen, by whether they triggered a reconcile (`reconcile`) or only wait for the periodic pass (`skipped`: positions, lag and renew time alone)",
            m.worker_reports.clone(),
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

    /// One reconcile of `id` ended.
    pub fn reconciled(&self, id: &IngesterLabels, seconds: f64, error: Option<&'static str>) {
        self.duration.observe(seconds);
        let labels = ReconcileLabels {
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            result: if error.is_some() { "error" } else { "ok" },
            error_category: error.unwrap_or(""),
        };
        self.reconciles.with(labels, |c| c.inc());
    }

    /// One API write for `id`: `result` is `ok`, `conflict` or `error`.
    pub fn write(&self, id: &IngesterLabels, object: &'static str, result: &'static str) {
        let labels = WriteLabels {
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            object,
            result,
        };
        self.writes.with(labels, |c| c.inc());
    }

    /// A shard of `id` changed owner.
    pub fn handoff(&self, id: &IngesterLabels, reason: &'static str) {
        self.handoffs.with(reason_of(id, reason), |c| c.inc());
    }

    /// A fence was written on a worker of `id`.
    pub fn fence(&self, id: &IngesterLabels, reason: &'static str) {
        self.fences.with(reason_of(id, reason), |c| c.inc());
    }

    /// A plan of `id` moved shards between live workers.
    pub fn rebalanced(&self, id: &IngesterLabels) {
        self.rebalances.with(id.clone(), |c| c.inc());
    }

    /// ListShards failed for `id`.
    pub fn topology_error(&self, id: &IngesterLabels, category: &'static str) {
        self.topology_errors
            .with(reason_of(id, category), |c| c.inc());
    }

    /// A worker report was seen; `reconcile`: it triggered one (design §7.2).
    pub fn worker_report(&self, reconcile: bool) {
        let result = if reconcile { "reconcile" } else { "skipped" };
        self.worker_reports
            .get_or_create(&ReportLabels { result })
            .inc();
    }

    /// Leadership changed.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The fleet gauges of one ingester.
    pub fn set_fleet(&self, id: &IngesterLabels, fleet: &FleetGauges) {
        for (state, n) in &fleet.shards {
            self.shards.with(state_of(id, state), |g| g.set(*n));
        }
        for (state, n) in &fleet.workers {
            self.workers.with(state_of(id, state), |g| g.set(*n));
        }
        self.max_shards_per_worker
            .with(id.clone(), |g| g.set(fleet.max_shards_per_worker));
        // An unknown lag is no series at all, never 0: alert on its absence.
        if let Some(ms) = fleet.max_millis_behind_latest {
            self.lag.with(id.clone(), |g| g.set(ms));
        } else {
            self.lag.remove(id);
        }
        self.ready
            .with(id.clone(), |g| g.set(i64::from(fleet.ready)));
        self.degraded
            .with(id.clone(), |g| g.set(i64::from(fleet.degraded)));
        self.suspended
            .with(id.clone(), |g| g.set(i64::from(fleet.suspended)));
        // One info series per ingester: a changed stream replaces the old one, and an unchanged
        // one is never removed, even for an instant.
        let info = InfoLabels {
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            stream: fleet.stream.clone(),
        };
        self.info.with(info.clone(), |g| g.set(1));
        self.info.forget_except(id, Some(&info));
    }

    /// Removes every series of a deleted ingester.
    pub fn forget(&self, id: &IngesterLabels) {
        self.reconciles.forget(id);
        self.writes.forget(id);
        self.handoffs.forget(id);
        self.fences.forget(id);
        self.rebalances.forget(id);
        self.shards.forget(id);
        self.workers.forget(id);
        self.max_shards_per_worker.forget(id);
        self.lag.forget(id);
        self.ready.forget(id);
        self.degraded.forget(id);
        self.suspended.forget(id);
        self.info.forget(id);
        self.topology_errors.forget(id);
    }
}

fn reason_of(id: &IngesterLabels, reason: &'static str) -> IngesterReason {
    IngesterReason {
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        reason,
    }
}

fn state_of(id: &IngesterLabels, state: &'static str) -> IngesterState {
    IngesterState {
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        state,
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
    /// The Ready condition is True.
    pub ready: bool,
    /// The Degraded condition is True.
    pub degraded: bool,
    /// `spec.suspend` is true (not Ready on purpose).
    pub suspended: bool,
    /// The stream the ingester reads.
    pub stream: String,
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
        let id = IngesterLabels {
            namespace: "ns".into(),
            name: "orders".into(),
        };
        m.reconciled(&id, 0.02, Some("stream_not_found"));
        m.write(&id, "assignment", "conflict");
        m.fence(&id, "expired");
        m.topology_error(&id, "throttled");
        m.rebalanced(&id);
        m.set_fleet(
            &id,
            &FleetGauges {
                shards: vec![("reading", 4)],
                workers: vec![("live", 2)],
                max_shards_per_worker: 2,
                max_millis_behind_latest: Some(1500),
                ready: false,
                degraded: true,
                suspended: true,
                stream: "orders-stream".into(),
            },
        );
        let text = m.encode();
        for want in [
            "kinesis_operator_reconciliations_total{namespace=\"ns\",name=\"orders\",result=\"error\",error_category=\"stream_not_found\"} 1",
            "kinesis_operator_api_writes_total{namespace=\"ns\",name=\"orders\",object=\"assignment\",result=\"conflict\"} 1",
            "kinesis_operator_fences_total{namespace=\"ns\",name=\"orders\",reason=\"expired\"} 1",
            "kinesis_operator_topology_refresh_errors_total{namespace=\"ns\",name=\"orders\",reason=\"throttled\"} 1",
            "kinesis_operator_rebalances_total{namespace=\"ns\",name=\"orders\"} 1",
            "kinesis_operator_shards{namespace=\"ns\",name=\"orders\",state=\"reading\"} 4",
            "kinesis_operator_max_shards_per_worker{namespace=\"ns\",name=\"orders\"} 2",
            "kinesis_operator_max_millis_behind_latest{namespace=\"ns\",name=\"orders\"} 1500",
            "kinesis_operator_ready{namespace=\"ns\",name=\"orders\"} 0",
            "kinesis_operator_degraded{namespace=\"ns\",name=\"orders\"} 1",
            "kinesis_operator_suspended{namespace=\"ns\",name=\"orders\"} 1",
            "kinesis_operator_ingester_info{namespace=\"ns\",name=\"orders\",stream=\"orders-stream\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        m.set_fleet(
            &id,
            &FleetGauges {
                max_millis_behind_latest: None,
                stream: "renamed".into(),
                ..FleetGauges::default()
            },
        );
        let text = m.encode();
        assert!(
            !text.contains("kinesis_operator_max_millis_behind_latest{"),
            "an unknown lag is no series, never 0"
        );
        assert!(
            text.contains("stream=\"renamed\"") && !text.contains("stream=\"orders-stream\""),
            "one info series per ingester: {text}"
        );
        let other = IngesterLabels {
            namespace: "ns".into(),
            name: "payments".into(),
        };
        m.fence(&other, "stopped");
        m.forget(&id);
        let text = m.encode();
        assert!(
            !text.contains("name=\"orders\""),
            "every series of a deleted ingester is removed: {text}"
        );
        assert!(text.contains(
            "kinesis_operator_fences_total{namespace=\"ns\",name=\"payments\",reason=\"stopped\"} 1"
        ));
    }
}

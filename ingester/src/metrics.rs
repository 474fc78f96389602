//! Prometheus metrics of the ingester, all named `kinesis_ingester_*`, with bounded labels.
//!
//! The only label that grows with the input is `shard`, bounded by the stream's shard count; a
//! shard's series is removed when the shard ends.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use kinesis_client::SourceError;
use kinesis_protocol::report::FailingReads;
use tokio::time::Instant;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

mod sinks;

use self::sinks::{SinkCollector, SinksCollector};
use crate::{
    decode::DecodeStats,
    route::RouteStats,
    sink::{SinkHandle, SinkStats},
    transform::TransformStats,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationError {
    operation: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Category {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecodeFailure {
    category: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceCategory {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransformResult {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteResult {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Every metric of one ingester process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    millis_behind: Family<ShardLabel, Gauge>,
    shards_reading: Gauge,
    records_in: Counter,
    bytes_in: Counter,
    source_errors: Family<OperationError, Counter>,
    throttles: Family<OperationError, Counter>,
    decode_failures: Family<DecodeFailure, Counter>,
    transform_records: Family<TransformResult, Counter>,
    transform_errors: Family<SourceCategory, Counter>,
    kpl_aggregated: Counter,
    kpl_invalid: Counter,
    kpl_outside_range: Counter,
    cloudwatch_control: Counter,
    checkpoints: Counter,
    checkpoint_errors: Family<Category, Counter>,
    fleet_report_writes: Family<WriteResult, Counter>,
    fleet_self_fenced: Gauge,
    fleet_releases: Family<Reason, Counter>,
    /// Shards whose Kinesis calls keep failing, for the fleet report (not exported).
    failing_reads: Mutex<HashMap<String, Failing>>,
}

/// Kinesis calls of one shard failing since `since`.
#[derive(Clone, Debug)]
struct Failing {
    since: Instant,
    category: &'static str,
    operation: &'static str,
    message: String,
}

impl Metrics {
    /// Creates and registers every metric; the sink's counters are read from `sink` at scrape time.
    pub fn new(sink: Arc<SinkStats>) -> Self {
        let mut registry = Registry::with_prefix("kinesis_ingester");
        let m = Self {
            millis_behind: Family::default(),
            shards_reading: Gauge::default(),
            records_in: Counter::default(),
            bytes_in: Counter::default(),
            source_errors: Family::default(),
            throttles: Family::default(),
            decode_failures: Family::default(),
            transform_records: Family::default(),
            transform_errors: Family::default(),
            kpl_aggregated: Counter::default(),
            kpl_invalid: Counter::default(),
            kpl_outside_range: Counter::default(),
            cloudwatch_control: Counter::default(),
            checkpoints: Counter::default(),
            checkpoint_errors: Family::default(),
            fleet_report_writes: Family::default(),
            fleet_self_fenced: Gauge::default(),
            fleet_releases: Family::default(),
            failing_reads: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "millis_behind_latest",
            "MillisBehindLatest of the last GetRecords response, per shard",
            m.millis_behind.clone(),
        );
        r.register(
            "shards_reading",
            "Shards being read",
            m.shards_reading.clone(),
        );
        r.register("records_in", "Kinesis records read", m.records_in.clone());
        r.register(
            "bytes_in",
            "Payload bytes of Kinesis records read",
            m.bytes_in.clone(),
        );
        r.register(
            "source_errors",
            "Failed Kinesis calls by operation and category",
            m.source_errors.clone(),
        );
        r.register(
            "throttles",
            "Throttled Kinesis calls by operation",
            m.throttles.clone(),
        );
        r.register(
            "decode_failures",
            "Records that could not be decoded or are over a limit AWS enforces, by category and reason",
            m.decode_failures.clone(),
        );
        r.register(
            "transform_records",
            "Records through spec.transform, by result: kept, dropped (abort), or the failure that dead-lettered them (error, too_costly, too_large, unencodable)",
            m.transform_records.clone(),
        );
        r.register(
            "transform_errors",
            "Failed requests of the HTTP transform (tried again until retryDuration), by category: timeout, request, http_429, http_5xx, http_4xx, contract",
            m.transform_errors.clone(),
        );
        r.register(
            "kpl_aggregated_records",
            "KPL aggregated records de-aggregated",
            m.kpl_aggregated.clone(),
        );
        r.register(
            "kpl_invalid_records",
            "Records with the KPL magic that failed a check and were passed on whole",
            m.kpl_invalid.clone(),
        );
        r.register(
            "kpl_dropped_user_records",
            "KPL user records dropped as outside the shard's hash key range",
            m.kpl_outside_range.clone(),
        );
        r.register(
            "cloudwatch_control_messages",
            "CloudWatch Logs CONTROL_MESSAGE envelopes dropped",
            m.cloudwatch_control.clone(),
        );
        r.register(
            "checkpoints_written",
            "Checkpoints stored",
            m.checkpoints.clone(),
        );
        r.register(
            "checkpoint_errors",
            "Failed checkpoint writes by category",
            m.checkpoint_errors.clone(),
        );
        r.register(
            "fleet_report_writes",
            "Status writes of a fleet worker by result (ok, conflict, error)",
            m.fleet_report_writes.clone(),
        );
        r.register(
            "fleet_self_fenced",
            "1 while a fleet worker has stopped reading because its status writes fail",
            m.fleet_self_fenced.clone(),
        );
        r.register(
            "fleet_releases",
            "Shards a fleet worker released, by reason (handoff, shutdown)",
            m.fleet_releases.clone(),
        );
        r.register_collector(Box::new(SinkCollector(sink)));
        Self { registry, ..m }
    }

    /// Adds each sink's own counters, labelled with its name (`sink` for `spec.sink`), and the
    /// router's, read at scrape time.
    pub fn with_sinks(mut self, sinks: Vec<SinkHandle>, routes: Option<Arc<RouteStats>>) -> Self {
        self.registry
            .register_collector(Box::new(SinksCollector { sinks, routes }));
        self
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// MillisBehindLatest of a shard.
    pub fn set_millis_behind(&self, shard: &str, ms: i64) {
        self.millis_behind
            .get_or_create(&ShardLabel {
                shard: shard.to_owned(),
            })
            .set(ms);
    }

    /// The last MillisBehindLatest of a shard, if it is read here and was read at least once.
    pub fn millis_behind(&self, shard: &str) -> Option<i64> {
        self.millis_behind
            .get(&ShardLabel {
                shard: shard.to_owned(),
            })
            .map(|g| g.get())
    }

    /// A status write of a fleet worker: `ok`, `conflict` or `error`.
    pub fn fleet_report_written(&self, result: &'static str) {
        self.fleet_report_writes
            .get_or_create(&WriteResult { result })
            .inc();
    }

    /// Whether the fleet worker is self-fenced.
    pub fn set_fleet_self_fenced(&self, fenced: bool) {
        self.fleet_self_fenced.set(i64::from(fenced));
    }

    /// A shard released by a fleet worker: `handoff` or `shutdown`.
    pub fn fleet_released(&self, reason: &'static str) {
        self.fleet_releases.get_or_create(&Reason { reason }).inc();
    }

    /// Removes a shard's series once it is no longer read here.
    pub fn clear_shard(&self, shard: &str) {
        self.millis_behind.remove(&ShardLabel {
            shard: shard.to_owned(),
        });
        self.failing().remove(shard);
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failing>> {
        self.failing_reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A Kinesis call for `shard` failed. Throttling, expired iterators and a subscription still
    /// in use are part of reading, not failures of it.
    pub fn read_failed(&self, shard: &str, operation: &'static str, e: &SourceError) {
        if matches!(
            e,
            SourceError::Throttled { .. }
                | SourceError::ExpiredIterator(_)
                | SourceError::InUse { .. }
        ) {
            return;
        }
        let mut failing = self.failing();
        let since = failing.get(shard).map_or_else(Instant::now, |f| f.since);
        failing.insert(
            shard.to_owned(),
            Failing {
                since,
                category: e.category(),
                operation,
                message: e.to_string(),
            },
        );
    }

    /// A read of `shard` succeeded.
    pub fn read_ok(&self, shard: &str) {
        self.failing().remove(shard);
    }

    /// Whether the reads of some shard have failed for at least `after` at `now`: that shard is
    /// held but not read, so `/readyz` is false.
    pub fn any_failing_reads(&self, now: Instant, after: std::time::Duration) -> bool {
        self.failing()
            .values()
            .any(|f| now.saturating_duration_since(f.since) >= after)
    }

    /// The reads of `shard` that keep failing, at `now`.
    pub fn failing_reads(&self, shard: &str, now: Instant) -> Option<FailingReads> {
        self.failing().get(shard).map(|f| FailingReads {
            category: f.category,
            operation: f.operation,
            message: f.message.clone(),
            failing_for: now.saturating_duration_since(f.since),
        })
    }

    /// Number of shards being read.
    pub fn set_shards_reading(&self, n: usize) {
        self.shards_reading
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Kinesis records read.
    pub fn records_in(&self, records: u64, bytes: u64) {
        self.records_in.inc_by(records);
        self.bytes_in.inc_by(bytes);
    }

    /// A failed Kinesis call.
    pub fn source_error(&self, operation: &'static str, category: &'static str) {
        let labels = OperationError {
            operation,
            category,
        };
        if category == "throttled" {
            self.throttles.get_or_create(&labels).inc();
        }
        self.source_errors.get_or_create(&labels).inc();
    }

    /// What decoding one page did.
    pub fn decoded(&self, stats: &DecodeStats) {
        self.kpl_aggregated.inc_by(stats.kpl_aggregated);
        self.kpl_invalid.inc_by(stats.kpl_invalid_as_plain);
        self.kpl_outside_range.inc_by(stats.kpl_outside_hash_range);
        self.cloudwatch_control
            .inc_by(stats.cloudwatch_control_messages);
        for (category, reason, n) in stats.dead_letters_by_reason() {
            if n > 0 {
                self.decode_failures
                    .get_or_create(&DecodeFailure { category, reason })
                    .inc_by(n);
            }
        }
    }

    /// What transforming one page did.
    pub fn transformed(&self, stats: &TransformStats) {
        let count = |result, n| {
            if n > 0 {
                self.transform_records
                    .get_or_create(&TransformResult { result })
                    .inc_by(n);
            }
        };
        count("kept", stats.kept);
        count("dropped", stats.dropped);
        for &(category, n) in &stats.failed {
            count(category, n);
        }
        for &(category, n) in &stats.invocation_errors {
            self.transform_errors
                .get_or_create(&SourceCategory { category })
                .inc_by(n);
        }
    }

    /// A checkpoint write, successful or not.
    pub fn checkpoint_written(&self, error: Option<&'static str>) {
        match error {
            None => self.checkpoints.inc(),
            Some(category) => self
                .checkpoint_errors
                .get_or_create(&Category { category })
                .inc(),
        };
    }
}

impl kinesis_observability::server::Encode for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_prefixed_names_and_removes_ended_shards() {
        let sink = Arc::new(SinkStats::default());
        let m = Metrics::new(sink.clone());
        m.set_millis_behind("shardId-000000000001", 1500);
        m.records_in(3, 30);
        m.source_error("GetRecords", "throttled");
        let text = m.encode();
        assert!(
            text.contains(
                "kinesis_ingester_millis_behind_latest{shard=\"shardId-000000000001\"} 1500"
            ),
            "{text}"
        );
        assert!(
            text.contains("kinesis_ingester_records_in_total 3"),
            "{text}"
        );
        assert!(text.contains("kinesis_ingester_throttles_total{operation=\"GetRecords\",category=\"throttled\"} 1"), "{text}");
        assert!(
            text.contains("kinesis_ingester_records_out_total 0"),
            "{text}"
        );
        assert!(
            text.contains("kinesis_ingester_sink_errors_total{category="),
            "{text}"
        );
        assert_eq!(m.millis_behind("shardId-000000000001"), Some(1500));
        m.fleet_report_written("ok");
        m.fleet_released("handoff");
        m.set_fleet_self_fenced(true);
        let text = m.encode();
        for line in [
            "kinesis_ingester_fleet_report_writes_total{result=\"ok\"} 1",
            "kinesis_ingester_fleet_releases_total{reason=\"handoff\"} 1",
            "kinesis_ingester_fleet_self_fenced 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        m.clear_shard("shardId-000000000001");
        assert!(!m.encode().contains("shardId-000000000001"));
    }

    #[test]
    fn decode_failures_are_counted_by_category_and_reason() {
        let m = Metrics::new(Arc::new(SinkStats::default()));
        let mut stats = DecodeStats::default();
        let too_many = crate::decode::DecodeError::LABELS
            .iter()
            .position(|&l| l == ("cloudwatch", "too_many_log_events"))
            .expect("label");
        stats.dead_letters[too_many] = 2;
        stats.dead_letters[0] = 1;
        m.decoded(&stats);
        let text = m.encode();
        for line in [
            "kinesis_ingester_decode_failures_total{category=\"cloudwatch\",reason=\"too_many_log_events\"} 2",
            "kinesis_ingester_decode_failures_total{category=\"gzip\",reason=\"invalid_gzip\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn reads_failing_past_the_threshold_make_a_shard_unread_until_a_read_succeeds() {
        use std::time::Duration;
        let m = Metrics::new(Arc::new(SinkStats::default()));
        let now = Instant::now();
        let after = Duration::from_secs(10);
        assert!(!m.any_failing_reads(now, after));
        let throttled = SourceError::Throttled {
            operation: "GetRecords",
            message: "slow down".into(),
        };
        m.read_failed("a", "GetRecords", &throttled);
        assert!(
            !m.any_failing_reads(now + Duration::from_secs(60), after),
            "throttling is part of reading"
        );
        let denied = SourceError::AccessDenied {
            operation: "GetShardIterator",
            message: "no".into(),
        };
        m.read_failed("a", "GetShardIterator", &denied);
        assert!(!m.any_failing_reads(now + Duration::from_secs(5), after));
        assert!(m.any_failing_reads(now + Duration::from_secs(11), after));
        let f = m
            .failing_reads("a", now + Duration::from_secs(11))
            .expect("failing");
        assert_eq!(
            (f.category, f.operation),
            ("access_denied", "GetShardIterator")
        );
        m.read_ok("a");
        assert!(!m.any_failing_reads(now + Duration::from_secs(60), after));
        m.read_failed("b", "GetRecords", &denied);
        m.clear_shard("b");
        assert!(
            m.failing_reads("b", now).is_none(),
            "a shard no longer read is forgotten"
        );
    }
}

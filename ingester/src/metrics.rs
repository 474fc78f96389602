//! Prometheus metrics of the ingester, all named `kinesis_ingester_*`, with bounded labels.
//!
//! The only label that grows with the input is `shard`, bounded by the stream's shard count; a
//! shard's series is removed when the shard ends.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
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

/// Every metric of one ingester process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    millis_behind: Family<ShardLabel, Gauge>,
    shards_reading: Gauge,
    records_in: Counter,
    bytes_in: Counter,
    records_out: Counter,
    bytes_out: Counter,
    source_errors: Family<OperationError, Counter>,
    throttles: Family<OperationError, Counter>,
    decode_failures: Family<Category, Counter>,
    sink_errors: Family<Category, Counter>,
    sink_retries: Counter,
    checkpoints: Counter,
    checkpoint_errors: Family<Category, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kinesis_ingester");
        let m = Self {
            millis_behind: Family::default(),
            shards_reading: Gauge::default(),
            records_in: Counter::default(),
            bytes_in: Counter::default(),
            records_out: Counter::default(),
            bytes_out: Counter::default(),
            source_errors: Family::default(),
            throttles: Family::default(),
            decode_failures: Family::default(),
            sink_errors: Family::default(),
            sink_retries: Counter::default(),
            checkpoints: Counter::default(),
            checkpoint_errors: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "millis_behind_latest",
            "MillisBehindLatest of the last GetRecords response, per shard",
            m.millis_behind.clone(),
        );
        registry.register(
            "shards_reading",
            "Shards being read",
            m.shards_reading.clone(),
        );
        registry.register("records_in", "Kinesis records read", m.records_in.clone());
        registry.register(
            "bytes_in",
            "Payload bytes of Kinesis records read",
            m.bytes_in.clone(),
        );
        registry.register(
            "records_out",
            "Records delivered and acknowledged by the sink",
            m.records_out.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes delivered and acknowledged by the sink",
            m.bytes_out.clone(),
        );
        registry.register(
            "source_errors",
            "Failed Kinesis calls by operation and category",
            m.source_errors.clone(),
        );
        registry.register(
            "throttles",
            "Throttled Kinesis calls by operation",
            m.throttles.clone(),
        );
        registry.register(
            "decode_failures",
            "Records that could not be decoded, by category",
            m.decode_failures.clone(),
        );
        registry.register(
            "sink_errors",
            "Failed sink deliveries by category",
            m.sink_errors.clone(),
        );
        registry.register(
            "sink_retries",
            "Sink delivery retries",
            m.sink_retries.clone(),
        );
        registry.register(
            "checkpoints_written",
            "Checkpoints stored",
            m.checkpoints.clone(),
        );
        registry.register(
            "checkpoint_errors",
            "Failed checkpoint writes by category",
            m.checkpoint_errors.clone(),
        );
        Self { registry, ..m }
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

    /// Removes a shard's series once it is no longer read here.
    pub fn clear_shard(&self, shard: &str) {
        self.millis_behind.remove(&ShardLabel {
            shard: shard.to_owned(),
        });
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

    /// Records the sink delivered.
    pub fn records_out(&self, records: u64, bytes: u64) {
        self.records_out.inc_by(records);
        self.bytes_out.inc_by(bytes);
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

    /// A record that could not be decoded.
    pub fn decode_failure(&self, category: &'static str) {
        self.decode_failures
            .get_or_create(&Category { category })
            .inc();
    }

    /// A failed sink delivery, and whether it will be retried.
    pub fn sink_error(&self, category: &'static str, retried: bool) {
        self.sink_errors.get_or_create(&Category { category }).inc();
        if retried {
            self.sink_retries.inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_prefixed_names_and_removes_ended_shards() {
        let m = Metrics::new();
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
        m.clear_shard("shardId-000000000001");
        assert!(!m.encode().contains("shardId-000000000001"));
    }
}

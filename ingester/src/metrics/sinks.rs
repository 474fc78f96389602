//! The sinks' counters as metrics, read at scrape time: the totals of every sink, and each
//! sink's own under its name.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use super::Category;
use crate::{
    route::RouteStats,
    sink::{SinkHandle, SinkStats},
};

/// Exposes the sink's atomic counters, read at scrape time.
#[derive(Debug)]
pub(super) struct SinkCollector(pub(super) Arc<SinkStats>);

impl Collector for SinkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        for (name, help, value) in [
            (
                "records_out",
                "Records the sink's destination acknowledged",
                s.records_out(),
            ),
            (
                "bytes_out",
                "Encoded bytes the sink's destination acknowledged",
                s.bytes_out(),
            ),
            ("sink_batches", "Batches delivered", s.batches()),
            (
                "sink_retries",
                "Sink send attempts repeated after a failure",
                s.retries(),
            ),
            (
                "dead_letters",
                "Records that could not be decoded, dead-lettered",
                s.dead_letters(),
            ),
            (
                "sink_revoked_records",
                "Records dropped unsent and unacknowledged because this worker lost their shard",
                s.revoked(),
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let mut family = encoder.encode_descriptor(
            "sink_errors",
            "Failed sink send attempts by category",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (category, n) in s.errors_by_category() {
            ConstCounter::new(n).encode(family.encode_family(&Category { category })?)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkCategory {
    sink: String,
    category: &'static str,
}

/// Each sink's counters and queue, and the router's counts (a bounded `sink` label: at most
/// `MAX_SINKS` names from the spec).
#[derive(Debug)]
pub(super) struct SinksCollector {
    pub(super) sinks: Vec<SinkHandle>,
    pub(super) routes: Option<Arc<RouteStats>>,
}

impl SinksCollector {
    fn family(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(usize, &SinkHandle) -> Option<u64>,
        gauge: bool,
    ) -> Result<(), std::fmt::Error> {
        let kind = if gauge {
            prometheus_client::metrics::MetricType::Gauge
        } else {
            prometheus_client::metrics::MetricType::Counter
        };
        let mut family = encoder.encode_descriptor(name, help, None, kind)?;
        for (i, s) in self.sinks.iter().enumerate() {
            let Some(v) = value(i, s) else { continue };
            let labels = SinkLabel {
                sink: s.name.to_string(),
            };
            let metric = family.encode_family(&labels)?;
            if gauge {
                ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(metric)?;
            } else {
                ConstCounter::new(v).encode(metric)?;
            }
        }
        Ok(())
    }
}

impl Collector for SinksCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        self.family(
            e,
            "sink_delivered_records",
            "Records each sink's destination acknowledged",
            |_, s| Some(s.stats.records_out()),
            false,
        )?;
        self.family(e, "sink_dead_lettered_records", "Records each sink dead-lettered: _bulk items refused, or batches given up after deadLetterAfter", |_, s| Some(s.stats.dead_letters()), false)?;
        self.family(e, "sink_queued_chunks", "Chunks waiting in each sink's channel; at capacity, the shard readers wait for this sink", |_, s| Some(s.queued() as u64), true)?;
        self.family(
            e,
            "sink_queue_capacity",
            "Chunks each sink's channel holds",
            |_, s| Some(s.capacity() as u64),
            true,
        )?;
        {
            let mut failed = e.encode_descriptor(
                "sink_failed_sends",
                "Failed send attempts of each sink by category",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &self.sinks {
                for (category, n) in s.stats.errors_by_category() {
                    if n == 0 {
                        continue;
                    }
                    let labels = SinkCategory {
                        sink: s.name.to_string(),
                        category,
                    };
                    ConstCounter::new(n).encode(failed.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(routes) = &self.routes {
            let at = |v: &[std::sync::atomic::AtomicU64], i: usize| {
                v.get(i)
                    .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
            };
            self.family(
                e,
                "routed_records",
                "Records routed to each sink (a record may go to several)",
                |i, _| at(&routes.routed, i),
                false,
            )?;
            self.family(
                e,
                "route_errors",
                "Records a sink's VRL route condition failed on (not routed there)",
                |i, _| at(&routes.errors, i),
                false,
            )?;
            let unrouted =
                ConstCounter::new(routes.unrouted.load(std::sync::atomic::Ordering::Relaxed));
            let metric = e.encode_descriptor(
                "unrouted_records",
                "Records that matched no route and had no default sink: checkpointed past, delivered nowhere",
                None,
                unrouted.metric_type(),
            )?;
            unrouted.encode(metric)?;
        }
        Ok(())
    }
}

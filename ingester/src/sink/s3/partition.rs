//! Object key prefixes of the S3 sink: renders `prefix`/`errorPrefix` for each record from its arrival time, stream, shard and payload field.

use std::sync::Arc;

use kinesis_ingester_api::{PartitionBy, S3Sink};

use crate::record::Record;

/// Computes each record's key prefix (its partition). Pure: the caller passes the time used for
/// records without an arrival timestamp.
#[derive(Clone, Debug)]
pub struct Partitioner {
    prefix: String,
    error_prefix: String,
    partition_by: Option<PartitionBy>,
    /// Most (shard, prefix) groups, hence objects, in one batch.
    pub max_open: usize,
}

/// A record's place among the objects of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    /// The rendered key prefix.
    pub prefix: Arc<str>,
    /// The record's shard.
    pub shard: Arc<str>,
}

impl Partitioner {
    /// The partitioner of `spec`.
    pub fn new(spec: &S3Sink) -> Self {
        Self {
            prefix: spec.prefix.clone(),
            error_prefix: spec.error_prefix.clone(),
            partition_by: spec.partition_by.clone(),
            max_open: usize::try_from(spec.max_open_partitions)
                .unwrap_or(1)
                .max(1),
        }
    }

    /// The key prefix of `record`: `prefix` rendered, or `errorPrefix` rendered when the record
    /// cannot be partitioned. `now_ms` stands in for a missing arrival time.
    pub fn prefix(&self, record: &Record, now_ms: i64) -> String {
        let partition = match &self.partition_by {
            None => Some(String::new()),
            Some(by) => partition_value(&record.data, by),
        };
        let arrival = record.approximate_arrival_ms.unwrap_or(now_ms);
        match partition {
            Some(p) => render(&self.prefix, record, arrival, &p),
            None => render(&self.error_prefix, record, arrival, ""),
        }
    }
}

/// The partition of a payload: the field at the JSON pointer, made safe for a key, or the
/// fallback; `None` when the record belongs under the error prefix.
fn partition_value(data: &[u8], by: &PartitionBy) -> Option<String> {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return None;
    };
    let value = match json.pointer(&by.json_pointer) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            Some(v.to_string())
        }
        _ => None,
    };
    value
        .map(|v| sanitize(&v))
        .filter(|v| !v.is_empty())
        .or_else(|| by.fallback.clone())
}

/// Most characters of a partition value in a key.
const MAX_PARTITION_LEN: usize = 128;

/// Keeps letters, digits, `.`, `_`, `=` and `-`; anything else (a `/`, spaces, non-ASCII)
/// becomes `_`, so a value cannot add key levels or escape its prefix. `.` and `..` alone are
/// replaced too.
fn sanitize(value: &str) -> String {
    let s: String = value
        .chars()
        .take(MAX_PARTITION_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s == "." || s == ".." {
        "_".repeat(s.len())
    } else {
        s
    }
}

/// Fills the placeholders of `template`.
fn render(template: &str, record: &Record, arrival_ms: i64, partition: &str) -> String {
    let (y, mo, d, h) = civil_hour(arrival_ms);
    let mut out = String::with_capacity(template.len() + 48);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find('}') else {
            break;
        };
        match &after[..=close] {
            "{yyyy}" => out.push_str(&format!("{y:04}")),
            "{MM}" => out.push_str(&format!("{mo:02}")),
            "{dd}" => out.push_str(&format!("{d:02}")),
            "{HH}" => out.push_str(&format!("{h:02}")),
            "{stream}" => out.push_str(&record.shard.stream),
            "{shard}" => out.push_str(&record.shard.shard_id),
            "{partition}" => out.push_str(partition),
            other => out.push_str(other),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Year, month, day and hour (UTC) of a Unix time in milliseconds.
fn civil_hour(ms: i64) -> (i64, u32, u32, u32) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let hour = u32::try_from(secs.rem_euclid(86_400) / 3600).unwrap_or(0);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ndjson::tests::record;

    fn spec(prefix: &str, by: Option<(&str, Option<&str>)>) -> S3Sink {
        let mut s: S3Sink = serde_json::from_value(serde_json::json!({ "bucket": "b" })).unwrap();
        s.prefix = prefix.into();
        s.partition_by = by.map(|(p, f)| PartitionBy {
            json_pointer: p.into(),
            fallback: f.map(Into::into),
        });
        s
    }

    #[test]
    fn time_placeholders_are_the_arrival_hour_in_utc() {
        let p = Partitioner::new(&spec("{stream}/{yyyy}/{MM}/{dd}/{HH}/{shard}/", None));
        let mut r = record("shardId-1", 1, b"x");
        // 2024-02-29T23:59:59.999Z
        r.approximate_arrival_ms = Some(1_709_251_199_999);
        assert_eq!(p.prefix(&r, 0), "orders/2024/02/29/23/shardId-1/");
        r.approximate_arrival_ms = None;
        assert_eq!(
            p.prefix(&r, 1_709_251_200_000),
            "orders/2024/03/01/00/shardId-1/"
        );
        for (ms, want) in [(0, (1970, 1, 1, 0)), (-1, (1969, 12, 31, 23))] {
            assert_eq!(civil_hour(ms), want);
        }
        let ts = jiff::Timestamp::from_millisecond(1_893_456_000_000 + 7_200_000).unwrap();
        let z = ts.to_zoned(jiff::tz::TimeZone::UTC);
        assert_eq!(
            civil_hour(ts.as_millisecond()),
            (
                i64::from(z.year()),
                z.month() as u32,
                z.day() as u32,
                z.hour() as u32
            )
        );
    }

    #[test]
    fn payload_field_partitions_with_fallback_and_error_prefix() {
        let p = Partitioner::new(&spec(
            "p/{partition}/",
            Some(("/customer/region", Some("unknown"))),
        ));
        let at = |data: &[u8]| p.prefix(&record("s", 1, data), 0);
        assert_eq!(
            at(br#"{"customer":{"region":"eu-west-1"}}"#),
            "p/eu-west-1/"
        );
        assert_eq!(at(br#"{"customer":{"region":42}}"#), "p/42/");
        assert_eq!(at(br#"{"customer":{"region":"../a b"}}"#), "p/.._a_b/");
        assert_eq!(at(br#"{"customer":{"region":".."}}"#), "p/__/");
        assert_eq!(at(br#"{"customer":{}}"#), "p/unknown/");
        assert_eq!(at(br#"{"customer":{"region":null}}"#), "p/unknown/");
        assert_eq!(at(b"not json"), "errors/orders/1970/01/01/00/");

        let strict = Partitioner::new(&spec("p/{partition}/", Some(("/k", None))));
        assert_eq!(
            strict.prefix(&record("s", 1, b"{}"), 0),
            "errors/orders/1970/01/01/00/"
        );
    }
}

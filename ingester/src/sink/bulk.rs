//! `_bulk` framing: each document's action line, with its index (dated from the arrival time when the name has a `{...}` part) and its deterministic `_id`.

use std::fmt::Write as _;

use kinesis_ingester_api::HttpSink;

use super::SinkError;
use crate::record::Record;

/// Longest `_id` OpenSearch and Elasticsearch accept, in bytes. A payload field longer than
/// this is not used: the record gets its position `_id`.
pub const MAX_ID_BYTES: usize = 512;

/// How one `_bulk` action line is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkFraming {
    index: IndexName,
    /// JSON pointer of the payload field that gives the `_id`, if any.
    id_field: Option<String>,
    /// Scratch space for the `_id`.
    id: String,
}

impl BulkFraming {
    /// Framing into the index named exactly `index`, with position `_id`s.
    pub fn literal(index: &str) -> Self {
        Self {
            index: IndexName::literal(index),
            id_field: None,
            id: String::new(),
        }
    }

    /// Framing for `spec`: its index (with date parts) and `documentId`.
    pub fn new(spec: &HttpSink) -> Result<Self, SinkError> {
        let Some(index) = &spec.index else {
            return Err(SinkError::Config(
                "sink.http.index is required when format is ElasticsearchBulk".into(),
            ));
        };
        Ok(Self {
            index: IndexName::parse(index)?,
            id_field: spec.document_id.as_ref().map(|d| d.field.clone()),
            id: String::new(),
        })
    }

    /// Appends the action line of `record`, with its newline, to `buf`.
    pub fn write_action(
        &mut self,
        buf: &mut Vec<u8>,
        record: &Record,
    ) -> Result<(), serde_json::Error> {
        let arrival = record
            .approximate_arrival_ms
            .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        self.id.clear();
        if !self
            .id_field
            .as_deref()
            .is_some_and(|field| payload_id(&record.data, field, &mut self.id))
        {
            self.id.clear();
            position_id(record, &mut self.id);
        }
        buf.extend_from_slice(br#"{"index":{"_index":"#);
        serde_json::to_writer(&mut *buf, self.index.at(arrival))?;
        buf.extend_from_slice(br#","_id":"#);
        serde_json::to_writer(&mut *buf, &self.id)?;
        buf.extend_from_slice(b"}}\n");
        Ok(())
    }
}

/// The default `_id`: `<stream>:<shardId>:<sequenceNumber>`, then `.<subSequenceNumber>` for a
/// KPL user record and `:<id>` for a CloudWatch Logs event. Unique per record of a stream, and
/// the same each time the record is read.
pub fn position_id(record: &Record, out: &mut String) {
    let _ = write!(
        out,
        "{}:{}:{}",
        record.shard.stream,
        record.shard.shard_id,
        record.position.sequence.as_str()
    );
    if let Some(sub) = record.position.sub_sequence {
        let _ = write!(out, ".{sub}");
    }
    if let Some(cw) = &record.cloudwatch {
        let _ = write!(out, ":{}", cw.id);
    }
}

/// Writes the string or number at `pointer` in the JSON payload `data` into `out`; false when
/// the payload is not JSON, has no such field, or the value is empty or too long.
fn payload_id(data: &[u8], pointer: &str, out: &mut String) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return false;
    };
    match value.pointer(pointer) {
        Some(serde_json::Value::String(s)) => out.push_str(s),
        Some(serde_json::Value::Number(n)) => {
            let _ = write!(out, "{n}");
        }
        _ => return false,
    }
    !out.is_empty() && out.len() <= MAX_ID_BYTES
}

/// One piece of an index name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Year,
    Month,
    Day,
    Hour,
}

/// An index name, possibly with date parts; remembers the last hour it rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IndexName {
    parts: Vec<Part>,
    /// `(hour since the epoch, name)` of the last record, when the name has date parts.
    cached: Option<(i64, String)>,
    /// The name when it has no date parts.
    fixed: Option<String>,
}

const MS_PER_HOUR: i64 = 3_600_000;

impl IndexName {
    fn literal(name: &str) -> Self {
        Self {
            parts: vec![Part::Text(name.to_owned())],
            cached: None,
            fixed: Some(name.to_owned()),
        }
    }

    /// Parses `logs-{yyyy.MM.dd}`: text, and `{...}` parts of `yyyy`, `MM`, `dd`, `HH`, `.`, `-`
    /// and `_`.
    fn parse(template: &str) -> Result<Self, SinkError> {
        let bad = |why: &str| {
            SinkError::Config(format!(
                "sink.http.index {template:?}: {why}; write the date as e.g. logs-{{yyyy.MM.dd}}"
            ))
        };
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| bad("a { is not closed"))?;
            let mut date = &rest[open + 1..close];
            if date.is_empty() {
                return Err(bad("{} is empty"));
            }
            while !date.is_empty() {
                let (part, len) = match date {
                    d if d.starts_with("yyyy") => (Part::Year, 4),
                    d if d.starts_with("MM") => (Part::Month, 2),
                    d if d.starts_with("dd") => (Part::Day, 2),
                    d if d.starts_with("HH") => (Part::Hour, 2),
                    d if d.starts_with(['.', '-', '_']) => (Part::Text(d[..1].to_owned()), 1),
                    _ => {
                        return Err(bad(
                            "a date part holds only yyyy, MM, dd, HH, '.', '-' and '_'",
                        ));
                    }
                };
                parts.push(part);
                date = &date[len..];
            }
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(bad("a } has no {"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let dated = parts.iter().any(|p| !matches!(p, Part::Text(_)));
        Ok(Self {
            fixed: (!dated).then(|| template.to_owned()),
            parts,
            cached: None,
        })
    }

    /// The name for a record that arrived at `arrival_ms` (UTC).
    fn at(&mut self, arrival_ms: i64) -> &str {
        if let Some(fixed) = &self.fixed {
            return fixed;
        }
        let hour = arrival_ms.div_euclid(MS_PER_HOUR);
        if self.cached.as_ref().is_none_or(|(h, _)| *h != hour) {
            self.cached = Some((hour, self.render(hour * MS_PER_HOUR)));
        }
        self.cached.as_ref().map_or("", |(_, name)| name)
    }

    fn render(&self, ms: i64) -> String {
        let time = jiff::Timestamp::from_millisecond(ms)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .datetime();
        let mut out = String::new();
        for part in &self.parts {
            let _ = match part {
                Part::Text(t) => write!(out, "{t}"),
                Part::Year => write!(out, "{:04}", time.year()),
                Part::Month => write!(out, "{:02}", time.month()),
                Part::Day => write!(out, "{:02}", time.day()),
                Part::Hour => write!(out, "{:02}", time.hour()),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::record::{CloudWatchEnvelope, CloudWatchMeta};
    use crate::sink::ndjson::tests::record;

    fn spec(index: &str, field: Option<&str>) -> HttpSink {
        let mut v = serde_json::json!({
            "url": "http://h/_bulk", "format": "ElasticsearchBulk", "index": index,
        });
        if let Some(field) = field {
            v["documentId"] = serde_json::json!({ "field": field });
        }
        serde_json::from_value(v).expect("spec")
    }

    fn action(framing: &mut BulkFraming, r: &Record) -> Value {
        let mut buf = Vec::new();
        framing.write_action(&mut buf, r).expect("action");
        assert_eq!(buf.last(), Some(&b'\n'));
        serde_json::from_slice::<Value>(&buf).expect("json")["index"].clone()
    }

    #[test]
    fn position_ids_tell_user_records_and_log_events_apart_and_repeat_on_rereading() {
        let mut f = BulkFraming::literal("logs");
        let plain = record("shardId-1", 42, b"x");
        let mut user = plain.clone();
        user.position.sub_sequence = Some(3);
        let mut event = plain.clone();
        event.cloudwatch = Some(Box::new(CloudWatchMeta {
            envelope: Arc::new(CloudWatchEnvelope {
                owner: "1".into(),
                log_group: "g".into(),
                log_stream: "s".into(),
                subscription_filters: vec![],
            }),
            id: "3719".into(),
            timestamp_ms: 0,
        }));
        assert_eq!(action(&mut f, &plain)["_id"], "orders:shardId-1:42");
        assert_eq!(action(&mut f, &user)["_id"], "orders:shardId-1:42.3");
        assert_eq!(action(&mut f, &event)["_id"], "orders:shardId-1:42:3719");
        assert_eq!(action(&mut f, &plain)["_id"], "orders:shardId-1:42");
        assert_eq!(action(&mut f, &plain)["_index"], "logs");
    }

    #[test]
    fn a_payload_field_gives_the_id_and_its_absence_the_position() {
        let mut f = BulkFraming::new(&spec("logs", Some("/event/id"))).expect("framing");
        let with = |data: &str| record("s", 7, data.as_bytes());
        assert_eq!(
            action(&mut f, &with(r#"{"event":{"id":"a\"b"}}"#))["_id"],
            "a\"b"
        );
        assert_eq!(action(&mut f, &with(r#"{"event":{"id":12}}"#))["_id"], "12");
        for fallback in [r#"{"event":{}}"#, "not json", r#"{"event":{"id":""}}"#] {
            assert_eq!(
                action(&mut f, &with(fallback))["_id"],
                "orders:s:7",
                "{fallback}"
            );
        }
        let long = format!(r#"{{"event":{{"id":"{}"}}}}"#, "x".repeat(MAX_ID_BYTES + 1));
        assert_eq!(action(&mut f, &with(&long))["_id"], "orders:s:7");
    }

    #[test]
    fn a_dated_index_follows_the_arrival_time_in_utc() {
        let mut f = BulkFraming::new(&spec("logs-{yyyy.MM.dd}", None)).expect("framing");
        let mut r = record("s", 1, b"x");
        // 2023-11-14T22:13:20.123Z, then one hour later: the next day in UTC.
        r.approximate_arrival_ms = Some(1_700_000_000_123);
        assert_eq!(action(&mut f, &r)["_index"], "logs-2023.11.14");
        r.approximate_arrival_ms = Some(1_700_000_000_123 + MS_PER_HOUR * 2);
        assert_eq!(action(&mut f, &r)["_index"], "logs-2023.11.15");
        let mut hourly = BulkFraming::new(&spec("a-{yyyy}-b-{MM_dd-HH}", None)).expect("framing");
        assert_eq!(action(&mut hourly, &r)["_index"], "a-2023-b-11_15-00");
    }

    #[test]
    fn bad_templates_are_config_errors() {
        for index in ["logs-{yyyy", "logs-{}", "logs-{yyyy.ww}", "logs-}"] {
            let err = BulkFraming::new(&spec(index, None)).expect_err(index);
            assert_eq!(err.category(), "config", "{index}");
        }
    }
}

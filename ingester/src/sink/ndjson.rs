//! The JSON line written for each delivered record, and the Elasticsearch/OpenSearch `_bulk` framing around it.

use base64::{display::Base64Display, engine::general_purpose::STANDARD};
use serde::{Serialize, Serializer};

use super::bulk::BulkFraming;
use crate::record::{CloudWatchMeta, Record};

/// How records are framed in a batch body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON object per line.
    Ndjson,
    /// An `{"index":{"_index":…,"_id":…}}` action line before each JSON line (`_bulk` API).
    Bulk(BulkFraming),
    /// Each payload as it is, followed by a newline (the S3 sink's `Raw` format).
    Raw,
}

impl Encoding {
    /// `_bulk` framing that indexes every record into `index` (taken literally) with its
    /// position `_id`.
    pub fn bulk(index: &str) -> Self {
        Self::Bulk(BulkFraming::literal(index))
    }

    /// Appends one record, framed, to `buf`.
    pub fn write(&mut self, buf: &mut Vec<u8>, record: &Record) -> Result<(), serde_json::Error> {
        match self {
            Self::Raw => {
                buf.extend_from_slice(&record.data);
                buf.push(b'\n');
                return Ok(());
            }
            Self::Bulk(framing) => framing.write_action(buf, record)?,
            Self::Ndjson => {}
        }
        write_line(buf, record)
    }
}

/// Appends the JSON line of `record`, with its trailing newline, to `buf`.
pub fn write_line(buf: &mut Vec<u8>, record: &Record) -> Result<(), serde_json::Error> {
    // `data` comes first and is written by hand: most payloads are text that needs no escaping,
    // and copying it as is skips serde_json's byte-by-byte escaper (the hot path).
    buf.extend_from_slice(br#"{"data":"#);
    let encoding = match std::str::from_utf8(&record.data) {
        Ok(text) if !needs_escape(text.as_bytes()) => {
            buf.push(b'"');
            buf.extend_from_slice(text.as_bytes());
            buf.push(b'"');
            "utf8"
        }
        Ok(text) => {
            serde_json::to_writer(&mut *buf, text)?;
            "utf8"
        }
        Err(_) => {
            serde_json::to_writer(&mut *buf, &Base64(&record.data))?;
            "base64"
        }
    };
    let rest = Line {
        encoding,
        stream: &record.shard.stream,
        shard_id: &record.shard.shard_id,
        sequence_number: record.position.sequence.as_str(),
        sub_sequence_number: record.position.sub_sequence,
        partition_key: &record.partition_key,
        approximate_arrival_timestamp: record.approximate_arrival_ms.map(Millis),
        tag: record.shard.tag.as_deref(),
        cloudwatch: record.cloudwatch.as_deref().map(CloudWatch::from),
    };
    // `rest` serializes as `{"encoding":…}`; its opening brace becomes the comma after `data`.
    let start = buf.len();
    serde_json::to_writer(&mut *buf, &rest)?;
    buf[start] = b',';
    buf.push(b'\n');
    Ok(())
}

/// Whether JSON needs any of these bytes escaped: control characters, `"` and `\`.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    encoding: &'static str,
    stream: &'a str,
    shard_id: &'a str,
    sequence_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_sequence_number: Option<u64>,
    partition_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_arrival_timestamp: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloudwatch: Option<CloudWatch<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CloudWatch<'a> {
    owner: &'a str,
    log_group: &'a str,
    log_stream: &'a str,
    subscription_filters: &'a [String],
    id: &'a str,
    timestamp: Millis,
}

impl<'a> From<&'a CloudWatchMeta> for CloudWatch<'a> {
    fn from(m: &'a CloudWatchMeta) -> Self {
        Self {
            owner: &m.envelope.owner,
            log_group: &m.envelope.log_group,
            log_stream: &m.envelope.log_stream,
            subscription_filters: &m.envelope.subscription_filters,
            id: &m.id,
            timestamp: Millis(m.timestamp_ms),
        }
    }
}

/// Binary payload bytes, written as a base64 string streamed into the output (no copy).
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Base64Display::new(self.0, &STANDARD))
    }
}

/// Milliseconds since the Unix epoch, written as RFC 3339 with millisecond precision; a value
/// outside jiff's range is written as the plain number rather than dropped.
pub(crate) struct Millis(pub(crate) i64);

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(ts) => s.collect_str(&format_args!("{ts:.3}")),
            Err(_) => s.serialize_i64(self.0),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::*;
    use kinesis_ingester_api::sequence::Position;

    use crate::record::{CloudWatchEnvelope, ShardContext};

    /// A record of shard `shard` at sequence number `seq`.
    pub(crate) fn record(shard: &str, seq: u64, data: &[u8]) -> Record {
        Record {
            data: Bytes::copy_from_slice(data),
            shard: Arc::new(ShardContext {
                stream: "orders".into(),
                shard_id: shard.into(),
                hash_range: (0, u128::MAX),
                tag: None,
            }),
            position: Position::whole(seq.to_string().parse().expect("seq")),
            partition_key: "pk".into(),
            approximate_arrival_ms: None,
            cloudwatch: None,
        }
    }

    fn line(r: &Record) -> Value {
        let mut buf = Vec::new();
        write_line(&mut buf, r).expect("encode");
        assert_eq!(buf.last(), Some(&b'\n'));
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&buf).expect("valid JSON")
    }

    #[test]
    fn utf8_payload_is_text_and_optional_fields_are_omitted() {
        let r = record("shardId-000000000001", 42, "héllo \"x\"\n".as_bytes());
        assert_eq!(
            line(&r),
            json!({
                "data": "héllo \"x\"\n",
                "encoding": "utf8",
                "stream": "orders",
                "shardId": "shardId-000000000001",
                "sequenceNumber": "42",
                "partitionKey": "pk",
            })
        );
    }

    #[test]
    fn binary_payload_is_base64_with_all_fields() {
        let mut r = record("s-1", 7, &[0xff, 0x00, 0xfe]);
        r.position.sub_sequence = Some(3);
        r.approximate_arrival_ms = Some(1_700_000_000_123);
        Arc::make_mut(&mut r.shard).tag = Some("billing".into());
        r.cloudwatch = Some(Box::new(CloudWatchMeta {
            envelope: Arc::new(CloudWatchEnvelope {
                owner: "123456789012".into(),
                log_group: "/aws/lambda/f".into(),
                log_stream: "2026/01/01".into(),
                subscription_filters: vec!["all".into()],
            }),
            id: "3719".into(),
            timestamp_ms: 1_700_000_000_000,
        }));
        assert_eq!(
            line(&r),
            json!({
                "data": "/wD+",
                "encoding": "base64",
                "stream": "orders",
                "shardId": "s-1",
                "sequenceNumber": "7",
                "subSequenceNumber": 3,
                "partitionKey": "pk",
                "approximateArrivalTimestamp": "2023-11-14T22:13:20.123Z",
                "tag": "billing",
                "cloudwatch": {
                    "owner": "123456789012",
                    "logGroup": "/aws/lambda/f",
                    "logStream": "2026/01/01",
                    "subscriptionFilters": ["all"],
                    "id": "3719",
                    "timestamp": "2023-11-14T22:13:20.000Z",
                },
            })
        );
    }

    #[test]
    fn bulk_puts_an_escaped_index_action_before_each_document() {
        let mut enc = Encoding::bulk("logs-\"a\"");
        let mut buf = Vec::new();
        enc.write(&mut buf, &record("s", 1, b"a")).expect("encode");
        enc.write(&mut buf, &record("s", 2, b"b")).expect("encode");
        let text = String::from_utf8(buf).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            r#"{"index":{"_index":"logs-\"a\"","_id":"orders:s:1"}}"#
        );
        assert_eq!(lines[2], lines[0].replace(":1\"", ":2\""));
        let doc: Value = serde_json::from_str(lines[3]).expect("doc");
        assert_eq!(doc["data"], "b");
    }

    #[test]
    fn data_is_the_same_json_string_serde_writes_with_or_without_escapes() {
        for text in [
            "plain ascii",
            "",
            "quote \" and backslash \\",
            "tab\tnewline\n",
            "unicode é 🚀",
            "\u{1}",
        ] {
            let r = record("shardId-1", 1, text.as_bytes());
            let mut buf = Vec::new();
            write_line(&mut buf, &r).unwrap();
            assert!(buf.ends_with(b"\n"));
            let v: Value = serde_json::from_slice(&buf).expect("valid JSON line");
            assert_eq!(v["data"], Value::String(text.to_owned()), "{text:?}");
            assert_eq!(v["encoding"], "utf8");
            let expected_prefix = format!(
                "{{\"data\":{},\"encoding\"",
                serde_json::to_string(text).unwrap()
            );
            assert!(
                String::from_utf8_lossy(&buf).starts_with(&expected_prefix),
                "{text:?}"
            );
        }
    }
}

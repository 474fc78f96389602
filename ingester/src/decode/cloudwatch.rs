//! Unpacking of CloudWatch Logs subscription-filter envelopes into their log events, refusing envelopes CloudWatch Logs cannot have written.

use std::{fmt, marker::PhantomData, sync::Arc};

use bytes::Bytes;
use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, SeqAccess, Visitor},
};

use super::{
    DecodeError, RecordRef,
    gzip::{self, Budget},
    limits::{
        MAX_LOG_EVENT_BYTES, MAX_LOG_EVENTS, MAX_LOG_GROUP_CHARS, MAX_LOG_STREAM_CHARS,
        MAX_OWNER_CHARS, MAX_SUBSCRIPTION_FILTER_CHARS, MAX_SUBSCRIPTION_FILTERS, over_chars,
    },
};
use crate::record::{CloudWatchEnvelope, CloudWatchMeta};

/// One log event of a DATA_MESSAGE envelope.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogEvent {
    pub meta: CloudWatchMeta,
    pub message: Bytes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeJson {
    message_type: MessageType,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    log_group: String,
    #[serde(default)]
    log_stream: String,
    #[serde(default)]
    subscription_filters: Bounded<String, MAX_SUBSCRIPTION_FILTERS>,
    log_events: Option<Bounded<EventJson, MAX_LOG_EVENTS>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum MessageType {
    DataMessage,
    ControlMessage,
}

#[derive(Deserialize)]
struct EventJson {
    id: String,
    timestamp: i64,
    message: String,
}

/// A JSON array of which at most `MAX` elements are kept; the others are only counted, skipped
/// without being allocated, so an array of millions costs no memory.
struct Bounded<T, const MAX: usize> {
    items: Vec<T>,
    count: usize,
}

impl<T, const MAX: usize> Default for Bounded<T, MAX> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            count: 0,
        }
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Bounded<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Elements<T, const MAX: usize>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for Elements<T, MAX> {
            type Value = Bounded<T, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut kept = Bounded::default();
                while kept.items.len() < MAX {
                    match seq.next_element()? {
                        Some(item) => kept.items.push(item),
                        None => break,
                    }
                }
                kept.count = kept.items.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    kept.count += 1;
                }
                Ok(kept)
            }
        }

        deserializer.deserialize_seq(Elements(PhantomData))
    }
}

/// Unpacks the envelope of `record`: `Ok(None)` for a CONTROL_MESSAGE, else its log events in
/// order, sharing one [`CloudWatchEnvelope`]. The payload is gunzipped first (charged to
/// `budget`) if it starts with the gzip magic (what CloudWatch Logs writes), else read as plain
/// JSON. An envelope over a CloudWatch Logs limit is an error naming `record` and the limit.
pub(crate) fn unpack(
    payload: &[u8],
    budget: &mut Budget,
    record: &RecordRef,
) -> Result<Option<Vec<LogEvent>>, DecodeError> {
    let envelope: EnvelopeJson = if gzip::is_gzip(payload) {
        let json = gzip::decompress_within(payload, budget)?;
        serde_json::from_slice(&json)
    } else {
        serde_json::from_slice(payload)
    }
    .map_err(|e| DecodeError::CloudWatchJson(e.to_string()))?;

    let events = match envelope.message_type {
        MessageType::ControlMessage => return Ok(None),
        MessageType::DataMessage => envelope
            .log_events
            .ok_or(DecodeError::CloudWatchMissingLogEvents)?,
    };
    let shared = Arc::new(check_envelope(
        CloudWatchEnvelope {
            owner: envelope.owner,
            log_group: envelope.log_group,
            log_stream: envelope.log_stream,
            subscription_filters: envelope.subscription_filters.items,
        },
        envelope.subscription_filters.count,
        record,
    )?);
    if events.count > MAX_LOG_EVENTS {
        return Err(DecodeError::TooManyLogEvents {
            record: record.clone(),
            count: events.count,
        });
    }
    if let Some((index, event)) = events
        .items
        .iter()
        .enumerate()
        .find(|(_, e)| e.message.len() > MAX_LOG_EVENT_BYTES)
    {
        return Err(DecodeError::LogEventTooLarge {
            record: record.clone(),
            index,
            bytes: event.message.len(),
        });
    }
    let events = events
        .items
        .into_iter()
        .map(|event| LogEvent {
            meta: CloudWatchMeta {
                envelope: Arc::clone(&shared),
                id: event.id,
                timestamp_ms: event.timestamp,
            },
            // Takes over the string's buffer; no copy.
            message: Bytes::from(event.message),
        })
        .collect();
    Ok(Some(events))
}

/// The envelope's metadata if every field is within CloudWatch Logs' limits: it is repeated in
/// the output line of every event, so its size must be bounded, not only its parse.
fn check_envelope(
    envelope: CloudWatchEnvelope,
    filters: usize,
    record: &RecordRef,
) -> Result<CloudWatchEnvelope, DecodeError> {
    let record = || record.clone();
    if let Some(chars) = over_chars(&envelope.owner, MAX_OWNER_CHARS) {
        return Err(DecodeError::OwnerTooLong {
            record: record(),
            chars,
        });
    }
    if let Some(chars) = over_chars(&envelope.log_group, MAX_LOG_GROUP_CHARS) {
        return Err(DecodeError::LogGroupTooLong {
            record: record(),
            chars,
        });
    }
    if let Some(chars) = over_chars(&envelope.log_stream, MAX_LOG_STREAM_CHARS) {
        return Err(DecodeError::LogStreamTooLong {
            record: record(),
            chars,
        });
    }
    if filters > MAX_SUBSCRIPTION_FILTERS {
        return Err(DecodeError::TooManySubscriptionFilters {
            record: record(),
            count: filters,
        });
    }
    let long_filter = envelope
        .subscription_filters
        .iter()
        .find_map(|f| over_chars(f, MAX_SUBSCRIPTION_FILTER_CHARS));
    if let Some(chars) = long_filter {
        return Err(DecodeError::SubscriptionFilterTooLong {
            record: record(),
            chars,
        });
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::decode::testing::{cloudwatch_bomb, gzip};

    const MAX: usize = 1 << 20;

    const DATA: &str = r#"{
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/aws/lambda/f",
        "logStream": "2024/01/01/[$LATEST]abc",
        "subscriptionFilters": ["to-kinesis"],
        "logEvents": [
            {"id": "e1", "timestamp": 1700000000001, "message": "first"},
            {"id": "e2", "timestamp": 1700000000002, "message": "{\"level\":\"info\"}"},
            {"id": "e3", "timestamp": 1700000000003, "message": "third \u00e9"}
        ]
    }"#;

    fn record() -> RecordRef {
        RecordRef {
            shard_id: "shardId-000000000000".into(),
            sequence: "49590338271490256608559692538361571095921575989136588898"
                .parse()
                .expect("sequence number"),
            user_record: None,
        }
    }

    fn unpack_all(payload: &[u8]) -> Result<Option<Vec<LogEvent>>, DecodeError> {
        unpack(payload, &mut Budget::new(MAX), &record())
    }

    /// A DATA_MESSAGE envelope with `fields` replacing the defaults, and `events` "m" events.
    fn envelope(fields: serde_json::Value, events: usize) -> Vec<u8> {
        let mut body = json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/app",
            "logStream": "i-1", "subscriptionFilters": ["all"],
            "logEvents": (0..events)
                .map(|i| json!({"id": i.to_string(), "timestamp": 1, "message": "m"}))
                .collect::<Vec<_>>(),
        });
        if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
            body.extend(fields.clone());
        }
        body.to_string().into_bytes()
    }

    #[test]
    fn data_message_yields_one_event_per_log_event_with_metadata() {
        let events = unpack_all(&gzip(DATA.as_bytes()))
            .expect("valid envelope")
            .expect("data message");
        let messages: Vec<_> = events.iter().map(|e| &e.message[..]).collect();
        assert_eq!(
            messages,
            [&b"first"[..], br#"{"level":"info"}"#, "third é".as_bytes()]
        );
        assert_eq!(
            events[1].meta,
            CloudWatchMeta {
                envelope: Arc::new(CloudWatchEnvelope {
                    owner: "123456789012".into(),
                    log_group: "/aws/lambda/f".into(),
                    log_stream: "2024/01/01/[$LATEST]abc".into(),
                    subscription_filters: vec!["to-kinesis".into()],
                }),
                id: "e2".into(),
                timestamp_ms: 1_700_000_000_002,
            }
        );
        assert_eq!(events[2].meta.id, "e3");
    }

    #[test]
    fn the_events_of_an_envelope_share_one_copy_of_its_metadata() {
        let events = unpack_all(&envelope(json!({}), 3))
            .expect("valid")
            .expect("data");
        assert!(
            events
                .iter()
                .all(|e| Arc::ptr_eq(&e.meta.envelope, &events[0].meta.envelope)),
            "metadata copied per event"
        );
    }

    #[test]
    fn plain_json_is_accepted_too() {
        let events = unpack_all(DATA.as_bytes()).expect("valid").expect("data");
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn control_message_yields_nothing() {
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"",
            "logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,
            "message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        assert_eq!(unpack_all(&gzip(control.as_bytes())).expect("valid"), None);
    }

    #[test]
    fn bad_envelopes_are_cloudwatch_errors_naming_the_problem() {
        let err = unpack_all(b"{\"messageType\": \"DATA_MESSAGE\", ").expect_err("truncated");
        assert_eq!(err.category(), "cloudwatch");
        assert!(err.to_string().contains("EOF"), "{err}");

        let err = unpack_all(br#"{"messageType":"OTHER"}"#).expect_err("unknown type");
        assert!(err.to_string().contains("unknown variant `OTHER`"), "{err}");

        let err = unpack_all(br#"{"messageType":"DATA_MESSAGE"}"#).expect_err("no events");
        assert!(err.to_string().contains("logEvents"), "{err}");

        let err = unpack_all(br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"x"}]}"#)
            .expect_err("event without timestamp");
        assert!(
            err.to_string().contains("missing field `timestamp`"),
            "{err}"
        );

        let mut broken_gzip = gzip(DATA.as_bytes()).to_vec();
        broken_gzip.truncate(20);
        let err = unpack_all(&broken_gzip).expect_err("truncated gzip");
        assert_eq!(err.category(), "gzip");
    }

    #[test]
    fn envelopes_at_the_limits_are_unpacked() {
        let at_limits = envelope(
            json!({
                "owner": "1".repeat(12),
                "logGroup": "g".repeat(512),
                "logStream": "é".repeat(512),
                "subscriptionFilters": ["f".repeat(512), "f2"],
                "logEvents": [{"id": "1", "timestamp": 1, "message": "m".repeat(MAX_LOG_EVENT_BYTES)}],
            }),
            0,
        );
        let events = unpack(&at_limits, &mut Budget::new(4 << 20), &record())
            .expect("within the limits")
            .expect("data");
        assert_eq!(events.len(), 1);
        let events = unpack_all(&gzip(&envelope(json!({}), MAX_LOG_EVENTS)))
            .expect("10,000 events")
            .expect("data");
        assert_eq!(events.len(), MAX_LOG_EVENTS);
    }

    #[test]
    fn each_metadata_field_over_its_limit_is_refused() {
        let cases = [
            (json!({"owner": "1".repeat(13)}), "owner_too_long"),
            (json!({"logGroup": "g".repeat(513)}), "log_group_too_long"),
            (json!({"logStream": "é".repeat(513)}), "log_stream_too_long"),
            (
                json!({"subscriptionFilters": ["a", "b", "c"]}),
                "too_many_subscription_filters",
            ),
            (
                json!({"subscriptionFilters": ["f".repeat(513)]}),
                "subscription_filter_too_long",
            ),
        ];
        for (fields, reason) in cases {
            let err = unpack_all(&envelope(fields, 1)).expect_err(reason);
            assert_eq!((err.category(), err.reason()), ("cloudwatch", reason));
            assert_eq!(err.record(), Some(&record()), "{err}");
            let text = err.to_string();
            assert!(text.contains("49590338271490256608559692538361571095921575989136588898"));
            assert!(text.contains("shardId-000000000000"), "{text}");
        }
        let err = unpack_all(&envelope(json!({"logGroup": "g".repeat(600)}), 1)).expect_err("long");
        assert!(
            matches!(err, DecodeError::LogGroupTooLong { chars: 600, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("limit of 512"), "{err}");
    }

    #[test]
    fn more_events_than_a_put_log_events_batch_are_refused_without_keeping_them() {
        let err = unpack_all(&gzip(&envelope(json!({}), MAX_LOG_EVENTS + 1))).expect_err("10,001");
        assert!(
            matches!(err, DecodeError::TooManyLogEvents { count: 10_001, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("over the 10000"), "{err}");
        // Extra subscription filters are counted, not kept, either.
        let many: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
        let err = unpack_all(&envelope(json!({"subscriptionFilters": many}), 1)).expect_err("many");
        assert!(
            matches!(
                err,
                DecodeError::TooManySubscriptionFilters { count: 100_000, .. }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_message_over_the_event_size_limit_is_refused() {
        let big = envelope(
            json!({"logEvents": [
                {"id": "a", "timestamp": 1, "message": "ok"},
                {"id": "b", "timestamp": 1, "message": "m".repeat(MAX_LOG_EVENT_BYTES + 1)},
            ]}),
            0,
        );
        let err = unpack(&big, &mut Budget::new(4 << 20), &record()).expect_err("too large");
        assert!(
            matches!(err, DecodeError::LogEventTooLarge { index: 1, bytes, .. } if bytes == MAX_LOG_EVENT_BYTES + 1),
            "{err:?}"
        );
    }

    #[test]
    fn the_metadata_bomb_is_refused() {
        // 2 MiB log group, 50,000 one-character events: 4.8 MB of JSON in 132 KB of gzip,
        // that once cost 100 GB (the log group copied into every event).
        let bomb = cloudwatch_bomb(2 << 20, 50_000);
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let err = unpack(&bomb, &mut Budget::new(64 << 20), &record()).expect_err("bomb");
        assert!(
            matches!(err, DecodeError::LogGroupTooLong { chars, .. } if chars == 2 << 20),
            "{err:?}"
        );
    }

    #[test]
    fn the_gunzip_is_charged_to_the_budget() {
        let payload = gzip(DATA.as_bytes());
        let mut budget = Budget::new(MAX);
        unpack(&payload, &mut budget, &record()).expect("valid");
        assert_eq!(budget.left(), MAX - DATA.len());
        let mut small = Budget::new(10);
        let err = unpack(&payload, &mut small, &record()).expect_err("over budget");
        assert_eq!(err, DecodeError::GzipTooLarge { max_bytes: 10 });
    }
}

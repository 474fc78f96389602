//! Unpacking of CloudWatch Logs subscription-filter envelopes into their log events.

use bytes::Bytes;
use serde::Deserialize;

use super::{DecodeError, gzip};
use crate::record::CloudWatchMeta;

/// One log event of a DATA_MESSAGE envelope.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogEvent {
    pub meta: CloudWatchMeta,
    pub message: Bytes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message_type: MessageType,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    log_group: String,
    #[serde(default)]
    log_stream: String,
    #[serde(default)]
    subscription_filters: Vec<String>,
    log_events: Option<Vec<EnvelopeEvent>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum MessageType {
    DataMessage,
    ControlMessage,
}

#[derive(Deserialize)]
struct EnvelopeEvent {
    id: String,
    timestamp: i64,
    message: String,
}

/// Unpacks an envelope: `Ok(None)` for a CONTROL_MESSAGE, else its log events in order. The
/// payload is gunzipped first if it starts with the gzip magic (what CloudWatch Logs writes),
/// else read as plain JSON.
pub(crate) fn unpack(
    payload: &[u8],
    max_decompressed_bytes: usize,
) -> Result<Option<Vec<LogEvent>>, DecodeError> {
    let envelope: Envelope = if gzip::is_gzip(payload) {
        let json = gzip::decompress(payload, max_decompressed_bytes)?;
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
    let events = events
        .into_iter()
        .map(|event| LogEvent {
            meta: CloudWatchMeta {
                owner: envelope.owner.clone(),
                log_group: envelope.log_group.clone(),
                log_stream: envelope.log_stream.clone(),
                subscription_filters: envelope.subscription_filters.clone(),
                id: event.id,
                timestamp_ms: event.timestamp,
            },
            // Takes over the string's buffer; no copy.
            message: Bytes::from(event.message),
        })
        .collect();
    Ok(Some(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testing::gzip;

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

    #[test]
    fn data_message_yields_one_event_per_log_event_with_metadata() {
        let events = unpack(&gzip(DATA.as_bytes()), MAX)
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
                owner: "123456789012".into(),
                log_group: "/aws/lambda/f".into(),
                log_stream: "2024/01/01/[$LATEST]abc".into(),
                subscription_filters: vec!["to-kinesis".into()],
                id: "e2".into(),
                timestamp_ms: 1_700_000_000_002,
            }
        );
        assert_eq!(events[2].meta.id, "e3");
    }

    #[test]
    fn plain_json_is_accepted_too() {
        let events = unpack(DATA.as_bytes(), MAX).expect("valid").expect("data");
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn control_message_yields_nothing() {
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"",
            "logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,
            "message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        assert_eq!(unpack(&gzip(control.as_bytes()), MAX).expect("valid"), None);
    }

    #[test]
    fn bad_envelopes_are_cloudwatch_errors_naming_the_problem() {
        let err = unpack(b"{\"messageType\": \"DATA_MESSAGE\", ", MAX).expect_err("truncated");
        assert_eq!(err.category(), "cloudwatch");
        assert!(err.to_string().contains("EOF"), "{err}");

        let err = unpack(br#"{"messageType":"OTHER"}"#, MAX).expect_err("unknown type");
        assert!(err.to_string().contains("unknown variant `OTHER`"), "{err}");

        let err = unpack(br#"{"messageType":"DATA_MESSAGE"}"#, MAX).expect_err("no events");
        assert!(err.to_string().contains("logEvents"), "{err}");

        let err = unpack(
            br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"x"}]}"#,
            MAX,
        )
        .expect_err("event without timestamp");
        assert!(
            err.to_string().contains("missing field `timestamp`"),
            "{err}"
        );

        let mut broken_gzip = gzip(DATA.as_bytes()).to_vec();
        broken_gzip.truncate(20);
        let err = unpack(&broken_gzip, MAX).expect_err("truncated gzip");
        assert_eq!(err.category(), "gzip");
    }
}

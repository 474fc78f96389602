use std::sync::Arc;

use bytes::Bytes;
use kinesis_ingester_api::{
    KinesisIngesterSpec, TransformSpec, VrlTransform,
    sequence::{Position, SequenceNumber},
};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::record::{CloudWatchEnvelope, CloudWatchMeta, ShardContext};

fn transform(source: &str) -> Arc<Transform> {
    let spec: KinesisIngesterSpec = serde_json::from_value(serde_json::json!({
        "stream": {"name": "s"},
        "sink": {"stdout": {}},
    }))
    .expect("spec");
    let spec = KinesisIngesterSpec {
        transform: Some(TransformSpec {
            vrl: Some(VrlTransform {
                source: source.into(),
            }),
            http: None,
        }),
        ..spec
    };
    Transform::from_spec(&spec)
        .expect("compiles")
        .expect("a transform")
}

fn record(seq: &str, sub: Option<u64>, data: &str) -> Record {
    Record {
        data: Bytes::copy_from_slice(data.as_bytes()),
        shard: Arc::new(ShardContext {
            stream: "orders".into(),
            shard_id: "shardId-000000000000".into(),
            hash_range: (0, u128::MAX),
            tag: Some("prod".into()),
        }),
        position: Position {
            sequence: seq.parse::<SequenceNumber>().expect("sequence"),
            sub_sequence: sub,
        },
        partition_key: "pk".into(),
        approximate_arrival_ms: Some(7),
        cloudwatch: None,
    }
}

#[tokio::test]
async fn records_are_kept_reshaped_dropped_or_dead_lettered_in_order() {
    let t = transform(
        r#"
        if .kind == "noise" { abort }
        .n = int!(.n) * 2
        .tag = %tag
        "#,
    );
    let records = vec![
        record("1", None, r#"{"kind":"a","n":1}"#),
        record("2", None, r#"{"kind":"noise","n":2}"#),
        record("3", Some(4), r#"{"kind":"b","n":"x"}"#),
        record("4", None, r#"{"kind":"c","n":3}"#),
    ];
    let mut dead = Vec::new();
    let mut stats = TransformStats::default();
    let out = t
        .apply(records, &mut dead, &mut stats, &CancellationToken::new())
        .await
        .expect("not cancelled");
    let data: Vec<_> = out
        .iter()
        .map(|r| {
            (
                r.position.sequence.as_str(),
                String::from_utf8_lossy(&r.data).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        data,
        [
            ("1", r#"{"kind":"a","n":2,"tag":"prod"}"#.to_owned()),
            ("4", r#"{"kind":"c","n":6,"tag":"prod"}"#.to_owned()),
        ]
    );
    assert_eq!(stats.kept, 2);
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.failed, [("error", 1)]);
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.category, "transform");
    assert_eq!(letter.raw.sequence_number.as_str(), "3");
    assert_eq!(&letter.raw.data[..], br#"{"kind":"b","n":"x"}"#);
    assert!(
        letter.reason.starts_with("transform: ") && letter.reason.contains("user record 4"),
        "{}",
        letter.reason
    );
}

#[tokio::test]
async fn cloudwatch_events_are_seen_with_their_log_group() {
    let t = transform(r#". = {"group": %cloudwatch.log_group, "message": .}"#);
    let mut r = record("1", Some(0), "GET /health 200");
    r.cloudwatch = Some(Box::new(CloudWatchMeta {
        envelope: Arc::new(CloudWatchEnvelope {
            owner: "123456789012".into(),
            log_group: "/aws/lambda/pay".into(),
            log_stream: "s".into(),
            subscription_filters: vec![],
        }),
        id: "e".into(),
        timestamp_ms: 1,
    }));
    let out = t
        .apply(
            vec![r],
            &mut Vec::new(),
            &mut TransformStats::default(),
            &CancellationToken::new(),
        )
        .await
        .expect("not cancelled");
    assert_eq!(
        &out[0].data[..],
        br#"{"group":"/aws/lambda/pay","message":"GET /health 200"}"#
    );
}

#[test]
fn no_transform_without_the_field() {
    let spec: KinesisIngesterSpec = serde_json::from_value(serde_json::json!({
        "stream": {"name": "s"},
        "sink": {"stdout": {}},
    }))
    .expect("spec");
    assert!(Transform::from_spec(&spec).expect("no error").is_none());
}

use std::sync::{Arc, atomic::Ordering::Relaxed};

use bytes::Bytes;
use kinesis_ingester_api::{
    KinesisIngesterSpec,
    sequence::{Position, SequenceNumber},
};
use serde_json::json;

use super::*;
use crate::record::{CloudWatchEnvelope, CloudWatchMeta};

fn router(sinks: serde_json::Value) -> Router {
    let spec: KinesisIngesterSpec =
        serde_json::from_value(json!({"stream": {"name": "s"}, "sinks": sinks})).expect("spec");
    spec.validate().expect("valid");
    Router::from_spec(&spec).expect("compiles")
}

fn record(seq: u32, data: &str, log_group: Option<&str>) -> Record {
    Record {
        data: Bytes::copy_from_slice(data.as_bytes()),
        shard: Arc::new(ShardContext {
            stream: "orders".into(),
            shard_id: "shardId-000000000000".into(),
            hash_range: (0, u128::MAX),
            tag: None,
        }),
        position: Position {
            sequence: seq.to_string().parse::<SequenceNumber>().expect("sequence"),
            sub_sequence: None,
        },
        partition_key: "pk".into(),
        approximate_arrival_ms: None,
        cloudwatch: log_group.map(|g| {
            Box::new(CloudWatchMeta {
                envelope: Arc::new(CloudWatchEnvelope {
                    owner: "1".into(),
                    log_group: g.into(),
                    log_stream: "ls".into(),
                    subscription_filters: vec![],
                }),
                id: seq.to_string(),
                timestamp_ms: 0,
            })
        }),
    }
}

/// Each sink's records, as sequence numbers.
fn seqs(parts: &[Vec<Record>]) -> Vec<Vec<String>> {
    parts
        .iter()
        .map(|p| p.iter().map(|r| r.position.sequence.to_string()).collect())
        .collect()
}

#[test]
fn log_groups_route_records_and_the_default_takes_the_rest_while_an_archive_takes_all() {
    let r = router(json!([
        {"name": "a", "route": {"logGroups": ["/app/a"]}, "stdout": {}, "tag": "team-a"},
        {"name": "b", "route": {"logGroups": ["/app/b", "/app/ab"]}, "stdout": {}},
        {"name": "archive", "stdout": {}},
        {"name": "rest", "default": true, "stdout": {}},
    ]));
    let parts = r.split(vec![
        record(1, "x", Some("/app/a")),
        record(2, "x", Some("/app/b")),
        record(3, "x", Some("/app/c")),
        record(4, "x", None),
        record(5, "x", Some("/app/ab")),
    ]);
    assert_eq!(
        seqs(&parts),
        vec![
            vec!["1"],
            vec!["2", "5"],
            vec!["1", "2", "3", "4", "5"],
            vec!["3", "4"]
        ]
    );
    assert_eq!(parts[0][0].shard.tag.as_deref(), Some("team-a"), "a's tag");
    assert_eq!(parts[1][0].shard.tag, None);
    let stats = r.stats();
    assert_eq!(stats.unrouted.load(Relaxed), 0);
    assert_eq!(stats.routed[2].load(Relaxed), 5);
}

#[test]
fn without_a_default_unmatched_records_are_counted_as_unrouted() {
    let r = router(json!([
        {"name": "errors", "route": {"field": {"path": "log.level", "values": ["error", "500"]}}, "stdout": {}},
        {"name": "audit", "route": {"vrl": "%kinesis.partition_key == \"pk\" && .audit == true"}, "stdout": {}},
    ]));
    let parts = r.split(vec![
        record(1, r#"{"log": {"level": "error"}}"#, None),
        record(2, r#"{"log": {"level": 500}, "audit": true}"#, None),
        record(3, r#"{"log": {"level": "info"}}"#, None),
        record(4, "not json", None),
        record(5, r#"{"audit": "yes"}"#, None),
    ]);
    assert_eq!(seqs(&parts), vec![vec!["1", "2"], vec!["2"]]);
    let stats = r.stats();
    assert_eq!(
        stats.unrouted.load(Relaxed),
        3,
        "3, 4 and 5 matched nothing"
    );
    assert_eq!(
        stats.errors[1].load(Relaxed),
        0,
        "a false condition is no error"
    );
}

#[test]
fn a_failing_condition_is_no_match_and_counted() {
    let r = router(json!([
        {"name": "x", "route": {"vrl": "upcase!(.name) == \"A\""}, "stdout": {}},
        {"name": "rest", "default": true, "stdout": {}},
    ]));
    let parts = r.split(vec![
        record(1, r#"{"name": "a"}"#, None),
        record(2, r#"{"name": 1}"#, None),
    ]);
    assert_eq!(seqs(&parts), vec![vec!["1"], vec!["2"]]);
    assert_eq!(r.stats().errors[0].load(Relaxed), 1);
}

#[test]
fn a_condition_that_does_not_compile_names_its_field() {
    let spec: KinesisIngesterSpec = serde_json::from_value(json!({
        "stream": {"name": "s"},
        "sinks": [
            {"name": "ok", "stdout": {}},
            {"name": "bad", "route": {"vrl": ".x =="}, "stdout": {}},
        ],
    }))
    .expect("spec");
    let err = Router::from_spec(&spec).expect_err("does not compile");
    assert!(
        err.to_string().starts_with("spec.sinks[1].route.vrl: "),
        "{err}"
    );
}

#[test]
fn the_examples_alert_condition_matches_error_levels_only() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/routing.yaml"
    ))
    .expect("examples/routing.yaml");
    let ki: kinesis_ingester_api::KinesisIngester =
        serde_saphyr::from_str(&example).expect("parses");
    let r = Router::from_spec(&ki.spec).expect("compiles");
    let parts = r.split(vec![
        record(1, r#"{"level": "error", "msg": "x"}"#, Some("/ecs/other")),
        record(2, r#"{"level": "info"}"#, Some("/ecs/search")),
        record(3, "plain text", Some("/aws/lambda/payments-api")),
        record(4, r#"{"level": "info"}"#, Some("/ecs/other")),
    ]);
    let names: Vec<&str> = ki.spec.sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["payments", "search", "alerts", "archive", "unrouted"]
    );
    assert_eq!(
        seqs(&parts),
        vec![
            vec!["3"],
            vec!["2"],
            vec!["1"],
            vec!["1", "2", "3", "4"],
            vec!["4"]
        ]
    );
}

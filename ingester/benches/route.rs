//! The cost of routing (`spec.sinks[].route`) per record: µs per record and records/s on one
//! core, for each kind of route, splitting one GetRecords page of CloudWatch Logs events among
//! four sinks (three routes and an archive that takes everything).

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use kinesis_ingester::{
    record::{CloudWatchEnvelope, CloudWatchMeta, Record, ShardContext},
    route::Router,
};
use kinesis_ingester_api::{KinesisIngesterSpec, sequence::Position};
use serde_json::json;

/// How long each case is measured.
const RUN_FOR: Duration = Duration::from_millis(2500);
/// Records per pass (one GetRecords page).
const PER_PASS: usize = 1000;
const GROUPS: [&str; 4] = ["/app/a", "/app/b", "/app/c", "/app/other"];
const LEVELS: [&str; 4] = ["error", "warn", "info", "debug"];

fn main() {
    println!(
        "{:<52} {:>12} {:>16}",
        "route, 4 sinks (one core, release)", "µs/record", "records/s"
    );
    let three = |route: &dyn Fn(usize) -> serde_json::Value| {
        let mut sinks: Vec<serde_json::Value> = (0..3)
            .map(|i| json!({"name": format!("s{i}"), "route": route(i), "stdout": {}}))
            .collect();
        sinks.push(json!({"name": "archive", "stdout": {}}));
        json!(sinks)
    };
    measure(
        "logGroups (one group each)",
        three(&|i| json!({"logGroups": [GROUPS[i]]})),
    );
    measure(
        "field: level in [..], 1 KiB JSON",
        three(&|i| json!({"field": {"path": "level", "values": [LEVELS[i]]}})),
    );
    measure(
        "vrl: %cloudwatch.log_group == ..",
        three(&|i| json!({"vrl": format!("%cloudwatch.log_group == \"{}\"", GROUPS[i])})),
    );
    measure(
        "vrl: .level == .. (parses the 1 KiB payload)",
        three(&|i| json!({"vrl": format!(".level == \"{}\"", LEVELS[i])})),
    );
}

fn measure(name: &str, sinks: serde_json::Value) {
    let spec: KinesisIngesterSpec =
        match serde_json::from_value(json!({"stream": {"name": "bench"}, "sinks": sinks})) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{name}: {e}");
                return;
            }
        };
    let router = match Router::from_spec(&spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: {e}");
            return;
        }
    };
    let shard = Arc::new(ShardContext {
        stream: "bench".into(),
        shard_id: "shardId-000000000000".into(),
        hash_range: (0, u128::MAX),
        tag: None,
    });
    let envelopes: Vec<Arc<CloudWatchEnvelope>> = GROUPS
        .iter()
        .map(|g| {
            Arc::new(CloudWatchEnvelope {
                owner: "123456789012".into(),
                log_group: (*g).into(),
                log_stream: "stream".into(),
                subscription_filters: vec!["all".into()],
            })
        })
        .collect();
    let records: Vec<Record> = (0..PER_PASS)
        .map(|i| Record {
            data: Bytes::from(payload(i)),
            shard: shard.clone(),
            position: Position::whole(format!("{:056}", i).parse().expect("sequence")),
            partition_key: format!("device-{}", i % 64).into(),
            approximate_arrival_ms: Some(1_700_000_000_000),
            cloudwatch: Some(Box::new(CloudWatchMeta {
                envelope: envelopes[i % GROUPS.len()].clone(),
                id: i.to_string(),
                timestamp_ms: 1_700_000_000_000,
            })),
        })
        .collect();
    let start = Instant::now();
    let mut passes = 0_u64;
    while start.elapsed() < RUN_FOR {
        black_box(router.split(records.clone()));
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = passes * PER_PASS as u64;
    println!(
        "{:<52} {:>12.2} {:>16.0}",
        name,
        secs * 1e6 / n as f64,
        n as f64 / secs
    );
}

/// A 1 KiB JSON log event with a level.
fn payload(i: usize) -> Vec<u8> {
    let level = LEVELS[i % 4];
    let mut doc =
        json!({"level": level, "ts": 1_700_000_000_000_u64 + i as u64, "msg": "request served"});
    doc["pad"] = json!("x".repeat(1024 - doc.to_string().len() - 10));
    doc.to_string().into_bytes()
}

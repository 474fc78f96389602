//! Decode throughput (MB/s of user payload, user records/s) for KPL, gzip, CloudWatch and plain records.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use kinesis_ingester::{
    decode::{
        DEFAULT_MAX_DECOMPRESSED_BYTES, DecodeStats, Decoder,
        testing::{UserRecordSpec, encode_aggregated, gzip},
    },
    record::{RawRecord, ShardContext},
};
use kinesis_ingester_api::{Compression, DecodeSpec, RecordFormat};

/// How long each case is measured.
const RUN_FOR: Duration = Duration::from_millis(2500);
/// User records per aggregated record, and payload size of each.
const USER_RECORDS: usize = 100;
const USER_RECORD_BYTES: usize = 1024;
/// Kinesis records per pass.
const AGGREGATED_PER_PASS: usize = 20;
const PLAIN_PER_PASS: usize = AGGREGATED_PER_PASS * USER_RECORDS;

struct Case {
    name: &'static str,
    decoder: Decoder,
    raws: Vec<RawRecord>,
    /// Decoded user payload bytes and records one pass produces.
    payload_bytes: u64,
    records: u64,
}

fn main() {
    let mut rng = fastrand::Rng::with_seed(7);
    let payloads: Vec<Vec<u8>> = (0..PLAIN_PER_PASS)
        .map(|i| json_line(&mut rng, i))
        .collect();
    let keys: Vec<String> = (0..PLAIN_PER_PASS).map(|i| format!("device-{i}")).collect();
    let payload_bytes = payloads.iter().map(|p| p.len() as u64).sum::<u64>();
    let gzipped: Vec<Bytes> = payloads.iter().map(|p| gzip(p)).collect();

    let aggregate = |data: &dyn Fn(usize) -> Bytes| -> Vec<RawRecord> {
        (0..AGGREGATED_PER_PASS)
            .map(|a| {
                let range = a * USER_RECORDS..(a + 1) * USER_RECORDS;
                let datas: Vec<Bytes> = range.clone().map(data).collect();
                let users: Vec<UserRecordSpec<'_>> = range
                    .zip(&datas)
                    .map(|(i, d)| UserRecordSpec {
                        partition_key: &keys[i],
                        explicit_hash_key: None,
                        data: d,
                    })
                    .collect();
                raw(a, encode_aggregated(&users))
            })
            .collect()
    };
    let plain = |data: &dyn Fn(usize) -> Bytes| -> Vec<RawRecord> {
        (0..PLAIN_PER_PASS).map(|i| raw(i, data(i))).collect()
    };
    let as_is = |i: usize| Bytes::copy_from_slice(&payloads[i]);
    let compressed = |i: usize| gzipped[i].clone();

    let cases = [
        Case {
            name: "KPL de-aggregation (100 x 1 KiB user records per record)",
            decoder: decoder(true, Compression::None, RecordFormat::Raw),
            raws: aggregate(&as_is),
            payload_bytes,
            records: PLAIN_PER_PASS as u64,
        },
        Case {
            name: "KPL de-aggregation + gzip user records",
            decoder: decoder(true, Compression::Gzip, RecordFormat::Raw),
            raws: aggregate(&compressed),
            payload_bytes,
            records: PLAIN_PER_PASS as u64,
        },
        Case {
            name: "gzip (plain 1 KiB records)",
            decoder: decoder(true, Compression::Gzip, RecordFormat::Raw),
            raws: plain(&compressed),
            payload_bytes,
            records: PLAIN_PER_PASS as u64,
        },
        Case {
            name: "plain passthrough (1 KiB records, KPL check on)",
            decoder: decoder(true, Compression::None, RecordFormat::Raw),
            raws: plain(&as_is),
            payload_bytes,
            records: PLAIN_PER_PASS as u64,
        },
        cloudwatch_case(&payloads),
    ];

    println!("decode throughput, {} s per case", RUN_FOR.as_secs_f64());
    for case in &cases {
        measure(case);
    }
}

/// CloudWatch Logs envelopes of 100 log events each (the 1 KiB payloads as messages).
fn cloudwatch_case(payloads: &[Vec<u8>]) -> Case {
    let raws: Vec<RawRecord> = payloads
        .chunks(USER_RECORDS)
        .enumerate()
        .map(|(n, chunk)| {
            let events: Vec<serde_json::Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    serde_json::json!({
                        "id": format!("{n}-{i}"),
                        "timestamp": 1_700_000_000_000_i64 + i as i64,
                        "message": String::from_utf8_lossy(p),
                    })
                })
                .collect();
            let envelope = serde_json::json!({
                "messageType": "DATA_MESSAGE", "owner": "123456789012",
                "logGroup": "/aws/lambda/bench", "logStream": "2024/01/01/[$LATEST]0",
                "subscriptionFilters": ["bench"], "logEvents": events,
            });
            raw(n, gzip(envelope.to_string().as_bytes()))
        })
        .collect();
    Case {
        name: "CloudWatch Logs (gzip envelopes of 100 events of 1 KiB)",
        decoder: decoder(true, Compression::None, RecordFormat::CloudWatchLogs),
        raws,
        payload_bytes: payloads.iter().map(|p| p.len() as u64).sum(),
        records: payloads.len() as u64,
    }
}

fn measure(case: &Case) {
    let shard = Arc::new(ShardContext {
        stream: "bench".into(),
        shard_id: "shardId-000000000000".into(),
        hash_range: (0, u128::MAX),
        tag: None,
    });
    let mut out = Vec::with_capacity(case.records as usize);
    let mut dead = Vec::new();
    let mut stats = DecodeStats::default();
    let mut pass = |stats: &mut DecodeStats| {
        for raw in &case.raws {
            case.decoder
                .decode(&shard, raw.clone(), &mut out, &mut dead, stats);
        }
        black_box(&out);
        out.clear();
        dead.clear();
    };

    pass(&mut DecodeStats::default());
    let start = Instant::now();
    let mut passes = 0_u64;
    while start.elapsed() < RUN_FOR {
        pass(&mut stats);
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    if stats.records_out != passes * case.records || stats.dead_letters_total() != 0 {
        eprintln!("warning: {}: unexpected output {stats:?}", case.name);
    }
    let mb = (passes * case.payload_bytes) as f64 / 1e6;
    let raw_mb = (passes * case.raws.iter().map(|r| r.data.len() as u64).sum::<u64>()) as f64 / 1e6;
    println!(
        "{:<58} {:>9.1} MB/s user payload {:>12.0} user records/s ({:.1} MB/s read from Kinesis)",
        case.name,
        mb / secs,
        stats.records_out as f64 / secs,
        raw_mb / secs,
    );
}

fn decoder(kpl_deaggregation: bool, compression: Compression, format: RecordFormat) -> Decoder {
    let spec = DecodeSpec {
        kpl_deaggregation,
        compression,
        format,
    };
    Decoder::new(&spec, DEFAULT_MAX_DECOMPRESSED_BYTES)
}

fn raw(n: usize, data: Bytes) -> RawRecord {
    RawRecord {
        data,
        partition_key: format!("key-{n}").into(),
        sequence_number: format!("4959033827149025660855969253836157109592157598913{n:07}")
            .parse()
            .expect("bench sequence number"),
        approximate_arrival_ms: Some(1_700_000_000_000),
    }
}

/// A 1 KiB JSON line, about as compressible as real telemetry.
fn json_line(rng: &mut fastrand::Rng, i: usize) -> Vec<u8> {
    let mut line = format!(
        r#"{{"device":"device-{i}","ts":{},"level":"info","values":["#,
        1_700_000_000_000_u64 + i as u64
    );
    while line.len() < USER_RECORD_BYTES - 24 {
        line.push_str(&format!("{:.4},", rng.f64() * 1000.0));
    }
    line.push_str(r#""end"],"ok":true}"#);
    while line.len() < USER_RECORD_BYTES {
        line.push(' ');
    }
    line.into_bytes()
}

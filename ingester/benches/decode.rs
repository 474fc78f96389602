//! Decode throughput (MB/s of user payload, user records/s) and peak RSS growth for KPL, gzip, CloudWatch, plain and hostile records.

use std::{
    hint::black_box,
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use kinesis_ingester::{
    decode::{
        DEFAULT_MAX_DECOMPRESSED_BYTES, DecodeStats, Decoder,
        testing::{UserRecordSpec, cloudwatch_bomb, encode_aggregated, gzip, kpl_key_bomb},
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
    spec: DecodeSpec,
    raws: Vec<RawRecord>,
    /// Decoded user payload bytes and records one pass produces (for a case that is
    /// dead-lettered: the bytes decoded before the record is refused).
    payload_bytes: u64,
    records: u64,
    /// Dead letters one pass produces.
    dead_letters: u64,
}

fn main() {
    if let Ok(path) = std::env::var(PEAK_INPUT) {
        return peak_child(&path);
    }
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
            spec: spec(true, Compression::None, RecordFormat::Raw),
            raws: aggregate(&as_is),
            payload_bytes,
            records: PLAIN_PER_PASS as u64,
            dead_letters: 0,
        },
        Case {
            name: "KPL de-aggregation + gzip user records",
            spec: spec(true, Compression::Gzip, RecordFormat::Raw),
            raws: aggregate(&compressed),
            payload_bytes,
            records: PLAIN_PER_PASS as u64,
            dead_letters: 0,
        },
        Case {
            name: "gzip (plain 1 KiB records)",
            spec: spec(true, Compression::Gzip, RecordFormat::Raw),
            raws: plain(&compressed),
            payload_bytes,
            records: PLAIN_PER_PASS as u64,
            dead_letters: 0,
        },
        Case {
            name: "plain passthrough (1 KiB records, KPL check on)",
            spec: spec(true, Compression::None, RecordFormat::Raw),
            raws: plain(&as_is),
            payload_bytes,
            records: PLAIN_PER_PASS as u64,
            dead_letters: 0,
        },
        cloudwatch_case(&payloads),
        cloudwatch_at_the_limits(),
        cloudwatch_bomb_case(),
        kpl_key_at_the_limit(),
        kpl_key_bomb_case(),
    ];

    println!(
        "decode throughput, {} s per case; peak RSS growth over the case (VmHWM)",
        RUN_FOR.as_secs_f64()
    );
    for case in &cases {
        measure(case);
    }
}

/// One envelope at CloudWatch Logs' limits: a 512-character log group and stream, 10,000
/// one-character events. Delivered: every event shares the envelope's metadata.
fn cloudwatch_at_the_limits() -> Case {
    let events: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"id":"{i}","timestamp":1700000000000,"message":"x"}}"#))
        .collect();
    let json = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"{}","logStream":"{}","subscriptionFilters":["f"],"logEvents":[{}]}}"#,
        "g".repeat(512),
        "s".repeat(512),
        events.join(",")
    );
    Case {
        name: "CloudWatch at the limits (512-char names, 10,000 events)",
        spec: spec(true, Compression::None, RecordFormat::CloudWatchLogs),
        raws: vec![raw(0, gzip(json.as_bytes()))],
        payload_bytes: json.len() as u64,
        records: 10_000,
        dead_letters: 0,
    }
}

/// The CloudWatch metadata bomb: a 2 MiB log group, 50,000 events. Dead-lettered.
fn cloudwatch_bomb_case() -> Case {
    let bomb = cloudwatch_bomb(2 << 20, 50_000);
    let decompressed =
        kinesis_ingester::decode::gzip::decompress(&bomb, DEFAULT_MAX_DECOMPRESSED_BYTES)
            .map_or(0, |json| json.len() as u64);
    Case {
        name: "CloudWatch bomb (2 MiB log group, 50,000 events: refused)",
        spec: spec(true, Compression::None, RecordFormat::CloudWatchLogs),
        raws: vec![raw(0, bomb)],
        payload_bytes: decompressed,
        records: 0,
        dead_letters: 1,
    }
}

/// An aggregate of 80,000 user records sharing one 256-character key: delivered, the key
/// hashed once and shared.
fn kpl_key_at_the_limit() -> Case {
    let key = "k".repeat(256);
    let users: Vec<UserRecordSpec<'_>> = (0..80_000)
        .map(|_| UserRecordSpec {
            partition_key: &key,
            explicit_hash_key: None,
            data: b"x",
        })
        .collect();
    Case {
        name: "KPL key at the limit (256 chars, 80,000 user records)",
        spec: spec(true, Compression::None, RecordFormat::Raw),
        raws: vec![raw(0, encode_aggregated(&users))],
        payload_bytes: 80_000,
        records: 80_000,
        dead_letters: 0,
    }
}

/// The KPL key bomb: a 450 KiB key shared by 80,000 user records. Dead-lettered.
fn kpl_key_bomb_case() -> Case {
    let bomb = kpl_key_bomb(460_800, 80_000);
    Case {
        name: "KPL key bomb (450 KiB key, 80,000 user records: refused)",
        spec: spec(true, Compression::None, RecordFormat::Raw),
        payload_bytes: bomb.len() as u64,
        raws: vec![raw(0, bomb)],
        records: 0,
        dead_letters: 1,
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
        spec: spec(true, Compression::None, RecordFormat::CloudWatchLogs),
        raws,
        payload_bytes: payloads.iter().map(|p| p.len() as u64).sum(),
        records: payloads.len() as u64,
        dead_letters: 0,
    }
}

fn measure(case: &Case) {
    let decoder = Decoder::new(&case.spec, DEFAULT_MAX_DECOMPRESSED_BYTES);
    let shard = shard();
    let mut out = Vec::with_capacity(case.records as usize);
    let mut dead = Vec::new();
    let mut stats = DecodeStats::default();
    let mut pass = |stats: &mut DecodeStats| {
        for raw in &case.raws {
            decoder.decode(&shard, raw.clone(), &mut out, &mut dead, stats);
        }
        black_box(&out);
        out.clear();
        dead.clear();
    };

    let peak_growth = match peak_in_child(case) {
        Some(kib) => format!("{:>6.1} MiB", kib as f64 / 1024.0),
        None => "   n/a    ".to_owned(),
    };
    pass(&mut DecodeStats::default());
    let start = Instant::now();
    let mut passes = 0_u64;
    while start.elapsed() < RUN_FOR {
        pass(&mut stats);
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    if stats.records_out != passes * case.records
        || stats.dead_letters_total() != passes * case.dead_letters
    {
        eprintln!("warning: {}: unexpected output {stats:?}", case.name);
    }
    let mb = (passes * case.payload_bytes) as f64 / 1e6;
    let raw_mb = (passes * case.raws.iter().map(|r| r.data.len() as u64).sum::<u64>()) as f64 / 1e6;
    println!(
        "{:<58} {:>9.1} MB/s user payload {:>12.0} user records/s ({:.1} MB/s read from Kinesis), peak RSS +{peak_growth}",
        case.name,
        mb / secs,
        stats.records_out as f64 / secs,
        raw_mb / secs,
    );
}

fn shard() -> Arc<ShardContext> {
    Arc::new(ShardContext {
        stream: "bench".into(),
        shard_id: "shardId-000000000000".into(),
        hash_range: (0, u128::MAX),
        tag: None,
    })
}

/// Set in a child process: the file of raw records to decode once, measuring the peak RSS.
const PEAK_INPUT: &str = "DECODE_BENCH_PEAK_INPUT";
/// Set in a child process: the decode spec, as JSON.
const PEAK_SPEC: &str = "DECODE_BENCH_PEAK_SPEC";

/// How much one pass of `case` raises the peak RSS, in KiB: measured in a fresh process that
/// holds only the raw records (length-prefixed in a file), so that no memory freed earlier can
/// be reused unseen. `None` where it cannot be measured.
fn peak_in_child(case: &Case) -> Option<u64> {
    let mut input = tempfile::NamedTempFile::new().ok()?;
    for raw in &case.raws {
        let len = u32::try_from(raw.data.len()).ok()?;
        input.write_all(&len.to_le_bytes()).ok()?;
        input.write_all(&raw.data).ok()?;
    }
    input.flush().ok()?;
    let output = std::process::Command::new(std::env::current_exe().ok()?)
        .env(PEAK_INPUT, input.path())
        .env(PEAK_SPEC, serde_json::to_string(&case.spec).ok()?)
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

/// The child of [`peak_in_child`]: decodes the records once, prints the peak RSS growth in KiB.
fn peak_child(path: &str) {
    let (Ok(file), Ok(spec)) = (std::fs::read(path), std::env::var(PEAK_SPEC)) else {
        return;
    };
    let Ok(spec) = serde_json::from_str::<DecodeSpec>(&spec) else {
        return;
    };
    let file = Bytes::from(file);
    let mut raws = Vec::new();
    let mut at = 0;
    while let Some(len) = file.get(at..at + 4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        raws.push(raw(raws.len(), file.slice(at + 4..at + 4 + len)));
        at += 4 + len;
    }
    let decoder = Decoder::new(&spec, DEFAULT_MAX_DECOMPRESSED_BYTES);
    let shard = shard();
    let (mut out, mut dead, mut stats) = (Vec::new(), Vec::new(), DecodeStats::default());
    let Some(baseline) = reset_peak_rss() else {
        return;
    };
    for raw in raws {
        decoder.decode(&shard, raw, &mut out, &mut dead, &mut stats);
    }
    black_box((&out, &dead));
    if let Some(peak) = vm_kib("VmHWM:") {
        println!("{}", peak.saturating_sub(baseline));
    }
}

/// Resets this process's peak RSS (VmHWM) to its current RSS, which it returns, in KiB; `None`
/// where `/proc/self/clear_refs` is not available.
fn reset_peak_rss() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    vm_kib("VmRSS:")
}

/// A `Vm…:` line of `/proc/self/status`, in KiB.
fn vm_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn spec(kpl_deaggregation: bool, compression: Compression, format: RecordFormat) -> DecodeSpec {
    DecodeSpec {
        kpl_deaggregation,
        compression,
        format,
    }
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

//! The cost of `spec.transform.vrl` per record: µs per record and records/s on one core, for
//! typical programs on JSON and text records, against decoding alone (`benches/decode.rs`).

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use kinesis_ingester::{
    record::{Record, ShardContext},
    transform::{Transform, TransformStats},
};
use kinesis_ingester_api::{KinesisIngesterSpec, TransformSpec, VrlTransform, sequence::Position};

/// How long each case is measured.
const RUN_FOR: Duration = Duration::from_millis(2500);
/// Records per pass (one GetRecords page).
const PER_PASS: usize = 1000;

struct Case {
    name: &'static str,
    program: &'static str,
    /// Payload of record `i`.
    payload: fn(usize) -> Vec<u8>,
}

const CASES: &[Case] = &[
    Case {
        name: "identity (.), 1 KiB JSON",
        program: ".",
        payload: json_1k,
    },
    Case {
        name: "reshape: 4 edits, 1 KiB JSON",
        program: r#"
            .level = upcase!(.level)
            .host = %kinesis.partition_key
            .at = from_unix_timestamp!(int!(.ts), unit: "milliseconds")
            del(.values)
        "#,
        payload: json_1k,
    },
    Case {
        name: "filter: drop 9 of 10 (abort), 1 KiB JSON",
        program: r#"if .level != "error" { abort }"#,
        payload: json_1k,
    },
    Case {
        name: "parse: nginx access log line to JSON",
        program: r#". = parse_nginx_log!(., "combined")"#,
        payload: nginx_line,
    },
    Case {
        name: "parse: key=value text with a regex",
        program: r##"
            . = parse_key_value!(.)
            .user = replace(string!(.user), r'\d+', "#")
        "##,
        payload: kv_line,
    },
];

fn main() {
    println!(
        "{:<44} {:>12} {:>16} {:>10}",
        "transform (one core, release)", "µs/record", "records/s", "MB/s in"
    );
    for case in CASES {
        let spec = TransformSpec {
            vrl: Some(VrlTransform {
                source: case.program.into(),
            }),
            http: None,
        };
        measure(case.name, spec, case.payload);
    }
    measure_http();
}

/// The HTTP transform against an identity Firehose "Lambda" on loopback (it decodes each
/// record's base64 data and answers `Ok` with it encoded again): the client's cost (JSON and
/// base64 both ways, one batch of up to 1 MiB per request) plus the server's, on one machine.
fn measure_http() {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(listener) = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")) else {
        return;
    };
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let app = axum::Router::new().route("/", axum::routing::post(identity_lambda));
    rt.spawn(async move { axum::serve(listener, app).await });
    let spec = TransformSpec {
        vrl: None,
        http: Some(
            serde_json::from_value(serde_json::json!({"url": format!("http://{addr}/")}))
                .expect("http transform"),
        ),
    };
    let _guard = rt.enter();
    measure(
        "HTTP (Firehose contract), identity, 1 KiB JSON",
        spec,
        json_1k,
    );
}

async fn identity_lambda(body: axum::body::Bytes) -> String {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let records: Vec<serde_json::Value> = event["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let data = STANDARD
                .decode(r["data"].as_str().unwrap_or_default())
                .unwrap_or_default();
            serde_json::json!({"recordId": r["recordId"], "result": "Ok", "data": STANDARD.encode(data)})
        })
        .collect();
    serde_json::json!({ "records": records }).to_string()
}

fn measure(name: &str, transform: TransformSpec, payload: fn(usize) -> Vec<u8>) {
    let spec: KinesisIngesterSpec = serde_json::from_value(serde_json::json!({
        "stream": {"name": "bench"},
        "sink": {"stdout": {}},
    }))
    .expect("spec");
    let spec = KinesisIngesterSpec {
        transform: Some(transform),
        ..spec
    };
    let transform = match Transform::from_spec(&spec) {
        Ok(Some(t)) => t,
        other => {
            eprintln!("{name}: cannot be set up: {other:?}");
            return;
        }
    };
    let shard = Arc::new(ShardContext {
        stream: "bench".into(),
        shard_id: "shardId-000000000000".into(),
        hash_range: (0, u128::MAX),
        tag: None,
    });
    let records: Vec<Record> = (0..PER_PASS)
        .map(|i| Record {
            data: Bytes::from(payload(i)),
            shard: shard.clone(),
            position: Position::whole(format!("{:056}", i).parse().expect("sequence")),
            partition_key: format!("device-{}", i % 64).into(),
            approximate_arrival_ms: Some(1_700_000_000_000),
            cloudwatch: None,
        })
        .collect();
    let bytes: usize = records.iter().map(|r| r.data.len()).sum();
    let mut dead = Vec::new();
    let mut stats = TransformStats::default();
    let cancel = tokio_util::sync::CancellationToken::new();
    let start = Instant::now();
    let mut passes = 0_u64;
    while start.elapsed() < RUN_FOR {
        let out = futures::executor::block_on(transform.apply(
            records.clone(),
            &mut dead,
            &mut stats,
            &cancel,
        ));
        black_box(out);
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = passes * PER_PASS as u64;
    if !dead.is_empty() {
        eprintln!(
            "warning: {name}: {} dead letters: {}",
            dead.len(),
            dead[0].reason
        );
    }
    println!(
        "{:<44} {:>12.2} {:>16.0} {:>10.1}",
        name,
        secs * 1e6 / n as f64,
        n as f64 / secs,
        (passes as f64 * bytes as f64) / 1e6 / secs,
    );
}

fn json_1k(i: usize) -> Vec<u8> {
    let level = if i.is_multiple_of(10) {
        "error"
    } else {
        "info"
    };
    let mut line = format!(
        r#"{{"device":"device-{i}","ts":{},"level":"{level}","values":["#,
        1_700_000_000_000_u64 + i as u64
    );
    let mut v = i;
    while line.len() < 1000 {
        v = v.wrapping_mul(2_654_435_761) % 1_000_000;
        line.push_str(&format!("{}.{:04},", v / 1000, v % 1000));
    }
    line.push_str(r#""end"],"ok":true}"#);
    line.into_bytes()
}

fn nginx_line(i: usize) -> Vec<u8> {
    format!(
        r#"10.0.{}.{} - alice [27/Nov/2026:10:{:02}:00 +0000] "GET /api/orders/{i}?page=2 HTTP/1.1" 200 {} "https://example.com/cart" "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0""#,
        i % 256,
        (i / 256) % 256,
        i % 60,
        512 + i % 4096
    )
    .into_bytes()
}

fn kv_line(i: usize) -> Vec<u8> {
    format!(
        "at=info method=GET path=/api/orders/{i} user=user{i} status=200 duration_ms={} bytes={}",
        i % 500,
        1024 + i
    )
    .into_bytes()
}

//! `spec.sinks` end to end on kinesis-local: CloudWatch Logs records routed by log group to two
//! HTTP sinks, with a file sink archiving everything, while one HTTP sink fails for 60 s. The
//! others get their records meanwhile, the checkpoint waits for the failing sink, and in the end
//! every sink holds exactly its records: nothing lost, nothing delivered to the wrong sink.

#[macro_use]
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use axum::{Router, extract::State, http::StatusCode, routing::post};
use common::*;
use kinesis_ingester::{checkpoint::CheckpointStore, decode::testing::gzip};
use kinesis_ingester_api::sequence::SequenceNumber;
use serde_json::{Value, json};
use tokio::time::Instant;

/// How long the `app-b` sink answers 503.
const DOWN_FOR: Duration = Duration::from_secs(60);
const DEADLINE: Duration = Duration::from_secs(60);
const GROUPS: [&str; 3] = ["/app/a", "/app/b", "/app/c"];

/// An HTTP sink that keeps the NDJSON lines it accepted, refusing every request with 503 until
/// `down_until`.
#[derive(Clone)]
struct Sink {
    lines: Arc<Mutex<Vec<Value>>>,
    refused: Arc<AtomicUsize>,
    down_until: Instant,
}

async fn receive(State(s): State<Sink>, body: String) -> StatusCode {
    if Instant::now() < s.down_until {
        s.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let mut lines = s.lines.lock().expect("lines");
    for line in body.lines() {
        lines.push(serde_json::from_str(line).unwrap_or(Value::Null));
    }
    StatusCode::OK
}

impl Sink {
    async fn start(down_for: Duration) -> Result<(Self, String)> {
        let sink = Self {
            lines: Arc::default(),
            refused: Arc::default(),
            down_until: Instant::now() + down_for,
        };
        let app = Router::new()
            .route("/", post(receive))
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((sink, url))
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().expect("lines").clone()
    }
}

/// `(log group, event id)` of each delivered line, in delivery order.
fn events(lines: &[Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let cw = &l["cloudwatch"];
            (
                cw["logGroup"].as_str().unwrap_or("?").to_owned(),
                cw["id"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// A CloudWatch Logs subscription envelope of `group` with two log events, gzip-compressed.
fn envelope(i: usize, group: &str) -> Vec<u8> {
    let log_events: Vec<Value> = (0..2)
        .map(|j| {
            json!({
                "id": format!("e{i}-{j}"),
                "timestamp": 1_700_000_000_000_i64 + i as i64,
                "message": format!("event {i}-{j} of {group}"),
            })
        })
        .collect();
    let doc = json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": group,
        "logStream": "stream-1",
        "subscriptionFilters": ["all"],
        "logEvents": log_events,
    });
    gzip(doc.to_string().as_bytes()).to_vec()
}

fn spec(stream: &str, a: &str, b: &str, archive: &std::path::Path) -> Result<String> {
    let endpoint =
        std::env::var("KINESIS_ENDPOINT").context("KINESIS_ENDPOINT; run with `make test`")?;
    Ok(format!(
        "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: routing}}
spec:
  stream: {{name: {stream}, region: us-east-1, endpoint: '{endpoint}'}}
  read: {{startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms, shardSyncInterval: 1s}}
  decode: {{format: CloudWatchLogs}}
  sinks:
  - name: app-a
    route: {{logGroups: [/app/a]}}
    http: {{url: '{a}'}}
    batch: {{maxRecords: 20, maxAge: 100ms}}
  - name: app-b
    route: {{logGroups: [/app/b]}}
    http: {{url: '{b}', timeout: 5s}}
    batch: {{maxRecords: 20, maxAge: 100ms}}
  - name: archive
    file: {{path: '{}'}}
    batch: {{maxRecords: 20, maxAge: 100ms}}
",
        archive.display()
    ))
}

#[tokio::test]
async fn records_routed_by_log_group_reach_only_their_sinks_and_a_failing_sink_loses_nothing()
-> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let (a, a_url) = Sink::start(Duration::ZERO).await?;
    let (b, b_url) = Sink::start(DOWN_FOR).await?;
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("archive.ndjson");
    let port = free_port()?;
    let ingester = kinesis_ingester::config::parse(
        std::path::Path::new("routing.yaml"),
        &spec(&stream, &a_url, &b_url, &archive)?,
    )?;
    let stop = tokio_util::sync::CancellationToken::new();
    let options = kinesis_ingester::run::RunOptions {
        checkpoint_dir: dir.path().join("checkpoints"),
        checkpoint_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(20),
        metrics_addr: Some(([127, 0, 0, 1], port).into()),
        ..Default::default()
    };
    let running = Running {
        stop: stop.clone(),
        task: tokio::spawn({
            let api = sdk_api()?;
            async move { kinesis_ingester::run::run(&ingester, api, options, stop).await }
        }),
    };

    // 30 envelopes, 2 events each, the groups in turn; per shard, the first /app/b record and
    // the last record.
    let mut first_b: BTreeMap<String, SequenceNumber> = BTreeMap::new();
    let mut last: BTreeMap<String, SequenceNumber> = BTreeMap::new();
    let mut want: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for i in 0..30 {
        let group = GROUPS[i % 3];
        let put = kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("k{i}"))
            .data(Blob::new(envelope(i, group)))
            .send()
            .await?;
        let seq: SequenceNumber = put.sequence_number().parse()?;
        let shard = put.shard_id().to_owned();
        if group == "/app/b" {
            first_b.entry(shard.clone()).or_insert_with(|| seq.clone());
        }
        last.insert(shard, seq);
        for j in 0..2 {
            want.entry(group).or_default().insert(format!("e{i}-{j}"));
        }
    }
    let all: BTreeSet<String> = want.values().flatten().cloned().collect();

    // While app-b refuses everything, app-a and the archive get all of theirs.
    let ids = |lines: &[Value], group: Option<&str>| -> BTreeSet<String> {
        events(lines)
            .into_iter()
            .filter(|(g, _)| group.is_none_or(|w| w == g))
            .map(|(_, id)| id)
            .collect()
    };
    wait_until(
        "app-a and the archive hold their records",
        DEADLINE,
        || async {
            let archived = lines(&archive).unwrap_or_default();
            Ok(
                (ids(&a.lines(), None) == want["/app/a"] && ids(&archived, None) == all)
                    .then_some(()),
            )
        },
    )
    .await?;
    wait_until("app-b refused a few batches", DEADLINE, || async {
        Ok((b.refused.load(Ordering::SeqCst) >= 3).then_some(()))
    })
    .await?;
    anyhow::ensure!(
        Instant::now() < b.down_until,
        "the set-up took longer than app-b's {DOWN_FOR:?} outage; the checks below would prove nothing"
    );
    assert!(b.lines().is_empty(), "app-b accepted nothing yet");
    // The checkpoint of every shard with /app/b records stays before the first of them.
    let store =
        kinesis_ingester::checkpoint::FileStore::open(&dir.path().join("checkpoints"), &stream)?;
    let stored = store.load().await?;
    for (shard, first) in &first_b {
        let at = stored.get(shard).and_then(|c| c.position.as_ref());
        assert!(
            at.is_none_or(|p| p.sequence < *first),
            "{shard} was checkpointed at {at:?}, past its first /app/b record {first} that app-b has not acknowledged"
        );
    }

    // app-b recovers and gets all of its records; then every shard is checkpointed at its end.
    wait_until("app-b holds its records", DOWN_FOR + DEADLINE, || async {
        Ok((ids(&b.lines(), None) == want["/app/b"]).then_some(()))
    })
    .await?;
    wait_until(
        "every shard checkpointed at its last record",
        DEADLINE,
        || async {
            let stored = store.load().await?;
            Ok(last
                .iter()
                .all(|(shard, seq)| {
                    stored
                        .get(shard)
                        .and_then(|c| c.position.as_ref())
                        .is_some_and(|p| p.sequence == *seq)
                })
                .then_some(()))
        },
    )
    .await?;

    // Exactly their records, each once, and none of another group.
    let archived = lines(&archive)?;
    for (name, got, group) in [
        ("app-a", a.lines(), Some("/app/a")),
        ("app-b", b.lines(), Some("/app/b")),
        ("archive", archived, None),
    ] {
        let evs = events(&got);
        let misrouted: Vec<_> = evs
            .iter()
            .filter(|(g, _)| group.is_some_and(|w| w != g))
            .collect();
        assert!(
            misrouted.is_empty(),
            "{name} got records of other groups: {misrouted:?}"
        );
        let unique: BTreeSet<_> = evs.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(unique.len(), evs.len(), "{name} got a record twice");
        let wanted = group.map_or(all.clone(), |g| want[g].clone());
        assert_eq!(unique, wanted, "{name} holds exactly its records");
    }

    // Per-sink metrics show who failed and what each delivered.
    let text = metrics(port).await?;
    let per_sink = |metric: &str, sink: &str| value(&text, &format!("{metric}{{sink=\"{sink}\"}}"));
    assert_eq!(
        per_sink("kinesis_ingester_sink_delivered_records_total", "app-a"),
        Some(20.0)
    );
    assert_eq!(
        per_sink("kinesis_ingester_sink_delivered_records_total", "app-b"),
        Some(20.0)
    );
    assert_eq!(
        per_sink("kinesis_ingester_sink_delivered_records_total", "archive"),
        Some(60.0)
    );
    assert_eq!(
        per_sink("kinesis_ingester_routed_records_total", "archive"),
        Some(60.0)
    );
    assert!(
        value(
            &text,
            "kinesis_ingester_sink_failed_sends_total{sink=\"app-b\",category=\"http_5xx\"}"
        )
        .is_some_and(|n| n >= 3.0),
        "app-b's failures are counted under its name:\n{text}"
    );
    assert_eq!(
        value(&text, "kinesis_ingester_unrouted_records_total"),
        Some(0.0)
    );
    running.shutdown().await
}

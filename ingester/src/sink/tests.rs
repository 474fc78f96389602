//! End-to-end tests of the sink pipeline: retries, `_bulk` partial failures, backpressure, age and shutdown.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use kinesis_ingester_api::{HttpSink, SinkSpec};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{test_server::TestServer, *};
use kinesis_client::backoff::Backoff;
use kinesis_ingester_api::sequence::Position;

use crate::{record::Chunk, sink::ndjson::tests::record};

const DEADLINE: Duration = Duration::from_secs(10);

fn chunk(shard: &str, seqs: std::ops::Range<u64>, checkpoint: u64) -> Chunk {
    Chunk {
        records: seqs.map(|s| record(shard, s, b"payload")).collect(),
        shard_id: shard.into(),
        generation: 0,
        checkpoint: Position::whole(checkpoint.to_string().parse().expect("seq")),
    }
}

/// Shards held by a worker, each at its first reading (generation 0, as [`chunk`] makes).
fn held(shards: &[&str]) -> std::collections::HashMap<Arc<str>, u64> {
    shards.iter().map(|s| (Arc::from(*s), 0)).collect()
}

/// Acks seen, each with a value sampled when the ack was made.
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<(String, String, usize)>>>);

impl Acks {
    fn ack_fn(&self, sample: impl Fn() -> usize + Send + Sync + 'static) -> AckFn {
        let seen = self.0.clone();
        Arc::new(move |shard: &str, pos: &Position| {
            let entry = (shard.to_owned(), pos.sequence.to_string(), sample());
            seen.lock().expect("acks").push(entry);
        })
    }

    fn get(&self) -> Vec<(String, String, usize)> {
        self.0.lock().expect("acks").clone()
    }
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < give_up, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn limits(max_records: usize, max_age: Duration) -> BatchLimits {
    BatchLimits {
        max_records,
        max_bytes: 1 << 20,
        max_age,
    }
}

fn fast() -> Backoff {
    Backoff::new(Duration::from_millis(1), Duration::from_millis(5))
}

fn sequence_numbers(ndjson: &str) -> Vec<String> {
    ndjson
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter_map(|v| v["sequenceNumber"].as_str().map(str::to_owned))
        .collect()
}

fn http_pipeline(spec: &HttpSink, ack: AckFn, stats: Arc<SinkStats>) -> SinkPipeline {
    SinkPipeline::new(
        Box::new(HttpDestination::new(spec).expect("destination")),
        limits(100, Duration::from_secs(3600)),
        HttpDestination::encoding(spec).expect("encoding"),
        ack,
        CancellationToken::new(),
        stats,
    )
    .with_backoff(fast())
}

#[tokio::test]
async fn http_retries_503_without_losing_or_acking_early() {
    let server = Arc::new(TestServer::start(vec![(503, "busy"), (503, "busy")]).await);
    let spec = server.spec(serde_json::json!({ "headers": { "Authorization": "Bearer t" } }));
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let counter = server.clone();
    let pipeline = http_pipeline(
        &spec,
        acks.ack_fn(move || counter.request_count()),
        stats.clone(),
    );
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..4, 3)).await.expect("send");
    tx.send(chunk("a", 0..0, 4)).await.expect("send");
    drop(tx);
    tokio::time::timeout(DEADLINE, pipeline.run(rx))
        .await
        .expect("finished")
        .expect("ok");

    assert_eq!(server.request_count(), 3);
    for i in 0..3 {
        assert_eq!(sequence_numbers(&server.body(i)), ["1", "2", "3"]);
    }
    let (headers, _) = server.requests.lock().expect("requests")[2].clone();
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["authorization"], "Bearer t");
    // Both checkpoints, in order, and only once the third request had succeeded.
    assert_eq!(
        acks.get(),
        [("a".into(), "3".into(), 3), ("a".into(), "4".into(), 3)]
    );
    assert_eq!((stats.retries(), stats.errors("http_5xx")), (2, 2));
    assert_eq!(
        (stats.records_out(), stats.batches(), stats.acks()),
        (3, 1, 2)
    );
}

#[tokio::test]
async fn http_client_errors_are_retried_at_the_longest_backoff_not_dropped() {
    let server = Arc::new(TestServer::start(vec![(400, "mapping")]).await);
    let spec = server.spec(serde_json::json!({}));
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let pipeline = http_pipeline(&spec, acks.ack_fn(|| 0), stats.clone());
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..3, 2)).await.expect("send");
    drop(tx);
    tokio::time::timeout(DEADLINE, pipeline.run(rx))
        .await
        .expect("finished")
        .expect("ok");
    assert_eq!(server.request_count(), 2);
    assert_eq!(stats.errors("http_4xx"), 1);
    assert_eq!(acks.get().len(), 1);
}

#[tokio::test]
async fn bulk_partial_failure_retries_only_the_failed_items() {
    let first = r#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429}},
        {"index":{"status":201}},{"index":{"status":503}}]}"#;
    let server = Arc::new(TestServer::start(vec![(200, first)]).await);
    server
        .script
        .lock()
        .expect("script")
        .push_back((200, r#"{"errors":false,"items":[]}"#.into()));
    let spec = server.spec(serde_json::json!({ "format": "ElasticsearchBulk", "index": "logs" }));
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let counter = server.clone();
    let pipeline = http_pipeline(
        &spec,
        acks.ack_fn(move || counter.request_count()),
        stats.clone(),
    );
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..5, 4)).await.expect("send");
    drop(tx);
    tokio::time::timeout(DEADLINE, pipeline.run(rx))
        .await
        .expect("finished")
        .expect("ok");

    assert_eq!(server.request_count(), 2);
    let first_body = server.body(0);
    let lines: Vec<&str> = first_body.lines().collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(sequence_numbers(&first_body), ["1", "2", "3", "4"]);
    let retry = server.body(1);
    assert_eq!(
        retry,
        format!("{}\n{}\n{}\n{}\n", lines[2], lines[3], lines[6], lines[7])
    );
    assert_eq!(sequence_numbers(&retry), ["2", "4"]);
    assert_eq!(acks.get(), [("a".into(), "4".into(), 2)]);
    assert_eq!((stats.errors("bulk_items"), stats.retries()), (1, 1));
    assert_eq!(stats.records_out(), 4);
}

#[tokio::test]
async fn bulk_items_rejected_as_invalid_are_dead_lettered_and_the_rest_retried() {
    let first = r#"{"errors":true,"items":[{"index":{"status":201}},
        {"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad data"}}},
        {"index":{"status":429}}]}"#;
    let server = Arc::new(TestServer::start(vec![(200, first)]).await);
    server
        .script
        .lock()
        .expect("script")
        .push_back((200, r#"{"errors":false,"items":[]}"#.into()));
    let spec = server.spec(serde_json::json!({ "format": "ElasticsearchBulk", "index": "logs" }));
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let dir = tempfile::tempdir().expect("dir");
    let dead = dir.path().join("dead.ndjson");
    let counter = server.clone();
    let pipeline = http_pipeline(
        &spec,
        acks.ack_fn(move || counter.request_count()),
        stats.clone(),
    )
    .with_dead_letters(DeadLetterWriter::new(Some(dead.clone()), stats.clone()));
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..4, 3)).await.expect("send");
    drop(tx);
    tokio::time::timeout(DEADLINE, pipeline.run(rx))
        .await
        .expect("finished")
        .expect("ok");

    // Only the 429 item is sent again; the 400 one is written down, not resent.
    assert_eq!(server.request_count(), 2);
    assert_eq!(sequence_numbers(&server.body(1)), ["3"]);
    assert_eq!(acks.get(), [("a".into(), "3".into(), 2)]);
    let text = std::fs::read_to_string(&dead).expect("dead letters");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["category"], "bulk_rejected");
    assert_eq!(lines[0]["status"], 400);
    assert_eq!(lines[0]["reason"]["type"], "mapper_parsing_exception");
    assert_eq!(lines[0]["sequenceNumber"], "2");
    assert_eq!(lines[0]["shardId"], "a");
    assert_eq!(lines[0]["index"], "logs");
    assert_eq!(lines[0]["id"], "orders:a:2");
    assert_eq!(lines[0]["document"]["data"], "payload");
    assert_eq!(stats.dead_letters(), 1);
}

#[tokio::test]
async fn a_batch_of_only_rejected_bulk_items_does_not_block_the_shard() {
    let first = r#"{"errors":true,"items":[{"index":{"status":400}},{"index":{"status":400}}]}"#;
    let server = Arc::new(TestServer::start(vec![(200, first)]).await);
    let spec = server.spec(serde_json::json!({ "format": "ElasticsearchBulk", "index": "logs" }));
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let pipeline = http_pipeline(&spec, acks.ack_fn(|| 0), stats.clone());
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..3, 2)).await.expect("send");
    drop(tx);
    tokio::time::timeout(DEADLINE, pipeline.run(rx))
        .await
        .expect("finished")
        .expect("ok");
    assert_eq!(server.request_count(), 1);
    assert_eq!(acks.get(), [("a".into(), "2".into(), 0)]);
    assert_eq!((stats.dead_letters(), stats.retries()), (2, 0));
}

/// A destination that blocks each send until the test releases a permit.
struct Gated {
    gate: Arc<Semaphore>,
    calls: Arc<AtomicUsize>,
}

impl Destination for Gated {
    fn send<'a>(&'a mut self, _batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        async move {
            self.calls.fetch_add(1, SeqCst);
            self.gate.acquire().await.expect("gate open").forget();
            Ok(())
        }
        .boxed()
    }
}

#[tokio::test]
async fn a_slow_destination_fills_the_channel_instead_of_memory() {
    let (gate, calls) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let acks = Acks::default();
    let pipeline = SinkPipeline::new(
        Box::new(Gated {
            gate: gate.clone(),
            calls: calls.clone(),
        }),
        limits(1, Duration::from_secs(3600)),
        Encoding::Ndjson,
        acks.ack_fn(|| 0),
        CancellationToken::new(),
        Arc::new(SinkStats::default()),
    );
    let (tx, rx) = mpsc::channel(2);
    let task = tokio::spawn(pipeline.run(rx));
    tx.send(chunk("a", 1..2, 1)).await.expect("send");
    wait_until("first send started", || calls.load(SeqCst) == 1).await;
    tx.try_send(chunk("a", 2..3, 2)).expect("room for one");
    tx.try_send(chunk("a", 3..4, 3)).expect("room for two");
    assert!(matches!(
        tx.try_send(chunk("a", 4..5, 4)),
        Err(mpsc::error::TrySendError::Full(_))
    ));
    assert_eq!(calls.load(SeqCst), 1, "nothing more read while blocked");
    assert!(acks.get().is_empty());

    gate.add_permits(3);
    drop(tx);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("finished")
        .expect("joined")
        .expect("ok");
    let seen: Vec<String> = acks.get().into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(seen, ["1", "2", "3"]);
}

#[tokio::test]
async fn an_open_batch_is_sent_when_it_reaches_its_age() {
    let (gate, calls) = (Arc::new(Semaphore::new(10)), Arc::new(AtomicUsize::new(0)));
    let acks = Acks::default();
    let pipeline = SinkPipeline::new(
        Box::new(Gated {
            gate,
            calls: calls.clone(),
        }),
        limits(100, Duration::from_millis(20)),
        Encoding::Ndjson,
        acks.ack_fn(|| 0),
        CancellationToken::new(),
        Arc::new(SinkStats::default()),
    );
    let (tx, rx) = mpsc::channel(2);
    let task = tokio::spawn(pipeline.run(rx));
    tx.send(chunk("a", 1..3, 2)).await.expect("send");
    // The channel stays open: only the age limit can close this batch.
    wait_until("aged batch acked", || acks.get().len() == 1).await;
    assert_eq!(calls.load(SeqCst), 1);
    drop(tx);
    task.await.expect("joined").expect("ok");
}

#[tokio::test]
async fn closing_the_channel_flushes_the_last_partial_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.ndjson");
    let spec: SinkSpec = serde_json::from_value(serde_json::json!({
        "file": { "path": path },
        "batch": { "maxRecords": 1000, "maxAge": "1h" },
    }))
    .expect("spec");
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let (tx, rx) = mpsc::channel(4);
    let task = spawn_sink(
        &spec,
        "orders",
        rx,
        acks.ack_fn(|| 0),
        stats.clone(),
        SinkControl::default(),
    )
    .expect("spawned");
    tx.send(chunk("a", 1..4, 3)).await.expect("send");
    tx.send(chunk("b", 1..3, 2)).await.expect("send");
    drop(tx);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("flushed without waiting an hour")
        .expect("joined")
        .expect("ok");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(sequence_numbers(&text), ["1", "2", "3", "1", "2"]);
    let seen: Vec<(String, String)> = acks.get().into_iter().map(|(a, s, _)| (a, s)).collect();
    assert_eq!(seen, [("a".into(), "3".into()), ("b".into(), "2".into())]);
    assert_eq!(stats.records_out(), 5);
}

#[tokio::test]
async fn a_flush_delivers_the_open_batch_without_waiting_for_its_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let flush = Arc::new(tokio::sync::Notify::new());
    let pipeline = SinkPipeline::new(
        Box::new(FileDestination::new(dir.path().join("out.ndjson"), false)),
        limits(1000, Duration::from_secs(3600)),
        Encoding::Ndjson,
        acks.ack_fn(|| 0),
        CancellationToken::new(),
        stats.clone(),
    )
    .with_flush(flush.clone());
    let (tx, rx) = mpsc::channel(4);
    let _task = tokio::spawn(pipeline.run(rx));
    tx.send(chunk("a", 1..4, 3)).await.expect("send");
    // Notified while the chunk may still be in the channel: it is taken in first.
    flush.notify_one();
    wait_until("the chunk is acked", || acks.get().len() == 1).await;
    assert_eq!(stats.records_out(), 3);
    drop(tx);
}

#[tokio::test]
async fn cancel_stops_retrying_without_acking() {
    let server = TestServer::start((0..1000).map(|_| (503, "down")).collect()).await;
    let spec = server.spec(serde_json::json!({}));
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let cancel = CancellationToken::new();
    let pipeline = SinkPipeline::new(
        Box::new(HttpDestination::new(&spec).expect("destination")),
        limits(1, Duration::from_secs(3600)),
        Encoding::Ndjson,
        acks.ack_fn(|| 0),
        cancel.clone(),
        stats.clone(),
    )
    .with_backoff(fast());
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(pipeline.run(rx));
    tx.send(chunk("a", 1..2, 1)).await.expect("send");
    wait_until("a few retries", || stats.retries() >= 2).await;
    cancel.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("returned promptly")
        .expect("joined")
        .expect("ok");
    assert!(acks.get().is_empty());
    assert_eq!(stats.records_out(), 0);
}

#[test]
fn a_spec_without_exactly_one_sink_is_rejected() {
    let none = SinkSpec::default();
    assert_eq!(
        destination(&none).map(|_| ()).map_err(|e| e.category()),
        Err("config")
    );
}

/// A destination that fails while `failing` is set and records the shard of every line it was
/// asked to send, attempt by attempt.
struct Flaky {
    failing: Arc<std::sync::atomic::AtomicBool>,
    attempts: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Destination for Flaky {
    fn send<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        async move {
            let shards = String::from_utf8_lossy(batch.body())
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                    v["shardId"].as_str().unwrap_or_default().to_owned()
                })
                .collect();
            self.attempts.lock().expect("attempts").push(shards);
            if self.failing.load(SeqCst) {
                Err(SinkError::Status {
                    status: 503,
                    body: "busy".into(),
                    retry_after: None,
                })
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}

/// Defect 9.1.2: once the worker loses a shard (fenced, revoked or self-fenced), the sink must
/// not deliver or acknowledge any more of it, even records already in a batch being retried.
#[tokio::test]
async fn a_lost_shard_is_dropped_from_the_batch_being_retried_and_never_acked() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let deliverable = Deliverable::only_set();
    deliverable.set(held(&["a", "b"]));
    let pipeline = SinkPipeline::new(
        Box::new(Flaky {
            failing: failing.clone(),
            attempts: attempts.clone(),
        }),
        limits(100, Duration::from_secs(3600)),
        Encoding::Ndjson,
        acks.ack_fn(|| 0),
        CancellationToken::new(),
        stats.clone(),
    )
    .with_backoff(fast())
    .with_deliverable(deliverable.clone());
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..3, 2)).await.expect("send");
    tx.send(chunk("b", 1..2, 1)).await.expect("send");
    drop(tx);
    let task = tokio::spawn(pipeline.run(rx));
    wait_until("the batch is being retried", || {
        attempts.lock().expect("attempts").len() >= 2
    })
    .await;
    // The worker lost shard a; the destination recovers.
    deliverable.set(held(&["b"]));
    failing.store(false, SeqCst);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("finished")
        .expect("joined")
        .expect("ok");
    let attempts = attempts.lock().expect("attempts").clone();
    assert_eq!(attempts[0], ["a", "a", "b"]);
    assert_eq!(
        attempts.last().map(Vec::as_slice),
        Some(&["b".to_owned()][..])
    );
    assert_eq!(acks.get(), [("b".into(), "1".into(), 0)]);
    assert_eq!((stats.revoked(), stats.records_out()), (2, 1));
}

#[tokio::test]
async fn chunks_of_a_lost_shard_are_not_even_batched() {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let acks = Acks::default();
    let deliverable = Deliverable::only_set();
    deliverable.set(held(&["b"]));
    let pipeline = SinkPipeline::new(
        Box::new(Flaky {
            failing: Arc::default(),
            attempts: attempts.clone(),
        }),
        limits(100, Duration::from_secs(3600)),
        Encoding::Ndjson,
        acks.ack_fn(|| 0),
        CancellationToken::new(),
        Arc::new(SinkStats::default()),
    )
    .with_deliverable(deliverable);
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..3, 2)).await.expect("send");
    tx.send(chunk("b", 1..2, 1)).await.expect("send");
    drop(tx);
    tokio::time::timeout(DEADLINE, pipeline.run(rx))
        .await
        .expect("finished")
        .expect("ok");
    assert_eq!(*attempts.lock().expect("attempts"), [["b".to_owned()]]);
    assert_eq!(acks.get(), [("b".into(), "1".into(), 0)]);
}

/// Defect 9.1.2, in flight: a request that hangs when the worker loses its shard is abandoned
/// at once, not after the sink's request timeout, so a self-fenced worker's last request
/// cannot land long after its shards moved.
#[tokio::test]
async fn a_request_in_flight_is_abandoned_when_its_shard_is_lost() {
    let (gate, calls) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let acks = Acks::default();
    let deliverable = Deliverable::only_set();
    deliverable.set(held(&["a"]));
    let pipeline = SinkPipeline::new(
        Box::new(Gated {
            gate,
            calls: calls.clone(),
        }),
        limits(100, Duration::from_secs(3600)),
        Encoding::Ndjson,
        acks.ack_fn(|| 0),
        CancellationToken::new(),
        Arc::new(SinkStats::default()),
    )
    .with_deliverable(deliverable.clone());
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..3, 2)).await.expect("send");
    drop(tx);
    let task = tokio::spawn(pipeline.run(rx));
    wait_until("the request is in flight", || calls.load(SeqCst) == 1).await;
    deliverable.set(held(&[]));
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("abandoned the hung request")
        .expect("joined")
        .expect("ok");
    assert!(acks.get().is_empty());
    assert_eq!(calls.load(SeqCst), 1, "not sent again");
}

mod give_up;
mod handoff;

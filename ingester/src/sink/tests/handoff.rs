//! A planned handoff in the sink (docs/design.md §3.5): a released shard is closed, so only its
//! request in flight is waited for, and what an earlier reading of a shard left queued is never
//! delivered once the worker takes the shard back.

use super::*;

/// Logs each request's items as `shard:sequence`, then waits for a permit.
struct Logged {
    gate: Arc<Semaphore>,
    sent: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Destination for Logged {
    fn send<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        async move {
            let items = String::from_utf8_lossy(batch.body())
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                    format!(
                        "{}:{}",
                        v["shardId"].as_str().unwrap_or_default(),
                        v["sequenceNumber"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            self.sent.lock().expect("sent").push(items);
            self.gate.acquire().await.expect("gate open").forget();
            Ok(())
        }
        .boxed()
    }
}

struct Harness {
    gate: Arc<Semaphore>,
    sent: Arc<Mutex<Vec<Vec<String>>>>,
    acks: Acks,
    deliverable: Deliverable,
    tx: mpsc::Sender<Chunk>,
    task: tokio::task::JoinHandle<Result<(), SinkError>>,
}

impl Harness {
    /// A fleet sink holding `shards` at generation 0, closing a batch every 2 records.
    fn start(shards: &[&str]) -> Self {
        let (gate, sent) = (Arc::new(Semaphore::new(0)), Arc::default());
        let acks = Acks::default();
        let deliverable = Deliverable::only_set();
        deliverable.set(held(shards));
        let pipeline = SinkPipeline::new(
            Box::new(Logged {
                gate: gate.clone(),
                sent: Arc::clone(&sent),
            }),
            limits(2, Duration::from_secs(3600)),
            Encoding::Ndjson,
            acks.ack_fn(|| 0),
            CancellationToken::new(),
            Arc::new(SinkStats::default()),
        )
        .with_deliverable(deliverable.clone());
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(pipeline.run(rx));
        Self {
            gate,
            sent,
            acks,
            deliverable,
            tx,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.sent.lock().expect("sent").len()
    }

    async fn finish(self) -> (Vec<Vec<String>>, Vec<(String, String, usize)>) {
        self.gate.add_permits(100);
        drop(self.tx);
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("finished")
            .expect("joined")
            .expect("ok");
        let sent = self.sent.lock().expect("sent").clone();
        (sent, self.acks.get())
    }
}

fn chunk_of(shard: &str, seqs: std::ops::Range<u64>, checkpoint: u64, generation: u64) -> Chunk {
    Chunk {
        generation,
        ..chunk(shard, seqs, checkpoint)
    }
}

/// A planned handoff closes the shard: the request in flight finishes and is acknowledged,
/// records not yet sent are dropped (the next owner reads them again), and the shard is idle
/// once that request is acknowledged, so the release neither waits for the whole backlog nor
/// abandons a request the sink already received.
#[tokio::test]
async fn a_closed_shard_finishes_its_request_in_flight_and_sends_nothing_more() {
    let h = Harness::start(&["a", "b"]);
    h.tx.send(chunk("a", 1..3, 2)).await.expect("send");
    wait_until("a's first request is in flight", || h.requests() == 1).await;

    h.deliverable.close("a");
    let (a0, b0) = (chunk("a", 0..0, 0).reading(), chunk("b", 0..0, 0).reading());
    assert!(!h.deliverable.sendable(&a0) && h.deliverable.sendable(&b0));
    assert!(
        !h.deliverable.closed_and_idle("a"),
        "a request with a's records is still in flight"
    );
    // Read before the close, not sent yet: dropped, never sent or acknowledged.
    h.tx.send(chunk("a", 3..5, 4)).await.expect("send");
    h.tx.send(chunk("b", 1..3, 2)).await.expect("send");
    h.gate.add_permits(1);
    wait_until("a's request in flight is acknowledged", || {
        h.acks.get().contains(&("a".into(), "2".into(), 0))
    })
    .await;
    wait_until("a is idle", || h.deliverable.closed_and_idle("a")).await;
    let (sent, acks) = h.finish().await;
    assert_eq!(sent, [vec!["a:1", "a:2"], vec!["b:1", "b:2"]]);
    assert!(
        !acks.iter().any(|(s, cp, _)| s == "a" && cp == "4"),
        "nothing of a after the close is acknowledged: {acks:?}"
    );
}

/// The s2 order break: chunks an earlier reader of a shard left in the channel must not be
/// delivered once the worker took the shard back and its new reader reads them again, or they
/// go out twice, and out of order against what the new reader delivers first.
#[tokio::test]
async fn chunks_of_an_earlier_reading_are_dropped_when_the_shard_is_taken_back() {
    let h = Harness::start(&["a", "b"]);
    h.tx.send(chunk("b", 1..3, 2)).await.expect("send");
    wait_until("b's request is in flight", || h.requests() == 1).await;
    // Generation 0 of a read two records; they wait in the channel behind b's slow request.
    h.tx.send(chunk("a", 1..3, 2)).await.expect("send");
    // The worker hands a back, then takes it again: generation 1 reads from the same position.
    h.deliverable.close("a");
    h.deliverable.set(held(&["b"]));
    h.deliverable
        .set([(Arc::from("a"), 1), (Arc::from("b"), 0)].into());
    h.tx.send(chunk_of("a", 1..3, 2, 1)).await.expect("send");
    h.tx.send(chunk_of("a", 3..5, 4, 1)).await.expect("send");
    let (sent, acks) = h.finish().await;
    assert_eq!(
        sent,
        [vec!["b:1", "b:2"], vec!["a:1", "a:2"], vec!["a:3", "a:4"]],
        "each of a's records exactly once, in order"
    );
    let a_acks: Vec<&str> = acks
        .iter()
        .filter(|(s, ..)| s == "a")
        .map(|(_, cp, _)| cp.as_str())
        .collect();
    assert_eq!(a_acks, ["2", "4"]);
}

/// The f3 duplicates: a chunk larger than a batch is split, and its checkpoint rides with its
/// last record. When a handoff closes the shard, the request in flight holding the chunk's
/// first records must still move the checkpoint, or the next owner delivers them again.
#[tokio::test]
async fn a_request_in_flight_with_part_of_a_chunk_acknowledges_its_own_records() {
    let h = Harness::start(&["a"]);
    h.tx.send(chunk("a", 1..5, 4)).await.expect("send");
    wait_until("a's first request is in flight", || h.requests() == 1).await;
    h.deliverable.close("a");
    h.gate.add_permits(1);
    wait_until("the request in flight is acknowledged", || {
        h.acks.get().contains(&("a".into(), "2".into(), 0))
    })
    .await;
    wait_until("a is idle", || h.deliverable.closed_and_idle("a")).await;
    let (sent, acks) = h.finish().await;
    assert_eq!(sent, [vec!["a:1", "a:2"]], "the rest was never sent");
    assert_eq!(acks, [("a".into(), "2".into(), 0)]);
}

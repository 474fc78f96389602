//! Tests of the shard readers against a scripted [`KinesisApi`]: enhanced fan-out renewals after session end, errors and stalls, shard end, cancellation; a polling reader cancelled mid-call.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use kinesis_ingester_api::DecodeSpec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use kinesis_client::api::{
    KinesisApi, RawRecord, RecordsPage, ShardInfo, SourceError, StreamRef, SubscribeEvent,
};

use crate::{
    decode::Decoder,
    metrics::Metrics,
    record::{Chunk, ShardContext},
    sink::{DeadLetterWriter, SinkStats},
    source::shard::PollSettings,
};

fn seq(n: u128) -> SequenceNumber {
    n.to_string().parse().expect("a sequence number")
}

/// What one scripted session yields.
enum Step {
    Event(SubscribeEvent),
    Fail(SourceError),
    /// No further event: the session stalls.
    Hang,
}

/// Sessions handed out in order; records where each subscription started.
#[derive(Default)]
struct Scripted {
    sessions: Mutex<VecDeque<Vec<Step>>>,
    starts: Mutex<Vec<StartAt>>,
    /// Polling: GetShardIterator answers, then every GetRecords call hangs; counts the calls.
    hanging_get_records: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

fn unused<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, SourceError>> {
    async {
        Err(SourceError::Other {
            operation: "test",
            message: "not scripted".into(),
        })
    }
    .boxed()
}

impl KinesisApi for Scripted {
    fn list_shards<'a>(
        &'a self,
        _: &'a StreamRef,
    ) -> BoxFuture<'a, Result<Vec<ShardInfo>, SourceError>> {
        unused()
    }
    fn get_shard_iterator<'a>(
        &'a self,
        _: &'a StreamRef,
        _: &'a str,
        _: &'a StartAt,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        match self.hanging_get_records {
            Some(_) => async { Ok("it".to_owned()) }.boxed(),
            None => unused(),
        }
    }
    fn get_records<'a>(
        &'a self,
        _: &'a str,
        _: i32,
    ) -> BoxFuture<'a, Result<RecordsPage, SourceError>> {
        match &self.hanging_get_records {
            Some(calls) => {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                futures::future::pending().boxed()
            }
            None => unused(),
        }
    }
    fn stream_arn<'a>(&'a self, _: &'a StreamRef) -> BoxFuture<'a, Result<String, SourceError>> {
        unused()
    }
    fn register_consumer<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        unused()
    }
    fn deregister_consumer<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), SourceError>> {
        unused()
    }
    fn subscribe(
        &self,
        _: &str,
        _: &str,
        start: &StartAt,
    ) -> BoxStream<'static, Result<SubscribeEvent, SourceError>> {
        self.starts.lock().expect("lock").push(start.clone());
        let steps = self
            .sessions
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| vec![Step::Hang]);
        futures::stream::iter(steps)
            .then(|step| async move {
                match step {
                    Step::Event(e) => Ok(e),
                    Step::Fail(e) => Err(e),
                    Step::Hang => futures::future::pending().await,
                }
            })
            .boxed()
    }
}

fn event(records: &[u128], continuation: Option<u128>) -> SubscribeEvent {
    SubscribeEvent {
        records: records
            .iter()
            .map(|n| RawRecord {
                data: Bytes::from(format!("r{n}")),
                partition_key: "k".into(),
                sequence_number: seq(*n),
                approximate_arrival_ms: None,
            })
            .collect(),
        continuation_sequence_number: continuation.map(seq),
        millis_behind_latest: Some(0),
        child_shards: Vec::new(),
    }
}

fn reader(api: Arc<Scripted>, chunks: mpsc::Sender<Chunk>, cancel: CancellationToken) -> EfoReader {
    let stats = Arc::new(SinkStats::default());
    EfoReader {
        reader: ShardReader {
            api,
            stream: StreamRef::Name("s".into()),
            shard: Arc::new(ShardContext {
                stream: Arc::from("s"),
                shard_id: Arc::from("shardId-000000000000"),
                hash_range: (0, u128::MAX),
                tag: None,
            }),
            start: StartAt::TrimHorizon,
            skip_until: None,
            settings: PollSettings {
                poll_interval: Duration::from_millis(200),
                min_call_gap: Duration::from_millis(200),
                max_records: 100,
            },
            decoder: Arc::new(Decoder::new(&DecodeSpec::default(), 1 << 20)),
            transform: None,
            dead_letters: Arc::new(tokio::sync::Mutex::new(DeadLetterWriter::new(
                None,
                stats.clone(),
            ))),
            chunks: chunks.into(),
            metrics: Arc::new(Metrics::new(stats)),
            tracker: Arc::default(),
            cancel,
            generation: 0,
        },
        settings: EfoSettings {
            stall_timeout: Duration::from_millis(300),
            min_subscribe_gap: Duration::ZERO,
            end_check_interval: None,
            ..EfoSettings::new(Arc::from("arn:consumer"))
        },
    }
}

#[test]
fn a_new_subscription_continues_after_the_last_event() {
    let start = StartAt::TrimHorizon;
    assert_eq!(resubscribe_at(None, None, &start), StartAt::TrimHorizon);
    let sent = Position::whole(seq(49_000));
    assert_eq!(
        resubscribe_at(None, Some(&sent), &start),
        StartAt::AfterSequence(seq(49_000))
    );
    assert_eq!(
        resubscribe_at(Some(&seq(49_100)), Some(&sent), &start),
        StartAt::AfterSequence(seq(49_100))
    );
}

#[tokio::test]
async fn sessions_are_renewed_after_an_end_an_error_and_a_stall_until_the_shard_ends() {
    let child = ChildShard {
        shard_id: "shardId-000000000001".into(),
        parents: vec!["shardId-000000000000".into()],
        hash_range: Some((0, u128::MAX)),
    };
    let mut last = event(&[], None);
    last.child_shards = vec![child.clone()];
    let api = Arc::new(Scripted::default());
    *api.sessions.lock().expect("lock") = VecDeque::from([
        // Ends normally (as after 5 minutes).
        vec![
            Step::Event(event(&[1, 2], Some(2))),
            Step::Event(event(&[], Some(5))),
        ],
        // The previous subscription is still open.
        vec![Step::Fail(SourceError::InUse {
            operation: "SubscribeToShard",
            message: "busy".into(),
        })],
        // Stalls.
        vec![Step::Event(event(&[7], Some(7))), Step::Hang],
        vec![Step::Event(last)],
    ]);
    let (tx, mut rx) = mpsc::channel(16);
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        reader(api.clone(), tx, CancellationToken::new()).run(),
    )
    .await
    .expect("the reader finishes");

    match outcome {
        ShardOutcome::Ended {
            children,
            last_sent,
        } => {
            assert_eq!(children, vec![child]);
            assert_eq!(last_sent, Some(Position::whole(seq(7))));
        }
        ShardOutcome::Stopped { .. } => panic!("the shard should have ended"),
    }
    let mut delivered = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        delivered.extend(chunk.records.iter().map(|r| r.data.clone()));
    }
    assert_eq!(
        delivered,
        vec![Bytes::from("r1"), Bytes::from("r2"), Bytes::from("r7")]
    );
    assert_eq!(
        *api.starts.lock().expect("lock"),
        vec![
            StartAt::TrimHorizon,
            StartAt::AfterSequence(seq(5)),
            StartAt::AfterSequence(seq(5)),
            StartAt::AfterSequence(seq(7)),
        ]
    );
}

#[tokio::test]
async fn cancelling_stops_a_waiting_reader_at_once() {
    let api = Arc::new(Scripted::default());
    let (tx, _rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let mut r = reader(api, tx, cancel.clone());
    r.settings.stall_timeout = Duration::from_secs(60);
    let task = tokio::spawn(r.run());
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("stops promptly")
        .expect("no panic");
    assert!(matches!(outcome, ShardOutcome::Stopped { last_sent: None }));
}

/// A polling reader cancelled while GetRecords hangs stops at once instead of waiting for the
/// call (a release or a shutdown must not wait out a slow Kinesis).
#[tokio::test]
async fn a_polling_reader_stops_at_once_when_cancelled_during_get_records() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let api = Arc::new(Scripted {
        hanging_get_records: Some(calls.clone()),
        ..Scripted::default()
    });
    let (tx, _rx) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(reader(api, tx, cancel.clone()).reader.run());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "GetRecords never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the reader did not wait for the hanging call")
        .expect("joined");
    assert!(
        matches!(outcome, ShardOutcome::Stopped { last_sent: None }),
        "{outcome:?}"
    );
}

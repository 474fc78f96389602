//! `deadLetterAfter`: a sink that fails for longer dead-letters its batches and moves on; one that
//! recovers in time loses nothing to the dead-letter file.

use super::*;

/// What delivering one chunk of three records ended with.
struct Outcome {
    acks: Acks,
    stats: Arc<SinkStats>,
    dead: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Delivers one chunk of shard `a` (records 1–3, checkpoint 3) to an endpoint answering
/// `responses` in turn, with `deadLetterAfter` set to `after`, until the pipeline finishes.
async fn deliver(responses: Vec<(u16, &'static str)>, after: Duration) -> Outcome {
    let server = TestServer::start(responses).await;
    let spec = server.spec(serde_json::json!({}));
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = dir.path().join("dead.ndjson");
    let (acks, stats) = (Acks::default(), Arc::new(SinkStats::default()));
    let pipeline = http_pipeline(&spec, acks.ack_fn(|| 0), stats.clone())
        .with_dead_letters(DeadLetterWriter::new(Some(dead.clone()), stats.clone()))
        .with_give_up(Arc::from("archive"), Some(after));
    let (tx, rx) = mpsc::channel(4);
    tx.send(chunk("a", 1..4, 3)).await.expect("send");
    drop(tx);
    tokio::time::timeout(DEADLINE, pipeline.run(rx))
        .await
        .expect("finished")
        .expect("ok");
    Outcome {
        acks,
        stats,
        dead,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_sink_down_longer_than_dead_letter_after_dead_letters_its_batches_and_acks_them() {
    let down = (0..10_000).map(|_| (503, "down")).collect();
    let out = deliver(down, Duration::from_millis(50)).await;
    assert_eq!(
        out.acks.get(),
        [("a".into(), "3".into(), 0)],
        "acked once dead-lettered"
    );
    assert_eq!(out.stats.records_out(), 0, "nothing counts as delivered");
    assert_eq!(out.stats.dead_letters(), 3);
    let text = std::fs::read_to_string(&out.dead).expect("dead letters");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["category"], "sink_gave_up");
    assert_eq!(lines[0]["sink"], "archive");
    assert_eq!(lines[0]["errorCategory"], "http_5xx");
    assert_eq!(lines[2]["item"][0]["sequenceNumber"], "3");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("HTTP 503"),
        "{}",
        lines[0]["reason"]
    );
}

#[tokio::test]
async fn a_sink_that_recovers_in_time_dead_letters_nothing() {
    let out = deliver(
        vec![(503, "busy"), (503, "busy")],
        Duration::from_secs(3600),
    )
    .await;
    assert_eq!(out.stats.records_out(), 3);
    assert_eq!(out.stats.dead_letters(), 0);
    assert!(!out.dead.exists());
}

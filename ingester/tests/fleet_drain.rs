//! Fleet mode, SIGTERM with a sink slower than the worker lease: the worker keeps renewing while the sink drains, and releases the shard at its final acknowledged position.

#[macro_use]
mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{Router, extract::State, routing::post};
use common::*;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);
/// Longer than the worker lease (14 s): without renewals during the drain the operator would
/// expire the worker and fence it at an older position.
const SLOW: Duration = Duration::from_secs(16);

/// An NDJSON endpoint that answers at once, or after [`SLOW`] once `slow` is set.
#[derive(Clone, Default)]
struct Sink {
    slow: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    lines: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(s): State<Sink>, body: String) -> &'static str {
    if s.slow.load(SeqCst) {
        s.in_flight.fetch_add(1, SeqCst);
        tokio::time::sleep(SLOW).await;
    }
    s.lines
        .lock()
        .expect("lines")
        .extend(body.lines().map(str::to_owned));
    "ok"
}

#[tokio::test]
async fn sigterm_keeps_renewing_while_a_slow_sink_drains_and_releases_at_the_last_record()
-> Result<()> {
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = Router::new()
        .route("/", post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let w = one_shard::OneShardWorker::start(
        "drain",
        serde_json::json!({"http": {"url": url, "timeout": "60s"}, "batch": {"maxRecords": 50, "maxAge": "100ms"}}),
        &["--metrics-addr", "off", "--shutdown-timeout", "40s"],
    )
    .await?;
    w.put_range(0, 5).await?;
    wait_until("the first records delivered", WAIT, || async {
        Ok((sink.lines.lock().expect("lines").len() == 5).then_some(()))
    })
    .await?;

    // The sink turns slow; the next batch is in flight when SIGTERM comes.
    sink.slow.store(true, SeqCst);
    w.put_range(5, 10).await?;
    wait_until("a slow request in flight", WAIT, || async {
        Ok((sink.in_flight.load(SeqCst) > 0).then_some(()))
    })
    .await?;
    let before = w.status().await?.renew_time;
    let pid = w.child.id().context("child pid")?;
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?
            .success()
    );

    // While the slow request is still running, the worker renews its status: the lease never
    // lapses during a clean stop.
    wait_until("a status write during the drain", WAIT, || async {
        let s = w.status().await?;
        let drained = sink.lines.lock().expect("lines").len() == 10;
        anyhow::ensure!(
            !drained || s.renew_time != before,
            "the sink drained before any renewal: the status writer stopped at SIGTERM"
        );
        Ok((s.renew_time != before && !s.stopped).then_some(()))
    })
    .await?;

    let mut w = w;
    let exit = tokio::time::timeout(WAIT, w.child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "exits 0 after SIGTERM");
    // Records put after the reader's last page before SIGTERM are not read: they stay for the
    // next owner. What was read is delivered once, the slow batch included.
    let lines = lines_of(&sink);
    let got = payloads(&lines);
    let want: Vec<String> = (0..got.len()).map(|i| format!("r-{i}")).collect();
    assert_eq!(got, want, "a prefix, in order, each once");
    assert!(
        got.len() > 5,
        "the slow batch was delivered, not dropped: {got:?}"
    );
    let s = w.status().await?;
    assert!(s.stopped, "status.stopped");
    let entry = s.entry(&w.shard, 1).context("the shard's entry")?;
    assert!(entry.released, "released");
    let last = lines
        .last()
        .and_then(|l| l["sequenceNumber"].as_str())
        .map(str::to_owned);
    assert_eq!(
        entry.position.as_ref().map(|p| p.sequence.clone()),
        last,
        "released at the last delivered record"
    );
    Ok(())
}

fn lines_of(sink: &Sink) -> Vec<serde_json::Value> {
    sink.lines
        .lock()
        .expect("lines")
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

//! Restarts, injected Kinesis faults and a failing HTTP sink: every record is delivered, and a clean restart re-delivers nothing.

#[macro_use]
mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use common::*;
use kinesis_client::{api::KinesisApi, faults::FaultyKinesis};
use kinesis_ingester_api::ReadMode;

const DEADLINE: Duration = Duration::from_secs(90);

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            (
                format!("pk-{}", i % 5),
                format!("{prefix}-{i}").into_bytes(),
            )
        })
        .collect()
}

both_modes!(a_restart_resumes_after_the_last_delivered_record);

async fn a_restart_resumes_after_the_last_delivered_record(mode: ReadMode) -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");

    put(&kinesis, &stream, &numbered("first", 0..60)).await?;
    let run = Running::start(
        with_mode(ingester(&stream, &out, "")?, mode),
        sdk_api()?,
        dir.path(),
    );
    wait_for_lines(&out, 60, DEADLINE).await?;
    run.shutdown().await?;

    put(&kinesis, &stream, &numbered("second", 0..40)).await?;
    let run = Running::start(
        with_mode(ingester(&stream, &out, "")?, mode),
        sdk_api()?,
        dir.path(),
    );
    let lines = wait_for_lines(&out, 100, DEADLINE).await?;
    run.shutdown().await?;
    assert_exactly_once(&lines, 100);
    Ok(())
}

#[tokio::test]
async fn throttling_and_expired_iterators_are_recovered_from() -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    put(&kinesis, &stream, &numbered("f", 0..30)).await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let faulty = Arc::new(FaultyKinesis::new(sdk_api()?, 3, 4));
    // Small pages, so many GetRecords calls (and faults) happen while records remain.
    let cfg = ingester(&stream, &out, "")?;
    let mut cfg = cfg;
    cfg.spec.read.max_records_per_call = 3;
    let api: Arc<dyn KinesisApi> = faulty.clone();
    let run = Running::start(cfg, api, dir.path());
    put(&kinesis, &stream, &numbered("g", 0..30)).await?;
    let lines = wait_for_lines(&out, 60, DEADLINE).await?;
    run.shutdown().await?;
    assert!(
        faulty.throttled.load(Ordering::Relaxed) > 0,
        "throttles were injected"
    );
    assert!(
        faulty.expired.load(Ordering::Relaxed) > 0,
        "expired iterators were injected"
    );
    assert_exactly_once(&lines, 60);
    Ok(())
}

#[derive(Clone, Default)]
struct Flaky {
    failures_left: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
    received: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn flaky_endpoint(State(s): State<Flaky>, body: Bytes) -> StatusCode {
    s.attempts.fetch_add(1, Ordering::Relaxed);
    if s.failures_left.load(Ordering::Relaxed) > 0 {
        s.failures_left.fetch_sub(1, Ordering::Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut received = s.received.lock().expect("lock");
    received.extend(text.lines().map(str::to_owned));
    StatusCode::OK
}

both_modes!(an_http_sink_that_fails_for_a_while_loses_nothing);

async fn an_http_sink_that_fails_for_a_while_loses_nothing(mode: ReadMode) -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    put(&kinesis, &stream, &numbered("h", 0..50)).await?;

    let state = Flaky::default();
    state.failures_left.store(4, Ordering::Relaxed);
    let app = Router::new()
        .route("/ingest", post(flaky_endpoint))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/ingest", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let sink = format!(
        "    http: {{url: '{url}', timeout: 5s}}\n    batch: {{maxRecords: 20, maxAge: 100ms}}\n"
    );
    let dir = tempfile::tempdir()?;
    let run = Running::start(
        with_mode(config(&stream, &sink, "")?, mode),
        sdk_api()?,
        dir.path(),
    );
    let received = state.received.clone();
    wait_until("50 records at the HTTP endpoint", DEADLINE, || {
        let received = received.clone();
        async move { Ok((received.lock().expect("lock").len() >= 50).then_some(())) }
    })
    .await?;
    run.shutdown().await?;
    let lines: Vec<serde_json::Value> = state
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    assert_exactly_once(&lines, 50);
    assert!(
        state.attempts.load(Ordering::Relaxed) >= 4 + 3,
        "failed attempts were retried"
    );
    Ok(())
}

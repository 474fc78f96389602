//! Fleet mode with an HTTP sink that refuses every connection: the worker reports the shard's delivery stuck (with the `connect` category) and `/readyz` turns false within the threshold, then both recover once the sink listens.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;

/// The worker's threshold with 5 s reports: 30 s.
const STUCK_AFTER: Duration = Duration::from_secs(30);
/// Stuck must show within the threshold, one report interval, and a margin for startup.
const STUCK_WITHIN: Duration = Duration::from_secs(60);
/// The sink retries at most 30 s apart; then one report.
const RECOVER_WITHIN: Duration = Duration::from_secs(60);

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

#[tokio::test]
async fn a_refusing_sink_is_reported_stuck_and_not_ready_then_recovers() -> Result<()> {
    let sink_addr = closed_port()?;
    let metrics_addr = closed_port()?;
    let url = format!("http://{sink_addr}/");

    let w = one_shard::OneShardWorker::start(
        "sinkdown",
        serde_json::json!({"http": {"url": url, "timeout": "5s"}, "batch": {"maxRecords": 50, "maxAge": "100ms"}}),
        &["--metrics-addr", &metrics_addr.to_string()],
    )
    .await?;
    let entry = || w.entry();
    let http = reqwest::Client::new();
    let readyz = || async {
        let r = http
            .get(format!("http://{metrics_addr}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        Ok::<_, anyhow::Error>(r.status().is_success())
    };
    wait_until("the worker ready and reading", STUCK_WITHIN, || async {
        Ok(readyz().await?.then_some(()))
    })
    .await?;

    w.put_range(0, 5).await?;
    let put_at = Instant::now();

    let stuck = wait_until(
        "the shard reported delivery-stuck",
        STUCK_WITHIN,
        || async { Ok(entry().await?.and_then(|e| e.delivery_stuck)) },
    )
    .await?;
    assert!(
        put_at.elapsed() >= STUCK_AFTER,
        "reported stuck after {:?}, before the threshold",
        put_at.elapsed()
    );
    assert_eq!(stuck.sink_error.as_deref(), Some("connect"), "{stuck:?}");
    assert_eq!(stuck.threshold_seconds, 30);
    assert!(stuck.stalled_seconds > 30, "{stuck:?}");
    assert_eq!(
        entry().await?.and_then(|e| e.last_delivery),
        None,
        "nothing was ever delivered"
    );
    wait_until(
        "/readyz false while stuck",
        Duration::from_secs(10),
        || async { Ok((!readyz().await?).then_some(())) },
    )
    .await?;

    // The sink comes up on the refused port.
    let sink = line_sink::LineSink::serve(tokio::net::TcpListener::bind(sink_addr).await?);

    let recovered = wait_until(
        "delivery recovered in the status",
        RECOVER_WITHIN,
        || async {
            Ok(entry()
                .await?
                .filter(|e| e.delivery_stuck.is_none() && e.last_delivery.is_some()))
        },
    )
    .await?;
    assert!(recovered.position.is_some(), "checkpointed once delivered");
    assert_eq!(sink.lines().len(), 5, "every record delivered");
    wait_until("/readyz true again", Duration::from_secs(10), || async {
        Ok(readyz().await?.then_some(()))
    })
    .await?;
    Ok(())
}

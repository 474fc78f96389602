//! The HTTP endpoints both binaries serve: `/metrics` (Prometheus), `/healthz` and `/readyz`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use tokio_util::sync::CancellationToken;

/// Anything that renders Prometheus' text exposition format.
pub trait Encode: Send + Sync + 'static {
    /// The current metrics, as text.
    fn encode(&self) -> String;
}

/// What the endpoints report.
#[derive(Clone)]
pub struct Health {
    /// Metrics to expose.
    pub metrics: Arc<dyn Encode>,
    /// Set once the shard list was read and readers started; cleared on shutdown.
    pub ready: Arc<AtomicBool>,
}

async fn metrics(State(h): State<Health>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

async fn ready(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("ready", &self.ready)
            .finish()
    }
}

/// Binds `addr` and serves until `cancel` fires. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let shutdown = async move { cancel.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

/// Marks the process ready or not.
pub fn set_ready(flag: &AtomicBool, ready: bool) {
    flag.store(ready, Ordering::Relaxed);
}

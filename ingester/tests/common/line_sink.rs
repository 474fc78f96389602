//! An HTTP sink for the tests: a server on loopback that keeps every line POSTed to `/`.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::{Router, extract::State, routing::post};

/// The lines received so far, shared with the server.
#[derive(Clone, Default)]
pub struct LineSink {
    lines: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(s): State<LineSink>, body: String) -> &'static str {
    s.lines
        .lock()
        .expect("lines")
        .extend(body.lines().map(str::to_owned));
    "ok"
}

impl LineSink {
    /// Serves on `listener` until the test ends.
    pub fn serve(listener: tokio::net::TcpListener) -> Self {
        let sink = Self::default();
        let app = Router::new()
            .route("/", post(receive))
            .with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        sink
    }

    /// Serves on a free loopback port; the sink and its address.
    pub async fn start() -> Result<(Self, std::net::SocketAddr)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok((Self::serve(listener), addr))
    }

    /// Every line received, in order.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }
}

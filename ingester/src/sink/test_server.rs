//! A scripted HTTP/1.1 server on 127.0.0.1 for the HTTP sink tests.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use kinesis_ingester_api::HttpSink;

/// An HTTP server on 127.0.0.1 that answers with scripted responses, then 200 `{}`.
pub(crate) struct TestServer {
    url: String,
    pub(crate) script: Arc<Mutex<VecDeque<(u16, String)>>>,
    pub(crate) requests: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

type ServerState = (
    Arc<Mutex<VecDeque<(u16, String)>>>,
    Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
);

async fn answer(
    State((script, requests)): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    requests.lock().expect("requests").push((headers, body));
    let (status, text) = script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or((200, "{}".into()));
    (StatusCode::from_u16(status).expect("status"), text)
}

impl TestServer {
    pub(crate) async fn start(script: Vec<(u16, &str)>) -> Self {
        let script: VecDeque<_> = script.into_iter().map(|(s, t)| (s, t.to_owned())).collect();
        let state: ServerState = (Arc::new(Mutex::new(script)), Arc::default());
        let app = Router::new()
            .route("/ingest", axum::routing::post(answer))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/ingest"),
            script: state.0,
            requests: state.1,
        }
    }

    pub(crate) fn request_count(&self) -> usize {
        self.requests.lock().expect("requests").len()
    }

    pub(crate) fn body(&self, i: usize) -> String {
        let requests = self.requests.lock().expect("requests");
        String::from_utf8(requests[i].1.to_vec()).expect("utf8")
    }

    pub(crate) fn spec(&self, extra: serde_json::Value) -> HttpSink {
        let mut spec = serde_json::json!({ "url": self.url, "timeout": "5s" });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(spec).expect("http spec")
    }
}

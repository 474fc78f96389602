//! A scripted HTTP/1.1 server on 127.0.0.1 for the HTTP sink tests.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use kinesis_ingester_api::HttpSink;

/// An HTTP server on 127.0.0.1 that answers with scripted responses, then 200 `{}` (or, once
/// told to, with a status and a body that never ends).
pub(crate) struct TestServer {
    url: String,
    pub(crate) script: Arc<Mutex<VecDeque<(u16, String)>>>,
    pub(crate) requests: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    endless: Arc<Mutex<Option<u16>>>,
}

type ServerState = (
    Arc<Mutex<VecDeque<(u16, String)>>>,
    Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    Arc<Mutex<Option<u16>>>,
);

async fn answer(
    State((script, requests, endless)): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    requests.lock().expect("requests").push((headers, body));
    if let Some(status) = *endless.lock().expect("endless") {
        // 64 KiB chunks of spaces (valid JSON whitespace), forever, without a length.
        let chunk = Bytes::from(vec![b' '; 64 << 10]);
        let forever = futures::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
        let status = StatusCode::from_u16(status).expect("status");
        return (status, Body::from_stream(forever)).into_response();
    }
    let (status, text) = script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or((200, "{}".into()));
    (StatusCode::from_u16(status).expect("status"), text).into_response()
}

impl TestServer {
    pub(crate) async fn start(script: Vec<(u16, &str)>) -> Self {
        let script: VecDeque<_> = script.into_iter().map(|(s, t)| (s, t.to_owned())).collect();
        let state: ServerState = (Arc::new(Mutex::new(script)), Arc::default(), Arc::default());
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
            endless: state.2,
        }
    }

    /// From now on, answers every request with `status` and a body that never ends.
    pub(crate) fn answer_endlessly(&self, status: u16) {
        *self.endless.lock().expect("endless") = Some(status);
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

//! A Firehose transform "Lambda" behind HTTP, written against Firehose's documented contract (not
//! against our client): it decodes each record's base64 `data`, and answers per record
//! `Ok` with new base64 data, `Dropped` or `ProcessingFailed`, as the Lambda blueprints do. Faults
//! are switched on by the test: failing statuses, answers that break the contract, slow answers.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Result;
use axum::{
    Router, body::Bytes, extract::State, http::StatusCode, response::IntoResponse, routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

/// What the next request gets instead of a proper answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This status and no answer.
    Status(u16),
    /// A proper answer with the first record answered twice.
    DuplicateId,
    /// A proper answer without the last record.
    MissingRecord,
    /// A proper answer, after this long.
    Slow(Duration),
}

#[derive(Default)]
struct Inner {
    faults: VecDeque<Fault>,
    /// Every request's body.
    requests: Vec<Value>,
    /// Fail every request with this status.
    down: Option<u16>,
}

/// The running server.
#[derive(Clone)]
pub struct FirehoseLambda {
    inner: Arc<Mutex<Inner>>,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
}

impl FirehoseLambda {
    /// Starts it on a free loopback port.
    pub async fn start() -> Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let app = Router::new()
            .route("/", post(invoke))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { inner, url })
    }

    /// Queues `faults` for the next requests, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    /// Answers every request with `status` (or properly again with `None`).
    pub fn set_down(&self, status: Option<u16>) {
        self.lock().down = status;
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("lambda state")
    }
}

/// The Lambda's logic per record: JSON with `"level": "debug"` is dropped, other JSON gains
/// `"transformed": true` and the record's shard, anything that is not JSON fails.
fn transform(record: &Value) -> Value {
    let id = record["recordId"].clone();
    let data = record["data"]
        .as_str()
        .and_then(|d| STANDARD.decode(d).ok())
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok());
    match data {
        Some(doc) if doc["level"] == "debug" => json!({"recordId": id, "result": "Dropped"}),
        Some(mut doc) if doc.is_object() => {
            doc["transformed"] = json!(true);
            doc["shard"] = record["kinesisRecordMetadata"]["shardId"].clone();
            doc["sub"] = record["kinesisRecordMetadata"]["subsequenceNumber"].clone();
            json!({"recordId": id, "result": "Ok", "data": STANDARD.encode(doc.to_string())})
        }
        _ => json!({"recordId": id, "result": "ProcessingFailed", "data": record["data"]}),
    }
}

fn reply(status: StatusCode, body: Value) -> axum::response::Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn invoke(State(inner): State<Arc<Mutex<Inner>>>, body: Bytes) -> impl IntoResponse {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (fault, down) = {
        let mut s = inner.lock().expect("lambda state");
        s.requests.push(event.clone());
        (s.faults.pop_front(), s.down)
    };
    if let Some(status) = down {
        return reply(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            json!({}),
        );
    }
    let mut records: Vec<Value> = event["records"]
        .as_array()
        .map(|r| r.iter().map(transform).collect())
        .unwrap_or_default();
    match fault {
        Some(Fault::Status(status)) => {
            return reply(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                json!({"errorMessage": "injected"}),
            );
        }
        Some(Fault::DuplicateId) => {
            if let Some(first) = records.first().cloned() {
                records.push(first);
            }
        }
        Some(Fault::MissingRecord) => {
            records.pop();
        }
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    reply(StatusCode::OK, json!({"records": records}))
}

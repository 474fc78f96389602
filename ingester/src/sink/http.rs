//! The HTTP destination: POSTs each batch as NDJSON or as an Elasticsearch/OpenSearch `_bulk` body, and reads which `_bulk` items failed.

use bytes::Bytes;
use futures::{FutureExt, future::BoxFuture};
use std::path::Path;

use kinesis_ingester_api::{HeadersFrom, HttpFormat, HttpSink, bounds};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::{
    Batch, Destination, SinkError, bulk::BulkFraming, error::RejectedItem, ndjson::Encoding,
    retry_after,
};

/// The header that carries [`Batch::idempotency_key`] on NDJSON requests: a receiver that has
/// seen the key may drop the request as a repeat.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Longest part of an error response body kept for the log.
const ERROR_BODY_LIMIT: usize = 512;

/// Most bytes read of a response that is not a `_bulk` answer (an error body, or a 2xx one that
/// is ignored). Read rather than dropped so that the connection can be reused; past this it is
/// dropped instead.
const OTHER_BODY_READ_LIMIT: usize = 64 << 10;

/// A `_bulk` response may be this large plus [`BULK_RESPONSE_PER_ITEM`] bytes per item of the
/// request, up to [`BULK_RESPONSE_MAX`]; a larger one is not read (a retryable
/// `bulk_response` error). An item answer is about 200 bytes, 500 with an error and its cause.
const BULK_RESPONSE_BASE: usize = 64 << 10;
/// See [`BULK_RESPONSE_BASE`].
const BULK_RESPONSE_PER_ITEM: usize = 2 << 10;
/// See [`BULK_RESPONSE_BASE`]: 128 MiB, the largest batch body `maxBytes` allows.
const BULK_RESPONSE_MAX: usize = 128 << 20;

/// The headers of `from`, read from `dir/<key>` (the mounted Secret): every listed key, or
/// every file when none is listed (the `..data` entries of a Secret volume are skipped). A
/// value's trailing newline is dropped; values are marked sensitive (never logged).
fn secret_headers(
    from: &HeadersFrom,
    dir: &Path,
) -> Result<Vec<(HeaderName, HeaderValue)>, SinkError> {
    let missing = |e: std::io::Error| {
        SinkError::Config(format!(
            "sink.http.headersFrom: cannot read Secret {} at {}: {e}",
            from.secret_name,
            dir.display()
        ))
    };
    let keys: Vec<String> = if from.keys.is_empty() {
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(missing)? {
            let name = entry.map_err(missing)?.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') {
                keys.push(name.into_owned());
            }
        }
        keys.sort();
        keys
    } else {
        from.keys.clone()
    };
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let name = HeaderName::from_bytes(key.as_bytes()).map_err(|e| {
            SinkError::Config(format!(
                "sink.http.headersFrom key {key:?} is not a header name: {e}"
            ))
        })?;
        let path = dir.join(&key);
        let text = std::fs::read_to_string(&path).map_err(missing)?;
        let mut value =
            HeaderValue::from_str(text.trim_end_matches(['\r', '\n'])).map_err(|e| {
                SinkError::Config(format!(
                    "sink.http.headersFrom key {key:?}: not a header value: {e}"
                ))
            })?;
        value.set_sensitive(true);
        out.push((name, value));
    }
    Ok(out)
}

/// POSTs batches to one URL.
#[derive(Debug)]
pub struct HttpDestination {
    client: reqwest::Client,
    url: reqwest::Url,
    bulk: bool,
}

impl HttpDestination {
    /// A client for `spec`: its URL, headers and per-request timeout, over rustls with the
    /// `ring` provider (installed as the process default if none is) and the platform's roots.
    pub fn new(spec: &HttpSink) -> Result<Self, SinkError> {
        Self::with_network(spec, &kinesis_client::net::Network::default())
    }

    /// [`Self::new`] with requests over `network` (`spec.network`).
    pub fn with_network(
        spec: &HttpSink,
        network: &kinesis_client::net::Network,
    ) -> Result<Self, SinkError> {
        let dir = std::env::var_os(bounds::HEADERS_DIR_ENV).map_or_else(
            || Path::new(bounds::HEADERS_MOUNT_PATH).to_owned(),
            Into::into,
        );
        Self::build(spec, &dir, network)
    }

    /// The same, reading `sink.http.headersFrom` from the files in `dir` (one per key).
    pub fn with_headers_dir(spec: &HttpSink, dir: &Path) -> Result<Self, SinkError> {
        Self::build(spec, dir, &kinesis_client::net::Network::default())
    }

    fn build(
        spec: &HttpSink,
        dir: &Path,
        network: &kinesis_client::net::Network,
    ) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(&spec.url)
            .map_err(|e| SinkError::Config(format!("sink.http.url {:?}: {e}", spec.url)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| SinkError::Config(format!("sink.http.headers {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| SinkError::Config(format!("sink.http.headers.{name}: {e}")))?;
            headers.insert(name, value);
        }
        if let Some(from) = &spec.headers_from {
            for (name, value) in secret_headers(from, dir)? {
                headers.insert(name, value);
            }
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let client = crate::net::http_client(network)
            .map_err(SinkError::Config)?
            .default_headers(headers)
            .timeout(bounds::HTTP_TIMEOUT.clamp(&spec.timeout))
            .build()
            .map_err(|e| SinkError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            url,
            bulk: spec.format == HttpFormat::ElasticsearchBulk,
        })
    }

    /// How batch bodies for `spec` are framed.
    pub fn encoding(spec: &HttpSink) -> Result<Encoding, SinkError> {
        match spec.format {
            HttpFormat::Ndjson => Ok(Encoding::Ndjson),
            HttpFormat::ElasticsearchBulk => Ok(Encoding::Bulk(BulkFraming::new(spec)?)),
        }
    }

    async fn post(&self, batch: &Batch) -> Result<(), SinkError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .body(Bytes::copy_from_slice(batch.body()));
        if !self.bulk {
            // A `_bulk` retry resends only the failed items, so the key would not name its
            // content: it goes with NDJSON batches only, which are always resent whole.
            request = request.header(IDEMPOTENCY_KEY, batch.idempotency_key());
        }
        let response = request.send().await.map_err(SinkError::Request)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after::from_headers(response.headers(), jiff::Timestamp::now());
            let body = read_body(response, OTHER_BODY_READ_LIMIT)
                .await
                .map_err(SinkError::Request)?;
            let end = body.bytes.len().min(ERROR_BODY_LIMIT);
            return Err(SinkError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body.bytes[..end]).into_owned(),
                retry_after,
            });
        }
        if !self.bulk {
            read_body(response, OTHER_BODY_READ_LIMIT)
                .await
                .map_err(SinkError::Request)?;
            return Ok(());
        }
        let limit = bulk_response_limit(batch.len());
        let body = read_body(response, limit)
            .await
            .map_err(SinkError::Request)?;
        if body.truncated {
            return Err(SinkError::BulkResponse(format!(
                "larger than {limit} bytes, the most read for {} items",
                batch.len()
            )));
        }
        bulk_result(&body.bytes, batch.len())
    }
}

impl Destination for HttpDestination {
    fn send<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        self.post(batch).boxed()
    }
}

/// The most of a `_bulk` response read for a request of `items` items.
fn bulk_response_limit(items: usize) -> usize {
    items
        .saturating_mul(BULK_RESPONSE_PER_ITEM)
        .saturating_add(BULK_RESPONSE_BASE)
        .min(BULK_RESPONSE_MAX)
}

/// The start of a response body.
pub(crate) struct BodyStart {
    pub(crate) bytes: Vec<u8>,
    /// Whether the body goes on past `bytes` (the rest is not read).
    pub(crate) truncated: bool,
}

/// Reads at most `limit` bytes of `response`'s body, chunk by chunk: a body announced or found
/// larger costs `limit` bytes of memory, not its size. Shared with the HTTP transform.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<BodyStart, reqwest::Error> {
    let announced = response
        .content_length()
        .and_then(|n| usize::try_from(n).ok());
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0).min(limit));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(BodyStart {
                bytes,
                truncated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(BodyStart {
        bytes,
        truncated: false,
    })
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<BulkItem>,
}

#[derive(Deserialize)]
struct BulkItem {
    #[serde(alias = "create", alias = "update", alias = "delete")]
    index: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Reads a 2xx `_bulk` response to a request of `total` items: which items failed, if any.
fn bulk_result(body: &[u8], total: usize) -> Result<(), SinkError> {
    let response: BulkResponse =
        serde_json::from_slice(body).map_err(|e| SinkError::BulkResponse(e.to_string()))?;
    if !response.errors {
        return Ok(());
    }
    if response.items.len() != total {
        return Err(SinkError::BulkResponse(format!(
            "errors is true and {} items answer a request of {total}",
            response.items.len()
        )));
    }
    let item = |i: usize| &response.items[i].index;
    let mut failed = Vec::new();
    let mut rejected = Vec::new();
    for i in (0..total).filter(|&i| !(200..300).contains(&item(i).status)) {
        if item(i).status == 400 {
            rejected.push(RejectedItem {
                index: i,
                status: item(i).status,
                reason: error_text(item(i)),
            });
        } else {
            failed.push(i);
        }
    }
    let Some(first) = failed
        .first()
        .copied()
        .or(rejected.first().map(|r| r.index))
    else {
        return Ok(());
    };
    let retryable = failed.iter().all(|&i| {
        let status = item(i).status;
        status == 429 || status >= 500
    });
    Err(SinkError::BulkItems {
        total,
        first_status: item(first).status,
        first_error: error_text(item(first)),
        retryable,
        failed,
        rejected,
    })
}

fn error_text(item: &ItemResult) -> String {
    item.error
        .as_ref()
        .map_or_else(String::new, |e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sink::test_server::TestServer;

    /// Long enough for a bounded read of a local endless body; an unbounded one reads for
    /// the whole client timeout (and gigabytes) instead.
    const DEADLINE: Duration = Duration::from_secs(10);

    #[test]
    fn bulk_response_names_the_failed_items() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"status":201}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"create":{"status":200}},
            {"index":{"status":503}}]}"#;
        match bulk_result(body, 4) {
            Err(e @ SinkError::BulkItems { .. }) => {
                assert!(e.is_retryable());
                assert!(e.to_string().contains("es_rejected_execution_exception"));
                let SinkError::BulkItems { failed, .. } = e else {
                    unreachable!()
                };
                assert_eq!(failed, [1, 3]);
            }
            other => panic!("expected BulkItems, got {other:?}"),
        }
    }

    #[test]
    fn bulk_response_mapping_errors_are_rejected_other_4xx_not_retryable_and_success_is_ok() {
        let body = br#"{"errors":true,"items":[{"index":{"status":400,"error":{"type":"mapper_parsing_exception"}}},{"index":{"status":201}},{"index":{"status":403}}]}"#;
        let err = bulk_result(body, 3).expect_err("items 0 and 2 failed");
        assert!(!err.is_retryable());
        let SinkError::BulkItems {
            failed, rejected, ..
        } = err
        else {
            panic!("expected BulkItems, got {err:?}")
        };
        assert_eq!(failed, [2]);
        assert_eq!(rejected.len(), 1);
        assert_eq!((rejected[0].index, rejected[0].status), (0, 400));
        assert!(rejected[0].reason.contains("mapper_parsing_exception"));
        let only_rejected =
            br#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400}}]}"#;
        match bulk_result(only_rejected, 2) {
            Err(SinkError::BulkItems {
                failed, rejected, ..
            }) => assert!(failed.is_empty() && rejected.len() == 1),
            other => panic!("expected BulkItems, got {other:?}"),
        }
        assert!(bulk_result(br#"{"errors":false,"items":[]}"#, 2).is_ok());
        let short = bulk_result(br#"{"errors":true,"items":[{"index":{"status":400}}]}"#, 2);
        assert_eq!(short.map_err(|e| e.category()), Err("bulk_response"));
        assert_eq!(
            bulk_result(b"<html>", 1).map_err(|e| e.category()),
            Err("bulk_response")
        );
    }

    #[test]
    fn bulk_without_an_index_and_bad_headers_are_config_errors() {
        let mut spec: HttpSink = serde_json::from_value(serde_json::json!({
            "url": "http://127.0.0.1:9/_bulk", "format": "ElasticsearchBulk"
        }))
        .expect("spec");
        assert_eq!(
            HttpDestination::encoding(&spec).map_err(|e| e.category()),
            Err("config")
        );
        spec.headers.insert("bad header".into(), "x".into());
        assert_eq!(
            HttpDestination::new(&spec)
                .map(|_| ())
                .map_err(|e| e.category()),
            Err("config")
        );
    }

    #[tokio::test]
    async fn headers_from_a_mounted_secret_are_sent_and_a_missing_key_is_a_config_error() {
        let server = TestServer::start(vec![]).await;
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("Authorization"), "Bearer s3cret\n").expect("write");
        std::fs::write(dir.path().join("X-Tenant"), "a").expect("write");
        // What a Secret volume also holds.
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        let spec = server.spec(serde_json::json!({
            "headers": {"X-Team": "payments"}, "headersFrom": {"secretName": "sink-auth"}
        }));
        let mut dest = HttpDestination::with_headers_dir(&spec, dir.path()).expect("destination");
        dest.send(&Batch::default()).await.expect("delivered");
        let (headers, _) = server.requests.lock().expect("requests")[0].clone();
        assert_eq!(headers["authorization"], "Bearer s3cret");
        assert_eq!(headers["x-tenant"], "a");
        assert_eq!(headers["x-team"], "payments");
        assert_eq!(
            headers["idempotency-key"],
            Batch::default().idempotency_key()
        );

        let only = server.spec(serde_json::json!({
            "headersFrom": {"secretName": "sink-auth", "keys": ["Missing"]}
        }));
        let err = HttpDestination::with_headers_dir(&only, dir.path()).expect_err("a missing key");
        assert_eq!(err.category(), "config");
        assert!(err.to_string().contains("Secret sink-auth"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_endpoint_times_out_as_a_retryable_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accept and hold connections without ever answering.
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let spec: HttpSink = serde_json::from_value(serde_json::json!({
            "url": format!("http://{addr}/"), "timeout": "1s"
        }))
        .expect("spec");
        let mut dest = HttpDestination::new(&spec).expect("destination");
        let err = dest.send(&Batch::default()).await.expect_err("no answer");
        assert_eq!(err.category(), "timeout");
        assert!(err.is_retryable());
        held.abort();
    }

    #[test]
    fn the_bulk_response_bound_grows_with_the_items_up_to_a_cap() {
        assert_eq!(bulk_response_limit(0), 64 << 10);
        assert_eq!(bulk_response_limit(500), (64 << 10) + 500 * 2048);
        assert_eq!(bulk_response_limit(100_000), 128 << 20);
        assert_eq!(bulk_response_limit(usize::MAX), 128 << 20);
    }

    async fn send_to(server: &TestServer, extra: serde_json::Value) -> Result<(), SinkError> {
        let spec: HttpSink = server.spec(extra);
        let mut dest = HttpDestination::new(&spec).expect("destination");
        let batch = Batch::default();
        tokio::time::timeout(DEADLINE, dest.send(&batch))
            .await
            .expect("a bounded read returns at once")
    }

    #[tokio::test]
    async fn an_endless_error_body_is_read_only_in_part() {
        let server = TestServer::start(vec![]).await;
        server.answer_endlessly(503);
        let err = send_to(&server, serde_json::json!({}))
            .await
            .expect_err("503");
        match err {
            SinkError::Status { status, body, .. } => {
                assert_eq!(status, 503);
                assert_eq!(body.len(), ERROR_BODY_LIMIT);
            }
            other => panic!("expected a status error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_endless_or_oversized_bulk_response_is_a_retryable_error_not_read_whole() {
        let server = TestServer::start(vec![]).await;
        server.answer_endlessly(200);
        let bulk = serde_json::json!({ "format": "ElasticsearchBulk", "index": "logs" });
        let err = send_to(&server, bulk.clone()).await.expect_err("endless");
        assert_eq!(err.category(), "bulk_response");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");

        // A finite body past the bound, with its length announced.
        let big = format!(
            r#"{{"errors":false,"items":[],"pad":"{}"}}"#,
            "x".repeat(1 << 20)
        );
        let server = TestServer::start(vec![(200, &big)]).await;
        let err = send_to(&server, bulk).await.expect_err("too large");
        assert_eq!(err.category(), "bulk_response");
    }

    #[tokio::test]
    async fn an_endless_body_of_an_ndjson_success_is_not_read_whole() {
        let server = TestServer::start(vec![]).await;
        server.answer_endlessly(200);
        send_to(&server, serde_json::json!({}))
            .await
            .expect("a 2xx is a success whatever its body");
    }
}

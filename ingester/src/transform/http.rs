//! The HTTP transform (`spec.transform.http`): a page's records are POSTed in batches to an
//! endpoint that speaks Firehose's transform contract ([`super::firehose`]), one batch at a time
//! per shard; errors, timeouts and answers that break the contract are retried with backoff for
//! `retryDuration`, then the batch's records are dead-lettered with the last error.

use std::time::Duration;

use bytes::Bytes;
use kinesis_client::backoff::Backoff;
use kinesis_ingester_api::{HttpTransform, bounds};
use reqwest::header::CONTENT_TYPE;
use tokio_util::sync::CancellationToken;

use super::{
    TransformStats,
    firehose::{self, Answer, ContractError},
};
use crate::record::Record;

/// Why one invocation failed (it is tried again until `retryDuration` has passed).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No answer within `timeout`, or the connection failed.
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    /// A status other than 2xx.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status.
        status: reqwest::StatusCode,
        /// The start of the body.
        body: String,
    },
    /// The answer breaks the contract.
    #[error("the answer breaks Firehose's transform contract: {0}")]
    Contract(#[from] ContractError),
}

impl InvokeError {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Request(e) if e.is_timeout() => "timeout",
            Self::Request(_) => "request",
            Self::Status { status, .. } if status.as_u16() == 429 => "http_429",
            Self::Status { status, .. } if status.is_server_error() => "http_5xx",
            Self::Status { .. } => "http_4xx",
            Self::Contract(_) => "contract",
        }
    }
}

/// The endpoint, and how long a batch is tried.
#[derive(Debug)]
pub struct HttpStage {
    client: reqwest::Client,
    url: String,
    retry_duration: Duration,
    backoff: Backoff,
}

impl HttpStage {
    /// The stage `spec` describes.
    pub fn new(
        spec: &HttpTransform,
        network: &kinesis_client::net::Network,
    ) -> Result<Self, String> {
        let client = crate::net::http_client(network)?
            .timeout(bounds::TRANSFORM_TIMEOUT.clamp(&spec.timeout))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url: spec.url.clone(),
            retry_duration: bounds::TRANSFORM_RETRY_DURATION.clamp(&spec.retry_duration),
            backoff: Backoff::default(),
        })
    }

    /// Transforms `records` (in shard order) batch by batch: an answer per record, in the same
    /// order (a batch given up on answers `Failed` for each record), or `None` when `cancel`
    /// fired first (nothing of the page is used). Failure reasons come without the
    /// `transform: ` prefix the caller adds.
    pub(super) async fn run(
        &self,
        records: &[Record],
        stats: &mut TransformStats,
        cancel: &CancellationToken,
    ) -> Option<Vec<Answer>> {
        let mut answers = Vec::with_capacity(records.len());
        let mut start = 0;
        while start < records.len() {
            let mut size = firehose::entry_size(&records[start]);
            if size > firehose::MAX_PAYLOAD_BYTES {
                answers.push(Answer::Failed(format!(
                    "the record is too large for the transform's request ({size} bytes of base64 over the {}-byte limit of a Lambda request)",
                    firehose::MAX_PAYLOAD_BYTES
                )));
                start += 1;
                continue;
            }
            let mut end = start + 1;
            while end < records.len() {
                let next = firehose::entry_size(&records[end]);
                if size + next > firehose::BATCH_DATA_BYTES {
                    break;
                }
                size += next;
                end += 1;
            }
            let batch = &records[start..end];
            match self.invoke_until_answered(batch, stats, cancel).await {
                Some(Ok(a)) => answers.extend(a),
                Some(Err(e)) => answers.extend(batch.iter().map(|_| {
                    Answer::Failed(format!(
                        "gave up after {:?} of retries: {e}",
                        self.retry_duration
                    ))
                })),
                None => return None,
            }
            start = end;
        }
        Some(answers)
    }

    /// Invokes the endpoint with `batch` until it answers within the contract or
    /// `retryDuration` has passed (then the last error); `None` when cancelled first.
    async fn invoke_until_answered(
        &self,
        batch: &[Record],
        stats: &mut TransformStats,
        cancel: &CancellationToken,
    ) -> Option<Result<Vec<Answer>, InvokeError>> {
        let first = &batch[0];
        let invocation_id = format!(
            "{}-{}-{}-{:016x}",
            first.shard.shard_id,
            first.position.sequence.as_str(),
            first.position.sub_sequence.unwrap_or(0),
            fastrand::u64(..)
        );
        // Built once: each attempt sends the same bytes without copying them.
        let body = Bytes::from(firehose::request(&invocation_id, batch));
        let give_up_at = tokio::time::Instant::now() + self.retry_duration;
        let mut attempt = 0u32;
        loop {
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => return None,
                r = self.invoke(body.clone(), batch.len()) => r,
            };
            let error = match result {
                Ok(answers) => return Some(Ok(answers)),
                Err(e) => e,
            };
            stats.invocation_error(error.category());
            let delay = self.backoff.delay(attempt);
            if tokio::time::Instant::now() + delay > give_up_at {
                tracing::error!(%error, category = error.category(), records = batch.len(), "the transform failed for longer than retryDuration; dead-lettering the batch");
                return Some(Err(error));
            }
            tracing::warn!(%error, category = error.category(), attempt, ?delay, records = batch.len(), "transform request failed; retrying");
            tokio::select! {
                biased;
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// One POST, its answer judged.
    async fn invoke(&self, body: Bytes, total: usize) -> Result<Vec<Answer>, InvokeError> {
        let response = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(InvokeError::Request)?;
        let status = response.status();
        // One byte past the limit is enough for `judge` to refuse an answer as too large.
        let bytes = crate::sink::read_body(response, firehose::MAX_PAYLOAD_BYTES + 1)
            .await
            .map_err(InvokeError::Request)?
            .bytes;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(InvokeError::Status { status, body: text });
        }
        Ok(firehose::judge(total, &bytes)?)
    }
}

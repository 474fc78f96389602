//! The sink layer's error type, with bounded categories for metric labels and the retry policy each one gets.

/// Why a batch (or the sink itself) failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink spec cannot be turned into a destination.
    #[error("invalid sink configuration: {0}")]
    Config(String),
    /// Writing to stdout, a file or the dead-letter file failed.
    #[error("cannot write to {target}: {source}")]
    Io {
        /// What was being written, e.g. a file path or `stdout`.
        target: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A record could not be encoded as JSON.
    #[error("cannot encode a record: {0}")]
    Encode(#[from] serde_json::Error),
    /// The HTTP request did not complete (connect failure, timeout, broken connection).
    #[error("HTTP request failed: {}", request_text(.0))]
    Request(#[source] reqwest::Error),
    /// The endpoint answered with a status other than 2xx.
    #[error("HTTP {status}: {body}")]
    Status {
        /// Response status code.
        status: u16,
        /// The start of the response body, for the log.
        body: String,
        /// How long the endpoint asked us to wait (`Retry-After`), if it did.
        retry_after: Option<std::time::Duration>,
    },
    /// A `_bulk` request succeeded but some items failed: those `failed` are retried, those
    /// `rejected` (status 400, e.g. a mapping error) go to the dead-letter file instead.
    #[error("{} of {total} bulk items failed, {} rejected (first: HTTP {first_status}: {first_error})", failed.len(), rejected.len())]
    BulkItems {
        /// Indexes, in the batch, of the items to send again.
        failed: Vec<usize>,
        /// Items the destination refused as invalid (400): sending them again cannot succeed.
        rejected: Vec<RejectedItem>,
        /// Items in the request.
        total: usize,
        /// Status of the first failed item.
        first_status: u16,
        /// Error of the first failed item, as JSON text.
        first_error: String,
        /// Whether every item of `failed` may succeed on retry (429 or 5xx).
        retryable: bool,
    },
    /// A `_bulk` response could not be read, so nothing in the batch counts as delivered.
    #[error("unreadable _bulk response: {0}")]
    BulkResponse(String),
    /// An S3 request failed; nothing of the batch counts as delivered.
    #[error("S3 {operation} failed ({}): {message}", failure.category())]
    S3 {
        /// The S3 operation, e.g. `PutObject`.
        operation: &'static str,
        /// What kind of failure.
        failure: S3Failure,
        /// The SDK's message, for the log.
        message: String,
    },
}

/// Kinds of S3 failures, each with its metric label and retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Failure {
    /// The request could not be built or signed (e.g. no credentials).
    Build,
    /// The request or the connection timed out.
    Timeout,
    /// The request could not be sent or its response read (connection refused or reset).
    Dispatch,
    /// `503 SlowDown`, `429` or another throttling answer.
    Throttled,
    /// A 5xx answer.
    Server,
    /// The bucket does not exist.
    NoSuchBucket,
    /// 403: the credentials may not write there.
    AccessDenied,
    /// Another 4xx answer.
    Client,
}

impl S3Failure {
    /// A bounded label for metrics.
    pub fn category(self) -> &'static str {
        match self {
            Self::Build => "s3_build",
            Self::Timeout => "s3_timeout",
            Self::Dispatch => "s3_dispatch",
            Self::Throttled => "s3_throttled",
            Self::Server => "s3_5xx",
            Self::NoSuchBucket => "s3_no_bucket",
            Self::AccessDenied => "s3_denied",
            Self::Client => "s3_4xx",
        }
    }

    /// Whether a retry may succeed without anyone changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Dispatch | Self::Throttled | Self::Server
        )
    }
}

/// A `_bulk` item refused with status 400 (a mapping error, an invalid document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedItem {
    /// Index of the item in the batch.
    pub index: usize,
    /// Its status.
    pub status: u16,
    /// Its `error` object, as JSON text.
    pub reason: String,
}

impl SinkError {
    /// Every value [`SinkError::category`] returns, for metrics that pre-register their labels.
    pub const CATEGORIES: [&'static str; 19] = [
        "config",
        "io",
        "encode",
        "timeout",
        "connect",
        "request",
        "http_429",
        "http_5xx",
        "http_4xx",
        "bulk_items",
        "bulk_response",
        "s3_build",
        "s3_timeout",
        "s3_dispatch",
        "s3_throttled",
        "s3_5xx",
        "s3_no_bucket",
        "s3_denied",
        "s3_4xx",
    ];

    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Io { .. } => "io",
            Self::Encode(_) => "encode",
            Self::Request(e) if e.is_timeout() => "timeout",
            Self::Request(e) if e.is_connect() => "connect",
            Self::Request(_) => "request",
            Self::Status { status: 429, .. } => "http_429",
            Self::Status { status, .. } if *status >= 500 => "http_5xx",
            Self::Status { .. } => "http_4xx",
            Self::BulkItems { .. } => "bulk_items",
            Self::BulkResponse(_) => "bulk_response",
            Self::S3 { failure, .. } => failure.category(),
        }
    }

    /// Whether a retry may succeed without anyone changing anything.
    ///
    /// Delivery is at-least-once, so a batch is never dropped: a non-retryable failure (a 4xx
    /// other than 429, a bulk item rejected with such a status) is still retried, but at the
    /// longest backoff and logged as an error, so it shows in logs and in the error counters
    /// while the stream stops advancing until the endpoint or its configuration is fixed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config(_) | Self::Encode(_) => false,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::BulkItems { retryable, .. } => *retryable,
            Self::S3 { failure, .. } => failure.is_retryable(),
            Self::Io { .. } | Self::Request(_) | Self::BulkResponse(_) => true,
        }
    }

    /// How long the destination asked to wait before the next attempt (`Retry-After`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn io(target: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            target: target.into(),
            source,
        }
    }
}

/// A request error with its causes ("error sending request …: client error (Connect): invalid
/// peer certificate: UnknownIssuer"), and what to do when the cause is an untrusted certificate.
fn request_text(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let hint = kinesis_client::net::tls_hint(&text);
    text.push_str(hint);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_categories_and_retry_policy() {
        let status = |status| SinkError::Status {
            status,
            body: String::new(),
            retry_after: None,
        };
        assert_eq!(status(503).category(), "http_5xx");
        assert!(status(503).is_retryable());
        assert_eq!(status(429).category(), "http_429");
        assert!(status(429).is_retryable());
        assert_eq!(status(400).category(), "http_4xx");
        assert!(!status(400).is_retryable());
        for e in [status(500), status(429), status(404)] {
            assert!(SinkError::CATEGORIES.contains(&e.category()));
        }
    }
}

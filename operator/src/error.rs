//! Errors of the operator, one enum per layer, each with a bounded metric label.

use kinesis_client::api::SourceError;

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: &'static str,
        /// The client error.
        source: kube::Error,
    },
    /// Kinesis could not be asked for the stream's shards or consumer.
    #[error("stream {stream}: {source}")]
    Kinesis {
        /// The stream.
        stream: String,
        /// The Kinesis error.
        source: SourceError,
    },
    /// Another writer changed the shard table first; the reconcile starts over.
    #[error("the shard table changed while planning; retrying")]
    Conflict,
    /// The resource has no name or namespace (never for objects from the API).
    #[error("the KinesisIngester has no {0}")]
    MissingMetadata(&'static str),
    /// Deletion waits for the workers to stop; the finalizer stays until they have.
    #[error("waiting for {0} worker pods to stop before cleaning up")]
    WaitingForWorkers(usize),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(s) if s.code == 403 => "kube_forbidden",
                kube::Error::Api(s) if s.code == 409 => "kube_conflict",
                kube::Error::Api(_) => "kube_api",
                _ => "kube_unavailable",
            },
            Self::Kinesis { source, .. } => match source {
                SourceError::NotFound { .. } => "stream_not_found",
                SourceError::AccessDenied { .. } => "access_denied",
                SourceError::Throttled { .. } => "kinesis_throttled",
                SourceError::Credentials { .. } => "credentials",
                SourceError::Connect { .. } => "kinesis_unreachable",
                SourceError::ExpiredIterator(_)
                | SourceError::InUse { .. }
                | SourceError::Other { .. } => "kinesis_unavailable",
            },
            Self::Conflict => "conflict",
            Self::MissingMetadata(_) => "invalid_object",
            Self::WaitingForWorkers(_) => "waiting",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// Wraps a kube error with what the operator was doing.
pub fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}

/// Whether a kube error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a kube error is a 409.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Result of the operator's fallible steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

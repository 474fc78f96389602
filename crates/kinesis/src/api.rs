//! The seam between shard readers and Kinesis: a small trait, so tests can inject throttling and expired iterators.

use futures::{future::BoxFuture, stream::BoxStream};

use std::sync::Arc;

use bytes::Bytes;
use kinesis_ingester_api::sequence::SequenceNumber;
pub use kinesis_ingester_api::{StartAt, StreamRef};

/// A record as Kinesis returned it, before decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// The payload.
    pub data: Bytes,
    /// Partition key the producer gave; shared with the records decoded from this one.
    pub partition_key: Arc<str>,
    /// Kinesis sequence number.
    pub sequence_number: SequenceNumber,
    /// ApproximateArrivalTimestamp, in milliseconds since the Unix epoch.
    pub approximate_arrival_ms: Option<i64>,
}

/// A shard as ListShards describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// Shard id.
    pub shard_id: String,
    /// Parent shards (one after a split, two after a merge).
    pub parents: Vec<String>,
    /// Hash key range, inclusive.
    pub hash_range: (u128, u128),
    /// Whether the shard is closed (has an ending sequence number).
    pub closed: bool,
}

/// A child shard announced at the end of its parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildShard {
    /// Child shard id.
    pub shard_id: String,
    /// All its parents.
    pub parents: Vec<String>,
    /// Hash key range, inclusive, when the response gave it.
    pub hash_range: Option<(u128, u128)>,
}

/// One GetRecords response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordsPage {
    /// Records, in shard order.
    pub records: Vec<RawRecord>,
    /// Iterator for the next call; `None` once the shard is closed and read to its end.
    pub next_iterator: Option<String>,
    /// How far behind the tip of the shard the response is.
    pub millis_behind_latest: Option<i64>,
    /// Children, present at the end of a closed shard.
    pub child_shards: Vec<ChildShard>,
}

/// One event of a SubscribeToShard session (enhanced fan-out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeEvent {
    /// Records, in shard order.
    pub records: Vec<RawRecord>,
    /// Where the next subscription continues (after this number); `None` once the shard is
    /// closed and read to its end.
    pub continuation_sequence_number: Option<SequenceNumber>,
    /// How far behind the tip of the shard the event is.
    pub millis_behind_latest: Option<i64>,
    /// Children, present at the end of a closed shard.
    pub child_shards: Vec<ChildShard>,
}

impl SubscribeEvent {
    /// Whether this is the last event of a closed shard.
    pub fn ends_shard(&self) -> bool {
        self.continuation_sequence_number.is_none() || !self.child_shards.is_empty()
    }
}

/// Errors of the Kinesis calls, classified for retries and metrics.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// ProvisionedThroughputExceeded, LimitExceeded or KMS throttling: back off and retry.
    #[error("{operation} throttled: {message}")]
    Throttled {
        /// The API call.
        operation: &'static str,
        /// The service's message.
        message: String,
    },
    /// The shard iterator expired (older than 5 minutes): get a new one.
    #[error("shard iterator expired: {0}")]
    ExpiredIterator(String),
    /// ResourceInUse: e.g. a previous subscription to the shard is still open; retry later.
    #[error("{operation}: resource in use: {message}")]
    InUse {
        /// The API call.
        operation: &'static str,
        /// The service's message.
        message: String,
    },
    /// The stream or shard does not exist.
    #[error("{operation}: not found: {message}; check spec.stream (name, arn, region, endpoint)")]
    NotFound {
        /// The API call.
        operation: &'static str,
        /// The service's message.
        message: String,
    },
    /// The credentials may not do this.
    #[error(
        "{operation}: access denied; grant kinesis:{operation} to the ingester's role: {message}"
    )]
    AccessDenied {
        /// The API call.
        operation: &'static str,
        /// The service's message.
        message: String,
    },
    /// No AWS credentials could be loaded (no IRSA, Pod Identity, environment or profile).
    #[error(
        "{operation}: no AWS credentials; give this pod an AWS identity (IRSA, Pod Identity or AWS_* variables; for workers, spec.workers.serviceAccountAnnotations or spec.workers.awsCredentials): {message}"
    )]
    Credentials {
        /// The API call.
        operation: &'static str,
        /// What the credential chain said.
        message: String,
    },
    /// The endpoint could not be reached: refused, reset, DNS, TLS or a timeout.
    #[error(
        "{operation}: cannot reach Kinesis; check spec.stream.region and endpoint, and the network path from the pod: {message}"
    )]
    Connect {
        /// The API call.
        operation: &'static str,
        /// What the connector said.
        message: String,
    },
    /// Anything else: 5xx, unexpected responses.
    #[error("{operation} failed: {message}")]
    Other {
        /// The API call.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl SourceError {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::ExpiredIterator(_) => "expired_iterator",
            Self::InUse { .. } => "in_use",
            Self::NotFound { .. } => "not_found",
            Self::AccessDenied { .. } => "access_denied",
            Self::Credentials { .. } => "credentials",
            Self::Connect { .. } => "connect",
            Self::Other { .. } => "other",
        }
    }
}

/// What DescribeStreamSummary says of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream's ARN.
    pub arn: String,
    /// `StreamCreationTimestamp`, in milliseconds since the Unix epoch.
    pub created_ms: Option<i64>,
}

/// The Kinesis calls a shard reader makes. Implemented over the AWS SDK by
/// [`crate::sdk::SdkKinesis`], and by fault-injecting wrappers in tests.
pub trait KinesisApi: Send + Sync + 'static {
    /// All shards of the stream (every page of ListShards).
    fn list_shards<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<Vec<ShardInfo>, SourceError>>;

    /// A shard iterator.
    fn get_shard_iterator<'a>(
        &'a self,
        stream: &'a StreamRef,
        shard_id: &'a str,
        start: &'a StartAt,
    ) -> BoxFuture<'a, Result<String, SourceError>>;

    /// One GetRecords call.
    fn get_records<'a>(
        &'a self,
        iterator: &'a str,
        limit: i32,
    ) -> BoxFuture<'a, Result<RecordsPage, SourceError>>;

    /// The stream's ARN (DescribeStreamSummary).
    fn stream_arn<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<String, SourceError>>;

    /// The stream's ARN and creation time (DescribeStreamSummary): a stream deleted and created
    /// again under the same name has the same ARN, and only the creation time tells them apart.
    /// By default the ARN alone, with no creation time.
    fn stream_summary<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<StreamSummary, SourceError>> {
        Box::pin(async move {
            Ok(StreamSummary {
                arn: self.stream_arn(stream).await?,
                created_ms: None,
            })
        })
    }

    /// Registers the enhanced fan-out consumer `name` (or finds it if it exists) and waits until
    /// it is ACTIVE; returns its ARN.
    fn register_consumer<'a>(
        &'a self,
        stream_arn: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<String, SourceError>>;

    /// Deregisters the enhanced fan-out consumer `consumer_arn`. A consumer that does not exist
    /// is [`SourceError::NotFound`], so a caller can treat it as already done.
    fn deregister_consumer<'a>(
        &'a self,
        consumer_arn: &'a str,
    ) -> BoxFuture<'a, Result<(), SourceError>>;

    /// One SubscribeToShard session: its events until the service ends it (after about 5
    /// minutes) or the shard ends. Errors end the stream.
    fn subscribe(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        start: &StartAt,
    ) -> BoxStream<'static, Result<SubscribeEvent, SourceError>>;
}

impl std::fmt::Debug for dyn KinesisApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KinesisApi")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        s.parse().expect("a sequence number")
    }

    #[test]
    fn an_event_ends_the_shard_without_continuation_or_with_children() {
        let open = SubscribeEvent {
            continuation_sequence_number: Some(seq(
                "49590338271490256608559692538361571095921575989136588898",
            )),
            ..SubscribeEvent::default()
        };
        assert!(!open.ends_shard());
        assert!(SubscribeEvent::default().ends_shard());
        let child = ChildShard {
            shard_id: "shardId-000000000001".into(),
            parents: vec!["shardId-000000000000".into()],
            hash_range: None,
        };
        let with_children = SubscribeEvent {
            child_shards: vec![child],
            ..open
        };
        assert!(with_children.ends_shard());
    }
}

//! The operator's view of a stream: ListShards and DescribeStreamSummary through the shared Kinesis seam, cached per ingester and refreshed every `read.shardSyncInterval` (or early when a worker finished a shard).

use std::sync::Arc;

use kinesis_client::{KinesisApi, SdkKinesis, SourceError};
use kinesis_ingester_api::{KinesisIngester, StreamSpec};
use tokio::time::Instant;

use kinesis_protocol::handoff::ListedShard;

use crate::reconcile::status::StreamProblem;

/// One listing of a stream.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The stream spec the client was built for.
    pub stream: StreamSpec,
    /// The client.
    pub api: Arc<SdkKinesis>,
    /// Every shard.
    pub listed: Vec<ListedShard>,
    /// The stream's ARN.
    pub stream_arn: String,
    /// The stream's creation time (RFC 3339), when Kinesis says: a stream deleted and created
    /// again under the same name has another.
    pub created: Option<String>,
    /// When it was listed.
    pub at: Instant,
}

impl Topology {
    /// Shards that accept records.
    pub fn open_shards(&self) -> i32 {
        i32::try_from(self.listed.iter().filter(|s| !s.closed).count()).unwrap_or(i32::MAX)
    }
}

/// Lists the stream, reusing the client of `previous` when the stream spec did not change.
pub async fn list(
    ki: &KinesisIngester,
    previous: Option<&Topology>,
) -> Result<Topology, SourceError> {
    let api = match previous {
        Some(p) if p.stream == ki.spec.stream => p.api.clone(),
        _ => Arc::new(SdkKinesis::from_spec(&ki.spec.stream).await),
    };
    let stream = ki.stream_ref();
    let summary = api.stream_summary(&stream).await?;
    let listed = api
        .list_shards(&stream)
        .await?
        .into_iter()
        .map(|s| ListedShard {
            shard_id: s.shard_id,
            parents: s.parents,
            hash_range: (s.hash_range.0.to_string(), s.hash_range.1.to_string()),
            closed: s.closed,
        })
        .collect();
    Ok(Topology {
        stream: ki.spec.stream.clone(),
        api,
        listed,
        stream_arn: summary.arn,
        created: summary
            .created_ms
            .and_then(|ms| k8s_openapi::jiff::Timestamp::from_millisecond(ms).ok())
            .map(|t| t.to_string()),
        at: Instant::now(),
    })
}

/// The condition reason and message for a Kinesis failure, with what to do.
pub fn problem(ki: &KinesisIngester, e: &SourceError) -> StreamProblem {
    let stream = ki.stream_ref();
    let name = stream.name();
    let text = e.to_string();
    match e {
        SourceError::NotFound { .. } => StreamProblem {
            reason: "StreamNotFound",
            message: format!("stream {name} does not exist: {text}; create it or fix spec.stream"),
        },
        SourceError::AccessDenied { .. } => StreamProblem {
            reason: "AccessDenied",
            message: format!(
                "not allowed to read stream {name}: {text}; grant the operator's role kinesis:ListShards and kinesis:DescribeStreamSummary"
            ),
        },
        SourceError::Credentials { .. } => StreamProblem {
            reason: "NoCredentials",
            message: format!(
                "no AWS credentials for stream {name}: {text}; configure IRSA, Pod Identity or AWS_* environment variables for the operator"
            ),
        },
        _ => StreamProblem {
            reason: "TopologyRefreshFailing",
            message: format!(
                "cannot list the shards of stream {name}: {text}; retrying with backoff"
            ),
        },
    }
}

//! [`KinesisApi`] over the AWS SDK, and the SDK client built with the project's single rustls + ring TLS stack.

use aws_sdk_kinesis::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    types::ShardIteratorType,
};
use bytes::Bytes;
use futures::{FutureExt, future::BoxFuture};
use kinesis_ingester_api::StreamSpec;

use super::api::{ChildShard, KinesisApi, RecordsPage, ShardInfo, SourceError, StartAt, StreamRef};
use crate::record::RawRecord;

/// The AWS SDK client behind [`KinesisApi`].
#[derive(Clone, Debug)]
pub struct SdkKinesis {
    client: Client,
}

impl SdkKinesis {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// A client from the default credential chain (env, profile, IRSA, Pod Identity, IMDS),
    /// with the region and endpoint of `stream` applied.
    pub async fn from_spec(stream: &StreamSpec) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
        if let Some(region) = stream
            .region
            .clone()
            .or_else(|| region_of_arn(stream.arn.as_deref()?))
        {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(endpoint) = &stream.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Self::new(Client::new(&loader.load().await))
    }
}

fn region_of_arn(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

/// Classifies an SDK error by its error code, the same way for every operation.
fn classify<E>(operation: &'static str, err: SdkError<E>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = err
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| aws_sdk_kinesis::error::DisplayErrorContext(&err).to_string());
    match err.code() {
        Some(
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException",
        ) => SourceError::Throttled { operation, message },
        Some("ExpiredIteratorException") => SourceError::ExpiredIterator(message),
        Some("ResourceNotFoundException") => SourceError::NotFound { operation, message },
        Some("AccessDeniedException" | "UnrecognizedClientException") => {
            SourceError::AccessDenied { operation, message }
        }
        _ => SourceError::Other { operation, message },
    }
}

fn parse_hash(operation: &'static str, key: &str) -> Result<u128, SourceError> {
    key.parse().map_err(|_| SourceError::Other {
        operation,
        message: format!("hash key {key:?} is not a 128-bit integer"),
    })
}

fn parse_sequence(
    operation: &'static str,
    s: &str,
) -> Result<crate::sequence::SequenceNumber, SourceError> {
    s.parse().map_err(|e| SourceError::Other {
        operation,
        message: format!("{e}"),
    })
}

impl KinesisApi for SdkKinesis {
    fn list_shards<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<Vec<ShardInfo>, SourceError>> {
        async move {
            let mut shards = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let mut req = self.client.list_shards();
                req = match (&next, stream) {
                    (Some(token), _) => req.next_token(token),
                    (None, StreamRef::Name(n)) => req.stream_name(n),
                    (None, StreamRef::Arn(a)) => req.stream_arn(a),
                };
                let out = req.send().await.map_err(|e| classify("ListShards", e))?;
                for s in out.shards() {
                    let range = s.hash_key_range().ok_or_else(|| SourceError::Other {
                        operation: "ListShards",
                        message: format!("shard {} has no hash key range", s.shard_id()),
                    })?;
                    shards.push(ShardInfo {
                        shard_id: s.shard_id().to_owned(),
                        parents: s
                            .parent_shard_id()
                            .into_iter()
                            .chain(s.adjacent_parent_shard_id())
                            .map(str::to_owned)
                            .collect(),
                        hash_range: (
                            parse_hash("ListShards", range.starting_hash_key())?,
                            parse_hash("ListShards", range.ending_hash_key())?,
                        ),
                        closed: s
                            .sequence_number_range()
                            .and_then(|r| r.ending_sequence_number())
                            .is_some(),
                    });
                }
                match out.next_token() {
                    Some(t) => next = Some(t.to_owned()),
                    None => return Ok(shards),
                }
            }
        }
        .boxed()
    }

    fn get_shard_iterator<'a>(
        &'a self,
        stream: &'a StreamRef,
        shard_id: &'a str,
        start: &'a StartAt,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        async move {
            let mut req = self.client.get_shard_iterator().shard_id(shard_id);
            req = match stream {
                StreamRef::Name(n) => req.stream_name(n),
                StreamRef::Arn(a) => req.stream_arn(a),
            };
            req = match start {
                StartAt::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
                StartAt::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
                StartAt::AtTimestamp(ms) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(aws_smithy_types::DateTime::from_millis(*ms)),
                StartAt::AtSequence(s) => req
                    .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                    .starting_sequence_number(s.as_str()),
                StartAt::AfterSequence(s) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(s.as_str()),
            };
            let out = req
                .send()
                .await
                .map_err(|e| classify("GetShardIterator", e))?;
            out.shard_iterator.ok_or_else(|| SourceError::Other {
                operation: "GetShardIterator",
                message: format!("no iterator returned for {shard_id}"),
            })
        }
        .boxed()
    }

    fn get_records<'a>(
        &'a self,
        iterator: &'a str,
        limit: i32,
    ) -> BoxFuture<'a, Result<RecordsPage, SourceError>> {
        async move {
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(limit)
                .send()
                .await
                .map_err(|e| classify("GetRecords", e))?;
            let records = out
                .records
                .into_iter()
                .map(|r| {
                    Ok(RawRecord {
                        sequence_number: parse_sequence("GetRecords", &r.sequence_number)?,
                        approximate_arrival_ms: r
                            .approximate_arrival_timestamp
                            .and_then(|t| t.to_millis().ok()),
                        partition_key: r.partition_key.unwrap_or_default(),
                        data: Bytes::from(r.data.into_inner()),
                    })
                })
                .collect::<Result<Vec<_>, SourceError>>()?;
            Ok(RecordsPage {
                records,
                next_iterator: out.next_shard_iterator,
                millis_behind_latest: out.millis_behind_latest,
                child_shards: out
                    .child_shards
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| ChildShard {
                        hash_range: c.hash_key_range.as_ref().and_then(|r| {
                            Some((
                                r.starting_hash_key().parse().ok()?,
                                r.ending_hash_key().parse().ok()?,
                            ))
                        }),
                        shard_id: c.shard_id,
                        parents: c.parent_shards,
                    })
                    .collect(),
            })
        }
        .boxed()
    }
}

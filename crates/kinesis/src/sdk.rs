//! [`KinesisApi`] over the AWS SDK, and the SDK client built with the project's single rustls + ring TLS stack.

use std::time::Duration;

use aws_sdk_kinesis::{
    Client,
    types::{ConsumerStatus, ShardIteratorType, SubscribeToShardEventStream},
};
use futures::{
    FutureExt, StreamExt,
    future::BoxFuture,
    stream::{self, BoxStream},
};
use kinesis_ingester_api::StreamSpec;

pub use crate::aws::ClientOptions;
use crate::{
    api::{KinesisApi, RecordsPage, ShardInfo, SourceError, StartAt, StreamRef, SubscribeEvent},
    aws::{AwsTarget, sdk_config},
};

mod convert;

use convert::{
    child_shards, classify, classify_event_error, parse_hash, raw_record, starting_position,
    subscribe_event,
};

/// How long a newly registered consumer may take to become ACTIVE.
const CONSUMER_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often its status is checked meanwhile.
const CONSUMER_POLL_INTERVAL: Duration = Duration::from_millis(500);

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

    /// The region every call goes to: `spec.stream.region`, the stream ARN's, or the default
    /// chain's (`AWS_REGION`, the profile, instance metadata). `None` means every call would
    /// fail, so callers stop at start-up instead.
    pub fn region(&self) -> Option<&str> {
        self.client.config().region().map(|r| r.as_ref())
    }

    /// A client from the default credential chain (env, profile, IRSA, Pod Identity, IMDS),
    /// with the region and endpoint of `stream` applied. With `stream.roleArn`, those
    /// credentials assume the role through STS first (cross-account streams).
    pub async fn from_spec(stream: &StreamSpec) -> Self {
        Self::from_spec_with(stream, ClientOptions::default()).await
    }

    /// [`SdkKinesis::from_spec`] with overrides for tests.
    pub async fn from_spec_with(stream: &StreamSpec, options: ClientOptions) -> Self {
        let target = AwsTarget {
            region: stream
                .region
                .clone()
                .or_else(|| region_of_arn(stream.arn.as_deref()?)),
            // STS keeps its own endpoint: `spec.stream.endpoint` overrides Kinesis only
            // (AWS_ENDPOINT_URL_STS still applies).
            endpoint: stream.endpoint.clone(),
            role_arn: stream.role_arn.clone(),
        };
        Self::new(Client::new(&sdk_config(&target, &options).await))
    }
}

fn region_of_arn(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

impl SdkKinesis {
    /// The consumer's ARN and whether it is ACTIVE (DescribeStreamConsumer); a consumer that
    /// does not exist is [`SourceError::NotFound`].
    pub async fn describe_consumer(
        &self,
        stream_arn: &str,
        name: &str,
    ) -> Result<(String, bool), SourceError> {
        let out = self
            .client
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await
            .map_err(|e| classify("DescribeStreamConsumer", e))?;
        let c = out
            .consumer_description()
            .ok_or_else(|| SourceError::Other {
                operation: "DescribeStreamConsumer",
                message: format!("no description of consumer {name}"),
            })?;
        Ok((
            c.consumer_arn().to_owned(),
            *c.consumer_status() == ConsumerStatus::Active,
        ))
    }
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
                .map(|r| raw_record("GetRecords", r))
                .collect::<Result<Vec<_>, SourceError>>()?;
            Ok(RecordsPage {
                records,
                next_iterator: out.next_shard_iterator,
                millis_behind_latest: out.millis_behind_latest,
                child_shards: child_shards(out.child_shards.unwrap_or_default()),
            })
        }
        .boxed()
    }

    fn stream_arn<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        async move {
            match stream {
                StreamRef::Arn(a) => Ok(a.clone()),
                StreamRef::Name(_) => Ok(self.stream_summary(stream).await?.arn),
            }
        }
        .boxed()
    }

    fn stream_summary<'a>(
        &'a self,
        stream: &'a StreamRef,
    ) -> BoxFuture<'a, Result<crate::StreamSummary, SourceError>> {
        async move {
            let req = self.client.describe_stream_summary();
            let req = match stream {
                StreamRef::Name(n) => req.stream_name(n),
                StreamRef::Arn(a) => req.stream_arn(a),
            };
            let out = req
                .send()
                .await
                .map_err(|e| classify("DescribeStreamSummary", e))?;
            let summary = out
                .stream_description_summary()
                .ok_or_else(|| SourceError::Other {
                    operation: "DescribeStreamSummary",
                    message: format!("no summary of stream {}", stream.name()),
                })?;
            Ok(crate::StreamSummary {
                arn: summary.stream_arn().to_owned(),
                created_ms: summary.stream_creation_timestamp().to_millis().ok(),
            })
        }
        .boxed()
    }

    fn register_consumer<'a>(
        &'a self,
        stream_arn: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        async move {
            let registered = self
                .client
                .register_stream_consumer()
                .stream_arn(stream_arn)
                .consumer_name(name)
                .send()
                .await
                .map_err(|e| classify("RegisterStreamConsumer", e));
            let (mut arn, mut active) = match registered {
                Ok(out) => out
                    .consumer()
                    .map(|c| {
                        (
                            c.consumer_arn().to_owned(),
                            *c.consumer_status() == ConsumerStatus::Active,
                        )
                    })
                    .ok_or_else(|| SourceError::Other {
                        operation: "RegisterStreamConsumer",
                        message: format!("no consumer returned for {name}"),
                    })?,
                // Registered before (by us or an earlier run).
                Err(SourceError::InUse { .. }) => self.describe_consumer(stream_arn, name).await?,
                Err(e) => return Err(e),
            };
            let deadline = tokio::time::Instant::now() + CONSUMER_ACTIVE_TIMEOUT;
            while !active {
                if tokio::time::Instant::now() >= deadline {
                    return Err(SourceError::Other {
                        operation: "DescribeStreamConsumer",
                        message: format!(
                            "consumer {name} is not ACTIVE after {CONSUMER_ACTIVE_TIMEOUT:?}"
                        ),
                    });
                }
                tokio::time::sleep(CONSUMER_POLL_INTERVAL).await;
                (arn, active) = self.describe_consumer(stream_arn, name).await?;
            }
            Ok(arn)
        }
        .boxed()
    }

    fn deregister_consumer<'a>(
        &'a self,
        consumer_arn: &'a str,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        async move {
            self.client
                .deregister_stream_consumer()
                .consumer_arn(consumer_arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("DeregisterStreamConsumer", e))
        }
        .boxed()
    }

    fn subscribe(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        start: &StartAt,
    ) -> BoxStream<'static, Result<SubscribeEvent, SourceError>> {
        const OP: &str = "SubscribeToShard";
        let position = match starting_position(start) {
            Ok(p) => p,
            Err(e) => return stream::iter([Err(e)]).boxed(),
        };
        let send = self
            .client
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard_id)
            .starting_position(position)
            .send();
        stream::once(send)
            .flat_map(|sent| match sent {
                Err(e) => stream::iter([Err(classify(OP, e))]).boxed(),
                Ok(out) => stream::unfold(Some(out.event_stream), |receiver| async move {
                    let mut receiver = receiver?;
                    loop {
                        match receiver.recv().await {
                            Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(e))) => {
                                return Some((subscribe_event(e), Some(receiver)));
                            }
                            // A new kind of event this SDK does not know: skip it.
                            Ok(Some(_)) => continue,
                            Ok(None) => return None,
                            Err(e) => return Some((Err(classify_event_error(e)), None)),
                        }
                    }
                })
                .boxed(),
            })
            .boxed()
    }
}

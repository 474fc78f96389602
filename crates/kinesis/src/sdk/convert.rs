//! Conversions between the AWS SDK's types and ours, and the one classification of SDK errors.

use aws_sdk_kinesis::{
    error::{ProvideErrorMetadata, SdkError},
    types::{ShardIteratorType, StartingPosition, error::SubscribeToShardEventStreamError},
};
use aws_smithy_types::event_stream::RawMessage;
use bytes::Bytes;

use kinesis_ingester_api::sequence::SequenceNumber;

use crate::api::{ChildShard, RawRecord, SourceError, StartAt, SubscribeEvent};

/// Classifies an SDK error by its error code, the same way for every operation.
pub(super) fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    let message = err
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| aws_sdk_kinesis::error::DisplayErrorContext(&err).to_string());
    match transport(&err) {
        Some(Transport::Credentials) => SourceError::Credentials {
            operation,
            message: innermost(&err),
        },
        Some(Transport::Connect) => {
            let message = innermost(&err);
            let hint = crate::net::tls_hint(&message);
            SourceError::Connect {
                operation,
                message: format!("{message}{hint}"),
            }
        }
        None => classify_code(operation, err.code(), message),
    }
}

/// The deepest cause of `err`, which says what happened in words ("Connection refused (os error
/// 111)", "no credentials found in chain ..."), without the SDK's debug dump of every layer.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = err;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    deepest.to_string()
}

/// A failure before any answer from the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Credentials,
    Connect,
}

/// Whether `err` failed before the service answered, judged by the types in its source chain:
/// a [`CredentialsError`](aws_credential_types::provider::error::CredentialsError) anywhere means
/// no credentials; a dispatch failure that is an I/O error or a timeout means the endpoint could
/// not be reached.
fn transport<E, R>(err: &SdkError<E, R>) -> Option<Transport>
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<aws_credential_types::provider::error::CredentialsError>() {
            return Some(Transport::Credentials);
        }
        source = e.source();
    }
    match err {
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => Some(Transport::Connect),
        SdkError::TimeoutError(_) => Some(Transport::Connect),
        _ => None,
    }
}

/// Classifies an error of a SubscribeToShard event stream. Exceptions sent inside the stream
/// may carry no error code, so the modeled variant names it.
pub(super) fn classify_event_error(
    err: SdkError<SubscribeToShardEventStreamError, RawMessage>,
) -> SourceError {
    use SubscribeToShardEventStreamError as E;
    let modeled = match err.as_service_error() {
        Some(E::ResourceInUseException(_)) => Some("ResourceInUseException"),
        Some(E::ResourceNotFoundException(_)) => Some("ResourceNotFoundException"),
        Some(E::KmsThrottlingException(_)) => Some("KMSThrottlingException"),
        Some(E::KmsAccessDeniedException(_)) => Some("AccessDeniedException"),
        _ => None,
    };
    let message = err
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| aws_sdk_kinesis::error::DisplayErrorContext(&err).to_string());
    classify_code("SubscribeToShard", err.code().or(modeled), message)
}

/// The one table from error codes to [`SourceError`].
fn classify_code(operation: &'static str, code: Option<&str>, message: String) -> SourceError {
    match code {
        Some(
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException",
        ) => SourceError::Throttled { operation, message },
        Some("ExpiredIteratorException") => SourceError::ExpiredIterator(message),
        Some("ResourceInUseException") => SourceError::InUse { operation, message },
        Some("ResourceNotFoundException") => SourceError::NotFound { operation, message },
        Some("AccessDeniedException" | "UnrecognizedClientException") => {
            SourceError::AccessDenied { operation, message }
        }
        _ => SourceError::Other { operation, message },
    }
}

pub(super) fn parse_hash(operation: &'static str, key: &str) -> Result<u128, SourceError> {
    key.parse().map_err(|_| SourceError::Other {
        operation,
        message: format!("hash key {key:?} is not a 128-bit integer"),
    })
}

fn parse_sequence(operation: &'static str, s: &str) -> Result<SequenceNumber, SourceError> {
    s.parse().map_err(|e| SourceError::Other {
        operation,
        message: format!("{e}"),
    })
}

pub(super) fn raw_record(
    operation: &'static str,
    r: aws_sdk_kinesis::types::Record,
) -> Result<RawRecord, SourceError> {
    Ok(RawRecord {
        sequence_number: parse_sequence(operation, &r.sequence_number)?,
        approximate_arrival_ms: r
            .approximate_arrival_timestamp
            .and_then(|t| t.to_millis().ok()),
        partition_key: r.partition_key.unwrap_or_default().into(),
        data: Bytes::from(r.data.into_inner()),
    })
}

pub(super) fn child_shards(children: Vec<aws_sdk_kinesis::types::ChildShard>) -> Vec<ChildShard> {
    children
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
        .collect()
}

/// The SDK's starting position for a subscription.
pub(super) fn starting_position(start: &StartAt) -> Result<StartingPosition, SourceError> {
    let b = StartingPosition::builder();
    let b = match start {
        StartAt::TrimHorizon => b.r#type(ShardIteratorType::TrimHorizon),
        StartAt::Latest => b.r#type(ShardIteratorType::Latest),
        StartAt::AtTimestamp(ms) => b
            .r#type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_smithy_types::DateTime::from_millis(*ms)),
        StartAt::AtSequence(s) => b
            .r#type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(s.as_str()),
        StartAt::AfterSequence(s) => b
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(s.as_str()),
    };
    b.build().map_err(|e| SourceError::Other {
        operation: "SubscribeToShard",
        message: e.to_string(),
    })
}

/// Our event from the SDK's; an empty continuation sequence number means the shard ended.
pub(super) fn subscribe_event(
    e: aws_sdk_kinesis::types::SubscribeToShardEvent,
) -> Result<SubscribeEvent, SourceError> {
    const OP: &str = "SubscribeToShard";
    Ok(SubscribeEvent {
        records: e
            .records
            .into_iter()
            .map(|r| raw_record(OP, r))
            .collect::<Result<_, _>>()?,
        continuation_sequence_number: match e.continuation_sequence_number.as_str() {
            "" => None,
            s => Some(parse_sequence(OP, s)?),
        },
        millis_behind_latest: Some(e.millis_behind_latest),
        child_shards: child_shards(e.child_shards.unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_retry_classes() {
        let class = |code| classify_code("SubscribeToShard", code, "m".into()).category();
        assert_eq!(class(Some("ResourceInUseException")), "in_use");
        assert_eq!(class(Some("KMSThrottlingException")), "throttled");
        assert_eq!(class(Some("ResourceNotFoundException")), "not_found");
        assert_eq!(class(Some("AccessDeniedException")), "access_denied");
        assert_eq!(class(None), "other");
    }

    #[test]
    fn an_empty_continuation_ends_the_shard() {
        let event = aws_sdk_kinesis::types::SubscribeToShardEvent::builder()
            .continuation_sequence_number("")
            .millis_behind_latest(0)
            .set_records(Some(Vec::new()))
            .build()
            .expect("an event");
        let ours = subscribe_event(event).expect("converted");
        assert!(ours.ends_shard());
        assert_eq!(ours.millis_behind_latest, Some(0));
    }
}

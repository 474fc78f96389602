//! Why a payload cannot be decoded: the decode layer's error type, with bounded labels for metrics.

use std::{fmt, sync::Arc};

use super::limits::{
    MAX_EXPLICIT_HASH_KEY_CHARS, MAX_KPL_USER_RECORDS, MAX_LOG_EVENT_BYTES, MAX_LOG_EVENTS,
    MAX_LOG_GROUP_CHARS, MAX_LOG_STREAM_CHARS, MAX_OWNER_CHARS, MAX_PARTITION_KEY_CHARS,
    MAX_RECORDS_PER_KINESIS_RECORD, MAX_SUBSCRIPTION_FILTER_CHARS, MAX_SUBSCRIPTION_FILTERS,
};
use kinesis_ingester_api::sequence::SequenceNumber;

/// The record an error is about: shard, sequence number and, inside a KPL aggregated record,
/// the user record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRef {
    /// Shard id.
    pub shard_id: Arc<str>,
    /// Kinesis sequence number.
    pub sequence: SequenceNumber,
    /// Index of the KPL user record (its sub-sequence number), if the error is about one.
    pub user_record: Option<u64>,
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} of {}", self.sequence, self.shard_id)?;
        if let Some(user_record) = self.user_record {
            write!(f, " (KPL user record {user_record})")?;
        }
        Ok(())
    }
}

/// Why a payload could not be decoded. The variants after the first four are records over a
/// limit AWS enforces (see [`super::limits`]): nothing AWS writes, so they are dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid gzip stream.
    #[error("gzip: {0}")]
    Gzip(String),
    /// Decompresses to more than the cap.
    #[error("gzip: decompressed size exceeds the cap of {max_bytes} bytes")]
    GzipTooLarge {
        /// The cap.
        max_bytes: usize,
    },
    /// Not a CloudWatch Logs envelope (bad JSON, unknown messageType, missing field).
    #[error("cloudwatch: {0}")]
    CloudWatchJson(String),
    /// A DATA_MESSAGE envelope without `logEvents`.
    #[error("cloudwatch: DATA_MESSAGE without logEvents")]
    CloudWatchMissingLogEvents,
    /// An envelope `owner` longer than an AWS account id.
    #[error(
        "cloudwatch: {record}: owner of {chars} characters; an AWS account id has {MAX_OWNER_CHARS}"
    )]
    OwnerTooLong {
        /// The record.
        record: RecordRef,
        /// Its length.
        chars: usize,
    },
    /// A log group name longer than CloudWatch Logs allows.
    #[error(
        "cloudwatch: {record}: log group name of {chars} characters, over CloudWatch Logs' limit of {MAX_LOG_GROUP_CHARS}"
    )]
    LogGroupTooLong {
        /// The record.
        record: RecordRef,
        /// Its length.
        chars: usize,
    },
    /// A log stream name longer than CloudWatch Logs allows.
    #[error(
        "cloudwatch: {record}: log stream name of {chars} characters, over CloudWatch Logs' limit of {MAX_LOG_STREAM_CHARS}"
    )]
    LogStreamTooLong {
        /// The record.
        record: RecordRef,
        /// Its length.
        chars: usize,
    },
    /// More subscription filters than a log group can have.
    #[error(
        "cloudwatch: {record}: {count} subscription filters, over the {MAX_SUBSCRIPTION_FILTERS} a log group can have"
    )]
    TooManySubscriptionFilters {
        /// The record.
        record: RecordRef,
        /// How many.
        count: usize,
    },
    /// A subscription filter name longer than CloudWatch Logs allows.
    #[error(
        "cloudwatch: {record}: subscription filter name of {chars} characters, over CloudWatch Logs' limit of {MAX_SUBSCRIPTION_FILTER_CHARS}"
    )]
    SubscriptionFilterTooLong {
        /// The record.
        record: RecordRef,
        /// Its length.
        chars: usize,
    },
    /// More log events than one PutLogEvents batch can hold.
    #[error(
        "cloudwatch: {record}: {count} log events in one envelope, over the {MAX_LOG_EVENTS} of a PutLogEvents batch"
    )]
    TooManyLogEvents {
        /// The record.
        record: RecordRef,
        /// How many.
        count: usize,
    },
    /// A log event message larger than CloudWatch Logs allows.
    #[error(
        "cloudwatch: {record}: log event {index} has a message of {bytes} bytes, over CloudWatch Logs' limit of {MAX_LOG_EVENT_BYTES}"
    )]
    LogEventTooLarge {
        /// The record.
        record: RecordRef,
        /// Index of the event in the envelope.
        index: usize,
        /// Its size.
        bytes: usize,
    },
    /// A KPL partition key longer than Kinesis allows.
    #[error(
        "kpl: {record}: partition key {index} of {chars} characters, over Kinesis' limit of {MAX_PARTITION_KEY_CHARS}"
    )]
    PartitionKeyTooLong {
        /// The record.
        record: RecordRef,
        /// Index in the aggregate's partition key table.
        index: usize,
        /// Its length.
        chars: usize,
    },
    /// A KPL explicit hash key longer than a 128-bit decimal.
    #[error(
        "kpl: {record}: explicit hash key {index} of {chars} characters, over the {MAX_EXPLICIT_HASH_KEY_CHARS} digits of a 128-bit decimal"
    )]
    ExplicitHashKeyTooLong {
        /// The record.
        record: RecordRef,
        /// Index in the aggregate's explicit hash key table.
        index: usize,
        /// Its length.
        chars: usize,
    },
    /// More user records than fit in the largest aggregate the KPL writes.
    #[error(
        "kpl: {record}: {count} user records, over the {MAX_KPL_USER_RECORDS} a 1 MiB KPL aggregate can hold"
    )]
    TooManyUserRecords {
        /// The record.
        record: RecordRef,
        /// How many.
        count: usize,
    },
    /// More key-table entries than there can be user records.
    #[error(
        "kpl: {record}: {count} key-table entries, over the {MAX_KPL_USER_RECORDS} user records a 1 MiB KPL aggregate can hold"
    )]
    TooManyKeys {
        /// The record.
        record: RecordRef,
        /// Entries of both tables.
        count: usize,
    },
    /// An aggregate whose user records decode to more records than any Kinesis record may.
    #[error(
        "kpl: {record}: decodes to more than {MAX_RECORDS_PER_KINESIS_RECORD} records (log events of its user records)"
    )]
    TooManyRecords {
        /// The record.
        record: RecordRef,
    },
    /// An aggregate whose user records decompress to more than the cap, together.
    #[error("kpl: {record}: its user records decompress to more than the cap of {max_bytes} bytes")]
    AggregateTooLarge {
        /// The record.
        record: RecordRef,
        /// The cap, for all user records of one Kinesis record together.
        max_bytes: usize,
    },
}

impl DecodeError {
    /// Every value [`DecodeError::category`] returns.
    pub const CATEGORIES: [&'static str; 3] = ["gzip", "cloudwatch", "kpl"];

    /// Every `(category, reason)` label pair, in the order of [`super::DecodeStats::dead_letters`].
    pub const LABELS: [(&'static str, &'static str); 17] = [
        ("gzip", "invalid_gzip"),
        ("gzip", "decompressed_too_large"),
        ("cloudwatch", "invalid_envelope"),
        ("cloudwatch", "missing_log_events"),
        ("cloudwatch", "owner_too_long"),
        ("cloudwatch", "log_group_too_long"),
        ("cloudwatch", "log_stream_too_long"),
        ("cloudwatch", "too_many_subscription_filters"),
        ("cloudwatch", "subscription_filter_too_long"),
        ("cloudwatch", "too_many_log_events"),
        ("cloudwatch", "log_event_too_large"),
        ("kpl", "partition_key_too_long"),
        ("kpl", "explicit_hash_key_too_long"),
        ("kpl", "too_many_user_records"),
        ("kpl", "too_many_keys"),
        ("kpl", "too_many_records"),
        ("kpl", "decompressed_too_large"),
    ];

    /// Bounded label for metrics and dead letters: `gzip`, `cloudwatch` or `kpl`.
    pub fn category(&self) -> &'static str {
        Self::LABELS[self.label_index()].0
    }

    /// Bounded label for metrics, finer than the category: which check failed.
    pub fn reason(&self) -> &'static str {
        Self::LABELS[self.label_index()].1
    }

    /// The record the error names, for the errors that name one (those over a limit).
    pub fn record(&self) -> Option<&RecordRef> {
        match self {
            Self::Gzip(_)
            | Self::GzipTooLarge { .. }
            | Self::CloudWatchJson(_)
            | Self::CloudWatchMissingLogEvents => None,
            Self::OwnerTooLong { record, .. }
            | Self::LogGroupTooLong { record, .. }
            | Self::LogStreamTooLong { record, .. }
            | Self::TooManySubscriptionFilters { record, .. }
            | Self::SubscriptionFilterTooLong { record, .. }
            | Self::TooManyLogEvents { record, .. }
            | Self::LogEventTooLarge { record, .. }
            | Self::PartitionKeyTooLong { record, .. }
            | Self::ExplicitHashKeyTooLong { record, .. }
            | Self::TooManyUserRecords { record, .. }
            | Self::TooManyKeys { record, .. }
            | Self::TooManyRecords { record }
            | Self::AggregateTooLarge { record, .. } => Some(record),
        }
    }

    pub(super) fn label_index(&self) -> usize {
        match self {
            Self::Gzip(_) => 0,
            Self::GzipTooLarge { .. } => 1,
            Self::CloudWatchJson(_) => 2,
            Self::CloudWatchMissingLogEvents => 3,
            Self::OwnerTooLong { .. } => 4,
            Self::LogGroupTooLong { .. } => 5,
            Self::LogStreamTooLong { .. } => 6,
            Self::TooManySubscriptionFilters { .. } => 7,
            Self::SubscriptionFilterTooLong { .. } => 8,
            Self::TooManyLogEvents { .. } => 9,
            Self::LogEventTooLarge { .. } => 10,
            Self::PartitionKeyTooLong { .. } => 11,
            Self::ExplicitHashKeyTooLong { .. } => 12,
            Self::TooManyUserRecords { .. } => 13,
            Self::TooManyKeys { .. } => 14,
            Self::TooManyRecords { .. } => 15,
            Self::AggregateTooLarge { .. } => 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_use_known_categories() {
        let mut seen = std::collections::HashSet::new();
        for (category, reason) in DecodeError::LABELS {
            assert!(DecodeError::CATEGORIES.contains(&category), "{category}");
            assert!(seen.insert((category, reason)), "{category}/{reason}");
        }
    }

    #[test]
    fn limit_errors_name_the_record_and_the_limit() {
        let record = RecordRef {
            shard_id: "shardId-000000000001".into(),
            sequence: "4959".parse().expect("sequence number"),
            user_record: Some(3),
        };
        let err = DecodeError::TooManyLogEvents {
            record: record.clone(),
            count: 50_000,
        };
        assert_eq!(
            err.to_string(),
            "cloudwatch: record 4959 of shardId-000000000001 (KPL user record 3): 50000 log \
             events in one envelope, over the 10000 of a PutLogEvents batch"
        );
        assert_eq!(
            (err.category(), err.reason()),
            ("cloudwatch", "too_many_log_events")
        );
        assert_eq!(err.record(), Some(&record));
        assert_eq!(DecodeError::Gzip("x".into()).record(), None);
    }
}

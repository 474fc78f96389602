//! Caps on what one Kinesis record may decode to, each mirroring a limit AWS itself enforces.
//!
//! A record over a cap is nothing AWS writes, so it is dead-lettered instead of decoded: that
//! keeps the memory and CPU one record costs proportional to its decoded size (see
//! `docs/ingester.md`, "Limits on hostile input").

/// Most characters in a Kinesis partition key, of a record or of a KPL user record.
/// Kinesis API reference, `PutRecordsRequestEntry.PartitionKey`: "Length Constraints: Minimum
/// length of 1. Maximum length of 256." (the KPL checks the same before aggregating).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Most characters in an explicit hash key: a 128-bit decimal. Kinesis API reference,
/// `PutRecordsRequestEntry.ExplicitHashKey`: "Pattern: `0|([1-9]\d{0,38})`".
pub const MAX_EXPLICIT_HASH_KEY_CHARS: usize = 39;

/// Largest KPL aggregated record, in bytes: the maximum of the KPL's `AggregationMaxSize`
/// (amazon-kinesis-producer `default_config.properties`: "Maximum (inclusive): 1048576").
/// Kinesis itself now takes records of up to 10 MiB; this only sizes the next cap.
const MAX_KPL_AGGREGATE_BYTES: usize = 1 << 20;

/// Fewest bytes a KPL user record takes in the protobuf: its field tag and length (2), and its
/// two required fields `partition_key_index` (2) and `data` (2, when empty).
const MIN_KPL_USER_RECORD_BYTES: usize = 6;

/// Most user records (and most key-table entries) in one KPL aggregated record: 174,762, no
/// fewer than fit in the largest aggregate the KPL writes.
pub const MAX_KPL_USER_RECORDS: usize = MAX_KPL_AGGREGATE_BYTES / MIN_KPL_USER_RECORD_BYTES;

/// Most records one Kinesis record may decode to (user records, or log events of the envelopes
/// in them): the same number, so an aggregate of CloudWatch envelopes cannot multiply it.
pub const MAX_RECORDS_PER_KINESIS_RECORD: usize = MAX_KPL_USER_RECORDS;

/// Most characters in the `owner` of a CloudWatch Logs envelope: an AWS account id, "a 12-digit
/// number" (AWS account management reference).
pub const MAX_OWNER_CHARS: usize = 12;

/// Most characters in a log group name. CloudWatch Logs API reference, `CreateLogGroup`
/// `logGroupName`: "Length Constraints: Minimum length of 1. Maximum length of 512."
pub const MAX_LOG_GROUP_CHARS: usize = 512;

/// Most characters in a log stream name. CloudWatch Logs API reference, `CreateLogStream`
/// `logStreamName`: "Length Constraints: Minimum length of 1. Maximum length of 512."
pub const MAX_LOG_STREAM_CHARS: usize = 512;

/// Most subscription filters in an envelope. CloudWatch Logs API reference,
/// `PutSubscriptionFilter`: "Each log group can have up to two subscription filters".
pub const MAX_SUBSCRIPTION_FILTERS: usize = 2;

/// Most characters in a subscription filter name. CloudWatch Logs API reference,
/// `PutSubscriptionFilter` `filterName`: "Maximum length of 512."
pub const MAX_SUBSCRIPTION_FILTER_CHARS: usize = 512;

/// Most log events in one envelope. CloudWatch Logs API reference, `PutLogEvents`: "The maximum
/// number of log events in a batch is 10,000."
pub const MAX_LOG_EVENTS: usize = 10_000;

/// Largest log event message, in bytes. CloudWatch Logs API reference, `PutLogEvents`: "Each
/// log event can be no larger than 1 MB." (older revisions said 256 KB; the larger, current
/// limit is the one kept, so no event CloudWatch accepts today is refused).
pub const MAX_LOG_EVENT_BYTES: usize = 1 << 20;

/// Whether `text` has more than `max` characters (Unicode scalar values), without counting
/// them when its byte length already answers.
pub(crate) fn over_chars(text: &str, max: usize) -> Option<usize> {
    if text.len() <= max {
        return None;
    }
    let chars = text.chars().count();
    (chars > max).then_some(chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_not_bytes_are_counted() {
        assert_eq!(over_chars("abc", 3), None);
        assert_eq!(over_chars("abcd", 3), Some(4));
        // Three 2-byte characters: 6 bytes, but 3 characters.
        assert_eq!(over_chars("ééé", 3), None);
        assert_eq!(over_chars("éééé", 3), Some(4));
    }

    #[test]
    fn the_user_record_cap_is_what_fits_in_the_largest_kpl_aggregate() {
        assert_eq!(MAX_KPL_USER_RECORDS, 174_762);
    }
}

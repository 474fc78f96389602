//! De-aggregation of records written by the Kinesis Producer Library (KPL) with aggregation on.
//!
//! Wire format: 4 magic bytes, a protobuf `AggregatedRecord`, then the MD5 digest of the
//! protobuf bytes. Like the KCL, a record that does not pass every check is not an error: it is
//! delivered whole, as a plain record.

use bytes::Bytes;
use md5::{Digest, Md5};

/// The 4 bytes an aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 digest that ends an aggregated record.
pub const DIGEST_LEN: usize = 16;

/// The protobuf body of an aggregated record.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecordMessage>,
}

/// One user record inside an [`AggregatedRecord`].
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UserRecordMessage {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// A user-record tag (written by some producers, ignored here).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// What de-aggregation made of one Kinesis record.
#[derive(Debug)]
pub(crate) enum Deaggregated {
    /// Not an aggregated record (no magic, or too short): use it whole.
    Plain,
    /// Starts with the magic but fails a check: use it whole, and count it.
    Invalid(Invalid),
    /// A valid aggregated record with at least one user record outside the shard's hash key
    /// range. Like the KCL, all of its user records are dropped: the KPL put the record in the
    /// wrong shard (stale shard map) and retries every user record of it.
    OutsideHashRange {
        /// Number of user records dropped.
        user_records: u64,
    },
    /// A valid aggregated record, every user record inside the shard's hash key range.
    Aggregated(UserRecords),
}

/// Why a record that starts with the magic is used whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// The trailing MD5 digest does not match the protobuf bytes.
    Digest,
    /// The protobuf bytes do not parse.
    Protobuf,
    /// A partition key or explicit hash key index is outside its table.
    KeyIndex,
    /// An explicit hash key is not a decimal 128-bit integer.
    ExplicitHashKey,
}

/// The user records of a valid aggregated record, in order.
#[derive(Debug)]
pub(crate) struct UserRecords {
    partition_keys: Vec<String>,
    records: std::vec::IntoIter<UserRecordMessage>,
    next_index: u64,
}

/// One user record: its index in the aggregated record (the sub-sequence number), partition key
/// and payload (a slice of the Kinesis record's payload, not a copy).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UserRecord {
    pub sub_sequence: u64,
    pub partition_key: String,
    pub data: Bytes,
}

impl UserRecords {
    /// Number of user records left.
    pub fn len(&self) -> usize {
        self.records.len()
    }
}

impl Iterator for UserRecords {
    type Item = UserRecord;

    fn next(&mut self) -> Option<UserRecord> {
        let record = self.records.next()?;
        let sub_sequence = self.next_index;
        self.next_index += 1;
        // Indices were checked in `deaggregate`; an empty key cannot happen but is harmless.
        let partition_key = usize::try_from(record.partition_key_index)
            .ok()
            .and_then(|i| self.partition_keys.get(i))
            .cloned()
            .unwrap_or_default();
        Some(UserRecord {
            sub_sequence,
            partition_key,
            data: record.data,
        })
    }
}

/// Splits `data` into user records if it is a valid aggregated record whose user records all
/// hash into `hash_range` (inclusive).
pub(crate) fn deaggregate(data: &Bytes, hash_range: (u128, u128)) -> Deaggregated {
    if data.len() <= MAGIC.len() + DIGEST_LEN || !data.starts_with(&MAGIC) {
        return Deaggregated::Plain;
    }
    let body_end = data.len() - DIGEST_LEN;
    let body = &data[MAGIC.len()..body_end];
    if Md5::digest(body).as_slice() != &data[body_end..] {
        return Deaggregated::Invalid(Invalid::Digest);
    }
    // Decoding from a `Bytes` makes every user record's `data` a slice of `data`.
    let message =
        match <AggregatedRecord as prost::Message>::decode(data.slice(MAGIC.len()..body_end)) {
            Ok(message) => message,
            Err(_) => return Deaggregated::Invalid(Invalid::Protobuf),
        };
    let mut outside = false;
    for record in &message.records {
        match effective_hash_key(&message, record) {
            Ok(key) => outside |= key < hash_range.0 || key > hash_range.1,
            Err(invalid) => return Deaggregated::Invalid(invalid),
        }
    }
    if outside {
        return Deaggregated::OutsideHashRange {
            user_records: message.records.len() as u64,
        };
    }
    Deaggregated::Aggregated(UserRecords {
        partition_keys: message.partition_key_table,
        records: message.records.into_iter(),
        next_index: 0,
    })
}

/// The key Kinesis hashes a user record by: its explicit hash key if it has one, else the MD5 of
/// its partition key read as a big-endian 128-bit integer.
fn effective_hash_key(
    message: &AggregatedRecord,
    record: &UserRecordMessage,
) -> Result<u128, Invalid> {
    let partition_key = lookup(&message.partition_key_table, record.partition_key_index)?;
    match record.explicit_hash_key_index {
        Some(index) => lookup(&message.explicit_hash_key_table, index)?
            .parse::<u128>()
            .map_err(|_| Invalid::ExplicitHashKey),
        None => Ok(partition_key_hash(partition_key)),
    }
}

fn lookup(table: &[String], index: u64) -> Result<&str, Invalid> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .map(String::as_str)
        .ok_or(Invalid::KeyIndex)
}

/// MD5 of a partition key, as a big-endian 128-bit integer (how Kinesis maps keys to shards).
pub fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testing::{UserRecordSpec, encode_aggregated, frame};

    const FULL: (u128, u128) = (0, u128::MAX);

    fn user(partition_key: &'static str, data: &'static [u8]) -> UserRecordSpec<'static> {
        UserRecordSpec {
            partition_key,
            explicit_hash_key: None,
            data,
        }
    }

    fn user_records(d: Deaggregated) -> Vec<UserRecord> {
        match d {
            Deaggregated::Aggregated(records) => records.collect(),
            other => panic!("expected user records, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_user_records_with_their_keys_and_sub_sequence_numbers() {
        let data = encode_aggregated(&[user("a", b"one"), user("b", b"two"), user("a", b"")]);
        let records = user_records(deaggregate(&data, FULL));
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.sub_sequence, r.partition_key.as_str(), &r.data[..]))
            .collect();
        assert_eq!(
            got,
            [
                (0, "a", &b"one"[..]),
                (1, "b", &b"two"[..]),
                (2, "a", &b""[..])
            ]
        );
    }

    #[test]
    fn user_record_payloads_are_slices_of_the_kinesis_payload() {
        let data = encode_aggregated(&[user("k", &[7; 300])]);
        let records = user_records(deaggregate(&data, FULL));
        let range = data.as_ptr_range();
        assert!(
            range.contains(&records[0].data.as_ptr()),
            "payload was copied"
        );
    }

    #[test]
    fn non_aggregated_and_truncated_records_are_plain() {
        assert!(matches!(
            deaggregate(&Bytes::from_static(b"{\"a\":1}"), FULL),
            Deaggregated::Plain
        ));
        let short = Bytes::copy_from_slice(&[MAGIC.as_slice(), &[0; DIGEST_LEN]].concat());
        assert!(matches!(deaggregate(&short, FULL), Deaggregated::Plain));
        assert!(matches!(
            deaggregate(&Bytes::new(), FULL),
            Deaggregated::Plain
        ));
    }

    #[test]
    fn digest_mismatch_and_unparsable_bodies_are_invalid() {
        let mut bad_digest = encode_aggregated(&[user("k", b"x")]).to_vec();
        *bad_digest.last_mut().expect("not empty") ^= 1;
        let d = deaggregate(&Bytes::from(bad_digest), FULL);
        assert!(matches!(d, Deaggregated::Invalid(Invalid::Digest)), "{d:?}");

        // A correct digest over bytes that are not a protobuf message (truncated varint).
        let d = deaggregate(&frame(&[0x08, 0xFF]), FULL);
        assert!(
            matches!(d, Deaggregated::Invalid(Invalid::Protobuf)),
            "{d:?}"
        );
    }

    #[test]
    fn key_index_out_of_range_is_invalid() {
        let message = AggregatedRecord {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: vec![],
            records: vec![UserRecordMessage {
                partition_key_index: 1,
                explicit_hash_key_index: None,
                data: Bytes::from_static(b"x"),
                tags: vec![],
            }],
        };
        let data = frame(&prost::Message::encode_to_vec(&message));
        let d = deaggregate(&data, FULL);
        assert!(
            matches!(d, Deaggregated::Invalid(Invalid::KeyIndex)),
            "{d:?}"
        );

        let mut message = message;
        message.records[0].partition_key_index = 0;
        message.records[0].explicit_hash_key_index = Some(0);
        let d = deaggregate(&frame(&prost::Message::encode_to_vec(&message)), FULL);
        assert!(
            matches!(d, Deaggregated::Invalid(Invalid::KeyIndex)),
            "{d:?}"
        );
    }

    #[test]
    fn explicit_hash_keys_decide_the_hash_range() {
        let data = encode_aggregated(&[
            UserRecordSpec {
                explicit_hash_key: Some("100"),
                ..user("a", b"1")
            },
            UserRecordSpec {
                explicit_hash_key: Some("200"),
                ..user("b", b"2")
            },
        ]);
        assert_eq!(user_records(deaggregate(&data, (100, 200))).len(), 2);
        let d = deaggregate(&data, (101, 300));
        assert!(
            matches!(d, Deaggregated::OutsideHashRange { user_records: 2 }),
            "{d:?}"
        );
        let d = deaggregate(&data, (0, 199));
        assert!(
            matches!(d, Deaggregated::OutsideHashRange { user_records: 2 }),
            "{d:?}"
        );

        let bad = encode_aggregated(&[UserRecordSpec {
            explicit_hash_key: Some("0x10"),
            ..user("a", b"1")
        }]);
        let d = deaggregate(&bad, FULL);
        assert!(
            matches!(d, Deaggregated::Invalid(Invalid::ExplicitHashKey)),
            "{d:?}"
        );
    }

    #[test]
    fn partition_key_hashes_decide_the_hash_range_without_explicit_keys() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661.
        let hash_a = 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661_u128;
        assert_eq!(partition_key_hash("a"), hash_a);
        let data = encode_aggregated(&[user("a", b"1")]);
        assert_eq!(user_records(deaggregate(&data, (hash_a, hash_a))).len(), 1);
        let d = deaggregate(&data, (hash_a + 1, u128::MAX));
        assert!(
            matches!(d, Deaggregated::OutsideHashRange { user_records: 1 }),
            "{d:?}"
        );
    }
}

//! De-aggregation of records written by the Kinesis Producer Library (KPL) with aggregation on.
//!
//! Wire format: 4 magic bytes, a protobuf `AggregatedRecord`, then the MD5 digest of the
//! protobuf bytes. Like the KCL, a record that does not pass every check is not an error: it is
//! delivered whole, as a plain record. One over a KPL limit (see [`super::limits`]) is an error.
//!
//! Costs are per key-table entry, not per user record: each key is copied once (user records
//! share it) and hashed once, so a long key shared by many user records costs its size once.

use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest, Md5};

use super::{
    DecodeError, RecordRef,
    limits::{
        MAX_EXPLICIT_HASH_KEY_CHARS, MAX_KPL_USER_RECORDS, MAX_PARTITION_KEY_CHARS, over_chars,
    },
};

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

/// One user record inside an [`AggregatedRecord`]. Its `tags` (field 4, written by some
/// producers, unused here) are skipped by the decoder rather than allocated.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UserRecordMessage {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
}

/// What de-aggregation made of one Kinesis record.
#[derive(Debug)]
pub(crate) enum Deaggregated {
    /// Not an aggregated record (no magic, or too short): use it whole.
    Plain,
    /// Starts with the magic but fails a check: use it whole, and count it.
    Invalid(Invalid),
    /// A valid aggregated record over a limit of the KPL: dead-letter it whole.
    OverLimit(DecodeError),
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
    partition_keys: Vec<Arc<str>>,
    records: std::vec::IntoIter<UserRecordMessage>,
    next_index: u64,
}

/// One user record: its index in the aggregated record (the sub-sequence number), partition key
/// (shared with the other user records of that key) and payload (a slice of the Kinesis
/// record's payload, not a copy).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UserRecord {
    pub sub_sequence: u64,
    pub partition_key: Arc<str>,
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

/// Splits `data`, the payload of `record`, into user records if it is a valid aggregated record
/// within the KPL's limits whose user records all hash into `hash_range` (inclusive).
pub(crate) fn deaggregate(
    data: &Bytes,
    hash_range: (u128, u128),
    record: &RecordRef,
) -> Deaggregated {
    if data.len() <= MAGIC.len() + DIGEST_LEN || !data.starts_with(&MAGIC) {
        return Deaggregated::Plain;
    }
    let body_end = data.len() - DIGEST_LEN;
    let body = &data[MAGIC.len()..body_end];
    if Md5::digest(body).as_slice() != &data[body_end..] {
        return Deaggregated::Invalid(Invalid::Digest);
    }
    // Counted before decoding, which allocates per entry.
    let Some(counts) = count_entries(body) else {
        return Deaggregated::Invalid(Invalid::Protobuf);
    };
    if counts.records > MAX_KPL_USER_RECORDS {
        return Deaggregated::OverLimit(DecodeError::TooManyUserRecords {
            record: record.clone(),
            count: counts.records,
        });
    }
    if counts.keys > MAX_KPL_USER_RECORDS {
        return Deaggregated::OverLimit(DecodeError::TooManyKeys {
            record: record.clone(),
            count: counts.keys,
        });
    }
    // Decoding from a `Bytes` makes every user record's `data` a slice of `data`.
    let message =
        match <AggregatedRecord as prost::Message>::decode(data.slice(MAGIC.len()..body_end)) {
            Ok(message) => message,
            Err(_) => return Deaggregated::Invalid(Invalid::Protobuf),
        };
    let keys = match KeyTables::new(
        message.partition_key_table,
        &message.explicit_hash_key_table,
        record,
    ) {
        Ok(keys) => keys,
        Err(error) => return Deaggregated::OverLimit(error),
    };
    let mut outside = false;
    for user in &message.records {
        match keys.effective_hash_key(user) {
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
        partition_keys: keys.partition_keys,
        records: message.records.into_iter(),
        next_index: 0,
    })
}

/// Entries of the repeated fields of an `AggregatedRecord`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Partition keys and explicit hash keys.
    keys: usize,
    /// User records.
    records: usize,
}

/// Counts the entries of an `AggregatedRecord` from its wire format, allocating nothing; `None`
/// if it is not well-formed (protobuf groups, never written by the KPL, count as malformed).
fn count_entries(mut body: &[u8]) -> Option<Counts> {
    let mut counts = Counts::default();
    while !body.is_empty() {
        let key = prost::encoding::decode_varint(&mut body).ok()?;
        let skip = match key & 0b111 {
            0 => {
                prost::encoding::decode_varint(&mut body).ok()?;
                0
            }
            1 => 8,
            2 => usize::try_from(prost::encoding::decode_varint(&mut body).ok()?).ok()?,
            5 => 4,
            _ => return None,
        };
        body = body.get(skip..)?;
        match key >> 3 {
            1 | 2 => counts.keys += 1,
            3 => counts.records += 1,
            _ => {}
        }
    }
    Some(counts)
}

/// The key tables of an aggregated record, each entry checked, shared and hashed once.
struct KeyTables {
    partition_keys: Vec<Arc<str>>,
    /// MD5 of each partition key.
    partition_hashes: Vec<u128>,
    /// Each explicit hash key, `None` if it is not a decimal 128-bit integer.
    explicit_hashes: Vec<Option<u128>>,
}

impl KeyTables {
    fn new(
        partition_keys: Vec<String>,
        explicit_hash_keys: &[String],
        record: &RecordRef,
    ) -> Result<Self, DecodeError> {
        for (index, key) in partition_keys.iter().enumerate() {
            if let Some(chars) = over_chars(key, MAX_PARTITION_KEY_CHARS) {
                return Err(DecodeError::PartitionKeyTooLong {
                    record: record.clone(),
                    index,
                    chars,
                });
            }
        }
        for (index, key) in explicit_hash_keys.iter().enumerate() {
            if let Some(chars) = over_chars(key, MAX_EXPLICIT_HASH_KEY_CHARS) {
                return Err(DecodeError::ExplicitHashKeyTooLong {
                    record: record.clone(),
                    index,
                    chars,
                });
            }
        }
        Ok(Self {
            partition_hashes: partition_keys
                .iter()
                .map(|k| partition_key_hash(k))
                .collect(),
            partition_keys: partition_keys.into_iter().map(Arc::from).collect(),
            explicit_hashes: explicit_hash_keys.iter().map(|k| k.parse().ok()).collect(),
        })
    }

    /// The key Kinesis hashes a user record by: its explicit hash key if it has one, else the
    /// MD5 of its partition key read as a big-endian 128-bit integer.
    fn effective_hash_key(&self, user: &UserRecordMessage) -> Result<u128, Invalid> {
        let partition_hash = *lookup(&self.partition_hashes, user.partition_key_index)?;
        match user.explicit_hash_key_index {
            Some(index) => (*lookup(&self.explicit_hashes, index)?).ok_or(Invalid::ExplicitHashKey),
            None => Ok(partition_hash),
        }
    }
}

fn lookup<T>(table: &[T], index: u64) -> Result<&T, Invalid> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .ok_or(Invalid::KeyIndex)
}

/// MD5 of a partition key, as a big-endian 128-bit integer (how Kinesis maps keys to shards).
pub fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

#[cfg(test)]
mod tests;

//! Producers of encoded payloads (KPL aggregated records, gzip) for tests and benchmarks.

use std::io::Write;

use bytes::Bytes;
use md5::{Digest, Md5};

use super::kpl::{AggregatedRecord, MAGIC, UserRecordMessage};

/// One user record to put into an aggregated record.
#[derive(Clone, Copy, Debug)]
pub struct UserRecordSpec<'a> {
    /// Partition key.
    pub partition_key: &'a str,
    /// Explicit hash key (decimal), if any.
    pub explicit_hash_key: Option<&'a str>,
    /// Payload.
    pub data: &'a [u8],
}

/// Encodes user records into one KPL aggregated record, in the exact wire format the KPL writes:
/// magic, protobuf `AggregatedRecord` (with de-duplicated key tables), MD5 of the protobuf.
pub fn encode_aggregated(records: &[UserRecordSpec<'_>]) -> Bytes {
    let mut message = AggregatedRecord::default();
    for record in records {
        let partition_key_index =
            table_index(&mut message.partition_key_table, record.partition_key);
        let explicit_hash_key_index = record
            .explicit_hash_key
            .map(|key| table_index(&mut message.explicit_hash_key_table, key));
        message.records.push(UserRecordMessage {
            partition_key_index,
            explicit_hash_key_index,
            data: Bytes::copy_from_slice(record.data),
            tags: Vec::new(),
        });
    }
    frame(&prost::Message::encode_to_vec(&message))
}

/// Wraps protobuf bytes in the aggregated-record framing: magic, the bytes, their MD5.
pub fn frame(protobuf: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(MAGIC.len() + protobuf.len() + 16);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(protobuf);
    out.extend_from_slice(&Md5::digest(protobuf));
    out.into()
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default().into()
}

fn table_index(table: &mut Vec<String>, key: &str) -> u64 {
    let index = table.iter().position(|k| k == key).unwrap_or_else(|| {
        table.push(key.to_owned());
        table.len() - 1
    });
    index as u64
}

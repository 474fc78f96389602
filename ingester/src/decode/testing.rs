//! Producers of encoded payloads (KPL aggregated records, gzip, CloudWatch envelopes, hostile inputs) for tests and benchmarks.

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

/// A KPL aggregated record whose partition key table holds one key of `key_bytes` bytes, shared
/// by `user_records` one-byte user records: the "key bomb" that once cost a copy and an MD5 of
/// the key per user record. (460,800 and 80,000 fit in a 1 MiB Kinesis record.)
pub fn kpl_key_bomb(key_bytes: usize, user_records: usize) -> Bytes {
    let message = AggregatedRecord {
        partition_key_table: vec!["k".repeat(key_bytes)],
        explicit_hash_key_table: Vec::new(),
        records: (0..user_records)
            .map(|_| UserRecordMessage {
                partition_key_index: 0,
                explicit_hash_key_index: None,
                data: Bytes::from_static(b"x"),
            })
            .collect(),
    };
    frame(&prost::Message::encode_to_vec(&message))
}

/// A gzipped CloudWatch Logs DATA_MESSAGE envelope with a log group name of `log_group_bytes`
/// bytes and `events` one-character log events: the "metadata bomb" that once cost a copy of
/// the log group per event. (2 MiB and 50,000 give 4.8 MB of JSON in 132 KB.)
pub fn cloudwatch_bomb(log_group_bytes: usize, events: usize) -> Bytes {
    let mut json = String::with_capacity(log_group_bytes + events * 64 + 256);
    json.push_str(r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":""#);
    json.push_str(&"g".repeat(log_group_bytes));
    json.push_str(r#"","logStream":"s","subscriptionFilters":["f"],"logEvents":["#);
    for i in 0..events {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#"{{"id":"{i}","timestamp":1700000000000,"message":"x"}}"#
        ));
    }
    json.push_str("]}");
    gzip(json.as_bytes())
}

fn table_index(table: &mut Vec<String>, key: &str) -> u64 {
    let index = table.iter().position(|k| k == key).unwrap_or_else(|| {
        table.push(key.to_owned());
        table.len() - 1
    });
    index as u64
}

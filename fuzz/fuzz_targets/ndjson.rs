//! NDJSON and `_bulk` encoding: a record built from fuzz bytes must encode to valid JSON lines that give its payload back.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use kinesis_ingester::{
    record::{CloudWatchEnvelope, CloudWatchMeta, Record, ShardContext},
    sink::ndjson::Encoding,
};
use kinesis_ingester_api::sequence::Position;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    data: Vec<u8>,
    stream: String,
    shard_id: String,
    tag: Option<String>,
    sequence: u128,
    sub_sequence: Option<u64>,
    partition_key: String,
    approximate_arrival_ms: Option<i64>,
    cloudwatch: Option<CloudWatch>,
    bulk_index: Option<String>,
}

#[derive(Arbitrary, Debug)]
struct CloudWatch {
    owner: String,
    log_group: String,
    log_stream: String,
    subscription_filters: Vec<String>,
    id: String,
    timestamp_ms: i64,
}

fuzz_target!(|input: Input| {
    let record = Record {
        data: Bytes::from(input.data),
        shard: Arc::new(ShardContext {
            stream: input.stream.into(),
            shard_id: input.shard_id.into(),
            hash_range: (0, u128::MAX),
            tag: input.tag.map(Into::into),
        }),
        position: Position {
            sequence: input
                .sequence
                .to_string()
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            sub_sequence: input.sub_sequence,
        },
        partition_key: input.partition_key.as_str().into(),
        approximate_arrival_ms: input.approximate_arrival_ms,
        cloudwatch: input.cloudwatch.map(|c| {
            Box::new(CloudWatchMeta {
                envelope: Arc::new(CloudWatchEnvelope {
                    owner: c.owner,
                    log_group: c.log_group,
                    log_stream: c.log_stream,
                    subscription_filters: c.subscription_filters,
                }),
                id: c.id,
                timestamp_ms: c.timestamp_ms,
            })
        }),
    };
    let mut encoding = match &input.bulk_index {
        Some(index) => Encoding::bulk(index),
        None => Encoding::Ndjson,
    };
    // Appends after earlier content, as a batch does.
    let mut buf = b"previous\n".to_vec();
    encoding
        .write(&mut buf, &record)
        .unwrap_or_else(|e| panic!("encoding failed: {e}"));
    let written = &buf[b"previous\n".len()..];
    assert_eq!(written.last(), Some(&b'\n'));
    let lines: Vec<&[u8]> = written[..written.len() - 1]
        .split(|&b| b == b'\n')
        .collect();
    let line = match (&input.bulk_index, lines.as_slice()) {
        (None, [line]) => *line,
        (Some(index), [action, line]) => {
            let action: Value = serde_json::from_slice(action).expect("action line is JSON");
            assert_eq!(action["index"]["_index"].as_str(), Some(index.as_str()));
            *line
        }
        _ => panic!("wrong number of lines: {}", lines.len()),
    };
    let value: Value = serde_json::from_slice(line).expect("record line is JSON");
    let data = value["data"].as_str().expect("data is a string");
    let decoded = match value["encoding"].as_str() {
        Some("utf8") => data.as_bytes().to_vec(),
        Some("base64") => STANDARD.decode(data).expect("valid base64"),
        other => panic!("unknown encoding {other:?}"),
    };
    assert_eq!(decoded, record.data.as_ref());
    assert_eq!(
        value["sequenceNumber"].as_str(),
        Some(record.position.sequence.as_str())
    );
    assert_eq!(
        value["partitionKey"].as_str(),
        Some(&*record.partition_key)
    );
    assert_eq!(value["stream"].as_str(), Some(&*record.shard.stream));
    assert_eq!(value["shardId"].as_str(), Some(&*record.shard.shard_id));
    assert_eq!(value["tag"].as_str(), record.shard.tag.as_deref());
    if let Some(meta) = &record.cloudwatch {
        assert_eq!(
            value["cloudwatch"]["logGroup"].as_str(),
            Some(meta.envelope.log_group.as_str())
        );
        assert_eq!(value["cloudwatch"]["id"].as_str(), Some(meta.id.as_str()));
    }
});

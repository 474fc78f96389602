//! Unit tests of the S3 sink's object split, keys and bodies (uploads are tested against SeaweedFS in ingester/tests/s3.rs).

use std::io::Read;

use kinesis_ingester_api::sequence::Position;
use tokio::time::Instant;

use super::*;
use crate::{
    record::Chunk,
    sink::{BatchLimits, Batcher, ndjson::tests::record},
};

fn spec(extra: serde_json::Value) -> S3Sink {
    let mut v = serde_json::json!({ "bucket": "b", "prefix": "{partition}/", "partitionBy": { "jsonPointer": "/k", "fallback": "none" } });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).expect("spec")
}

fn chunk(shard: &str, payloads: &[(u64, &str)]) -> Chunk {
    Chunk {
        records: payloads
            .iter()
            .map(|(seq, data)| record(shard, *seq, data.as_bytes()))
            .collect(),
        shard_id: shard.into(),
        generation: 0,
        checkpoint: Position::whole(
            payloads
                .last()
                .map_or(0, |p| p.0)
                .to_string()
                .parse()
                .expect("seq"),
        ),
    }
}

fn batcher(spec: &S3Sink, limits: BatchLimits) -> Batcher {
    let mut b = Batcher::new(limits, S3Destination::encoding(spec));
    b.set_partitioner(Some(Partitioner::new(spec)));
    b
}

fn limits() -> BatchLimits {
    BatchLimits {
        max_records: 1000,
        max_bytes: 1 << 20,
        max_age: std::time::Duration::from_secs(1),
    }
}

#[test]
fn a_batch_splits_into_one_object_per_shard_and_partition_named_by_its_sequence_range() {
    let spec = spec(serde_json::json!({ "format": "Raw", "compression": "None" }));
    let mut b = batcher(&spec, limits());
    let now = Instant::now();
    b.push(
        chunk(
            "a",
            &[
                (1, r#"{"k":"x"}"#),
                (2, r#"{"k":"y"}"#),
                (3, r#"{"k":"x"}"#),
            ],
        ),
        now,
    )
    .expect("push");
    b.push(chunk("b", &[(7, r#"{"k":"x"}"#), (9, "{}")]), now)
        .expect("push");
    b.flush();
    let batch = b.pop_ready().expect("batch");
    let dest = S3Destination::new(&spec);
    let objects = dest.objects(&batch).expect("objects");
    let keys: Vec<(&str, &[usize])> = objects
        .iter()
        .map(|o| (o.key.as_str(), o.items.as_slice()))
        .collect();
    assert_eq!(
        keys,
        [
            ("x/orders-a-1-3.txt", &[0, 2][..]),
            ("y/orders-a-2-2.txt", &[1][..]),
            ("x/orders-b-7-7.txt", &[3][..]),
            ("none/orders-b-9-9.txt", &[4][..]),
        ]
    );
    assert_eq!(
        dest.body(&batch, &objects[0]).expect("body"),
        b"{\"k\":\"x\"}\n{\"k\":\"x\"}\n"
    );
}

#[test]
fn gzip_bodies_decompress_to_the_ndjson_lines() {
    let spec = spec(serde_json::json!({}));
    let mut b = batcher(&spec, limits());
    b.push(
        chunk("a", &[(1, r#"{"k":"x"}"#), (2, r#"{"k":"x"}"#)]),
        Instant::now(),
    )
    .expect("push");
    b.flush();
    let batch = b.pop_ready().expect("batch");
    let dest = S3Destination::new(&spec);
    let objects = dest.objects(&batch).expect("objects");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].key, "x/orders-a-1-2.ndjson.gz");
    let gz = dest.body(&batch, &objects[0]).expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("gunzip");
    assert_eq!(text.as_bytes(), batch.body());
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn a_batch_closes_before_it_would_span_more_partitions_than_allowed() {
    let spec = spec(serde_json::json!({ "maxOpenPartitions": 2 }));
    let mut b = batcher(&spec, limits());
    let now = Instant::now();
    b.push(
        chunk(
            "a",
            &[
                (1, r#"{"k":"x"}"#),
                (2, r#"{"k":"y"}"#),
                (3, r#"{"k":"x"}"#),
                (4, r#"{"k":"z"}"#),
                (5, r#"{"k":"y"}"#),
            ],
        ),
        now,
    )
    .expect("push");
    let first = b.pop_ready().expect("closed at the third partition");
    assert_eq!(first.len(), 3);
    assert!(b.pop_ready().is_none());
    b.flush();
    let second = b.pop_ready().expect("rest");
    assert_eq!(second.len(), 2);
    let dest = S3Destination::new(&spec);
    assert_eq!(dest.objects(&first).expect("objects").len(), 2);
    assert_eq!(dest.objects(&second).expect("objects").len(), 2);
}

#[test]
fn a_batch_without_partitions_is_a_configuration_error() {
    let spec = spec(serde_json::json!({}));
    let mut b = Batcher::new(limits(), Encoding::Ndjson);
    b.push(chunk("a", &[(1, "x")]), Instant::now())
        .expect("push");
    b.flush();
    let batch = b.pop_ready().expect("batch");
    let err = S3Destination::new(&spec)
        .objects(&batch)
        .expect_err("no parts");
    assert_eq!(err.category(), "config");
}

#[test]
fn many_partitions_close_batches_instead_of_growing_them() {
    // 2000 records, every one in a partition of its own, at most 8 partitions per batch: each
    // batch holds at most 8 objects, and what stays open between chunks is at most 8 records.
    let spec = spec(serde_json::json!({ "maxOpenPartitions": 8, "format": "Raw" }));
    let mut b = batcher(&spec, limits());
    let payloads: Vec<(u64, String)> = (1..=2000)
        .map(|i| (i, format!(r#"{{"k":"p{i}"}}"#)))
        .collect();
    let refs: Vec<(u64, &str)> = payloads.iter().map(|(i, p)| (*i, p.as_str())).collect();
    let now = Instant::now();
    let dest = S3Destination::new(&spec);
    let (mut batches, mut records) = (0, 0);
    let mut take = |b: &mut Batcher| {
        while let Some(batch) = b.pop_ready() {
            let objects = dest.objects(&batch).expect("objects");
            assert!(objects.len() <= 8, "{} objects in one batch", objects.len());
            batches += 1;
            records += batch.len();
        }
    };
    for part in refs.chunks(499) {
        b.push(chunk("a", part), now).expect("push");
        take(&mut b);
        assert!(
            b.pending_records() <= 8,
            "{} records open",
            b.pending_records()
        );
    }
    b.flush();
    take(&mut b);
    assert_eq!(records, 2000, "every record, once");
    assert_eq!(batches, 250, "a batch closes every 8 partitions");
}

/// The object keys of records `from..=to` of one shard read in pages of `pages` records, and
/// each batch's last acknowledged position.
fn keys_of_run(spec: &S3Sink, from: u64, to: u64, pages: &[usize]) -> (Vec<String>, Vec<String>) {
    let limits = BatchLimits {
        max_records: 20,
        max_bytes: 1 << 20,
        max_age: std::time::Duration::from_secs(60),
    };
    let mut b = batcher(spec, limits);
    let payloads: Vec<(u64, String)> = (from..=to)
        .map(|i| (i, format!(r#"{{"k":"p{}"}}"#, i % 3)))
        .collect();
    let refs: Vec<(u64, &str)> = payloads.iter().map(|(i, p)| (*i, p.as_str())).collect();
    let dest = S3Destination::new(spec);
    let (mut keys, mut acks) = (Vec::new(), Vec::new());
    let mut rest = &refs[..];
    let mut sizes = pages.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().expect("a page size")).min(rest.len());
        b.push(chunk("a", &rest[..n]), Instant::now())
            .expect("push");
        rest = &rest[n..];
        while let Some(batch) = b.pop_ready() {
            keys.extend(
                dest.objects(&batch)
                    .expect("objects")
                    .into_iter()
                    .map(|o| o.key),
            );
            if let Some((_, p)) = batch.checkpoints().last() {
                acks.push(p.sequence.to_string());
            }
        }
    }
    (keys, acks)
}

#[test]
fn after_a_restart_at_a_stored_checkpoint_one_shard_closing_on_max_records_rewrites_the_same_keys()
{
    // Before the crash: records 1..=200 in pages of 7, 30 and 63 records; batches close at
    // maxRecords (20). Every acknowledged position is where a batch ended.
    let spec = spec(serde_json::json!({ "format": "Raw" }));
    let (before, acks) = keys_of_run(&spec, 1, 200, &[7, 30, 63]);
    assert_eq!(acks[..3], ["20", "40", "60"]);
    // After the crash: reading resumes after a stored checkpoint (here 60), in other pages.
    let (after, _) = keys_of_run(&spec, 61, 200, &[50, 1, 100]);
    let rewritten: Vec<&String> = before.iter().skip_while(|k| !k.contains("-61-")).collect();
    assert_eq!(
        rewritten,
        after.iter().collect::<Vec<_>>(),
        "same objects, same keys"
    );
    assert!(after[0].starts_with("p1/orders-a-61-"), "{}", after[0]);
}

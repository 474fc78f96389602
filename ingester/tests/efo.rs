//! Enhanced fan-out on kinesis-local: records arrive once with their metadata, a restart re-delivers nothing, and a split keeps every record in key order.

mod common;

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::{Context, Result};
use aws_sdk_kinesis::types::ConsumerStatus;
use common::*;
use kinesis_ingester_api::{KinesisIngester, ReadMode};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(90);

/// An ingester of `stream` in enhanced fan-out mode, writing NDJSON to `out`.
fn efo_ingester(stream: &str, out: &Path) -> Result<KinesisIngester> {
    let mut ki = ingester(stream, out, "")?;
    ki.spec.read.mode = ReadMode::EnhancedFanOut;
    Ok(ki)
}

/// Asserts every payload appears exactly once, and that there are `want` of them.
fn assert_exactly_once(lines: &[serde_json::Value], want: usize) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in payloads(lines) {
        *counts.entry(p).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "re-delivered: {dupes:?}");
    assert_eq!(counts.len(), want, "distinct records delivered");
}

#[tokio::test]
async fn records_are_pushed_once_with_their_metadata() -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let records: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("pk-{}", i % 7), format!("efo-{i}").into_bytes()))
        .collect();
    put(&kinesis, &stream, &records[..20]).await?;

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let run = Running::start(efo_ingester(&stream, &out)?, sdk_api()?, dir.path());
    wait_for_lines(&out, 20, DEADLINE).await?;
    // Records written while subscribed are pushed too.
    put(&kinesis, &stream, &records[20..]).await?;
    let lines = wait_for_lines(&out, records.len(), DEADLINE).await?;
    run.shutdown().await?;

    assert_exactly_once(&lines, records.len());
    for (key, data) in &records {
        let text = String::from_utf8(data.clone())?;
        let line = lines
            .iter()
            .find(|l| l["data"] == json!(text))
            .context("every record is delivered")?;
        assert_eq!(line["partitionKey"], json!(key));
        assert_eq!(line["stream"], json!(stream));
        assert_eq!(line["tag"], "it");
        assert!(
            line["shardId"]
                .as_str()
                .is_some_and(|s| s.starts_with("shardId-"))
        );
        assert!(
            line["sequenceNumber"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert!(
            line["approximateArrivalTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }

    // The consumer was registered under its default name, and is ACTIVE.
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await?
        .stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .context("stream summary")?;
    let consumer = kinesis
        .describe_stream_consumer()
        .stream_arn(arn)
        .consumer_name(format!("kinesis-ingester-{stream}"))
        .send()
        .await?;
    assert_eq!(
        consumer.consumer_description().map(|c| c.consumer_status()),
        Some(&ConsumerStatus::Active)
    );
    Ok(())
}

#[tokio::test]
async fn a_restart_resubscribes_after_the_last_delivered_record() -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let batch = |prefix: &str, n: usize| -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    format!("pk-{}", i % 5),
                    format!("{prefix}-{i}").into_bytes(),
                )
            })
            .collect()
    };

    put(&kinesis, &stream, &batch("first", 50)).await?;
    let run = Running::start(efo_ingester(&stream, &out)?, sdk_api()?, dir.path());
    wait_for_lines(&out, 50, DEADLINE).await?;
    run.shutdown().await?;

    // The consumer exists now: the second run finds it rather than registering it.
    put(&kinesis, &stream, &batch("second", 30)).await?;
    let run = Running::start(efo_ingester(&stream, &out)?, sdk_api()?, dir.path());
    let lines = wait_for_lines(&out, 80, DEADLINE).await?;
    run.shutdown().await?;
    assert_exactly_once(&lines, 80);
    Ok(())
}

#[tokio::test]
async fn a_split_while_subscribed_delivers_everything_in_key_order() -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let run = Running::start(efo_ingester(&stream, &out)?, sdk_api()?, dir.path());

    produce(&kinesis, &stream, 0, 80).await?;
    wait_for_lines(&out, 40, DEADLINE).await?;
    let parent = open_shards(&kinesis, &stream)
        .await?
        .pop()
        .context("one open shard")?;
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent.shard_id())
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await?;
    wait_stream_active(&kinesis, &stream).await?;
    produce(&kinesis, &stream, 80, 160).await?;

    let lines = wait_for_lines(&out, 160, DEADLINE).await?;
    run.shutdown().await?;

    let got = payloads(&lines);
    assert_exactly_once(&lines, 160);
    let shards: std::collections::HashSet<&str> =
        lines.iter().filter_map(|l| l["shardId"].as_str()).collect();
    assert_eq!(
        shards.len(),
        3,
        "records came from the parent and both children: {shards:?}"
    );
    assert_key_order(&got)?;
    Ok(())
}

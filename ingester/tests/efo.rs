//! Enhanced fan-out specifics on kinesis-local: the consumer is registered and records written while subscribed are pushed. The shared scenarios run in both modes in the other test files.

mod common;

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use aws_sdk_kinesis::types::ConsumerStatus;
use common::*;
use kinesis_ingester_api::{KinesisIngester, ReadMode};

const DEADLINE: Duration = Duration::from_secs(90);

/// An ingester of `stream` in enhanced fan-out mode, writing NDJSON to `out`.
fn efo_ingester(stream: &str, out: &Path) -> Result<KinesisIngester> {
    let mut ki = ingester(stream, out, "")?;
    ki.spec.read.mode = ReadMode::EnhancedFanOut;
    Ok(ki)
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

    // Metadata is checked in both modes by delivery.rs; here, what only fan-out does.
    assert_exactly_once(&lines, records.len());

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

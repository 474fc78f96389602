//! SplitShard and MergeShards while reading: every record is delivered once, and for each partition key in the order it was written (parents before children).

#[macro_use]
mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use kinesis_ingester_api::ReadMode;

both_modes!(split_then_merge_while_reading_delivers_everything_in_key_order);

async fn split_then_merge_while_reading_delivers_everything_in_key_order(
    mode: ReadMode,
) -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let run = Running::start(
        with_mode(ingester(&stream, &out, "")?, mode),
        sdk_api()?,
        dir.path(),
    );

    produce(&kinesis, &stream, 0, 80).await?;
    wait_for_lines(&out, 40, Duration::from_secs(60)).await?;
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

    let mut children = open_shards(&kinesis, &stream).await?;
    assert_eq!(children.len(), 2, "the split left two open children");
    children.sort_by_key(|s| {
        s.hash_key_range()
            .map(|r| r.starting_hash_key().len())
            .unwrap_or(0)
    });
    wait_for_lines(&out, 120, Duration::from_secs(60)).await?;
    kinesis
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(children[0].shard_id())
        .adjacent_shard_to_merge(children[1].shard_id())
        .send()
        .await?;
    wait_stream_active(&kinesis, &stream).await?;
    produce(&kinesis, &stream, 160, 240).await?;

    let lines = wait_for_lines(&out, 240, Duration::from_secs(90)).await?;
    run.shutdown().await?;

    let got = payloads(&lines);
    assert_eq!(got.len(), 240, "no duplicates");
    let shards: std::collections::HashSet<&str> =
        lines.iter().filter_map(|l| l["shardId"].as_str()).collect();
    assert_eq!(
        shards.len(),
        4,
        "records came from the parent, both children and the merged shard: {shards:?}"
    );
    assert_key_order(&got)?;
    Ok(())
}

//! Smoke test of the Kinesis emulator through the real Rust SDK client: create a stream, put, read back, reshard.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_kinesis::{primitives::Blob, types::ShardIteratorType};
use kinesis_testkit::{create_stream, kinesis_client, wait_until};

#[tokio::test]
async fn records_put_into_the_emulator_are_read_back_in_order() -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "smoke", 1).await?;

    for i in 0..5 {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key("pk")
            .data(Blob::new(format!("record-{i}")))
            .send()
            .await?;
    }
    let shards = kinesis.list_shards().stream_name(&stream).send().await?;
    let shard = shards.shards().first().context("stream has a shard")?;
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(shard.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await?
        .shard_iterator
        .context("an iterator")?;
    let out = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await?;
    let payloads: Vec<String> = out
        .records()
        .iter()
        .map(|r| String::from_utf8_lossy(r.data().as_ref()).into_owned())
        .collect();
    assert_eq!(
        payloads,
        (0..5).map(|i| format!("record-{i}")).collect::<Vec<_>>()
    );
    assert!(
        out.millis_behind_latest().is_some(),
        "the emulator reports MillisBehindLatest"
    );

    // A split parent ends with ChildShards, which the ingester relies on.
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(shard.shard_id())
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await?;
    let shards = wait_until("3 shards after the split", Duration::from_secs(30), || {
        let kinesis = kinesis.clone();
        let stream = stream.clone();
        async move {
            let s = kinesis.list_shards().stream_name(&stream).send().await?;
            Ok((s.shards().len() == 3).then(|| s.shards().to_vec()))
        }
    })
    .await?;
    let children: Vec<_> = shards
        .iter()
        .filter(|s| s.parent_shard_id() == Some(shard.shard_id()))
        .collect();
    assert_eq!(
        children.len(),
        2,
        "the split created two children of {}",
        shard.shard_id()
    );

    kinesis.delete_stream().stream_name(&stream).send().await?;
    Ok(())
}

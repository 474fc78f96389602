//! End to end on kinesis-local: plain, KPL-aggregated, gzip and CloudWatch Logs records are delivered with exact payloads and metadata.

#[macro_use]
mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use kinesis_ingester::decode::testing::{UserRecordSpec, encode_aggregated, gzip};
use kinesis_ingester_api::ReadMode;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

both_modes!(plain_records_are_delivered_with_their_metadata);

async fn plain_records_are_delivered_with_their_metadata(mode: ReadMode) -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let records: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("pk-{}", i % 7), format!("plain-{i}").into_bytes()))
        .chain([("bin".to_owned(), vec![0xff, 0x00, 0xfe])])
        .collect();
    put(&kinesis, &stream, &records).await?;

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let run = Running::start(
        with_mode(ingester(&stream, &out, "")?, mode),
        sdk_api()?,
        dir.path(),
    );
    let lines = wait_for_lines(&out, records.len(), DEADLINE).await?;
    run.shutdown().await?;

    assert_eq!(lines.len(), records.len(), "no duplicates");
    for (key, data) in &records[..40] {
        let text = String::from_utf8(data.clone())?;
        let line = lines
            .iter()
            .find(|l| l["data"] == json!(text))
            .expect("every record is delivered");
        assert_eq!(line["encoding"], "utf8");
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
                .is_some_and(|s| s.parse::<u128>().is_ok() || s.len() > 30)
        );
        assert!(
            line["approximateArrivalTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert!(line.get("subSequenceNumber").is_none());
    }
    let binary = lines
        .iter()
        .find(|l| l["partitionKey"] == "bin")
        .expect("binary record");
    assert_eq!(binary["encoding"], "base64");
    assert_eq!(binary["data"], "/wD+");
    Ok(())
}

both_modes!(kpl_aggregated_records_are_split_into_user_records);

async fn kpl_aggregated_records_are_split_into_user_records(mode: ReadMode) -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    let mut puts = Vec::new();
    for agg in 0..5 {
        let users: Vec<(String, String)> = (0..20)
            .map(|u| (format!("user-{agg}-{u}"), format!("kpl-{agg}-{u}")))
            .collect();
        let specs: Vec<UserRecordSpec<'_>> = users
            .iter()
            .map(|(k, d)| UserRecordSpec {
                partition_key: k,
                explicit_hash_key: None,
                data: d.as_bytes(),
            })
            .collect();
        puts.push((format!("agg-{agg}"), encode_aggregated(&specs).to_vec()));
    }
    // A record with the KPL magic but a broken digest is passed on whole.
    let mut broken = encode_aggregated(&[UserRecordSpec {
        partition_key: "x",
        explicit_hash_key: None,
        data: b"y",
    }])
    .to_vec();
    let last = broken.len() - 1;
    broken[last] ^= 0xff;
    puts.push(("broken".into(), broken.clone()));
    put(&kinesis, &stream, &puts).await?;

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let run = Running::start(
        with_mode(ingester(&stream, &out, "")?, mode),
        sdk_api()?,
        dir.path(),
    );
    let lines = wait_for_lines(&out, 101, DEADLINE).await?;
    run.shutdown().await?;

    assert_eq!(lines.len(), 101);
    for agg in 0..5 {
        for u in 0..20 {
            let line = lines
                .iter()
                .find(|l| l["data"] == json!(format!("kpl-{agg}-{u}")))
                .expect("every user record is delivered");
            assert_eq!(
                line["partitionKey"],
                json!(format!("user-{agg}-{u}")),
                "each user record keeps its own key"
            );
            assert_eq!(line["subSequenceNumber"], json!(u));
        }
    }
    let whole = lines
        .iter()
        .find(|l| l["partitionKey"] == "broken")
        .expect("the broken record is passed on");
    assert_eq!(whole["encoding"], "base64");
    assert!(whole.get("subSequenceNumber").is_none());
    Ok(())
}

both_modes!(gzip_and_cloudwatch_logs_records_are_decoded);

async fn gzip_and_cloudwatch_logs_records_are_decoded(mode: ReadMode) -> Result<()> {
    let kinesis = kinesis_client()?;
    // gzip
    let stream = create_stream(&kinesis, 1).await?;
    let records: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            (
                "k".to_owned(),
                gzip(format!("zipped-{i}").as_bytes()).to_vec(),
            )
        })
        .collect();
    let mut with_bad = records.clone();
    with_bad.push(("bad".into(), b"not gzip at all".to_vec()));
    put(&kinesis, &stream, &with_bad).await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let dead = dir.path().join("dead.ndjson");
    let cfg = config(
        &stream,
        &file_sink(&out, Some(&dead)),
        "  decode: {compression: Gzip}\n",
    )?;
    let run = Running::start(with_mode(cfg, mode), sdk_api()?, dir.path());
    let lines = wait_for_lines(&out, 10, DEADLINE).await?;
    let dead_lines = wait_for_lines(&dead, 1, DEADLINE).await?;
    run.shutdown().await?;
    let mut got = payloads(&lines);
    got.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("zipped-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(dead_lines[0]["partitionKey"], "bad");
    assert!(
        dead_lines[0]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{:?}",
        dead_lines[0]
    );

    // CloudWatch Logs: 2 data envelopes of 3 events, and a control message that is dropped.
    let stream = create_stream(&kinesis, 1).await?;
    let envelope = |kind: &str, events: &[(&str, &str)]| {
        let log_events: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, (id, msg))| json!({"id": id, "timestamp": 1_795_446_000_000i64 + i as i64, "message": msg}))
            .collect();
        let body = json!({"messageType": kind, "owner": "123456789012", "logGroup": "/app/web", "logStream": "i-1",
            "subscriptionFilters": ["all"], "logEvents": log_events});
        gzip(body.to_string().as_bytes()).to_vec()
    };
    put(
        &kinesis,
        &stream,
        &[
            (
                "a".into(),
                envelope(
                    "DATA_MESSAGE",
                    &[("e1", "GET /"), ("e2", "GET /a"), ("e3", "GET /b")],
                ),
            ),
            (
                "b".into(),
                envelope(
                    "CONTROL_MESSAGE",
                    &[("c1", "CWL CONTROL MESSAGE: Checking health of destination")],
                ),
            ),
            (
                "c".into(),
                envelope(
                    "DATA_MESSAGE",
                    &[("e4", "POST /x"), ("e5", "POST /y"), ("e6", "POST /z")],
                ),
            ),
        ],
    )
    .await?;
    let out = dir.path().join("cw.ndjson");
    let cfg = ingester(&stream, &out, "  decode: {format: CloudWatchLogs}\n")?;
    let cw_dir = tempfile::tempdir()?;
    let run = Running::start(with_mode(cfg, mode), sdk_api()?, cw_dir.path());
    let lines = wait_for_lines(&out, 6, DEADLINE).await?;
    run.shutdown().await?;
    assert_eq!(
        payloads(&lines),
        ["GET /", "GET /a", "GET /b", "POST /x", "POST /y", "POST /z"]
    );
    assert_eq!(lines[0]["cloudwatch"]["logGroup"], "/app/web");
    assert_eq!(lines[0]["cloudwatch"]["id"], "e1");
    assert_eq!(lines.len(), 6, "the control message produced nothing");
    Ok(())
}

both_modes!(a_stream_named_by_its_arn_is_read);

async fn a_stream_named_by_its_arn_is_read(mode: ReadMode) -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await?
        .stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .unwrap_or_default();
    assert!(arn.starts_with("arn:aws:kinesis:"), "{arn}");
    let records: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| ("k".to_owned(), format!("arn-{i}").into_bytes()))
        .collect();
    put(&kinesis, &stream, &records).await?;

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let mut cfg = ingester(&stream, &out, "")?;
    cfg.spec.stream.name = None;
    cfg.spec.stream.arn = Some(arn);
    cfg.spec.validate()?;
    let run = Running::start(with_mode(cfg, mode), sdk_api()?, dir.path());
    let lines = wait_for_lines(&out, 5, DEADLINE).await?;
    run.shutdown().await?;
    assert_eq!(
        payloads(&lines),
        (0..5).map(|i| format!("arn-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        lines[0]["stream"],
        json!(stream),
        "the stream name comes from the ARN"
    );
    Ok(())
}

#[tokio::test]
async fn only_the_shards_given_are_read() -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let records: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("pk-{i}"), format!("subset-{i}").into_bytes()))
        .collect();
    put(&kinesis, &stream, &records).await?;
    let shards = kinesis.list_shards().stream_name(&stream).send().await?;
    let first = shards
        .shards()
        .first()
        .map(|s| s.shard_id().to_owned())
        .unwrap_or_default();
    // The records the first shard holds, read directly.
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(&first)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await?
        .shard_iterator
        .unwrap_or_default();
    let in_first = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await?
        .records()
        .len();
    assert!(
        in_first > 0 && in_first < 40,
        "40 random keys spread over both shards ({in_first} in the first)"
    );

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let only = Some([first.clone()].into_iter().collect());
    let run = Running::start_with(ingester(&stream, &out, "")?, sdk_api()?, dir.path(), only);
    wait_for_lines(&out, in_first, DEADLINE).await?;
    run.shutdown().await?;
    let lines = lines(&out)?;
    assert_eq!(lines.len(), in_first, "only the first shard's records");
    assert!(lines.iter().all(|l| l["shardId"] == json!(first)));
    Ok(())
}

//! The `kinesis-ingester` binary: SIGTERM in the middle of an open batch delivers it, checkpoints it, exits 0, and a restart re-reads nothing.

#[macro_use]
mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use kinesis_ingester_api::ReadMode;
use tokio::process::Command;

both_modes!(sigterm_mid_batch_delivers_checkpoints_and_exits_zero);

async fn sigterm_mid_batch_delivers_checkpoints_and_exits_zero(mode: ReadMode) -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 2).await?;
    let records: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("k{i}"), format!("t-{i}").into_bytes()))
        .collect();
    put(&kinesis, &stream, &records).await?;

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.ndjson");
    let checkpoints = dir.path().join("checkpoints");
    // A batch that only closes after 10 minutes: at SIGTERM every record is in the open batch.
    let endpoint = std::env::var("KINESIS_ENDPOINT")?;
    let yaml = format!(
        "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {{name: t}}\nspec:\n  stream: {{name: {stream}, region: us-east-1, endpoint: '{endpoint}'}}\n  read: {{mode: {mode:?}, startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms}}\n  sink:\n    file: {{path: '{}'}}\n    batch: {{maxRecords: 100000, maxAge: 10m}}\n",
        out.display()
    );
    let config = dir.path().join("ingester.yaml");
    std::fs::write(&config, yaml)?;

    let port = free_port()?;
    let mut child = binary(&config, &checkpoints, port).spawn()?;
    wait_until(
        "all 30 records read",
        Duration::from_secs(60),
        || async move {
            let text = metrics(port).await?;
            Ok((value(&text, "kinesis_ingester_records_in_total") == Some(30.0)).then_some(text))
        },
    )
    .await?;
    assert!(
        lines(&out)?.is_empty(),
        "nothing is delivered before SIGTERM: the batch is open"
    );

    let pid = child.id().context("child pid")?;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "exits 0 after SIGTERM");
    let delivered = lines(&out)?;
    assert_eq!(
        delivered.len(),
        30,
        "the open batch was delivered on SIGTERM"
    );
    let stored = std::fs::read_dir(checkpoints.join(&stream))?.count();
    assert_eq!(stored, 2, "a checkpoint per shard");

    // A restart reads past the checkpoints: a GetRecords answer arrives, with no records.
    let port = free_port()?;
    let mut child = binary(&config, &checkpoints, port).spawn()?;
    let text = wait_until(
        "both shards polled after the restart",
        Duration::from_secs(60),
        || async move {
            let text = metrics(port).await?;
            let polled = text
                .lines()
                .filter(|l| l.starts_with("kinesis_ingester_millis_behind_latest{"))
                .count();
            Ok((polled == 2).then_some(text))
        },
    )
    .await?;
    assert_eq!(
        value(&text, "kinesis_ingester_records_in_total"),
        Some(0.0),
        "nothing is read again"
    );
    child.start_kill()?;
    let _ = child.wait().await;
    assert_eq!(lines(&out)?.len(), 30);
    Ok(())
}

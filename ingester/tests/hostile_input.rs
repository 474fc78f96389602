//! The `kinesis-ingester` binary against hostile records: a CloudWatch metadata bomb and a KPL key bomb are dead-lettered within 256 MiB of peak RSS, and the next record is delivered.

#[macro_use]
mod common;

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use common::*;
use kinesis_ingester::decode::testing::{cloudwatch_bomb, gzip, kpl_key_bomb};
use kinesis_ingester_api::ReadMode;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(90);

/// Peak RSS allowed to the ingester process, in KiB. The bombs once drove it to 2.9 GB, then
/// to `memory allocation failed`.
const PEAK_RSS_LIMIT_KIB: u64 = 256 << 10;

/// Address space the process is run with when `prlimit` is there: a regression then aborts the
/// process at 4 GiB instead of taking the machine's memory (the check above fails first).
const ADDRESS_SPACE_GUARD: &str = "--as=4294967296";

/// What one scenario puts, and what it expects of the ingester.
struct Scenario {
    /// YAML lines appended under `spec:`.
    decode: &'static str,
    /// The bomb's payload.
    bomb: Vec<u8>,
    /// The record put after the bomb, and the `data` it is delivered with.
    next: (Vec<u8>, &'static str),
    /// The `decode_failures_total` series the bomb counts in.
    failure_series: &'static str,
}

both_modes!(a_cloudwatch_metadata_bomb_is_dead_lettered_in_bounded_memory);

async fn a_cloudwatch_metadata_bomb_is_dead_lettered_in_bounded_memory(
    mode: ReadMode,
) -> Result<()> {
    // A 2 MiB log group name and 50,000 one-character events: 4.8 MB of JSON, 132 KB of gzip.
    let next = json!({
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/app/web",
        "logStream": "i-1", "subscriptionFilters": ["all"],
        "logEvents": [{"id": "e1", "timestamp": 1_795_446_000_000_i64, "message": "after the bomb"}],
    });
    run(
        mode,
        Scenario {
            decode: "  decode: {format: CloudWatchLogs}\n",
            bomb: cloudwatch_bomb(2 << 20, 50_000).to_vec(),
            next: (gzip(next.to_string().as_bytes()).to_vec(), "after the bomb"),
            failure_series: r#"kinesis_ingester_decode_failures_total{category="cloudwatch",reason="log_group_too_long"}"#,
        },
    )
    .await
}

both_modes!(a_kpl_key_bomb_is_dead_lettered_in_bounded_memory);

async fn a_kpl_key_bomb_is_dead_lettered_in_bounded_memory(mode: ReadMode) -> Result<()> {
    // One 450 KiB partition key shared by 80,000 user records, in one 1 MiB Kinesis record.
    let bomb = kpl_key_bomb(460_800, 80_000).to_vec();
    anyhow::ensure!(bomb.len() < 1 << 20, "the bomb fits in a Kinesis record");
    run(
        mode,
        Scenario {
            decode: "",
            bomb,
            next: (b"after the bomb".to_vec(), "after the bomb"),
            failure_series: r#"kinesis_ingester_decode_failures_total{category="kpl",reason="partition_key_too_long"}"#,
        },
    )
    .await
}

/// Puts the bomb then the next record into a 1-shard stream, runs the binary until the next
/// record is delivered and the bomb dead-lettered, and checks the peak RSS all along.
async fn run(mode: ReadMode, scenario: Scenario) -> Result<()> {
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    let bomb_len = scenario.bomb.len();
    put(
        &kinesis,
        &stream,
        &[
            ("bomb".to_owned(), scenario.bomb),
            ("next".to_owned(), scenario.next.0),
        ],
    )
    .await?;

    let dir = tempfile::tempdir()?;
    let (out, dead) = (
        dir.path().join("out.ndjson"),
        dir.path().join("dead.ndjson"),
    );
    let endpoint = std::env::var("KINESIS_ENDPOINT")?;
    let yaml = format!(
        "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {{name: t}}\nspec:\n  stream: {{name: {stream}, region: us-east-1, endpoint: '{endpoint}'}}\n  read: {{mode: {mode:?}, startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms}}\n  sink:\n{}{}",
        file_sink(&out, Some(&dead)),
        scenario.decode,
    );
    let config = dir.path().join("ingester.yaml");
    std::fs::write(&config, yaml)?;
    let port = free_port()?;
    let guard: &[&str] = if Path::new("/usr/bin/prlimit").exists() {
        &["/usr/bin/prlimit", ADDRESS_SPACE_GUARD, "--"]
    } else {
        &[]
    };
    let mut child = binary_under(guard, &config, &dir.path().join("checkpoints"), port).spawn()?;
    let pid = child.id().context("child pid")?;

    let next_data = scenario.next.1;
    let (out_lines, dead_lines) = wait_until(
        "the record after the bomb delivered and the bomb dead-lettered",
        DEADLINE,
        || {
            let (out, dead) = (&out, &dead);
            async move {
                let peak = peak_rss_kib(pid)?;
                if peak > PEAK_RSS_LIMIT_KIB {
                    // Fails now, while the process is still there to be killed.
                    return Ok(Some(Err(anyhow::anyhow!(
                        "peak RSS {peak} KiB, over {PEAK_RSS_LIMIT_KIB} KiB"
                    ))));
                }
                let (out, dead) = (lines(out)?, lines(dead)?);
                let delivered = out.iter().any(|l| l["data"] == next_data);
                Ok((delivered && !dead.is_empty()).then_some(Ok((out, dead))))
            }
        },
    )
    .await??;
    let peak = peak_rss_kib(pid)?;
    let text = wait_until("the dead letter counted", DEADLINE, || async move {
        let text = metrics(port).await?;
        Ok((value(&text, scenario.failure_series) == Some(1.0)).then_some(text))
    })
    .await?;
    child.start_kill()?;
    let _ = child.wait().await;

    eprintln!("peak RSS of the ingester: {peak} KiB");
    assert!(peak <= PEAK_RSS_LIMIT_KIB, "peak RSS {peak} KiB");
    assert_eq!(
        out_lines.len(),
        1,
        "only the next record is delivered: {out_lines:?}"
    );
    assert_eq!(
        dead_lines.len(),
        1,
        "one dead letter: the whole bomb record"
    );
    let letter = &dead_lines[0];
    assert_eq!(letter["partitionKey"], "bomb");
    let data = letter["data"].as_str().context("base64 data")?;
    assert_eq!(
        data.len(),
        bomb_len.div_ceil(3) * 4,
        "the raw record, whole"
    );
    let reason = letter["reason"].as_str().context("reason")?;
    assert!(
        reason.contains("shardId-000000000000") && reason.contains("limit of"),
        "the reason names the record and the limit: {reason}"
    );
    assert!(
        value(&text, "kinesis_ingester_dead_letters_total") == Some(1.0),
        "{text}"
    );
    Ok(())
}

/// VmHWM of process `pid`: its peak resident set size, in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status: the process has exited")
}

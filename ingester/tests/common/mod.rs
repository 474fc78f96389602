//! Helpers for the ingester's integration tests: streams on the emulator, configs, running an ingester in-process, reading its output.

// Each test file uses a different subset of these helpers.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod firehose_lambda;
pub mod line_sink;
pub mod one_shard;
pub mod tls;

use std::{path::Path, process::Stdio, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use kinesis_client::{KinesisApi, SdkKinesis};
use kinesis_ingester::{
    config,
    run::{RunError, RunOptions, RunOutcome},
};
use kinesis_ingester_api::KinesisIngester;
pub use kinesis_testkit::{kinesis_client, wait_stream_active, wait_until};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::Command,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// Creates a stream with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(kinesis: &aws_sdk_kinesis::Client, shards: i32) -> Result<String> {
    kinesis_testkit::create_stream(kinesis, "it", shards).await
}

/// Puts `payloads` with the given partition keys, one PutRecord each, in order.
pub async fn put(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> Result<()> {
    for (key, data) in records {
        kinesis
            .put_record()
            .stream_name(stream)
            .partition_key(key)
            .data(Blob::new(data.clone()))
            .send()
            .await?;
    }
    Ok(())
}

/// The YAML of a file sink writing to `out` (and dead letters to `dead`), in small batches.
pub fn file_sink(out: &Path, dead: Option<&Path>) -> String {
    let dead = dead
        .map(|d| format!("    deadLetterPath: '{}'\n", d.display()))
        .unwrap_or_default();
    format!(
        "    file: {{path: '{}'}}\n    tag: it\n    batch: {{maxRecords: 50, maxAge: 100ms}}\n{dead}",
        out.display()
    )
}

/// A KinesisIngester for `stream` on the emulator with the sink YAML `sink`; `extra` is YAML
/// appended under `spec:` (e.g. a `decode:` block).
pub fn config(stream: &str, sink: &str, extra: &str) -> Result<KinesisIngester> {
    let endpoint =
        std::env::var("KINESIS_ENDPOINT").context("KINESIS_ENDPOINT; run with `make test`")?;
    let text = format!(
        "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: test}}
spec:
  stream: {{name: {stream}, region: us-east-1, endpoint: '{endpoint}'}}
  read: {{startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms, shardSyncInterval: 1s}}
  sink:
{sink}{extra}"
    );
    Ok(config::parse(Path::new("test.yaml"), &text)?)
}

/// A KinesisIngester for `stream` writing NDJSON to `out`.
pub fn ingester(stream: &str, out: &Path, extra: &str) -> Result<KinesisIngester> {
    config(stream, &file_sink(out, None), extra)
}

/// The SDK client of the tests, behind the seam.
pub fn sdk_api() -> Result<Arc<dyn KinesisApi>> {
    Ok(Arc::new(SdkKinesis::new(kinesis_client()?)))
}

/// An ingester running in-process.
pub struct Running {
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<RunOutcome, RunError>>,
}

impl Running {
    /// Starts `ingester` with checkpoints in `dir`.
    pub fn start(ingester: KinesisIngester, api: Arc<dyn KinesisApi>, dir: &Path) -> Self {
        Self::start_with(ingester, api, dir, None)
    }

    /// Starts `ingester` with checkpoints in `dir`, reading only `shards` when given.
    pub fn start_with(
        ingester: KinesisIngester,
        api: Arc<dyn KinesisApi>,
        dir: &Path,
        shards: Option<std::collections::HashSet<String>>,
    ) -> Self {
        let stop = CancellationToken::new();
        let options = RunOptions {
            checkpoint_dir: dir.to_owned(),
            checkpoint_interval: Duration::from_millis(200),
            shutdown_timeout: Duration::from_secs(20),
            only_shards: shards,
            ..RunOptions::default()
        };
        let token = stop.clone();
        let task = tokio::spawn(async move {
            kinesis_ingester::run::run(&ingester, api, options, token).await
        });
        Self { stop, task }
    }

    /// Asks it to stop and waits; it must stop cleanly.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(60), self.task).await???;
        anyhow::ensure!(
            outcome == RunOutcome::Clean,
            "the ingester stopped with {outcome:?}"
        );
        Ok(())
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// GET http://127.0.0.1:{port}/metrics.
pub async fn metrics(port: u16) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}

/// The value of a metric line that starts with `name` (a full name with labels, or none).
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The `kinesis-ingester` binary running `config`, with checkpoints in `checkpoints` and
/// metrics on `port`, killed when dropped.
pub fn binary(config: &Path, checkpoints: &Path, port: u16) -> Command {
    binary_under(&[], config, checkpoints, port)
}

/// [`binary`], run by the command `prefix` (e.g. `prlimit --as=…`), which must exec it.
pub fn binary_under(prefix: &[&str], config: &Path, checkpoints: &Path, port: u16) -> Command {
    let ingester = env!("CARGO_BIN_EXE_kinesis-ingester");
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(ingester);
            cmd
        }
        None => Command::new(ingester),
    };
    cmd.args(["run", "-f"])
        .arg(config)
        .arg("--checkpoint-dir")
        .arg(checkpoints)
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--shutdown-timeout",
            "20s",
        ])
        .env("AWS_ACCESS_KEY_ID", "000000000000")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The NDJSON lines of `path` (none if it does not exist yet).
pub fn lines(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

/// Waits until `path` holds at least `n` lines, and returns them.
pub async fn wait_for_lines(path: &Path, n: usize, timeout: Duration) -> Result<Vec<Value>> {
    let what = format!("{n} lines in {}", path.display());
    wait_until(&what, timeout, || async move {
        let l = lines(path)?;
        Ok((l.len() >= n).then_some(l))
    })
    .await
}

/// The `data` field of every line, as text.
pub fn payloads(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Partition keys of [`produce`].
pub const KEYS: usize = 8;

/// Puts records `from..to`; record i has key `k{i % KEYS}` and payload `k{key}-{i}`.
pub async fn produce(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    from: usize,
    to: usize,
) -> Result<()> {
    let records: Vec<(String, Vec<u8>)> = (from..to)
        .map(|i| {
            (
                format!("k{}", i % KEYS),
                format!("k{}-{i}", i % KEYS).into_bytes(),
            )
        })
        .collect();
    put(kinesis, stream, &records).await
}

/// The shards without an ending sequence number.
pub async fn open_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<aws_sdk_kinesis::types::Shard>> {
    let shards = kinesis.list_shards().stream_name(stream).send().await?;
    Ok(shards
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .cloned()
        .collect())
}

/// Asserts that, for each key, the payloads of [`produce`] appear in the order they were written.
pub fn assert_key_order(payloads: &[String]) -> Result<()> {
    let mut last: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for p in payloads {
        let (key, i) = p[1..].split_once('-').context("payload shape")?;
        let (key, i): (usize, usize) = (key.parse()?, i.parse()?);
        if let Some(prev) = last.insert(key, i) {
            anyhow::ensure!(prev < i, "key k{key}: record {i} delivered after {prev}");
        }
    }
    Ok(())
}

/// `ki` reading in `mode`.
pub fn with_mode(mut ki: KinesisIngester, mode: kinesis_ingester_api::ReadMode) -> KinesisIngester {
    ki.spec.read.mode = mode;
    ki
}

/// Asserts every payload appears exactly once, and that there are `want` of them.
pub fn assert_exactly_once(lines: &[Value], want: usize) {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for p in payloads(lines) {
        *counts.entry(p).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "re-delivered: {dupes:?}");
    assert_eq!(counts.len(), want, "distinct records delivered");
}

/// Runs the scenario `check(mode)` as two tests, `check::polling` and `check::enhanced_fan_out`.
macro_rules! both_modes {
    ($check:ident) => {
        mod $check {
            #[tokio::test]
            async fn polling() -> anyhow::Result<()> {
                super::$check(kinesis_ingester_api::ReadMode::Polling).await
            }

            #[tokio::test]
            async fn enhanced_fan_out() -> anyhow::Result<()> {
                super::$check(kinesis_ingester_api::ReadMode::EnhancedFanOut).await
            }
        }
    };
}

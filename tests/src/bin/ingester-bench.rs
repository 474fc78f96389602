//! `make bench`: runs the release `kinesis-ingester` against an in-memory replay server and prints throughput per core of ingester CPU, peak RSS, the cost of 1,000 idle shards, and the same into a real OpenSearch node.
//!
//! With `S3_ENDPOINT` set (`make bench` starts SeaweedFS), also the same figures into its S3
//! gateway through the S3 sink (gzip NDJSON objects).
//!
//! Figures only: nothing here fails on a slow machine.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use kinesis_testkit::{
    procstat::{cpu_seconds, free_port, status_kib, wait_metric},
    replay::{self, ReplaySpec},
};
use tokio::process::{Child, Command};

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_PAGE: usize = 10_000;

/// The stdout sink (to /dev/null) in large batches.
const STDOUT_SINK: &str =
    "    stdout: {}\n    batch: {maxRecords: 10000, maxBytes: 16777216, maxAge: 1s}\n";

async fn start_ingester(
    binary: &Path,
    dir: &Path,
    endpoint: &str,
    port: u16,
    sink: &str,
) -> Result<Child> {
    let config = dir.join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {{name: bench}}\nspec:\n  stream: {{name: bench, region: us-east-1, endpoint: '{endpoint}'}}\n  read: {{startingPosition: {{type: TrimHorizon}}}}\n  sink:\n{sink}"
        ),
    )?;
    Ok(Command::new(binary)
        .args(["run", "-f"])
        .arg(&config)
        .arg("--checkpoint-dir")
        .arg(dir.join("checkpoints"))
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("AWS_ACCESS_KEY_ID", "000000000000")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

/// A release ingester reading from its own replay server, with all its shards started.
struct Launched {
    child: Child,
    pid: u32,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Launched {
    async fn start(
        binary: &Path,
        spec: ReplaySpec,
        ready_within: Duration,
        progress: bool,
        sink: &str,
    ) -> Result<Self> {
        let shards = spec.shards;
        let server = replay::start(spec).await?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = start_ingester(
            binary,
            dir.path(),
            &format!("http://{}", server.addr),
            port,
            sink,
        )
        .await?;
        let pid = child.id().context("pid")?;
        wait_metric(
            port,
            "kinesis_ingester_shards_reading",
            shards as f64,
            ready_within,
            progress,
        )
        .await?;
        Ok(Self {
            child,
            pid,
            port,
            _dir: dir,
        })
    }

    async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
    }
}

async fn throughput(
    binary: &Path,
    shards: usize,
    pages: u64,
    sink: &str,
    what: &str,
) -> Result<()> {
    let total = (shards as u64 * pages * RECORDS_PER_PAGE as u64) as f64;
    println!(
        "end to end: {shards} shards x {pages} pages x {RECORDS_PER_PAGE} records x {RECORD_BYTES} B, {what}"
    );
    let spec = ReplaySpec {
        shards,
        pages_per_shard: pages,
        records_per_page: RECORDS_PER_PAGE,
        record_bytes: RECORD_BYTES,
        payloads: Vec::new(),
    };
    let ingester = Launched::start(binary, spec, Duration::from_secs(60), false, sink).await?;
    let (pid, port) = (ingester.pid, ingester.port);
    let (t0, cpu0) = (Instant::now(), cpu_seconds(pid)?);
    wait_metric(
        port,
        "kinesis_ingester_records_out_total",
        total,
        Duration::from_secs(900),
        true,
    )
    .await?;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds(pid)? - cpu0);
    let hwm = status_kib(pid, "VmHWM")?;
    let mb = total * RECORD_BYTES as f64 / 1e6;
    println!("  payload:            {mb:.0} MB in {wall:.1} s wall, {cpu:.1} s of ingester CPU");
    println!(
        "  throughput:         {:.0} MB/s wall, {:.0} MB/s per ingester core",
        mb / wall,
        mb / cpu
    );
    println!(
        "  records:            {:.0} records/s per ingester core",
        total / cpu
    );
    println!("  peak RSS:           {:.1} MiB", hwm / 1024.0);
    println!(
        "  target:             >= 250 MB/s per core: {}",
        if mb / cpu >= 250.0 { "met" } else { "MISSED" }
    );
    ingester.stop().await;
    Ok(())
}

/// Returns the RSS in KiB after the window.
async fn idle(binary: &Path, shards: usize, window: Duration) -> Result<f64> {
    println!("idle: {shards} shards with no records, polled every 1 s");
    let spec = ReplaySpec {
        shards,
        pages_per_shard: 0,
        records_per_page: 0,
        record_bytes: 0,
        payloads: Vec::new(),
    };
    let ingester =
        Launched::start(binary, spec, Duration::from_secs(120), true, STDOUT_SINK).await?;
    let pid = ingester.pid;
    // A measurement window, not a synchronization: CPU and RSS are sampled at both ends.
    let cpu0 = cpu_seconds(pid)?;
    tokio::time::sleep(window).await;
    let cpu = cpu_seconds(pid)? - cpu0;
    let rss = status_kib(pid, "VmRSS")?;
    let hwm = status_kib(pid, "VmHWM")?;
    println!(
        "  RSS:                {:.1} MiB ({:.1} KiB per shard); peak {:.1} MiB",
        rss / 1024.0,
        rss / shards as f64,
        hwm / 1024.0
    );
    println!(
        "  CPU:                {:.1}% of a core over {:.0} s",
        cpu / window.as_secs_f64() * 100.0,
        window.as_secs_f64()
    );
    ingester.stop().await;
    Ok(rss)
}

/// Into a real OpenSearch node (tests/env/opensearch.sh, started here and stopped after):
/// `_bulk` with position `_id`s into a dated index. OpenSearch, on the same cores, sets the
/// wall-clock pace; the ingester's own cost is its CPU.
async fn opensearch(binary: &Path, shards: usize, pages: u64) -> Result<()> {
    const RECORDS: usize = 5_000;
    let total = (shards as u64 * pages * RECORDS as u64) as f64;
    println!(
        "OpenSearch: {shards} shards x {pages} pages x {RECORDS} records x {RECORD_BYTES} B JSON lines, _bulk into bench-{{yyyy.MM.dd}} (one node, 512 MiB heap, same machine)"
    );
    let state = tempfile::tempdir()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("env/opensearch.sh");
    let started = Instant::now();
    let status = Command::new(&script)
        .arg("start")
        .arg(state.path())
        .arg(std::process::id().to_string())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "OpenSearch did not start: {status}");
    println!(
        "  node start:         {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let env = std::fs::read_to_string(state.path().join("opensearch.env"))?;
    let url = env
        .trim()
        .strip_prefix("export OPENSEARCH_URL=")
        .context("opensearch.env")?
        .to_owned();
    let node_pid: u32 = std::fs::read_to_string(state.path().join("opensearch.pid"))?
        .trim()
        .parse()?;
    let line = |i: usize| {
        let mut l = format!(r#"{{"level":"info","service":"checkout","request":{i},"msg":"#);
        l.push('"');
        while l.len() < RECORD_BYTES - 2 {
            l.push_str("lorem ipsum ");
        }
        l.truncate(RECORD_BYTES - 2);
        l.push_str("\"}");
        l.into_bytes()
    };
    let spec = ReplaySpec {
        shards,
        pages_per_shard: pages,
        records_per_page: RECORDS,
        record_bytes: RECORD_BYTES,
        payloads: (0..4).map(line).collect(),
    };
    let sink = format!(
        "    http: {{url: '{url}/_bulk', format: ElasticsearchBulk, index: 'bench-{{yyyy.MM.dd}}', timeout: 60s}}\n    batch: {{maxRecords: 5000, maxBytes: 8388608, maxAge: 1s}}\n"
    );
    let ingester = Launched::start(binary, spec, Duration::from_secs(60), false, &sink).await?;
    let (pid, port) = (ingester.pid, ingester.port);
    let (t0, cpu0, node0) = (Instant::now(), cpu_seconds(pid)?, cpu_seconds(node_pid)?);
    wait_metric(
        port,
        "kinesis_ingester_records_out_total",
        total,
        Duration::from_secs(1800),
        true,
    )
    .await?;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, node_cpu) = (cpu_seconds(pid)? - cpu0, cpu_seconds(node_pid)? - node0);
    let hwm = status_kib(pid, "VmHWM")?;
    let mb = total * RECORD_BYTES as f64 / 1e6;
    println!(
        "  payload:            {mb:.0} MB in {wall:.1} s wall; {cpu:.1} s of ingester CPU, {node_cpu:.1} s of OpenSearch CPU"
    );
    println!(
        "  throughput:         {:.1} MB/s wall ({:.0} records/s), {:.0} MB/s per ingester core ({:.0} records/s)",
        mb / wall,
        total / wall,
        mb / cpu,
        total / cpu
    );
    println!("  peak RSS:           {:.1} MiB (ingester)", hwm / 1024.0);
    ingester.stop().await;
    let _ = Command::new(&script)
        .arg("stop")
        .arg(state.path())
        .status()
        .await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let binary = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: ingester-bench PATH-TO-RELEASE-kinesis-ingester")?;
    throughput(&binary, 8, 12, STDOUT_SINK, "stdout sink to /dev/null").await?;
    if let Ok(endpoint) = std::env::var("S3_ENDPOINT") {
        // The bucket `kinesis-bench` is created by `make bench` (SeaweedFS refuses to create
        // it on the first PutObject of a signed request).
        let sink = format!(
            "    s3: {{bucket: kinesis-bench, region: us-east-1, endpoint: '{endpoint}'}}\n    batch: {{maxRecords: 10000, maxBytes: 16777216, maxAge: 1s}}\n"
        );
        throughput(&binary, 4, 4, &sink, "S3 sink (gzip NDJSON) into SeaweedFS").await?;
    }
    // OpenSearch needs Java 17 and Maven (cached build); without them the rest still runs.
    if let Err(e) = opensearch(&binary, 4, 4).await {
        println!("OpenSearch: skipped: {e:#}");
    }
    let base = idle(&binary, 1, Duration::from_secs(5)).await?;
    let rss = idle(&binary, 1000, Duration::from_secs(10)).await?;
    let per_shard = (rss - base) / 999.0;
    println!(
        "idle cost per shard:  {per_shard:.1} KiB above the 1-shard process ({:.1} MiB)",
        base / 1024.0
    );
    println!(
        "  targets:            <= 64 KiB per idle shard: {}; <= 200 MiB for 1,000 shards: {}",
        if per_shard <= 64.0 { "met" } else { "MISSED" },
        if rss / 1024.0 <= 200.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}

//! The two consumers side by side (our release `kinesis-ingester` and the KCL peer), and moto for the KCL's lease table: started, measured and stopped by pid.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use kinesis_testkit::procstat::{self, cpu_seconds, free_port, status_kib};
use tokio::process::{Child, ChildStdout, Command};

/// Which consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Our release `kinesis-ingester`, standalone, stdout sink.
    Ours,
    /// Our ingester reading with enhanced fan-out (latency only).
    OursFanOut,
    /// The KCL 3 peer in `bench/peers/kcl`.
    Kcl,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::OursFanOut => "ours (fan-out)",
            Kind::Kcl => "KCL",
        }
    }

    fn records_metric(self) -> &'static str {
        match self {
            Kind::Kcl => "kcl_peer_records_total",
            _ => "kinesis_ingester_records_out_total",
        }
    }

    fn shards_metric(self) -> &'static str {
        match self {
            Kind::Kcl => "kcl_peer_shards_reading",
            _ => "kinesis_ingester_shards_reading",
        }
    }
}

/// What every run shares: the binaries, moto, and settings equal on both sides.
pub struct Env {
    pub ingester: PathBuf,
    pub kcl_classpath: String,
    pub moto_endpoint: String,
    /// KCL's failoverTimeMillis: our worker lease, so that failover is compared at equal settings.
    pub kcl_failover_ms: u64,
    /// KCL's workerMetricsReporterFreqInMillis when not its default (the short form).
    pub kcl_reporter_ms: Option<u64>,
    pub dir: tempfile::TempDir,
}

/// What one consumer reads and how.
pub struct Opts<'a> {
    pub endpoint: &'a str,
    pub stream: &'a str,
    /// Fresh per run: KCL's application (so its lease table) and our checkpoint directory.
    pub app: String,
    /// Write every record to a piped stdout (latency runs), with the smallest batch age.
    pub echo: bool,
}

/// A running consumer process.
pub struct Consumer {
    pub kind: Kind,
    child: Child,
    pub pid: u32,
    port: u16,
    pub spawned: Instant,
}

fn ours_config(dir: &Path, kind: Kind, o: &Opts<'_>) -> Result<PathBuf> {
    let config = dir.join(format!("{}.yaml", o.app));
    let mode = if kind == Kind::OursFanOut {
        format!("mode: EnhancedFanOut, consumerName: {}, ", o.app)
    } else {
        "mode: Polling, ".to_owned()
    };
    let max_age = if o.echo { "10ms" } else { "1s" };
    std::fs::write(
        &config,
        format!(
            "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {{name: {app}}}\nspec:\n  stream: {{name: {stream}, region: us-east-1, endpoint: '{endpoint}'}}\n  read: {{{mode}pollInterval: 200ms, maxRecordsPerCall: 10000, startingPosition: {{type: TrimHorizon}}}}\n  sink:\n    stdout: {{}}\n    batch: {{maxRecords: 10000, maxBytes: 16777216, maxAge: {max_age}}}\n",
            app = o.app,
            stream = o.stream,
            endpoint = o.endpoint,
        ),
    )?;
    Ok(config)
}

impl Consumer {
    pub async fn start(env: &Env, kind: Kind, o: &Opts<'_>) -> Result<Self> {
        let port = free_port()?;
        let dir = env.dir.path();
        let stdout = if o.echo {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut cmd = match kind {
            Kind::Ours | Kind::OursFanOut => {
                let config = ours_config(dir, kind, o)?;
                let mut c = Command::new(&env.ingester);
                c.args(["run", "-f"])
                    .arg(&config)
                    .arg("--checkpoint-dir")
                    .arg(dir.join(format!("{}-checkpoints", o.app)))
                    .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
                    .env("RUST_LOG", "warn");
                c
            }
            Kind::Kcl => {
                let log = std::fs::File::create(dir.join(format!("{}-kcl.log", o.app)))?;
                let mut c = Command::new("java");
                c.args([
                    // JSON, not CBOR: every client speaks the same wire format.
                    "-Daws.cborEnabled=false",
                    "-Daws.disableEc2Metadata=true",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                    "-cp",
                    &env.kcl_classpath,
                    "dev.kinesisoperator.bench.KclPeer",
                    "--kinesis",
                    o.endpoint,
                    "--dynamodb",
                    &env.moto_endpoint,
                    "--stream",
                    o.stream,
                    "--app",
                    &o.app,
                    "--metrics-port",
                    &port.to_string(),
                    "--failover-ms",
                    &env.kcl_failover_ms.to_string(),
                    "--checkpoint-seconds",
                    "10",
                    "--echo",
                    if o.echo { "true" } else { "false" },
                ])
                .stderr(log);
                if let Some(ms) = env.kcl_reporter_ms {
                    c.args(["--reporter-ms", &ms.to_string()]);
                }
                c
            }
        };
        let child = cmd
            .env("AWS_ACCESS_KEY_ID", "000000000000")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(stdout)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", kind.label()))?;
        let pid = child.id().context("pid")?;
        Ok(Self {
            kind,
            child,
            pid,
            port,
            spawned: Instant::now(),
        })
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    async fn metric(&self, name: &str) -> f64 {
        match procstat::metrics(self.port).await {
            Ok(text) => procstat::value(&text, name),
            Err(_) => 0.0,
        }
    }

    pub async fn records(&self) -> f64 {
        self.metric(self.kind.records_metric()).await
    }

    pub async fn shards(&self) -> f64 {
        self.metric(self.kind.shards_metric()).await
    }

    /// Waits until `n` shards are being read; returns the time since the process was spawned.
    pub async fn wait_shards(&mut self, n: usize, timeout: Duration) -> Result<Duration> {
        self.wait(self.kind.shards_metric(), n as f64, timeout, true)
            .await?;
        Ok(self.spawned.elapsed())
    }

    async fn wait(
        &mut self,
        name: &str,
        at_least: f64,
        timeout: Duration,
        progress: bool,
    ) -> Result<()> {
        let start = Instant::now();
        let mut last_report = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) while waiting for {name}",
                    self.kind.label()
                );
            }
            let v = self.metric(name).await;
            if v >= at_least {
                return Ok(());
            }
            if progress && last_report.elapsed() >= Duration::from_secs(5) {
                println!(
                    "    ... {} {name} = {v:.0} of {at_least:.0} ({:.0}s)",
                    self.kind.label(),
                    start.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} {name} did not reach {at_least} within {timeout:?}",
                    self.kind.label()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn cpu(&self) -> Result<f64> {
        cpu_seconds(self.pid)
    }

    pub fn rss_kib(&self) -> Result<f64> {
        status_kib(self.pid, "VmRSS")
    }

    pub fn peak_rss_kib(&self) -> Result<f64> {
        status_kib(self.pid, "VmHWM")
    }

    /// SIGKILL by pid, then reap.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// moto's server on a loopback port: DynamoDB for the KCL's lease tables. Stopped by pid on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start(server: &Path, log: &Path) -> Result<Self> {
        let port = free_port()?;
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting moto_server")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("moto_server did not listen on 127.0.0.1:{port} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

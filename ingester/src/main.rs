//! `kinesis-ingester`: reads a Kinesis data stream as a `KinesisIngester` resource describes it.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use kinesis_client::SdkKinesis;
use kinesis_ingester::{
    config,
    fleet::{self, FleetOptions},
    run::{RunOptions, RunOutcome},
};
use kinesis_ingester_api::{Duration, FleetTimings, KinesisIngesterSpec};
use kinesis_observability::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;

/// Reads every shard of a Kinesis data stream, decodes the records and delivers them to a sink.
/// Its configuration is a KinesisIngester resource: the same YAML you would `kubectl apply`.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read the stream and deliver its records until SIGTERM or SIGINT, then deliver what was
    /// read, store the checkpoints and exit 0.
    Run(Box<RunArgs>),
    /// Check a KinesisIngester file without reading anything: report every invalid field.
    Validate {
        /// Path of the KinesisIngester YAML file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Path of the KinesisIngester YAML file (standalone mode).
    #[arg(short = 'f', long = "file", required_unless_present = "fleet")]
    file: Option<PathBuf>,
    /// Run as a worker of a kinesis-operator fleet: the spec, the shards and the checkpoints
    /// come from the Kubernetes API (KinesisIngester, its shard table and this pod's KinesisWorker).
    #[arg(long, conflicts_with_all = ["file", "shards"], requires = "ingester")]
    fleet: bool,
    /// Fleet: namespace of the KinesisIngester.
    #[arg(long, env = "POD_NAMESPACE", default_value = "")]
    namespace: String,
    /// Fleet: name of the KinesisIngester.
    #[arg(long)]
    ingester: Option<String>,
    /// Fleet: this pod's name, which is also its KinesisWorker's name.
    #[arg(long, env = "POD_NAME", default_value = "")]
    pod_name: String,
    /// Fleet: this pod's UID.
    #[arg(long, env = "POD_UID", default_value = "")]
    pod_uid: String,
    /// Fleet: how often the worker writes its status (at least 5s: 0.2 writes/s per worker).
    #[arg(long, default_value = "6s")]
    report_interval: Duration,
    /// Fleet: stop reading when no status write succeeded for this long (at least twice
    /// --report-interval).
    #[arg(long, default_value = "12s")]
    self_fence_after: Duration,
    /// Fleet: the operator's --worker-lease (longer than --self-fence-after plus 1s); the
    /// operator passes its own.
    #[arg(long, default_value = "14s")]
    worker_lease: Duration,
    /// Fleet: where the scratch volume (`workers.scratch`, mounted at /var/lib/kinesis-ingester
    /// in a worker pod) is on this machine; set it to run a worker outside a pod.
    #[arg(long, env = "KINESIS_INGESTER_SCRATCH_DIR", default_value = kinesis_ingester_api::bounds::SCRATCH_MOUNT_PATH)]
    scratch_dir: PathBuf,
    /// Read only these shards (comma-separated shard ids); default: every shard.
    #[arg(long, value_delimiter = ',')]
    shards: Vec<String>,
    /// Directory for checkpoints; a restart resumes after the last delivered record.
    #[arg(
        long,
        env = "KINESIS_INGESTER_CHECKPOINT_DIR",
        default_value = "checkpoints"
    )]
    checkpoint_dir: PathBuf,
    /// How often delivered positions are checkpointed (also at shard end and shutdown).
    #[arg(long, default_value = "5s")]
    checkpoint_interval: Duration,
    /// Time allowed after SIGTERM to deliver what was read and checkpoint it.
    #[arg(long, default_value = "30s")]
    shutdown_timeout: Duration,
    /// Address for /metrics, /healthz and /readyz; "off" disables it.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: String,
    /// GetRecords pages buffered between the shard readers and the sink; bounds memory.
    /// Overrides the spec's `read.bufferPages` (16 by default).
    #[arg(long)]
    buffer_pages: Option<usize>,
    /// Log format on stderr.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "KINESIS_INGESTER_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

async fn run(args: RunArgs) -> Result<RunOutcome, String> {
    let metrics_addr = match args.metrics_addr.as_str() {
        "off" | "" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|e| {
            format!("--metrics-addr {addr:?}: {e}; use HOST:PORT such as 127.0.0.1:9464, or off")
        })?),
    };
    let options = RunOptions {
        checkpoint_dir: args.checkpoint_dir,
        only_shards: (!args.shards.is_empty())
            .then(|| args.shards.into_iter().collect::<HashSet<_>>()),
        checkpoint_interval: args.checkpoint_interval.get(),
        shutdown_timeout: args.shutdown_timeout.get(),
        channel_capacity: args.buffer_pages,
        metrics_addr,
    };
    let shutdown = CancellationToken::new();
    if args.fleet {
        let fleet = FleetOptions {
            namespace: args.namespace,
            ingester: args.ingester.unwrap_or_default(),
            pod_name: args.pod_name,
            pod_uid: args.pod_uid,
            timings: FleetTimings::new(
                args.report_interval.get(),
                args.self_fence_after.get(),
                args.worker_lease.get(),
            )
            .map_err(|e| e.to_string())?,
            scratch_dir: args.scratch_dir,
        };
        fleet.validate().map_err(|e| e.to_string())?;
        tokio::spawn(signals(shutdown.clone()));
        let Some(started) = fleet::connect(&fleet, &shutdown)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(RunOutcome::Clean);
        };
        let api = Arc::new(client(&started.ingester.spec).await?);
        return kinesis_ingester::run::run_fleet(started, &fleet, api, options, shutdown)
            .await
            .map_err(|e| e.to_string());
    }
    let file = args.file.unwrap_or_default();
    let ingester = config::load(&file).map_err(|e| e.to_string())?;
    kinesis_ingester::sink::preflight(&ingester.spec)
        .await
        .map_err(|e| e.to_string())?;
    let api = Arc::new(client(&ingester.spec).await?);
    tokio::spawn(signals(shutdown.clone()));
    kinesis_ingester::run::run(&ingester, api, options, shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// The Kinesis client for `stream`; an error naming the field when no region can be found,
/// since every call would fail.
async fn client(spec: &KinesisIngesterSpec) -> Result<SdkKinesis, String> {
    let network = kinesis_ingester::net::load(spec).map_err(|e| e.to_string())?;
    let options = kinesis_client::ClientOptions {
        network,
        ..Default::default()
    };
    let api = SdkKinesis::from_spec_with(&spec.stream, options).await;
    if api.region().is_none() {
        return Err("spec.stream.region: no AWS region; set spec.stream.region, name the stream by its ARN, or set AWS_REGION".into());
    }
    Ok(api)
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    shutdown.cancel();
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { file } => match config::load(&file) {
            Ok(_) => {
                println!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            telemetry::init(args.log_format);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(*args)) {
                Ok(RunOutcome::Clean) => ExitCode::SUCCESS,
                Ok(RunOutcome::DeadlineExceeded) => {
                    eprintln!(
                        "error: the shutdown deadline passed before everything read was delivered; it will be read again on the next start"
                    );
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

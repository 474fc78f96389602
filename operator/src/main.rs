//! `kinesis-operator`: the Kubernetes controller for KinesisIngester resources.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use kinesis_ingester_api::{Duration, FleetTimings};
use kinesis_operator::{
    allow::{AllowLists, Patterns},
    context::Settings,
    controller::{self, RunConfig, Stopped},
    leader::LeaderConfig,
    metrics::{self, Metrics},
};
use kinesis_protocol::handoff::Expiries;
use tokio_util::sync::CancellationToken;

/// Runs fleets of Kinesis Data Streams ingesters on Kubernetes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition, e.g. `kinesis-operator crd | kubectl apply -f -`.
    Crd,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// This replica's name (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "kinesis-operator")]
    identity: String,
    /// Watch only this namespace (a namespaced install; RBAC then needs only a Role there).
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Run without leader election (only safe with one replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Address of /metrics, /healthz and /readyz, or `off`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// Worker image when `spec.workers.image` is unset.
    #[arg(long, env = "WORKER_IMAGE")]
    worker_image: Option<String>,
    /// A worker whose object has not changed for this long loses its shards.
    #[arg(long, default_value = "14s")]
    worker_lease: Duration,
    /// Workers write their report this often (at least 5s: 0.2 API writes/s per worker).
    #[arg(long, default_value = "6s")]
    report_interval: Duration,
    /// A worker that could not report for this long stops reading (below --worker-lease).
    #[arg(long, default_value = "12s")]
    self_fence_after: Duration,
    /// A draining shard is fenced if not released within this.
    #[arg(long, default_value = "60s")]
    drain_expiry: Duration,
    /// A newly assigned shard is fenced if its worker does not confirm it within this.
    #[arg(long, default_value = "60s")]
    start_expiry: Duration,
    /// Role ARNs (glob patterns, `*` any run of characters) that `spec.stream.roleArn` may name;
    /// none by default, `*` for any.
    #[arg(long, value_delimiter = ',')]
    allowed_role_arns: Vec<String>,
    /// Account ids that `spec.stream.arn` may name (patterns); none by default, `*` for any.
    #[arg(long, value_delimiter = ',')]
    allowed_account_ids: Vec<String>,
    /// Endpoints (patterns, e.g. `https://vpce-*.kinesis.us-east-1.vpce.amazonaws.com`) that
    /// `spec.stream.endpoint` may name; none by default (the AWS endpoint only), `*` for any.
    #[arg(long, value_delimiter = ',')]
    allowed_endpoints: Vec<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: kinesis_observability::telemetry::LogFormat,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => {
            for (_, yaml) in kinesis_ingester_api::all_crds() {
                print!("---\n{yaml}");
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run(*args)),
            Err(e) => {
                eprintln!("kinesis-operator: cannot start the async runtime: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run(args: RunArgs) -> ExitCode {
    kinesis_observability::telemetry::init(args.log_format);
    // The same rules every worker checks, so a setting accepted here starts every worker.
    let timings = match FleetTimings::new(
        args.report_interval.get(),
        args.self_fence_after.get(),
        args.worker_lease.get(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kinesis-operator: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "kinesis-operator: no Kubernetes API: {e}; run in a cluster or set KUBECONFIG"
            );
            return ExitCode::FAILURE;
        }
    };
    let mut settings = Settings {
        worker_lease: args.worker_lease.get(),
        // Lag-only changes are written once per worker report, so the lag in status is at most
        // one report interval older than the reports it comes from.
        status_interval: args.report_interval.get(),
        expiries: Expiries {
            drain: args.drain_expiry.get(),
            start: args.start_expiry.get(),
            gone: args.worker_lease.get(),
        },
        allow: AllowLists {
            role_arns: Patterns::new(args.allowed_role_arns),
            account_ids: Patterns::new(args.allowed_account_ids),
            endpoints: Patterns::new(args.allowed_endpoints),
        },
        ..Settings::default()
    };
    if let Some(image) = args.worker_image {
        settings.workload.default_image = image;
    }
    settings.workload.worker_args = timings.worker_args();
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = CancellationToken::new();
    if args.metrics_addr != "off" {
        let addr: SocketAddr = match args.metrics_addr.parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!(
                    "kinesis-operator: --metrics-addr {}: {e}",
                    args.metrics_addr
                );
                return ExitCode::from(2);
            }
        };
        match metrics::serve(addr, metrics.clone(), ready.clone(), stop.clone()).await {
            Ok(bound) => tracing::info!(%bound, "serving /metrics, /healthz and /readyz"),
            Err(e) => {
                eprintln!(
                    "kinesis-operator: cannot serve metrics on {addr}: {e}; pick another --metrics-addr"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        signal_stop.cancel();
    });
    let identity = format!("{}-{:08x}", args.identity, fastrand::u32(..));
    let config = RunConfig {
        leader: (!args.no_leader_election)
            .then(|| LeaderConfig::new(args.namespace.clone(), identity.clone())),
        settings,
        instance: identity,
        watch_namespace: args.watch_namespace.filter(|n| !n.is_empty()),
    };
    let outcome = controller::run(client, config, metrics, ready, stop.clone()).await;
    stop.cancel();
    match outcome {
        Stopped::Shutdown => ExitCode::SUCCESS,
        Stopped::LostLeadership => ExitCode::FAILURE,
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

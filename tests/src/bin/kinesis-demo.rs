//! `make demo`: the quickstart on a laptop. Inside the local control plane and Kinesis emulator started by `tests/env/with-env.sh`, it installs the Helm chart, runs the operator and worker pods as local processes, creates a stream, applies an example ingester, produces records and shows the ingester's lag falling to 0 while records arrive in the sink, until Ctrl-C.
//!
//! `DEMO_SECONDS=N` stops it after N seconds (used to check the demo non-interactively).
//!
//! On the real node (`make demo REAL_NODE=1`, which exports `REAL_NODE_IP`), the operator and the
//! workers run as containers from the images `make images` built, and the sink is an HTTP server
//! on the node's bridge address; otherwise they run as local processes (the kwok stand-in). The
//! demo says which in its first lines.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use kinesis_ingester_api::{KinesisIngester, bounds::SCRATCH_MOUNT_PATH};
use kinesis_testkit::{
    chart::run,
    create_stream,
    fleet::{Kubelet, LOOPBACK_ENDPOINTS},
    kinesis_client, kube_client,
    ledger::RecordingSink,
    wait_until,
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};

const OPERATOR_NS: &str = "kinesis-system";
const DEMO_NS: &str = "demo";
const PRODUCE_FOR: Duration = Duration::from_secs(60);
/// The ingester is applied once this much data waits, so the lag starts high and falls.
const BACKLOG: Duration = Duration::from_secs(15);

fn step(n: u32, what: &str) {
    println!("\n==> [{n}/5] {what}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::main]
async fn main() -> ExitCode {
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ndemo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<()> {
    let state = PathBuf::from(std::env::var("TEST_ENV_STATE").context(
        "run the demo with `make demo`, which starts the local control plane and the emulator",
    )?);
    let client = kube_client().await?;
    let kinesis = kinesis_client()?;
    let real_node: Option<std::net::IpAddr> = match std::env::var("REAL_NODE_IP") {
        Ok(ip) => Some(ip.parse().context("REAL_NODE_IP")?),
        Err(_) => None,
    };
    match real_node {
        Some(ip) => println!(
            "real node: the operator and workers run as containers (kubelet, containerd, runc) on the node at {ip}"
        ),
        None => println!(
            "no real node (make demo REAL_NODE=1 starts one, as root): the operator and workers run as local processes for the kwok pods"
        ),
    }

    step(
        1,
        "creating a 4-shard Kinesis stream in the emulator and producing 200 records/s into it",
    );
    let stream = create_stream(&kinesis, "orders", 4).await?;
    let produced = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (produced, stop, kinesis, stream) = (
            produced.clone(),
            stop.clone(),
            kinesis.clone(),
            stream.clone(),
        );
        tokio::spawn(async move {
            let start = Instant::now();
            while start.elapsed() < PRODUCE_FOR && !stop.load(Ordering::Relaxed) {
                let from = produced.load(Ordering::Relaxed);
                let mut req = kinesis.put_records().stream_name(&stream);
                for i in from..from + 20 {
                    let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                        .partition_key(format!("customer-{}", i % 16))
                        .data(Blob::new(format!(
                            "{{\"order\":{i},\"customer\":{}}}",
                            i % 16
                        )))
                        .build();
                    if let Ok(e) = entry {
                        req = req.records(e);
                    }
                }
                if req.send().await.is_ok() {
                    produced.store(from + 20, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let backlog_since = Instant::now();
    println!(
        "    stream {stream}; the producer runs for {} s",
        PRODUCE_FOR.as_secs()
    );

    step(
        2,
        "installing the Helm chart into namespace kinesis-system (CRDs, RBAC, operator Deployment)",
    );
    let chart = repo().join("charts/kinesis-operator");
    // The emulator is a custom endpoint, which the chart's defaults refuse.
    let endpoints = match real_node {
        Some(ip) => format!("allowList.endpoints=[\"http://{ip}:*\"]"),
        None => format!("allowList.endpoints=[\"{LOOPBACK_ENDPOINTS}\"]"),
    };
    let pull = if real_node.is_some() {
        "Never"
    } else {
        "IfNotPresent"
    };
    run(Command::new("kubectl").args(["create", "namespace", OPERATOR_NS]))?;
    run(Command::new("kubectl").args(["create", "namespace", DEMO_NS]))?;
    let mut helm = Command::new("helm");
    helm.args(["install", "kinesis-operator"])
        .arg(&chart)
        .args(["--namespace", OPERATOR_NS])
        .args([
            "--set",
            "replicas=1",
            "--set",
            &format!("image.pullPolicy={pull}"),
        ])
        .args(["--set-json", &endpoints]);
    if real_node.is_some() {
        // Containers get static keys from a Secret in each namespace (no IRSA or Pod Identity
        // here); the emulator takes any key.
        for ns in [OPERATOR_NS, DEMO_NS] {
            run(Command::new("kubectl")
                .args(["create", "secret", "generic", AWS_SECRET, "-n", ns])
                .args(AWS_KEYS.map(|(k, v)| format!("--from-literal={k}={v}"))))?;
        }
        helm.args([
            "--set-json",
            &format!("envFrom=[{{\"secretRef\":{{\"name\":\"{AWS_SECRET}\"}}}}]"),
        ]);
    }
    run(&mut helm)?;

    let http_sink = RecordingSink::new();
    let mut stand_ins = None;
    if let Some(ip) = real_node {
        step(3, "waiting for the operator container on the real node");
        run(Command::new("kubectl")
            .args(["rollout", "status", "deployment", "-n", OPERATOR_NS])
            .args([
                "-l",
                "app.kubernetes.io/name=kinesis-operator",
                "--timeout=180s",
            ]))?;
        println!(
            "    the operator pod is Ready (kubectl logs -n {OPERATOR_NS} deploy/kinesis-operator)"
        );
        let addr = http_sink.listen_on(ip, "demo").await?;
        step(
            4,
            "applying examples/polling-stdout.yaml (with an HTTP sink on the host) once a 15 s backlog has built up",
        );
        tokio::time::sleep(BACKLOG.saturating_sub(backlog_since.elapsed())).await;
        let ki = example(&stream, &Sink::Http(format!("http://{addr}/")), ip)?;
        Api::<KinesisIngester>::namespaced(client.clone(), DEMO_NS)
            .patch(
                "orders",
                &PatchParams::apply("kinesis-demo").force(),
                &Patch::Apply(&ki),
            )
            .await
            .context("applying the example ingester")?;
        wait_until(
            "the worker StatefulSet",
            Duration::from_secs(60),
            || async {
                Ok(run(Command::new("kubectl").args([
                    "get",
                    "statefulset",
                    "orders-worker",
                    "-n",
                    DEMO_NS,
                ]))
                .ok())
            },
        )
        .await?;
        println!(
            "    {} records are waiting; the ingester reads from TRIM_HORIZON and POSTs to {addr}",
            produced.load(Ordering::Relaxed)
        );
    } else {
        step(
            3,
            "running the operator pod and the worker pods as local processes (kwok nodes run no containers)",
        );
        let operator = Kubelet::start_for(
            client.clone(),
            &state,
            OPERATOR_NS,
            "app.kubernetes.io/name=kinesis-operator",
        )?;
        let workers = Kubelet::start(client.clone(), &state, DEMO_NS)?;
        let running = wait_until("the operator process", Duration::from_secs(60), || async {
            Ok((!operator.running().is_empty()).then(|| operator.running()))
        })
        .await?;
        println!(
            "    operator pod {} is running (logs in {})",
            running.join(", "),
            state.display()
        );

        step(
            4,
            "applying examples/polling-stdout.yaml (with a file sink) once a 15 s backlog has built up",
        );
        tokio::time::sleep(BACKLOG.saturating_sub(backlog_since.elapsed())).await;
        let sink = state.join("orders.ndjson");
        let ki = example(
            &stream,
            &Sink::File(sink.clone()),
            std::net::Ipv4Addr::LOCALHOST.into(),
        )?;
        Api::<KinesisIngester>::namespaced(client.clone(), DEMO_NS)
            .patch(
                "orders",
                &PatchParams::apply("kinesis-demo").force(),
                &Patch::Apply(&ki),
            )
            .await
            .context("applying the example ingester")?;
        println!(
            "    {} records are waiting; the ingester reads from TRIM_HORIZON into {}",
            produced.load(Ordering::Relaxed),
            sink.display()
        );
        stand_ins = Some((operator, workers));
    }
    let sink = state.join("orders.ndjson");

    step(
        5,
        "watching `kubectl get kinesisingesters -n demo` and the sink (Ctrl-C to stop)",
    );
    let limit = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let table = run(Command::new("kubectl").args(["get", "kinesisingesters", "-n", DEMO_NS]))
            .unwrap_or_else(|e| format!("{e:#}\n"));
        let (delivered, last) = delivered(real_node.is_some(), &http_sink, &sink);
        println!(
            "\n[{:>3}s] produced {:>5}, delivered to the sink {:>5}   last: {last}\n{}",
            started.elapsed().as_secs(),
            produced.load(Ordering::Relaxed),
            delivered,
            table.trim_end()
        );
        if limit.is_some_and(|l| started.elapsed() >= l) {
            break;
        }
        tokio::select! {
            _ = &mut interrupted => { println!("\nCtrl-C: stopping"); break; }
            () = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = producer.await;
    println!(
        "stopping the workers (they release their shards and store final checkpoints) and the operator"
    );
    if let Some((operator, workers)) = stand_ins {
        workers.shutdown().await;
        operator.shutdown().await;
    } else {
        run(Command::new("kubectl").args([
            "delete",
            "kinesisingester",
            "orders",
            "-n",
            DEMO_NS,
            "--wait=true",
        ]))?;
    }
    let (delivered, _) = delivered(real_node.is_some(), &http_sink, &sink);
    println!(
        "done: {} records produced, {delivered} delivered",
        produced.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Static keys for the containers on the real node, from a Secret named by the chart's
/// `envFrom` and the ingester's `workers.awsCredentials`.
const AWS_KEYS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "000000000000"),
    ("AWS_SECRET_ACCESS_KEY", "test-secret"),
    ("AWS_REGION", "us-east-1"),
];
const AWS_SECRET: &str = "aws-keys";

enum Sink {
    /// On the workers' scratch volume, which the local kubelet keeps in the state directory.
    File(PathBuf),
    /// An HTTP server on the host.
    Http(String),
}

/// Records delivered so far and the last one, from the HTTP sink or the sink file.
fn delivered(http: bool, sink: &RecordingSink, file: &Path) -> (usize, String) {
    let fmt = |data: &str, shard: &str| format!("{data} (shard {shard})");
    if http {
        let d = sink.deliveries();
        let last = d
            .last()
            .map(|d| fmt(&d.payload, &d.shard))
            .unwrap_or_default();
        return (d.len(), last);
    }
    let lines = std::fs::read_to_string(file).unwrap_or_default();
    let last = lines
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            fmt(
                v["data"].as_str().unwrap_or_default(),
                v["shardId"].as_str().unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    (lines.lines().count(), last)
}

/// The example a user would apply, pointed at the emulator and a file sink.
fn example(stream: &str, sink: &Sink, node_ip: std::net::IpAddr) -> Result<KinesisIngester> {
    let text = std::fs::read_to_string(repo().join("examples/polling-stdout.yaml"))?;
    let mut v: serde_json::Value = serde_saphyr::from_str(&text)?;
    v["metadata"] = serde_json::json!({"name": "orders", "namespace": DEMO_NS});
    // Pods on the real node reach the emulator on the host through the node's bridge address.
    let endpoint = std::env::var("KINESIS_ENDPOINT")?.replace("127.0.0.1", &node_ip.to_string());
    v["spec"]["stream"] = serde_json::json!({
        "name": stream,
        "region": "us-east-1",
        "endpoint": endpoint,
    });
    v["spec"]["sink"] = match sink {
        // Workers write on their scratch volume, which the local kubelet keeps in the
        // directory of `path`.
        Sink::File(path) => {
            let file = Path::new(SCRATCH_MOUNT_PATH).join(path.file_name().unwrap_or_default());
            serde_json::json!({"file": {"path": file}, "batch": {"maxAge": "200ms"}})
        }
        Sink::Http(url) => serde_json::json!({"http": {"url": url}, "batch": {"maxAge": "200ms"}}),
    };
    // Small reads, so catching up on the backlog takes a few seconds and the lag visibly falls.
    v["spec"]["read"]["pollInterval"] = serde_json::json!("500ms");
    v["spec"]["read"]["maxRecordsPerCall"] = serde_json::json!(25);
    v["spec"]["workers"] = serde_json::json!({"shardsPerWorker": 2, "scratch": {"size": "64Mi"}});
    if matches!(sink, Sink::Http(_)) {
        // On the real node (the HTTP sink is its sink): keys from the demo namespace's Secret.
        v["spec"]["workers"]["awsCredentials"] = serde_json::json!({"secretName": AWS_SECRET});
    }
    Ok(serde_json::from_value(v)?)
}

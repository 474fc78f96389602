//! Fleet mode with an HTTP sink that refuses every connection: the worker reports the shard's delivery stuck (with the `connect` category) and `/readyz` turns false within the threshold, then both recover once the sink listens.

#[macro_use]
mod common;

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use axum::{Router, extract::State, routing::post};
use common::*;
use kinesis_ingester_api::{
    AssignedShard, KinesisIngester, KinesisShardAssignment, KinesisShardAssignmentSpec,
    KinesisWorker, KinesisWorkerSpec, WorkerShard,
};
use kinesis_testkit::{TestNamespace, install_kinesis_ingester_crd, kube_client};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use tokio::process::Command;

/// The worker's threshold with 5 s reports: 30 s.
const STUCK_AFTER: Duration = Duration::from_secs(30);
/// Stuck must show within the threshold, one report interval, and a margin for startup.
const STUCK_WITHIN: Duration = Duration::from_secs(60);
/// The sink retries at most 30 s apart; then one report.
const RECOVER_WITHIN: Duration = Duration::from_secs(60);

#[derive(Clone, Default)]
struct Sink {
    lines: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(s): State<Sink>, body: String) -> &'static str {
    s.lines
        .lock()
        .expect("lines")
        .extend(body.lines().map(str::to_owned));
    "ok"
}

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

#[tokio::test]
async fn a_refusing_sink_is_reported_stuck_and_not_ready_then_recovers() -> Result<()> {
    let sink_addr = closed_port()?;
    let metrics_addr = closed_port()?;
    let url = format!("http://{sink_addr}/");

    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "sinkdown").await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, 1).await?;
    let shard = open_shards(&kinesis, &stream)
        .await?
        .remove(0)
        .shard_id()
        .to_owned();
    let endpoint = std::env::var("KINESIS_ENDPOINT")?;
    let name = "orders";
    let worker_name = format!("{name}-worker-0");
    let ingester: KinesisIngester = serde_json::from_value(serde_json::json!({
        "apiVersion": "kinesis-operator.dev/v1alpha1",
        "kind": "KinesisIngester",
        "metadata": {"name": name, "namespace": ns.name()},
        "spec": {
            "stream": {"name": stream, "region": "us-east-1", "endpoint": endpoint},
            "read": {"startingPosition": {"type": "TrimHorizon"}, "pollInterval": "200ms"},
            "sink": {"http": {"url": url, "timeout": "5s"}, "batch": {"maxRecords": 50, "maxAge": "100ms"}},
        },
    }))?;
    let ingesters: Api<KinesisIngester> = Api::namespaced(client.clone(), ns.name());
    let uid = ingesters
        .create(&PostParams::default(), &ingester)
        .await?
        .metadata
        .uid
        .context("uid")?;
    let workers: Api<KinesisWorker> = Api::namespaced(client.clone(), ns.name());
    let mut worker = KinesisWorker::new(
        &worker_name,
        KinesisWorkerSpec {
            ingester_uid: uid.clone(),
            fences: vec![],
        },
    );
    worker.metadata.namespace = Some(ns.name().to_owned());
    workers.create(&PostParams::default(), &worker).await?;
    let table = KinesisShardAssignment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.name().to_owned()),
            ..ObjectMeta::default()
        },
        spec: KinesisShardAssignmentSpec {
            ingester_uid: uid,
            shards: vec![AssignedShard {
                shard_id: shard.clone(),
                parents: vec![],
                starting_hash_key: None,
                ending_hash_key: None,
                owner: Some(worker_name.clone()),
                epoch: 1,
                draining: false,
                start_after: None,
                start_at_timestamp: None,
            }],
            ..KinesisShardAssignmentSpec::default()
        },
    };
    Api::<KinesisShardAssignment>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &table)
        .await?;

    let _child = Command::new(env!("CARGO_BIN_EXE_kinesis-ingester"))
        .args(["run", "--fleet", "--ingester", name])
        .args(["--metrics-addr", &metrics_addr.to_string()])
        .args(["--report-interval", "5s", "--self-fence-after", "10s"])
        .args(["--worker-lease", "14s"])
        .env("KUBECONFIG", std::env::var("KUBECONFIG")?)
        .env("POD_NAMESPACE", ns.name())
        .env("POD_NAME", &worker_name)
        .env("POD_UID", "pod-uid-1")
        .env("AWS_ACCESS_KEY_ID", "000000000000")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let entry = || async {
        let w = workers.get(&worker_name).await?;
        let e: Option<WorkerShard> = w.status.and_then(|s| s.entry(&shard, 1).cloned());
        Ok::<_, anyhow::Error>(e)
    };
    let http = reqwest::Client::new();
    let readyz = || async {
        let r = http
            .get(format!("http://{metrics_addr}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        Ok::<_, anyhow::Error>(r.status().is_success())
    };
    wait_until("the worker ready and reading", STUCK_WITHIN, || async {
        Ok(readyz().await?.then_some(()))
    })
    .await?;

    let records: Vec<_> = (0..5)
        .map(|i| ("k".to_owned(), format!("r-{i}").into_bytes()))
        .collect();
    put(&kinesis, &stream, &records).await?;
    let put_at = Instant::now();

    let stuck = wait_until(
        "the shard reported delivery-stuck",
        STUCK_WITHIN,
        || async { Ok(entry().await?.and_then(|e| e.delivery_stuck)) },
    )
    .await?;
    assert!(
        put_at.elapsed() >= STUCK_AFTER,
        "reported stuck after {:?}, before the threshold",
        put_at.elapsed()
    );
    assert_eq!(stuck.sink_error.as_deref(), Some("connect"), "{stuck:?}");
    assert_eq!(stuck.threshold_seconds, 30);
    assert!(stuck.stalled_seconds > 30, "{stuck:?}");
    assert_eq!(
        entry().await?.and_then(|e| e.last_delivery),
        None,
        "nothing was ever delivered"
    );
    wait_until(
        "/readyz false while stuck",
        Duration::from_secs(10),
        || async { Ok((!readyz().await?).then_some(())) },
    )
    .await?;

    // The sink comes up on the refused port.
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind(sink_addr).await?;
    let app = Router::new()
        .route("/", post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let recovered = wait_until(
        "delivery recovered in the status",
        RECOVER_WITHIN,
        || async {
            Ok(entry()
                .await?
                .filter(|e| e.delivery_stuck.is_none() && e.last_delivery.is_some()))
        },
    )
    .await?;
    assert!(recovered.position.is_some(), "checkpointed once delivered");
    assert_eq!(
        sink.lines.lock().expect("lines").len(),
        5,
        "every record delivered"
    );
    wait_until("/readyz true again", Duration::from_secs(10), || async {
        Ok(readyz().await?.then_some(()))
    })
    .await?;
    Ok(())
}

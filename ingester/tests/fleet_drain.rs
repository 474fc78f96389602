//! Fleet mode, SIGTERM with a sink slower than the worker lease: the worker keeps renewing while the sink drains, and releases the shard at its final acknowledged position.

#[macro_use]
mod common;

use std::{
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{Router, extract::State, routing::post};
use common::*;
use kinesis_ingester_api::{
    AssignedShard, KinesisIngester, KinesisShardAssignment, KinesisShardAssignmentSpec,
    KinesisWorker, KinesisWorkerSpec,
};
use kinesis_testkit::{TestNamespace, install_kinesis_ingester_crd, kube_client};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);
/// Longer than the worker lease (14 s): without renewals during the drain the operator would
/// expire the worker and fence it at an older position.
const SLOW: Duration = Duration::from_secs(16);

/// An NDJSON endpoint that answers at once, or after [`SLOW`] once `slow` is set.
#[derive(Clone, Default)]
struct Sink {
    slow: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    lines: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(s): State<Sink>, body: String) -> &'static str {
    if s.slow.load(SeqCst) {
        s.in_flight.fetch_add(1, SeqCst);
        tokio::time::sleep(SLOW).await;
    }
    s.lines
        .lock()
        .expect("lines")
        .extend(body.lines().map(str::to_owned));
    "ok"
}

#[tokio::test]
async fn sigterm_keeps_renewing_while_a_slow_sink_drains_and_releases_at_the_last_record()
-> Result<()> {
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = Router::new()
        .route("/", post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "drain").await?;
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
            "sink": {"http": {"url": url, "timeout": "60s"}, "batch": {"maxRecords": 50, "maxAge": "100ms"}},
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

    let mut child = Command::new(env!("CARGO_BIN_EXE_kinesis-ingester"))
        .args([
            "run",
            "--fleet",
            "--ingester",
            name,
            "--metrics-addr",
            "off",
        ])
        .args(["--report-interval", "5s", "--self-fence-after", "10s"])
        .args(["--worker-lease", "14s", "--shutdown-timeout", "40s"])
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
    let status = || async {
        let w = workers.get(&worker_name).await?;
        Ok::<_, anyhow::Error>(w.status.unwrap_or_default())
    };

    let records = |from: usize, to: usize| {
        (from..to)
            .map(|i| ("k".to_owned(), format!("r-{i}").into_bytes()))
            .collect::<Vec<_>>()
    };
    put(&kinesis, &stream, &records(0, 5)).await?;
    wait_until("the first records delivered", WAIT, || async {
        Ok((sink.lines.lock().expect("lines").len() == 5).then_some(()))
    })
    .await?;

    // The sink turns slow; the next batch is in flight when SIGTERM comes.
    sink.slow.store(true, SeqCst);
    put(&kinesis, &stream, &records(5, 10)).await?;
    wait_until("a slow request in flight", WAIT, || async {
        Ok((sink.in_flight.load(SeqCst) > 0).then_some(()))
    })
    .await?;
    let before = status().await?.renew_time;
    let pid = child.id().context("child pid")?;
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?
            .success()
    );

    // While the slow request is still running, the worker renews its status: the lease never
    // lapses during a clean stop.
    wait_until("a status write during the drain", WAIT, || async {
        let s = status().await?;
        let drained = sink.lines.lock().expect("lines").len() == 10;
        anyhow::ensure!(
            !drained || s.renew_time != before,
            "the sink drained before any renewal: the status writer stopped at SIGTERM"
        );
        Ok((s.renew_time != before && !s.stopped).then_some(()))
    })
    .await?;

    let exit = tokio::time::timeout(WAIT, child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "exits 0 after SIGTERM");
    // Records put after the reader's last page before SIGTERM are not read: they stay for the
    // next owner. What was read is delivered once, the slow batch included.
    let lines = lines_of(&sink);
    let got = payloads(&lines);
    let want: Vec<String> = (0..got.len()).map(|i| format!("r-{i}")).collect();
    assert_eq!(got, want, "a prefix, in order, each once");
    assert!(
        got.len() > 5,
        "the slow batch was delivered, not dropped: {got:?}"
    );
    let s = status().await?;
    assert!(s.stopped, "status.stopped");
    let entry = s.entry(&shard, 1).context("the shard's entry")?;
    assert!(entry.released, "released");
    let last = lines
        .last()
        .and_then(|l| l["sequenceNumber"].as_str())
        .map(str::to_owned);
    assert_eq!(
        entry.position.as_ref().map(|p| p.sequence.clone()),
        last,
        "released at the last delivered record"
    );
    Ok(())
}

fn lines_of(sink: &Sink) -> Vec<serde_json::Value> {
    sink.lines
        .lock()
        .expect("lines")
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

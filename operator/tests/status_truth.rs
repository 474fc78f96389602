//! Status that cannot lie: a fleet whose workers cannot read Kinesis, or cannot deliver, says so in
//! `kubectl get ki -o wide` and in its conditions, naming the error, and says Ready again once it
//! works. Real failures only: worker processes with no AWS credentials at all (the default on EKS
//! without IRSA or Pod Identity); Kinesis answering AccessDeniedException, served by an HTTP
//! proxy in front of kinesis-local that the SDK parses like the real service's answer; and an
//! HTTP sink whose port refuses connections until a server starts on it.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{body::Bytes, extract::State, http::HeaderMap, response::IntoResponse};
use kinesis_ingester_api::KinesisIngester;
use kinesis_testkit::{
    TestNamespace, create_stream,
    fleet::{Kubelet, OperatorProcess, install_operator_rbac},
    install_kinesis_ingester_crd, kinesis_client, kube_client, wait_until,
};
use kube::{Api, Client, api::PostParams};

const NAME: &str = "reads";
/// The worker reports reads failing for 10 s, once per 6 s report: well within this.
const DEADLINE: Duration = Duration::from_secs(120);

/// An ingester on a 1-shard stream read through `endpoint`, delivering to stdout.
async fn ingester(client: &Client, ns: &str, stream: &str, endpoint: &str) -> Result<()> {
    ingester_with_sink(client, ns, stream, endpoint, "{stdout: {}}").await
}

/// The same with `sink` (flow YAML).
async fn ingester_with_sink(
    client: &Client,
    ns: &str,
    stream: &str,
    endpoint: &str,
    sink: &str,
) -> Result<()> {
    let ki: KinesisIngester = serde_saphyr::from_str(&format!(
        "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: {NAME}}}
spec:
  stream: {{name: {stream}, region: us-east-1, endpoint: '{endpoint}'}}
  read: {{startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms}}
  sink: {sink}
"
    ))?;
    Api::<KinesisIngester>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ki)
        .await
        .context("creating the KinesisIngester")?;
    Ok(())
}

/// Waits until condition `type_` has `status` and `reason`, and returns its message.
async fn condition(
    client: &Client,
    ns: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> Result<String> {
    let api = Api::<KinesisIngester>::namespaced(client.clone(), ns);
    wait_until(&format!("{type_}={status} {reason}"), DEADLINE, || async {
        let ki = api.get(NAME).await?;
        Ok(ki
            .status
            .iter()
            .flat_map(|s| s.conditions.iter())
            .find(|c| c.type_ == type_ && c.status == status && c.reason == reason)
            .map(|c| c.message.clone()))
    })
    .await
}

/// `kubectl` with `args`, as a user would run it; prints and returns what it printed.
fn kubectl(args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    println!("$ kubectl {}\n{text}", args.join(" "));
    Ok(text)
}

/// The value of `column` in the one row of a `kubectl get` table.
fn column(table: &str, column: &str) -> Option<String> {
    let mut lines = table.lines();
    let header = lines.next()?;
    let row = lines.next()?;
    let start = header.find(column)?;
    let end = header[start..]
        .find(|c: char| c.is_whitespace())
        .map(|n| {
            let rest = &header[start + n..];
            start + n + rest.len() - rest.trim_start().len()
        })
        .unwrap_or(header.len());
    Some(row.get(start..end.min(row.len()))?.trim().to_owned())
}

#[tokio::test]
async fn workers_without_aws_credentials_are_not_ready_and_say_why() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "no-credentials").await?;
    install_operator_rbac(&client, ns.name()).await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "no-credentials", 1).await?;
    let endpoint = std::env::var("KINESIS_ENDPOINT")?;
    ingester(&client, ns.name(), &stream, &endpoint).await?;
    let dir = tempfile::tempdir()?;
    // The operator has credentials (it lists the shards); the workers have none.
    let _operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let _kubelet = Kubelet::start_without_aws_credentials(client.clone(), dir.path(), ns.name())?;

    let ready = condition(&client, ns.name(), "Ready", "False", "ReadErrors").await?;
    for wanted in [
        "1 shards cannot be read",
        "shardId-000000000000",
        "credentials",
    ] {
        assert!(ready.contains(wanted), "{wanted:?} not in {ready}");
    }
    let degraded = condition(&client, ns.name(), "Degraded", "True", "ReadErrors").await?;
    assert!(degraded.contains("credentials"), "{degraded}");

    let table = kubectl(&["get", "ki", NAME, "-n", ns.name(), "-o", "wide"])?;
    assert_eq!(column(&table, "READY").as_deref(), Some("False"), "{table}");
    assert_eq!(
        column(&table, "REASON").as_deref(),
        Some("ReadErrors"),
        "{table}"
    );
    assert_eq!(
        column(&table, "DEGRADED").as_deref(),
        Some("ReadErrors"),
        "{table}"
    );
    assert_eq!(
        column(&table, "LAG").as_deref(),
        Some(""),
        "an unread shard's lag is unknown, never 0: {table}"
    );
    let described = kubectl(&["describe", "ki", NAME, "-n", ns.name()])?;
    assert!(described.contains("ReadErrors"), "{described}");

    // The first listing of the stream is one `ShardsFound` event, not a `Resharded` per shard.
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns.name());
    let reasons = wait_until("the ShardsFound event", DEADLINE, || async {
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(NAME))
            .filter_map(|e| e.reason)
            .collect();
        Ok(reasons
            .iter()
            .any(|r| r == "ShardsFound")
            .then_some(reasons))
    })
    .await?;
    assert!(
        !reasons.iter().any(|r| r == "Resharded"),
        "the first listing is no reshard: {reasons:?}"
    );
    Ok(())
}

/// Forwards every request to kinesis-local, except reads while `deny` is set: those get the
/// service's AccessDeniedException.
#[derive(Clone)]
struct DenyingProxy {
    upstream: String,
    http: reqwest::Client,
    deny: Arc<AtomicBool>,
}

async fn forward(
    State(proxy): State<DenyingProxy>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let read = target.ends_with(".GetShardIterator") || target.ends_with(".GetRecords");
    if read && proxy.deny.load(Ordering::SeqCst) {
        let operation = target.rsplit('.').next().unwrap_or_default();
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amzn-errortype", "AccessDeniedException"),
            ],
            format!(
                r#"{{"__type":"AccessDeniedException","message":"User: arn:aws:sts::000000000000:assumed-role/reader/worker is not authorized to perform: kinesis:{operation} on resource: arn:aws:kinesis:us-east-1:000000000000:stream/denied"}}"#
            ),
        )
            .into_response();
    }
    let mut request = proxy.http.post(&proxy.upstream).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .cloned()
                .unwrap_or_else(|| axum::http::HeaderValue::from_static("application/json"));
            let bytes = response.bytes().await.unwrap_or_default();
            (status, [("content-type", content_type)], bytes).into_response()
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[tokio::test]
async fn access_denied_is_named_in_the_status_and_clears_when_access_returns() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "access-denied").await?;
    install_operator_rbac(&client, ns.name()).await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "access-denied", 1).await?;

    let deny = Arc::new(AtomicBool::new(true));
    let proxy = DenyingProxy {
        upstream: std::env::var("KINESIS_ENDPOINT")?,
        http: {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder().build()?
        },
        deny: deny.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .fallback(axum::routing::post(forward))
        .with_state(proxy);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    ingester(&client, ns.name(), &stream, &endpoint).await?;
    let dir = tempfile::tempdir()?;
    let _operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let _kubelet = Kubelet::start(client.clone(), dir.path(), ns.name())?;

    let ready = condition(&client, ns.name(), "Ready", "False", "ReadErrors").await?;
    for wanted in [
        "access_denied",
        "GetShardIterator",
        "is not authorized to perform",
    ] {
        assert!(ready.contains(wanted), "{wanted:?} not in {ready}");
    }
    let table = kubectl(&["get", "ki", NAME, "-n", ns.name(), "-o", "wide"])?;
    assert_eq!(column(&table, "READY").as_deref(), Some("False"), "{table}");
    kubectl(&["describe", "ki", NAME, "-n", ns.name()])?;

    // Access granted again: the shard is read and the ingester is Ready.
    deny.store(false, Ordering::SeqCst);
    condition(&client, ns.name(), "Ready", "True", "AllShardsReading").await?;
    condition(&client, ns.name(), "Degraded", "False", "AsExpected").await?;
    let table = kubectl(&["get", "ki", NAME, "-n", ns.name(), "-o", "wide"])?;
    assert_eq!(column(&table, "READY").as_deref(), Some("True"), "{table}");
    assert_eq!(
        column(&table, "DEGRADED").as_deref(),
        Some("AsExpected"),
        "{table}"
    );
    server.abort();
    Ok(())
}

/// Counts the NDJSON lines POSTed to it.
async fn accept(
    State(lines): State<Arc<std::sync::atomic::AtomicUsize>>,
    body: Bytes,
) -> &'static str {
    let n = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    lines.fetch_add(n, Ordering::SeqCst);
    "{}"
}

#[tokio::test]
async fn a_sink_refusing_connections_is_not_delivering_then_ready_once_it_answers() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "sink-refused").await?;
    install_operator_rbac(&client, ns.name()).await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "sink-refused", 1).await?;
    // A loopback port with nothing listening: every send is refused until a server binds it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let sink = format!(
        "{{http: {{url: 'http://127.0.0.1:{port}/ingest', format: Ndjson}}, batch: {{maxRecords: 50, maxAge: 100ms}}}}"
    );
    let endpoint = std::env::var("KINESIS_ENDPOINT")?;
    ingester_with_sink(&client, ns.name(), &stream, &endpoint, &sink).await?;
    kinesis_testkit::ledger::produce(&kinesis, &stream, 0, 500).await?;
    let dir = tempfile::tempdir()?;
    let _operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let _kubelet = Kubelet::start(client.clone(), dir.path(), ns.name())?;

    // Records wait and nothing is acknowledged for longer than the threshold (30 s).
    let ready = condition(&client, ns.name(), "Ready", "False", "NotDelivering").await?;
    assert!(ready.contains("1 shards"), "{ready}");
    let degraded = condition(&client, ns.name(), "Degraded", "True", "SinkFailing").await?;
    assert!(
        degraded.contains("connect"),
        "the sink's error category: {degraded}"
    );
    let table = kubectl(&["get", "ki", NAME, "-n", ns.name(), "-o", "wide"])?;
    assert_eq!(column(&table, "READY").as_deref(), Some("False"), "{table}");
    assert_eq!(
        column(&table, "REASON").as_deref(),
        Some("NotDelivering"),
        "{table}"
    );
    assert_eq!(
        column(&table, "DEGRADED").as_deref(),
        Some("SinkFailing"),
        "{table}"
    );
    let waited = column(&table, "UNDELIVERED").unwrap_or_default();
    assert!(
        waited.ends_with('s') && waited != "0s",
        "how long records have waited for the sink: {waited:?} in {table}"
    );
    kubectl(&["describe", "ki", NAME, "-n", ns.name()])?;

    // The destination comes up on that port: everything is delivered and the ingester is Ready.
    let lines = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(accept))
        .with_state(lines.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    wait_until("all 500 records delivered", DEADLINE, || async {
        Ok((lines.load(Ordering::SeqCst) >= 500).then_some(()))
    })
    .await?;
    condition(&client, ns.name(), "Ready", "True", "AllShardsReading").await?;
    condition(&client, ns.name(), "Degraded", "False", "AsExpected").await?;
    let table = kubectl(&["get", "ki", NAME, "-n", ns.name(), "-o", "wide"])?;
    assert_eq!(column(&table, "READY").as_deref(), Some("True"), "{table}");
    assert_eq!(
        column(&table, "UNDELIVERED").as_deref(),
        Some(""),
        "{table}"
    );
    let measured = column(&table, "MEASURED").unwrap_or_default();
    assert!(
        measured.ends_with('s'),
        "the lag says when it was measured: {measured:?} in {table}"
    );
    // kubectl cannot count a list: the shard table and the worker carry their counts for the
    // SHARDS columns.
    let tables = kubectl(&["get", "ksa", NAME, "-n", ns.name()])?;
    assert_eq!(column(&tables, "SHARDS").as_deref(), Some("1"), "{tables}");
    let worker = kinesis_ingester_api::worker_name(NAME, 0);
    let workers = kubectl(&["get", "kw", &worker, "-n", ns.name()])?;
    assert_eq!(
        column(&workers, "SHARDS").as_deref(),
        Some("1"),
        "{workers}"
    );
    server.abort();
    Ok(())
}

//! Harness for the integration tests: clients for the test cluster and the Kinesis emulator, per-test namespaces, and deadline waits.
//!
//! The environment comes from `tests/env/with-env.sh` (run by `make test`), which exports
//! `KUBECONFIG` and `KINESIS_ENDPOINT`.

pub mod chart;
pub mod control_plane;
pub mod file_fleet;
pub mod fleet;
pub mod ledger;
pub mod procstat;

use std::{future::Future, time::Duration};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};

pub mod replay;
pub mod toxiproxy;

/// Field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "kinesis-operator-tests";

fn require_env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run the integration tests with `make test`, which starts a local cluster and the Kinesis emulator")
    })
}

/// A client for the test cluster named by `KUBECONFIG`.
pub async fn kube_client() -> Result<Client> {
    require_env("KUBECONFIG")?;
    Client::try_default()
        .await
        .context("connecting to the test cluster")
}

/// A Kinesis client for the emulator at `KINESIS_ENDPOINT`, with dummy static credentials and
/// the same rustls + ring HTTP client the binaries use.
pub fn kinesis_client() -> Result<aws_sdk_kinesis::Client> {
    Ok(kinesis_client_at(&require_env("KINESIS_ENDPOINT")?))
}

/// A Kinesis client for the emulator at `endpoint`, configured like [`kinesis_client`].
pub fn kinesis_client_at(endpoint: &str) -> aws_sdk_kinesis::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .http_client(http)
        .credentials_provider(aws_credential_types::Credentials::from_keys(
            "000000000000",
            "test-secret",
            None,
        ))
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// Waits until `stream` is ACTIVE (after creation or a reshard).
pub async fn wait_stream_active(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<()> {
    wait_until(
        &format!("stream {stream} ACTIVE"),
        Duration::from_secs(30),
        || async move {
            let d = kinesis
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await?;
            let status = d
                .stream_description_summary()
                .map(|s| s.stream_status().clone());
            Ok((status == Some(aws_sdk_kinesis::types::StreamStatus::Active)).then_some(()))
        },
    )
    .await
}

/// What every fleet scenario starts from, named after one prefix: the cluster with the CRDs, a
/// namespace with the operator's RBAC, a kinesis-local stream, and a scratch directory for the
/// operator's and kubelet's files.
pub struct FleetStage {
    /// The test cluster.
    pub client: Client,
    /// The scenario's namespace.
    pub ns: TestNamespace,
    /// kinesis-local.
    pub kinesis: aws_sdk_kinesis::Client,
    /// The stream's name.
    pub stream: String,
    /// Scratch directory, removed on drop.
    pub dir: tempfile::TempDir,
}

impl std::fmt::Debug for FleetStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStage")
            .field("ns", &self.ns.name())
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl FleetStage {
    /// Sets the stage: CRDs, a namespace and operator RBAC, and a stream of `shards` shards.
    pub async fn create(prefix: &str, shards: i32) -> Result<Self> {
        let (client, ns, dir) = operator_namespace(prefix).await?;
        let kinesis = kinesis_client()?;
        let stream = create_stream(&kinesis, prefix, shards).await?;
        Ok(Self {
            client,
            ns,
            kinesis,
            stream,
            dir,
        })
    }
}

/// The cluster part of a [`FleetStage`], for fleets over another Kinesis (the replay server):
/// the CRDs, a namespace named after `prefix` with the operator's RBAC, and a scratch directory.
pub async fn operator_namespace(
    prefix: &str,
) -> Result<(Client, TestNamespace, tempfile::TempDir)> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    fleet::install_operator_rbac(&client, ns.name()).await?;
    Ok((client, ns, tempfile::tempdir()?))
}

/// Creates a stream named after `prefix` with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(
    kinesis: &aws_sdk_kinesis::Client,
    prefix: &str,
    shards: i32,
) -> Result<String> {
    let name = unique_name(prefix);
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .with_context(|| format!("creating stream {name}"))?;
    wait_stream_active(kinesis, &name).await?;
    Ok(name)
}

/// A name unique to this test run, e.g. `smoke-3f9a1c`, for namespaces and streams.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}{n}", (nanos ^ std::process::id()) & 0xffffff)
}

/// A namespace created for one test and deleted when the guard is dropped.
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// Creates a namespace named after `prefix`.
    pub async fn create(client: &Client, prefix: &str) -> Result<Self> {
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("kinesis-operator.dev/test".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self { name })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime is blocked here, which also stalls the
        // test's client (its connection task runs on that runtime). So delete with a fresh
        // client on a short-lived runtime of its own.
        let deleted = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = Client::try_default().await?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await?;
                Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = deleted {
            eprintln!("could not delete test namespace {}: {e:#}", self.name);
        }
    }
}

/// Polls `check` until it returns `Ok(Some(value))` or `timeout` passes. The error names `what`
/// and carries the last error `check` returned.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Installs (server-side apply) a CRD and waits until the API server serves it.
pub async fn install_crd(
    client: &Client,
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(crd),
    )
    .await
    .with_context(|| format!("applying CRD {name}"))?;
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .with_context(|| format!("CRD {name} not established within 60s"))??;
    Ok(())
}

/// Installs every CRD from `crds/`, the files users apply (KinesisIngester and the two internal
/// fleet kinds).
pub async fn install_kinesis_ingester_crd(client: &Client) -> Result<()> {
    for (file, _) in kinesis_ingester_api::all_crds() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../crds")
            .join(&file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let crd =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        install_crd(client, &crd).await?;
    }
    Ok(())
}

//! The world of the fault scenarios and the soak: a namespace, stream, operator and kubelet as in e2e.rs, with an HTTP sink that records each path and a Toxiproxy between chosen processes and the API server, Kinesis and the sink.

// Shared by faults.rs and soak.rs, which each use part of it.
#![allow(dead_code)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use kinesis_ingester_api::{KinesisIngester, KinesisShardAssignment};
use kinesis_testkit::{
    FleetStage, TestNamespace,
    fleet::{Kubelet, OperatorProcess, Routes},
    ledger::{Producer, RecordingSink},
    toxiproxy::{Proxy, Toxiproxy},
    wait_until,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};

pub const NAME: &str = "orders";
pub const LONG: Duration = Duration::from_secs(180);

/// [`wait_until`] for checks that return `None` until they hold.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_until(what, timeout, || {
        let fut = check();
        async move { Ok(fut.await) }
    })
    .await
}

/// The three proxied paths of one worker.
#[derive(Clone, Debug)]
pub struct WorkerPaths {
    pub api: Proxy,
    pub kinesis: Proxy,
    pub sink: Proxy,
}

/// One scenario's world.
pub struct World {
    pub client: Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub ns: TestNamespace,
    pub dir: tempfile::TempDir,
    pub stream: String,
    pub sink: RecordingSink,
    pub toxi: Toxiproxy,
    /// A proxy to the API server shared by the operator and every worker without paths of
    /// their own, so that a test can take the whole API server away from the fleet.
    pub shared_api: Proxy,
    /// A proxy to the sink's main listener, named in the spec (`sink.http.url`).
    pub shared_sink: Proxy,
    pub operator: tokio::sync::Mutex<Option<OperatorProcess>>,
    pub kubelet: Option<Kubelet>,
}

fn host_port(url: &str) -> Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    Ok(rest
        .split('/')
        .next()
        .context("URL without host")?
        .to_owned())
}

fn api_server() -> Result<String> {
    let path = std::env::var("KUBECONFIG").context("KUBECONFIG is not set")?;
    let text = std::fs::read_to_string(&path)?;
    let config: serde_json::Value = serde_saphyr::from_str(&text)?;
    host_port(
        config["clusters"][0]["cluster"]["server"]
            .as_str()
            .context("kubeconfig without a server")?,
    )
}

impl World {
    /// Starts the world; `read` is the spec's `read` block, `routed` the pods whose paths get
    /// proxies of their own (the paths are returned).
    pub async fn start(
        prefix: &str,
        shards: i32,
        workers: &str,
        read: &str,
        routed: &[&str],
    ) -> Result<(Self, BTreeMap<String, WorkerPaths>)> {
        let FleetStage {
            client,
            ns,
            kinesis,
            stream,
            dir,
        } = FleetStage::create(prefix, shards).await?;
        let toxi = Toxiproxy::start(&dir.path().join("toxiproxy.log")).await?;
        let sink = RecordingSink::new();
        let main = sink.listen("main").await?;
        let api = api_server()?;
        let kinesis_addr = host_port(&std::env::var("KINESIS_ENDPOINT")?)?;
        let shared_api = toxi.proxy("api", &api).await?;
        let shared_sink = toxi.proxy("sink", &main.to_string()).await?;
        let mut paths = BTreeMap::new();
        for (i, pod) in routed.iter().enumerate() {
            let own = sink.listen(pod).await?;
            paths.insert(
                (*pod).to_owned(),
                WorkerPaths {
                    api: toxi.proxy(&format!("api-{i}"), &api).await?,
                    kinesis: toxi.proxy(&format!("kinesis-{i}"), &kinesis_addr).await?,
                    sink: toxi.proxy(&format!("sink-{i}"), &own.to_string()).await?,
                },
            );
        }
        let ki: KinesisIngester = serde_saphyr::from_str(&format!(
            "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: {NAME}}}
spec:
  stream: {{name: {stream}, region: us-east-1}}
  read: {read}
  sink:
    http: {{url: '{}/', format: Ndjson, timeout: 60s}}
    batch: {{maxRecords: 100, maxAge: 100ms}}
  workers: {workers}
",
            shared_sink.http_url()
        ))?;
        Api::<KinesisIngester>::namespaced(client.clone(), ns.name())
            .create(&PostParams::default(), &ki)
            .await
            .context("creating the KinesisIngester")?;
        let shared = Routes {
            api_server: Some(shared_api.listen.clone()),
            ..Routes::default()
        };
        let operator = OperatorProcess::start_routed(dir.path(), ns.name(), &[], &shared).await?;
        let kubelet = Kubelet::start(client.clone(), dir.path(), ns.name())?;
        kubelet.route_all(shared);
        for (pod, p) in &paths {
            kubelet.route(
                pod,
                Routes {
                    api_server: Some(p.api.listen.clone()),
                    kinesis: Some(p.kinesis.http_url()),
                    http_sink: Some(p.sink.http_url()),
                },
            );
        }
        let world = Self {
            client,
            kinesis,
            ns,
            dir,
            stream,
            sink,
            toxi,
            shared_api,
            shared_sink,
            operator: tokio::sync::Mutex::new(Some(operator)),
            kubelet: Some(kubelet),
        };
        Ok((world, paths))
    }

    /// A steady producer of unique ids from `from`: 20 records every 100 ms.
    pub fn producer(&self, from: usize) -> Producer {
        Producer::start(
            self.kinesis.clone(),
            self.stream.clone(),
            from,
            20,
            Duration::from_millis(100),
        )
    }

    pub fn kubelet(&self) -> &Kubelet {
        self.kubelet.as_ref().expect("kubelet running")
    }

    pub async fn ingester(&self) -> Result<KinesisIngester> {
        Ok(
            Api::<KinesisIngester>::namespaced(self.client.clone(), self.ns.name())
                .get(NAME)
                .await?,
        )
    }

    /// Owner of every shard in the table (shard → owner), only when every shard has one.
    pub async fn owners(&self) -> Result<Option<BTreeMap<String, String>>> {
        let Some(t) =
            Api::<KinesisShardAssignment>::namespaced(self.client.clone(), self.ns.name())
                .get_opt(NAME)
                .await?
        else {
            return Ok(None);
        };
        let owners: Option<BTreeMap<_, _>> = t
            .spec
            .shards
            .iter()
            .filter(|s| !t.spec.finished.contains(&s.shard_id))
            .map(|s| Some((s.shard_id.clone(), s.owner.clone().filter(|_| !s.draining)?)))
            .collect();
        Ok(owners.filter(|o| !o.is_empty()))
    }

    /// Waits until every open shard has an owner and `pred` holds of the owners.
    pub async fn wait_owners(
        &self,
        what: &str,
        pred: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> Result<BTreeMap<String, String>> {
        poll(what, LONG, || async {
            let o = self.owners().await.ok()??;
            pred(&o).then_some(o)
        })
        .await
    }

    pub async fn wait_ready(&self, what: &str) -> Result<()> {
        poll(what, LONG, || async {
            let ki = self.ingester().await.ok()?;
            let s = ki.status.as_ref()?;
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && s.observed_generation == ki.metadata.generation).then_some(())
        })
        .await
    }

    /// SIGKILLs the operator (the only replica, so the leader) and starts a new one, which must
    /// take the leader Lease again.
    pub async fn restart_operator(&self) -> Result<()> {
        let mut op = self.operator.lock().await;
        if let Some(o) = op.take() {
            o.kill().await;
        }
        let shared = Routes {
            api_server: Some(self.shared_api.listen.clone()),
            ..Routes::default()
        };
        *op = Some(
            OperatorProcess::start_routed(self.dir.path(), self.ns.name(), &[], &shared).await?,
        );
        Ok(())
    }

    pub async fn patch_workers(&self, workers: serde_json::Value) -> Result<()> {
        self.patch_spec(serde_json::json!({"workers": workers}))
            .await
    }

    /// Merges `spec` into the ingester's spec.
    pub async fn patch_spec(&self, spec: serde_json::Value) -> Result<()> {
        Api::<KinesisIngester>::namespaced(self.client.clone(), self.ns.name())
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await?;
        Ok(())
    }

    /// Lines of the operator's log saying it fenced a shard off an expired worker.
    pub fn expiry_fences(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("fenced a shard off its worker") && l.contains("expired"))
            .map(str::to_owned)
            .collect()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("\n===== {} (last 40 lines)\n", p.display()));
                    out.extend(tail.into_iter().rev().map(|l| format!("{l}\n")));
                }
            }
        }
        out
    }

    async fn stop(mut self) -> Result<()> {
        // Every path open again, so that the processes can stop cleanly.
        let _ = self.shared_api.restore().await;
        let _ = self.shared_sink.restore().await;
        if let Some(k) = self.kubelet.take() {
            k.shutdown().await;
        }
        if let Some(o) = self.operator.get_mut().take() {
            let _ = o.terminate().await?;
        }
        drop(self.toxi);
        Ok(())
    }
}

/// Runs `body`; on failure, prints the process logs (KEEP_LOGS=1 prints them on success too).
pub async fn scenario<F, Fut>(world: World, body: F) -> Result<()>
where
    F: FnOnce(Arc<World>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::FutureExt;
    let world = Arc::new(world);
    let result = match std::panic::AssertUnwindSafe(body(world.clone()))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(anyhow::anyhow!("assertion failed: {msg}"))
        }
    };
    let world = Arc::into_inner(world).context("the scenario kept the world")?;
    if result.is_err() || std::env::var("KEEP_LOGS").is_ok() {
        eprintln!("logs:{}", world.logs());
    }
    if let Err(e) = &result {
        eprintln!("scenario failed: {e:#}");
    }
    let stopped = world.stop().await;
    result.and(stopped)
}

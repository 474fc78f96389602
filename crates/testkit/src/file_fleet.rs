//! A fleet on the local control plane that writes to a file sink: one KinesisIngester over a new
//! kinesis-local stream, the operator, and the testkit's kubelet running the worker pods. The
//! pods' scratch volume lives in `dir`, so the sink file is `out`. Shared by the e2e scenarios
//! and the peers benchmark's failover run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use kinesis_ingester_api::{KinesisIngester, ScratchSpec, ScratchType, bounds::SCRATCH_MOUNT_PATH};
use kube::{Api, Client, api::PostParams};

use crate::{
    FleetStage, TestNamespace,
    fleet::{Kubelet, OperatorProcess},
};

/// The running fleet; dropping it drops the namespace, the operator and the kubelet.
pub struct FileFleet {
    /// The test cluster.
    pub client: Client,
    /// kinesis-local.
    pub kinesis: aws_sdk_kinesis::Client,
    /// The fleet's namespace (the operator watches only it).
    pub ns: TestNamespace,
    /// The kubelet's state: worker scratch volumes and logs.
    pub dir: tempfile::TempDir,
    /// The stream's name.
    pub stream: String,
    /// The file sink, one NDJSON line per record.
    pub out: PathBuf,
    /// The operator process.
    pub operator: Option<OperatorProcess>,
    /// The worker pods' runner.
    pub kubelet: Option<Kubelet>,
}

impl std::fmt::Debug for FileFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileFleet")
            .field("ns", &self.ns.name())
            .field("stream", &self.stream)
            .field("out", &self.out)
            .finish_non_exhaustive()
    }
}

impl FileFleet {
    /// Creates a namespace and a stream of `shards` shards named after `prefix`, the ingester
    /// `name` over it (TrimHorizon, 200 ms polls, batches of 100 records or 100 ms, the given
    /// `spec.workers` as YAML flow), and starts the operator and the kubelet.
    pub async fn start(name: &str, prefix: &str, shards: i32, workers: &str) -> Result<Self> {
        let FleetStage {
            client,
            ns,
            kinesis,
            stream,
            dir,
        } = FleetStage::create(prefix, shards).await?;
        let out = dir.path().join("out.ndjson");
        let endpoint = std::env::var("KINESIS_ENDPOINT").context("KINESIS_ENDPOINT")?;
        let mut ki: KinesisIngester = serde_saphyr::from_str(&format!(
            "apiVersion: kinesis-operator.dev/v1alpha1
kind: KinesisIngester
metadata: {{name: {name}}}
spec:
  stream: {{name: {stream}, region: us-east-1, endpoint: '{endpoint}'}}
  read: {{startingPosition: {{type: TrimHorizon}}, pollInterval: 200ms, shardSyncInterval: 5s}}
  sink:
    file: {{path: '{SCRATCH_MOUNT_PATH}/out.ndjson'}}
    batch: {{maxRecords: 100, maxAge: 100ms}}
  workers: {workers}
"
        ))?;
        // Worker pods write their files on the scratch volume, which the kubelet keeps in
        // `dir`: the sink file is `out`.
        ki.spec.workers.scratch = Some(ScratchSpec {
            kind: ScratchType::EmptyDir,
            size: "1Gi".into(),
            storage_class_name: None,
        });
        Api::<KinesisIngester>::namespaced(client.clone(), ns.name())
            .create(&PostParams::default(), &ki)
            .await
            .context("creating the KinesisIngester")?;
        let operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
        let kubelet = Kubelet::start(client.clone(), dir.path(), ns.name())?;
        Ok(Self {
            client,
            kinesis,
            ns,
            dir,
            stream,
            out,
            operator: Some(operator),
            kubelet: Some(kubelet),
        })
    }
}

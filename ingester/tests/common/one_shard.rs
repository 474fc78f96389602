//! A fleet worker process reading a one-shard stream, with the test playing the operator: the ingester, the worker object and a table that gives it the shard at epoch 1.

use std::process::Stdio;

use anyhow::{Context, Result};
use kinesis_ingester_api::{
    AssignedShard, KinesisIngester, KinesisShardAssignment, KinesisShardAssignmentSpec,
    KinesisWorker, KinesisWorkerSpec, KinesisWorkerStatus, WorkerShard,
};
use kinesis_testkit::{TestNamespace, install_kinesis_ingester_crd, kube_client};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use tokio::process::{Child, Command};

use super::{create_stream, kinesis_client, open_shards};

/// The running worker and what it reads.
pub struct OneShardWorker {
    /// The test's namespace, deleted on drop.
    pub ns: TestNamespace,
    /// The emulator.
    pub kinesis: aws_sdk_kinesis::Client,
    /// The stream.
    pub stream: String,
    /// Its only shard.
    pub shard: String,
    /// The worker process (killed on drop).
    pub child: Child,
    workers: Api<KinesisWorker>,
    worker_name: String,
}

impl OneShardWorker {
    /// Starts it: the ingester reads from TRIM_HORIZON into `sink` (the spec's `sink` object),
    /// and the worker runs with 5 s reports, a 10 s self-fence, a 14 s lease and `args`.
    pub async fn start(prefix: &str, sink: serde_json::Value, args: &[&str]) -> Result<Self> {
        let client = kube_client().await?;
        install_kinesis_ingester_crd(&client).await?;
        let ns = TestNamespace::create(&client, prefix).await?;
        let kinesis = kinesis_client()?;
        let stream = create_stream(&kinesis, 1).await?;
        let shard = open_shards(&kinesis, &stream)
            .await?
            .remove(0)
            .shard_id()
            .to_owned();
        let name = "orders";
        let worker_name = format!("{name}-worker-0");
        let ingester: KinesisIngester = serde_json::from_value(serde_json::json!({
            "apiVersion": "kinesis-operator.dev/v1alpha1",
            "kind": "KinesisIngester",
            "metadata": {"name": name, "namespace": ns.name()},
            "spec": {
                "stream": {"name": stream, "region": "us-east-1", "endpoint": std::env::var("KINESIS_ENDPOINT")?},
                "read": {"startingPosition": {"type": "TrimHorizon"}, "pollInterval": "200ms"},
                "sink": sink,
            },
        }))?;
        let uid = Api::<KinesisIngester>::namespaced(client.clone(), ns.name())
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
                    rewind: None,
                }],
                ..KinesisShardAssignmentSpec::default()
            },
        };
        Api::<KinesisShardAssignment>::namespaced(client.clone(), ns.name())
            .create(&PostParams::default(), &table)
            .await?;
        let child = Command::new(env!("CARGO_BIN_EXE_kinesis-ingester"))
            .args(["run", "--fleet", "--ingester", name])
            .args(["--report-interval", "5s", "--self-fence-after", "10s"])
            .args(["--worker-lease", "14s"])
            .args(args)
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
        Ok(Self {
            ns,
            kinesis,
            stream,
            shard,
            child,
            workers,
            worker_name,
        })
    }

    /// The worker's status as stored now.
    pub async fn status(&self) -> Result<KinesisWorkerStatus> {
        let w = self.workers.get(&self.worker_name).await?;
        Ok(w.status.unwrap_or_default())
    }

    /// The shard's entry at epoch 1, if reported.
    pub async fn entry(&self) -> Result<Option<WorkerShard>> {
        Ok(self.status().await?.entry(&self.shard, 1).cloned())
    }

    /// Puts `r-{from}` … `r-{to - 1}` with one partition key, in order.
    pub async fn put_range(&self, from: usize, to: usize) -> Result<()> {
        let records: Vec<_> = (from..to)
            .map(|i| ("k".to_owned(), format!("r-{i}").into_bytes()))
            .collect();
        super::put(&self.kinesis, &self.stream, &records).await
    }
}

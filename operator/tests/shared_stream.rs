//! Several teams' ingesters on one stream (issue 10, section 5): two enhanced fan-out ingesters and one polling ingester, each with its own file sink; deleting one leaves the others delivering every record.

use std::{collections::BTreeSet, path::Path, time::Duration};

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use kinesis_ingester_api::{KinesisIngester, KinesisShardAssignment};
use kinesis_testkit::{
    TestNamespace, create_stream,
    fleet::{Kubelet, OperatorProcess, install_operator_rbac},
    install_kinesis_ingester_crd, kinesis_client, kube_client, wait_until,
};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};

const LONG: Duration = Duration::from_secs(180);

async fn produce(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    from: usize,
    to: usize,
) -> Result<()> {
    for chunk in (from..to).collect::<Vec<_>>().chunks(100) {
        let mut req = kinesis.put_records().stream_name(stream);
        for i in chunk {
            req = req.records(
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("k{}", i % 16))
                    .data(Blob::new(format!("r-{i}")))
                    .build()?,
            );
        }
        let res = req.send().await?;
        anyhow::ensure!(
            res.failed_record_count().unwrap_or(0) == 0,
            "PutRecords failed"
        );
    }
    Ok(())
}

/// Record indices delivered to `out`.
fn delivered(out: &Path) -> BTreeSet<usize> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["data"].as_str()?.strip_prefix("r-")?.parse().ok())
        .collect()
}

async fn wait_all(out: &Path, n: usize, what: &str) -> Result<()> {
    wait_until(&format!("{what} delivers records 0..{n}"), LONG, || async {
        Ok((delivered(out).range(..n).count() == n).then_some(()))
    })
    .await
}

/// Names of the stream's enhanced fan-out consumers.
async fn consumers(
    kinesis: &aws_sdk_kinesis::Client,
    stream_arn: &str,
) -> Result<BTreeSet<String>> {
    let r = kinesis
        .list_stream_consumers()
        .stream_arn(stream_arn)
        .send()
        .await?;
    Ok(r.consumers()
        .iter()
        .map(|c| c.consumer_name().to_owned())
        .collect())
}

#[tokio::test]
async fn two_efo_and_one_polling_ingester_share_a_stream_and_survive_one_deletion() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "shared-stream").await?;
    install_operator_rbac(&client, ns.name()).await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "shared", 2).await?;
    let stream_arn = kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await?
        .stream_description_summary()
        .map(|d| d.stream_arn().to_owned())
        .context("no stream ARN")?;
    let dir = tempfile::tempdir()?;
    let operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let workers = Kubelet::start(client.clone(), dir.path(), ns.name())?;
    let api = Api::<KinesisIngester>::namespaced(client.clone(), ns.name());
    let result = async {
        let endpoint = std::env::var("KINESIS_ENDPOINT")?;
        let teams = [("efo-a", "EnhancedFanOut"), ("efo-b", "EnhancedFanOut"), ("poll-c", "Polling")];
        for (name, mode) in teams {
            let ki: KinesisIngester = serde_json::from_value(serde_json::json!({
                "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
                "metadata": {"name": name},
                "spec": {
                    "stream": {"name": stream, "region": "us-east-1", "endpoint": endpoint},
                    "read": {"mode": mode, "startingPosition": {"type": "TrimHorizon"}},
                    "sink": {"file": {"path": format!("/var/lib/kinesis-ingester/{name}.ndjson")}, "batch": {"maxAge": "100ms"}},
                    "workers": {"scratch": {"size": "64Mi"}},
                },
            }))?;
            api.create(&PostParams::default(), &ki).await?;
        }
        let out = |name: &str| dir.path().join(format!("{name}.ndjson"));
        produce(&kinesis, &stream, 0, 300).await?;
        for (name, _) in teams {
            wait_all(&out(name), 300, name).await?;
        }
        let ns_name = ns.name();
        let expected: BTreeSet<String> = ["efo-a", "efo-b"]
            .iter()
            .map(|n| format!("kinesis-operator-{ns_name}-{n}"))
            .collect();
        assert_eq!(consumers(&kinesis, &stream_arn).await?, expected, "one consumer per EFO ingester");

        api.delete("efo-a", &DeleteParams::default()).await?;
        wait_until("efo-a is deleted", LONG, || async {
            Ok(api.get_opt("efo-a").await?.is_none().then_some(()))
        })
        .await?;
        // Deregistration is asynchronous (DELETING, then gone); efo-b's stays throughout.
        let b = format!("kinesis-operator-{ns_name}-efo-b");
        let kept = wait_until("efo-a's consumer is deregistered", LONG, || async {
            let left = consumers(&kinesis, &stream_arn).await?;
            Ok(if !left.contains(&b) {
                Some(false)
            } else {
                (left.len() == 1).then_some(true)
            })
        })
        .await?;
        assert!(kept, "deleting efo-a deregistered efo-b's consumer");
        produce(&kinesis, &stream, 300, 600).await?;
        for name in ["efo-b", "poll-c"] {
            wait_all(&out(name), 600, name).await?;
            let got = delivered(&out(name));
            let lost = (0..600).filter(|i| !got.contains(i)).count();
            println!("FIGURE shared stream: {name} delivered {} distinct of 600 records, {lost} lost", got.range(..600).count());
            assert_eq!(lost, 0);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    workers.shutdown().await;
    let log = operator.log.clone();
    operator.kill().await;
    if result.is_err() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    result
}

/// Someone deregisters an ingester's enhanced fan-out consumer: the operator registers it again
/// at its next listing, the shard table names the new ARN, the workers subscribe with it, and
/// every record produced before and after is delivered.
#[tokio::test]
async fn a_deregistered_consumer_is_registered_again_and_delivery_resumes() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "efo-again").await?;
    install_operator_rbac(&client, ns.name()).await?;
    let kinesis = kinesis_client()?;
    let stream = create_stream(&kinesis, "efo-again", 1).await?;
    let dir = tempfile::tempdir()?;
    let operator = OperatorProcess::start(dir.path(), ns.name(), &[]).await?;
    let workers = Kubelet::start(client.clone(), dir.path(), ns.name())?;
    let api = Api::<KinesisIngester>::namespaced(client.clone(), ns.name());
    let tables = Api::<KinesisShardAssignment>::namespaced(client.clone(), ns.name());
    let result = async {
        let ki: KinesisIngester = serde_json::from_value(serde_json::json!({
            "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
            "metadata": {"name": "efo"},
            "spec": {
                "stream": {"name": stream, "region": "us-east-1", "endpoint": std::env::var("KINESIS_ENDPOINT")?},
                "read": {"mode": "EnhancedFanOut", "startingPosition": {"type": "TrimHorizon"}, "shardSyncInterval": "1s"},
                "sink": {"file": {"path": "/var/lib/kinesis-ingester/efo.ndjson"}, "batch": {"maxAge": "100ms"}},
                "workers": {"scratch": {"size": "64Mi"}},
            },
        }))?;
        api.create(&PostParams::default(), &ki).await?;
        let out = dir.path().join("efo.ndjson");
        produce(&kinesis, &stream, 0, 100).await?;
        wait_all(&out, 100, "efo").await?;
        let consumer_arn = || async {
            Ok::<_, anyhow::Error>(tables.get_opt("efo").await?.and_then(|t| t.spec.consumer_arn))
        };
        let old = consumer_arn().await?.context("the table names no consumer")?;
        kinesis.deregister_stream_consumer().consumer_arn(&old).send().await?;
        let gone_at = std::time::Instant::now();
        let new = wait_until("the consumer is registered again", LONG, || async {
            Ok(consumer_arn().await?.filter(|a| *a != old))
        })
        .await?;
        produce(&kinesis, &stream, 100, 200).await?;
        wait_all(&out, 200, "efo after the new registration").await?;
        println!(
            "FIGURE consumer deregistered by someone else: registered again and records 100..200 delivered {} ms later (new ARN {new})",
            gone_at.elapsed().as_millis()
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    workers.shutdown().await;
    let log = operator.log.clone();
    operator.kill().await;
    if result.is_err() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    result
}

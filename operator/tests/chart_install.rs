//! The chart as a user installs it: `helm install` into a namespace that enforces the `restricted` Pod Security Standard, the operator pod runs (as a process, under the chart's ServiceAccount), and a sample ingester in another restricted namespace is reconciled into worker pods that read the stream.

use std::{process::Command, time::Duration};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kinesis_ingester_api::KinesisIngester;
use kinesis_testkit::{
    TestNamespace,
    chart::run,
    create_stream,
    fleet::{Kubelet, LOOPBACK_ENDPOINTS},
    kinesis_client, kube_client, unique_name, wait_until,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};

const LONG: Duration = Duration::from_secs(180);

async fn restrict(client: &kube::Client, ns: &str) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_chart_runs_the_operator_and_reconciles_a_sample_in_restricted_namespaces() -> Result<()>
{
    let client = kube_client().await?;
    let system = TestNamespace::create(&client, "chart-system").await?;
    let apps = TestNamespace::create(&client, "chart-apps").await?;
    restrict(&client, system.name()).await?;
    restrict(&client, apps.name()).await?;
    let dir = tempfile::tempdir()?;
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/kinesis-operator");
    let release = unique_name("ko");
    // One replica, watching only the apps namespace, so this test does not reconcile others'.
    run(Command::new("helm")
        .args(["install", &release])
        .arg(&chart)
        .args(["--namespace", system.name(), "--set", "replicas=1"])
        .args(["--set", &format!("watchNamespace={}", apps.name())])
        // The emulator is a custom endpoint, which the chart's defaults refuse.
        .args([
            "--set-json",
            &format!("allowList.endpoints=[\"{LOOPBACK_ENDPOINTS}\"]"),
        ]))?;

    let operator = Kubelet::start_for(
        client.clone(),
        dir.path(),
        system.name(),
        "app.kubernetes.io/name=kinesis-operator",
    )?;
    let workers = Kubelet::start(client.clone(), dir.path(), apps.name())?;
    let result = async {
        // The Deployment's pod was admitted by the restricted namespace and runs.
        let op_pods = wait_until("the operator pod runs", LONG, || async {
            Ok((!operator.running().is_empty()).then(|| operator.running()))
        })
        .await?;
        assert_eq!(op_pods.len(), 1);

        let kinesis = kinesis_client()?;
        let stream = create_stream(&kinesis, "chart", 2).await?;
        let sink = dir.path().join("out.ndjson");
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/polling-stdout.yaml"))?;
        let mut v: serde_json::Value = serde_saphyr::from_str(&text)?;
        v["metadata"] = serde_json::json!({"name": "sample"});
        v["spec"]["stream"] = serde_json::json!({"name": stream, "region": "us-east-1", "endpoint": std::env::var("KINESIS_ENDPOINT")?});
        // The worker writes on its scratch volume, which the harness keeps in `dir`.
        v["spec"]["sink"] = serde_json::json!({"file": {"path": "/var/lib/kinesis-ingester/out.ndjson"}, "batch": {"maxAge": "100ms"}});
        v["spec"]["workers"]["scratch"] = serde_json::json!({"size": "64Mi"});
        let ki: KinesisIngester = serde_json::from_value(v)?;
        let api = Api::<KinesisIngester>::namespaced(client.clone(), apps.name());
        api.create(&PostParams::default(), &ki).await?;
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key("k")
            .data(aws_sdk_kinesis::primitives::Blob::new("hello from the chart test"))
            .send()
            .await?;
        // Worker pods of the operator's StatefulSet were admitted by the restricted namespace.
        wait_until("the record reaches the sink through a worker pod", LONG, || async {
            Ok(std::fs::read_to_string(&sink).unwrap_or_default().contains("hello from the chart test").then_some(()))
        })
        .await?;
        let pods = Api::<Pod>::namespaced(client.clone(), apps.name()).list(&ListParams::default()).await?;
        assert!(pods.items.iter().any(|p| p.name_any() == "sample-worker-0"), "the worker pod exists");
        let ready = wait_until("the sample is Ready", LONG, || async {
            let s = api.get("sample").await?.status;
            Ok(s.filter(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")))
        })
        .await?;
        assert_eq!(ready.stream_name.as_deref(), Some(stream.as_str()));
        Ok::<_, anyhow::Error>(())
    }
    .await;
    workers.shutdown().await;
    operator.shutdown().await;
    let _ = Command::new("helm")
        .args(["uninstall", &release, "--namespace", system.name()])
        .output();
    if result.is_err() {
        for e in std::fs::read_dir(dir.path())?.flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                eprintln!(
                    "===== {}\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                );
            }
        }
    }
    result
}

/// Helm never upgrades CRDs: `helm upgrade` with a chart whose CRDs differ from the cluster's
/// refuses with the command to run, and passes when they match (`--dry-run=server` makes the
/// chart's `lookup` read the cluster, as a real upgrade does).
#[tokio::test]
async fn helm_refuses_to_run_against_crds_of_another_schema() -> Result<()> {
    let client = kube_client().await?;
    kinesis_testkit::install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "chart-crd-check").await?;
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/kinesis-operator");
    let install = |chart: &std::path::Path| {
        Command::new("helm")
            .args(["install", "crd-check"])
            .arg(chart)
            .args(["--namespace", ns.name(), "--dry-run=server"])
            .output()
    };
    let same = install(&chart)?;
    assert!(
        same.status.success(),
        "the chart's own CRDs pass: {}",
        String::from_utf8_lossy(&same.stderr)
    );

    // A chart built with a newer schema than the cluster has.
    let dir = tempfile::tempdir()?;
    let newer = dir.path().join("kinesis-operator");
    run(Command::new("cp").arg("-r").arg(&chart).arg(&newer))?;
    let file = newer.join("crds/kinesisworkers.kinesis-operator.dev.yaml");
    let text = std::fs::read_to_string(&file)?;
    let changed = text.replacen(
        "kinesis-operator.dev/schema-hash: ",
        "kinesis-operator.dev/schema-hash: 0",
        1,
    );
    assert_ne!(text, changed, "the CRD carries its schema hash");
    std::fs::write(&file, changed)?;
    let out = install(&newer)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an upgrade over an older schema was allowed"
    );
    for wanted in [
        "kinesisworkers.kinesis-operator.dev",
        "kubectl apply --server-side --force-conflicts -f charts/kinesis-operator/crds/",
    ] {
        assert!(stderr.contains(wanted), "{wanted:?} not in {stderr}");
    }
    let skipped = Command::new("helm")
        .args(["install", "crd-check"])
        .arg(&newer)
        .args([
            "--namespace",
            ns.name(),
            "--dry-run=server",
            "--set",
            "crdCheck=false",
        ])
        .output()?;
    assert!(
        skipped.status.success(),
        "crdCheck=false skips it: {}",
        String::from_utf8_lossy(&skipped.stderr)
    );
    Ok(())
}

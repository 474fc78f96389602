//! Every file in `examples/` is a valid KinesisIngester: the standalone ingester's strict parser accepts it, and the API server admits it (schema and CEL rules).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kinesis_ingester_api::KinesisIngester;
use kinesis_testkit::{TestNamespace, install_kinesis_ingester_crd, kube_client};
use kube::{
    Api,
    api::{DynamicObject, PostParams},
    core::ApiResource,
};

/// The examples the README and the chart's NOTES point to; each must exist.
const REQUIRED: [&str; 12] = [
    "proxy-private-ca.yaml",
    "routing.yaml",
    "autoscaling.yaml",
    "transform-vrl.yaml",
    "transform-firehose.yaml",
    "rewind.yaml",
    "polling-stdout.yaml",
    "efo-elasticsearch.yaml",
    "cloudwatch-logs.yaml",
    "kpl-aggregated.yaml",
    "cross-account.yaml",
    "s3-partitioned.yaml",
];

fn examples() -> Result<Vec<(PathBuf, String)>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path)?;
            files.push((path, text));
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn every_example_passes_the_standalone_validation() -> Result<()> {
    let files = examples()?;
    let names: Vec<String> = files.iter().map(|(p, _)| file_name(p)).collect();
    for want in REQUIRED {
        assert!(
            names.iter().any(|n| n == want),
            "examples/{want} is missing"
        );
    }
    let mut failures = Vec::new();
    for (path, text) in &files {
        // The same parser as `kinesis-ingester validate -f`: unknown fields and the CEL rules'
        // client-side twins are errors.
        if let Err(e) = kinesis_ingester::config::parse(path, text) {
            failures.push(format!("{}: {e}", file_name(path)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The check can fail: a misspelt field in a copy of an example is rejected.
    let (path, text) = &files[0];
    let typo = text.replacen("  stream:\n", "  straem:\n", 1);
    assert!(
        kinesis_ingester::config::parse(path, &typo).is_err(),
        "a misspelt field must be rejected"
    );
    Ok(())
}

#[tokio::test]
async fn every_example_is_admitted_by_the_api_server() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "examples").await?;
    let api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::erase::<KinesisIngester>(&()),
    );
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut failures = Vec::new();
    for (path, text) in examples()? {
        let obj: DynamicObject =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Err(e) = api.create(&dry_run, &obj).await {
            failures.push(format!("{}: {e}", file_name(&path)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Control: the dry run does run admission, so a broken example would be caught.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/efo-elasticsearch.yaml"),
    )?;
    let broken: DynamicObject = serde_saphyr::from_str(&text.replace("index: clicks", ""))?;
    match api.create(&dry_run, &broken).await {
        Err(kube::Error::Api(s)) if s.message.contains("sink.http.index is required") => {}
        other => panic!("an ElasticsearchBulk sink without index must be rejected, got {other:?}"),
    }
    Ok(())
}

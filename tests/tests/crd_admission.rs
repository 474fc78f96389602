//! The generated KinesisIngester CRD on a real API server: the example is admitted, and invalid specs are rejected with the field named.

use anyhow::Result;
use kinesis_ingester_api::KinesisIngester;
use kinesis_testkit::{TestNamespace, install_kinesis_ingester_crd, kube_client};
use kube::{
    Api,
    api::{DynamicObject, PostParams},
    core::ApiResource,
};
use serde_json::{Value, json};

fn example() -> Result<Value> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/polling-stdout.yaml");
    Ok(serde_saphyr::from_str(&std::fs::read_to_string(path)?)?)
}

/// Applies `edit` to a copy of the example's spec.
fn with_spec(base: &Value, name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base.clone();
    v["metadata"] = json!({ "name": name });
    edit(&mut v["spec"]);
    v
}

#[tokio::test]
async fn example_is_admitted_and_invalid_specs_are_rejected_naming_the_field() -> Result<()> {
    let client = kube_client().await?;
    install_kinesis_ingester_crd(&client).await?;
    let ns = TestNamespace::create(&client, "crd-admission").await?;
    let api = Api::<KinesisIngester>::namespaced(client.clone(), ns.name());
    let base = example()?;

    // The example, as users apply it, is admitted, and the API server fills in the defaults.
    let ok: KinesisIngester = serde_json::from_value(with_spec(&base, "valid", |_| {}))?;
    ok.spec
        .validate()
        .expect("the example passes client-side validation too");
    let created = api.create(&PostParams::default(), &ok).await?;
    assert_eq!(
        created.spec.read.max_records_per_call, 10_000,
        "defaults are applied"
    );
    assert_eq!(created.spec.sink.batch.max_records, 500);

    // (name, edit, text the rejection must contain)
    type Case = (&'static str, Box<dyn FnOnce(&mut Value)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "name-and-arn",
            Box::new(|s| {
                s["stream"]["arn"] = json!("arn:aws:kinesis:us-east-1:123456789012:stream/orders")
            }),
            "set exactly one of name or arn",
        ),
        (
            "no-stream-name",
            Box::new(|s| s["stream"] = json!({ "region": "us-east-1" })),
            "set exactly one of name or arn",
        ),
        (
            "bad-stream-name",
            Box::new(|s| s["stream"]["name"] = json!("orders stream")),
            "spec.stream.name",
        ),
        (
            "bad-arn",
            Box::new(|s| s["stream"] = json!({ "arn": "arn:aws:s3:::bucket" })),
            "spec.stream.arn",
        ),
        (
            "bad-region",
            Box::new(|s| s["stream"]["region"] = json!("Europe")),
            "spec.stream.region",
        ),
        (
            "fast-poll",
            Box::new(|s| s["read"]["pollInterval"] = json!("100ms")),
            "pollInterval must be at least 200ms",
        ),
        (
            "bad-duration",
            Box::new(|s| s["read"]["pollInterval"] = json!("1.5s")),
            "spec.read.pollInterval",
        ),
        (
            "bad-mode",
            Box::new(|s| s["read"]["mode"] = json!("Push")),
            "spec.read.mode",
        ),
        (
            "too-many-records",
            Box::new(|s| s["read"]["maxRecordsPerCall"] = json!(20000)),
            "spec.read.maxRecordsPerCall",
        ),
        (
            "timestamp-missing",
            Box::new(|s| s["read"]["startingPosition"] = json!({ "type": "AtTimestamp" })),
            "timestamp is required when type is AtTimestamp",
        ),
        (
            "two-sinks",
            Box::new(|s| s["sink"]["file"] = json!({ "path": "/tmp/out.ndjson" })),
            "set exactly one of stdout, file or http",
        ),
        (
            "bulk-without-index",
            Box::new(
                |s| s["sink"] = json!({ "http": { "url": "http://es:9200/_bulk", "format": "ElasticsearchBulk" } }),
            ),
            "sink.http.index is required",
        ),
        (
            "bad-url",
            Box::new(|s| s["sink"] = json!({ "http": { "url": "es:9200" } })),
            "spec.sink.http.url",
        ),
        (
            "min-above-max",
            Box::new(|s| s["workers"] = json!({ "minReplicas": 5, "maxReplicas": 2 })),
            "minReplicas must not be greater than workers.maxReplicas",
        ),
        (
            "zero-shards-per-worker",
            Box::new(|s| s["workers"]["shardsPerWorker"] = json!(0)),
            "spec.workers.shardsPerWorker",
        ),
        (
            "unknown-compression",
            Box::new(|s| s["decode"] = json!({ "compression": "Zstd" })),
            "spec.decode.compression",
        ),
    ];
    // Untyped, because some of these documents do not even parse into the Rust types.
    let raw = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::erase::<KinesisIngester>(&()),
    );
    let count = cases.len();
    let mut failures = Vec::new();
    for (name, edit, want) in cases {
        let obj: DynamicObject = serde_json::from_value(with_spec(&base, name, edit))?;
        match raw.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!(
                "{name}: admitted, but must be rejected with {want:?}"
            )),
            Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains(want) => {}
            Err(e) => failures.push(format!("{name}: rejected without {want:?}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

//! The generated KinesisIngester CRD on a real API server: the example is admitted, and invalid specs are rejected with the field named, by the API server and by the standalone validator alike.

use std::path::Path;

use anyhow::Result;
use kinesis_ingester_api::KinesisIngester;
use kinesis_testkit::{TestNamespace, install_kinesis_ingester_crd, kube_client};
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::ApiResource,
};
use serde_json::{Value, json};

fn example() -> Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/polling-stdout.yaml");
    Ok(serde_saphyr::from_str(&std::fs::read_to_string(path)?)?)
}

/// Applies `edit` to a copy of the example's spec.
fn with_spec(base: &Value, name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base.clone();
    v["metadata"] = json!({ "name": name });
    edit(&mut v["spec"]);
    v
}

/// A scratch volume, so that the fleet may write files.
fn scratch() -> Value {
    json!({ "size": "1Gi" })
}

/// An invalid spec: its name, the edit of the example's spec, the field both validators must
/// name, and whether only a fleet rejects it (the standalone ingester accepts it).
struct Case {
    name: String,
    edit: Box<dyn FnOnce(&mut Value)>,
    field: &'static str,
    fleet_only: bool,
}

fn case(name: &str, field: &'static str, edit: impl FnOnce(&mut Value) + 'static) -> Case {
    Case {
        name: name.to_owned(),
        edit: Box::new(edit),
        field,
        fleet_only: false,
    }
}

fn fleet_case(name: &str, field: &'static str, edit: impl FnOnce(&mut Value) + 'static) -> Case {
    Case {
        fleet_only: true,
        ..case(name, field, edit)
    }
}

fn cases() -> Vec<Case> {
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders";
    let http = |extra: Value| {
        let mut h = json!({ "url": "http://es:9200/_bulk" });
        if let (Some(h), Value::Object(extra)) = (h.as_object_mut(), extra) {
            h.extend(extra);
        }
        json!({ "http": h })
    };
    vec![
        // stream
        case("name-and-arn", "spec.stream", move |s| {
            s["stream"]["arn"] = json!(arn)
        }),
        case("no-stream-name", "spec.stream", |s| {
            s["stream"] = json!({ "region": "us-east-1" })
        }),
        case("bad-stream-name", "spec.stream.name", |s| {
            s["stream"]["name"] = json!("orders stream")
        }),
        case("bad-arn", "spec.stream.arn", |s| {
            s["stream"] = json!({ "arn": "arn:aws:s3:::bucket" })
        }),
        case("bad-region", "spec.stream.region", |s| {
            s["stream"]["region"] = json!("Europe")
        }),
        case("bad-endpoint", "spec.stream.endpoint", |s| {
            s["stream"]["endpoint"] = json!("localhost:4568")
        }),
        case("bad-role-arn", "spec.stream.roleArn", |s| {
            s["stream"]["roleArn"] = json!("role/reader")
        }),
        // read
        case("fast-poll", "spec.read.pollInterval", |s| {
            s["read"]["pollInterval"] = json!("100ms")
        }),
        case("slow-poll", "spec.read.pollInterval", |s| {
            s["read"]["pollInterval"] = json!("10m")
        }),
        case("bad-duration", "spec.read.pollInterval", |s| {
            s["read"]["pollInterval"] = json!("1.5s")
        }),
        case("long-duration-text", "spec.read.pollInterval", |s| {
            s["read"]["pollInterval"] = json!("1s".repeat(33))
        }),
        case("sync-zero", "spec.read.shardSyncInterval", |s| {
            s["read"]["shardSyncInterval"] = json!("0s")
        }),
        case("sync-fast", "spec.read.shardSyncInterval", |s| {
            s["read"]["shardSyncInterval"] = json!("999ms")
        }),
        case("sync-slow", "spec.read.shardSyncInterval", |s| {
            s["read"]["shardSyncInterval"] = json!("25h")
        }),
        case("sync-overflow", "spec.read.shardSyncInterval", |s| {
            s["read"]["shardSyncInterval"] = json!("9999999999999999h")
        }),
        case("bad-mode", "spec.read.mode", |s| {
            s["read"]["mode"] = json!("Push")
        }),
        case("too-many-records", "spec.read.maxRecordsPerCall", |s| {
            s["read"]["maxRecordsPerCall"] = json!(20000)
        }),
        case("zero-records", "spec.read.maxRecordsPerCall", |s| {
            s["read"]["maxRecordsPerCall"] = json!(0)
        }),
        case("zero-buffer-pages", "spec.read.bufferPages", |s| {
            s["read"]["bufferPages"] = json!(0)
        }),
        case("too-many-buffer-pages", "spec.read.bufferPages", |s| {
            s["read"]["bufferPages"] = json!(5000)
        }),
        case("bad-consumer-name", "spec.read.consumerName", |s| {
            s["read"]["consumerName"] = json!("my consumer")
        }),
        case(
            "timestamp-missing",
            "spec.read.startingPosition.timestamp",
            |s| s["read"]["startingPosition"] = json!({ "type": "AtTimestamp" }),
        ),
        case(
            "timestamp-not-allowed",
            "spec.read.startingPosition.timestamp",
            |s| {
                s["read"]["startingPosition"] =
                    json!({ "type": "Latest", "timestamp": "2026-11-23T15:00:00Z" })
            },
        ),
        case(
            "timestamp-not-a-time",
            "spec.read.startingPosition.timestamp",
            |s| {
                s["read"]["startingPosition"] =
                    json!({ "type": "AtTimestamp", "timestamp": "yesterday" })
            },
        ),
        // reset
        case("reset-timestamp-missing", "spec.reset.timestamp", |s| {
            s["reset"] = json!({ "to": "AtTimestamp", "requestId": "r1" })
        }),
        case("reset-timestamp-not-allowed", "spec.reset.timestamp", |s| {
            s["reset"] = json!({ "to": "TrimHorizon", "timestamp": "2026-11-23T15:00:00Z", "requestId": "r1" })
        }),
        case("reset-timestamp-not-a-time", "spec.reset.timestamp", |s| {
            s["reset"] = json!({ "to": "AtTimestamp", "timestamp": "yesterday", "requestId": "r1" })
        }),
        case("reset-request-id-missing", "spec.reset.requestId", |s| {
            s["reset"] = json!({ "to": "Latest" })
        }),
        case("reset-bad-request-id", "spec.reset.requestId", |s| {
            s["reset"] = json!({ "to": "Latest", "requestId": "replay 1" })
        }),
        case("reset-too-many-shards", "spec.reset.shards", |s| {
            let ids: Vec<String> = (0..101).map(|i| format!("shardId-{i:012}")).collect();
            s["reset"] = json!({ "to": "Latest", "requestId": "r1", "shards": ids })
        }),
        case(
            "reset-shard-id-too-long",
            "spec.reset.shards",
            |s| {
                s["reset"] =
                    json!({ "to": "Latest", "requestId": "r1", "shards": ["x".repeat(129)] })
            },
        ),
        // transform
        case("transform-without-a-program", "spec.transform", |s| {
            s["transform"] = json!({})
        }),
        case("transform-empty-vrl", "spec.transform.vrl.source", |s| {
            s["transform"] = json!({ "vrl": { "source": "" } })
        }),
        case("transform-vrl-too-long", "spec.transform.vrl.source", |s| {
            s["transform"] = json!({ "vrl": { "source": "#".repeat(16385) } })
        }),
        case(
            "transform-vrl-and-http",
            "spec.transform",
            |s| {
                s["transform"] = json!({ "vrl": { "source": "." }, "http": { "url": "http://t/" } })
            },
        ),
        // network
        case(
            "ca-bundle-two-sources",
            "spec.network.caBundle",
            |s| s["network"] = json!({ "caBundle": { "path": "/ca.pem", "configMap": { "name": "ca", "key": "ca.crt" } } }),
        ),
        case("ca-bundle-none", "spec.network.caBundle", |s| {
            s["network"] = json!({ "caBundle": {} })
        }),
        case("proxy-url-with-a-path", "spec.network.proxy.url", |s| {
            s["network"] = json!({ "proxy": { "url": "http://proxy:3128/x" } })
        }),
        // sinks
        case("sink-and-sinks", "exactly one of sink or sinks", |s| {
            s["sinks"] = json!([{ "name": "a", "stdout": {} }])
        }),
        case("sinks-empty", "spec.sinks", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = json!([]);
        }),
        case("sinks-duplicate-names", "spec.sinks", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = json!([{ "name": "a", "stdout": {} }, { "name": "a", "stdout": {} }]);
        }),
        case("sinks-two-defaults", "spec.sinks", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = json!([
                { "name": "a", "default": true, "stdout": {} },
                { "name": "b", "default": true, "stdout": {} },
            ]);
        }),
        case("sinks-default-with-route", "spec.sinks[0]", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = json!([{ "name": "a", "default": true, "route": { "logGroups": ["g"] }, "stdout": {} }]);
        }),
        case("sinks-route-two-kinds", "spec.sinks[0].route", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = json!([{ "name": "a", "route": { "logGroups": ["g"], "vrl": "true" }, "stdout": {} }]);
        }),
        case("sinks-bad-name", "spec.sinks[0].name", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = json!([{ "name": "Archive", "stdout": {} }]);
        }),
        case("sinks-too-many", "spec.sinks", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = (0..9)
                .map(|i| json!({ "name": format!("s{i}"), "stdout": {} }))
                .collect();
        }),
        case("sinks-without-a-kind", "spec.sinks[0]", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = json!([{ "name": "a" }]);
        }),
        case(
            "sinks-dead-letter-after-short",
            "spec.sinks[0].deadLetterAfter",
            |s| {
                s.as_object_mut().map(|o| o.remove("sink"));
                s["sinks"] = json!([{ "name": "a", "stdout": {}, "deadLetterAfter": "500ms" }]);
            },
        ),
        case(
            "sinks-field-route-without-values",
            "spec.sinks[0].route.field.values",
            |s| {
                s.as_object_mut().map(|o| o.remove("sink"));
                s["sinks"] = json!([{ "name": "a", "stdout": {}, "route": { "field": { "path": "level", "values": [] } } }]);
            },
        ),
        fleet_case("sinks-file-outside-scratch", "spec.sinks", |s| {
            s.as_object_mut().map(|o| o.remove("sink"));
            s["sinks"] = json!([{ "name": "a", "file": { "path": "/tmp/out.ndjson" } }]);
            s["workers"]["scratch"] = scratch();
        }),
        case("transform-http-bad-url", "spec.transform.http.url", |s| {
            s["transform"] = json!({ "http": { "url": "ftp://t/" } })
        }),
        case(
            "transform-http-retry-duration-too-long",
            "spec.transform.http.retryDuration",
            |s| s["transform"] = json!({ "http": { "url": "http://t/", "retryDuration": "25h" } }),
        ),
        // decode
        case("unknown-compression", "spec.decode.compression", |s| {
            s["decode"] = json!({ "compression": "Zstd" })
        }),
        case("unknown-format", "spec.decode.format", |s| {
            s["decode"] = json!({ "format": "Avro" })
        }),
        // sink
        case("two-sinks", "spec.sink", |s| {
            s["sink"]["file"] = json!({ "path": "/var/lib/kinesis-ingester/out.ndjson" })
        }),
        case("no-sink", "spec.sink", |s| {
            s["sink"] = json!({ "tag": "t" })
        }),
        case("bulk-without-index", "spec.sink.http.index", move |s| {
            s["sink"] = http(json!({ "format": "ElasticsearchBulk" }))
        }),
        case("long-index", "spec.sink.http.index", move |s| {
            s["sink"] = http(json!({ "format": "ElasticsearchBulk", "index": "i".repeat(256) }))
        }),
        case("uppercase-index", "spec.sink.http.index", move |s| {
            s["sink"] = http(json!({ "format": "ElasticsearchBulk", "index": "Logs" }))
        }),
        case("unknown-date-letter", "spec.sink.http.index", move |s| {
            s["sink"] = http(json!({ "format": "ElasticsearchBulk", "index": "logs-{yyyy.ww}" }))
        }),
        case("unclosed-date", "spec.sink.http.index", move |s| {
            s["sink"] = http(json!({ "format": "ElasticsearchBulk", "index": "logs-{yyyy" }))
        }),
        case(
            "document-id-without-bulk",
            "spec.sink.http.documentId",
            move |s| s["sink"] = http(json!({ "documentId": { "field": "/id" } })),
        ),
        case(
            "document-id-not-a-pointer",
            "spec.sink.http.documentId.field",
            move |s| {
                s["sink"] = http(json!({
                    "format": "ElasticsearchBulk", "index": "logs", "documentId": { "field": "id" }
                }))
            },
        ),
        case("bad-url", "spec.sink.http.url", |s| {
            s["sink"] = json!({ "http": { "url": "es:9200" } })
        }),
        case("timeout-zero", "spec.sink.http.timeout", move |s| {
            s["sink"] = http(json!({ "timeout": "0s" }))
        }),
        case("timeout-long", "spec.sink.http.timeout", move |s| {
            s["sink"] = http(json!({ "timeout": "10m" }))
        }),
        case("inline-authorization", "spec.sink.http.headers", move |s| {
            s["sink"] = http(json!({ "headers": { "Authorization": "Bearer t" } }))
        }),
        case(
            "inline-proxy-authorization",
            "spec.sink.http.headers",
            move |s| s["sink"] = http(json!({ "headers": { "proxy-authorization": "Basic x" } })),
        ),
        case(
            "bad-headers-secret",
            "spec.sink.http.headersFrom.secretName",
            move |s| s["sink"] = http(json!({ "headersFrom": { "secretName": "Sink Auth" } })),
        ),
        case(
            "s3-partition-by-without-placeholder",
            "spec.sink.s3.prefix",
            |s| {
                s["sink"] = json!({ "s3": { "bucket": "logs", "partitionBy": { "jsonPointer": "/region" } } })
            },
        ),
        case("s3-unknown-placeholder", "spec.sink.s3.prefix", |s| {
            s["sink"] = json!({ "s3": { "bucket": "logs", "prefix": "{year}/" } })
        }),
        case("s3-bad-bucket", "spec.sink.s3.bucket", |s| {
            s["sink"] = json!({ "s3": { "bucket": "Logs_Bucket" } })
        }),
        case(
            "s3-bad-json-pointer",
            "spec.sink.s3.partitionBy.jsonPointer",
            |s| s["sink"] = json!({ "s3": { "bucket": "logs", "prefix": "{partition}/", "partitionBy": { "jsonPointer": "region" } } }),
        ),
        case("long-tag", "spec.sink.tag", |s| {
            s["sink"]["tag"] = json!("t".repeat(257))
        }),
        case("empty-file-path", "spec.sink.file.path", |s| {
            s["sink"] = json!({ "file": { "path": "" } })
        }),
        case("max-age-zero", "spec.sink.batch.maxAge", |s| {
            s["sink"]["batch"] = json!({ "maxAge": "0s" })
        }),
        case("max-age-long", "spec.sink.batch.maxAge", |s| {
            s["sink"]["batch"] = json!({ "maxAge": "1h" })
        }),
        case("zero-batch-records", "spec.sink.batch.maxRecords", |s| {
            s["sink"]["batch"] = json!({ "maxRecords": 0 })
        }),
        case("huge-batch-records", "spec.sink.batch.maxRecords", |s| {
            s["sink"]["batch"] = json!({ "maxRecords": 200_000 })
        }),
        case("tiny-batch-bytes", "spec.sink.batch.maxBytes", |s| {
            s["sink"]["batch"] = json!({ "maxBytes": 100 })
        }),
        case("huge-batch-bytes", "spec.sink.batch.maxBytes", |s| {
            s["sink"]["batch"] = json!({ "maxBytes": 1_i64 << 28 })
        }),
        // workers
        case("min-above-max", "spec.workers.minReplicas", |s| {
            s["workers"] = json!({ "minReplicas": 5, "maxReplicas": 2 })
        }),
        case(
            "zero-shards-per-worker",
            "spec.workers.shardsPerWorker",
            |s| s["workers"]["shardsPerWorker"] = json!(0),
        ),
        case(
            "autoscale-target-short",
            "spec.workers.autoscaling.targetLag",
            |s| s["workers"]["autoscaling"] = json!({ "targetLag": "999ms" }),
        ),
        case(
            "autoscale-up-window-long",
            "spec.workers.autoscaling.scaleUpStabilization",
            |s| s["workers"]["autoscaling"] = json!({ "scaleUpStabilization": "61m" }),
        ),
        case(
            "autoscale-down-window-long",
            "spec.workers.autoscaling.scaleDownStabilization",
            |s| s["workers"]["autoscaling"] = json!({ "scaleDownStabilization": "2h" }),
        ),
        case(
            "autoscale-zero-step",
            "spec.workers.autoscaling.maxStep",
            |s| s["workers"]["autoscaling"] = json!({ "maxStep": 0 }),
        ),
        case(
            "autoscale-enabled-text",
            "spec.workers.autoscaling.enabled",
            |s| s["workers"]["autoscaling"] = json!({ "enabled": "yes" }),
        ),
        case("zero-min-replicas", "spec.workers.minReplicas", |s| {
            s["workers"]["minReplicas"] = json!(0)
        }),
        case("huge-max-replicas", "spec.workers.maxReplicas", |s| {
            s["workers"]["maxReplicas"] = json!(20_000)
        }),
        case("negative-replicas", "spec.workers.replicas", |s| {
            s["workers"]["replicas"] = json!(-1)
        }),
        case("image-with-space", "spec.workers.image", |s| {
            s["workers"]["image"] = json!("kinesis ingester:1")
        }),
        case(
            "bad-service-account",
            "spec.workers.serviceAccountName",
            |s| s["workers"]["serviceAccountName"] = json!("Irsa_Account"),
        ),
        case(
            "annotations-of-a-given-account",
            "spec.workers.serviceAccountAnnotations",
            |s| {
                s["workers"]["serviceAccountName"] = json!("irsa");
                s["workers"]["serviceAccountAnnotations"] =
                    json!({ "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/r" });
            },
        ),
        case(
            "bad-aws-credentials-secret",
            "spec.workers.awsCredentials.secretName",
            |s| s["workers"]["awsCredentials"] = json!({ "secretName": "AWS_Keys" }),
        ),
        case(
            "bad-service-account-annotation-key",
            "spec.workers.serviceAccountAnnotations",
            |s| s["workers"]["serviceAccountAnnotations"] = json!({ "a/b/c": "x" }),
        ),
        case(
            "bad-priority-class",
            "spec.workers.priorityClassName",
            |s| s["workers"]["priorityClassName"] = json!("High Priority"),
        ),
        case("bad-pod-label-value", "spec.workers.podLabels", |s| {
            s["workers"]["podLabels"] = json!({ "team": "a b" })
        }),
        case("bad-node-selector-key", "spec.workers.nodeSelector", |s| {
            s["workers"]["nodeSelector"] = json!({ "-zone": "a" })
        }),
        case("bad-annotation-key", "spec.workers.podAnnotations", |s| {
            s["workers"]["podAnnotations"] = json!({ "a/b/c": "x" })
        }),
        case("scratch-without-size", "spec.workers.scratch.size", |s| {
            s["workers"]["scratch"] = json!({ "type": "EmptyDir" })
        }),
        case("scratch-decimal-size", "spec.workers.scratch.size", |s| {
            s["workers"]["scratch"] = json!({ "size": "1G" })
        }),
        case("scratch-too-large", "spec.workers.scratch.size", |s| {
            s["workers"]["scratch"] = json!({ "size": "17Ti" })
        }),
        case("scratch-bad-type", "spec.workers.scratch.type", |s| {
            s["workers"]["scratch"] = json!({ "type": "HostPath", "size": "1Gi" })
        }),
        case(
            "scratch-class-without-claim",
            "spec.workers.scratch.storageClassName",
            |s| s["workers"]["scratch"] = json!({ "size": "1Gi", "storageClassName": "gp3" }),
        ),
        // Only a fleet: worker pods have a read-only root filesystem.
        fleet_case("file-without-scratch", "spec.sink.file.path", |s| {
            s["sink"] = json!({ "file": { "path": "/var/lib/kinesis-ingester/out.ndjson" } })
        }),
        fleet_case("file-outside-scratch", "spec.sink.file.path", |s| {
            s["sink"] = json!({ "file": { "path": "/data/out.ndjson" } });
            s["workers"]["scratch"] = scratch();
        }),
        fleet_case("relative-dead-letters", "spec.sink.deadLetterPath", |s| {
            s["sink"]["deadLetterPath"] = json!("dead.ndjson");
            s["workers"]["scratch"] = scratch();
        }),
        fleet_case("dead-letters-escape", "spec.sink.deadLetterPath", |s| {
            s["sink"]["deadLetterPath"] = json!("/var/lib/kinesis-ingester/../../etc/dead");
            s["workers"]["scratch"] = scratch();
        }),
    ]
}

/// What the standalone validator says about `doc`: `Ok(None)` when it accepts it.
fn standalone(name: &str, doc: &Value) -> Result<Option<String>> {
    // JSON is YAML: the same document, as a file for `kinesis-ingester validate -f`.
    let text = serde_json::to_string_pretty(doc)?;
    let path = Path::new(name).with_extension("yaml");
    Ok(kinesis_ingester::config::parse(&path, &text)
        .err()
        .map(|e| e.to_string()))
}

/// What a fleet worker says about `doc` (which the standalone validator accepts).
fn fleet(doc: &Value) -> Result<Option<String>> {
    let ki: KinesisIngester = serde_json::from_value(doc.clone())?;
    Ok(ki.validate_fleet().err().map(|e| e.to_string()))
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
    ok.validate_fleet()
        .expect("the example passes client-side validation too");
    let created = api.create(&PostParams::default(), &ok).await?;
    assert_eq!(
        created.spec.read.max_records_per_call, 10_000,
        "defaults are applied"
    );
    assert_eq!(
        created.spec.sink.as_ref().expect("sink").batch.max_records,
        500
    );

    // Every bound is inclusive, and files below the scratch volume are fine for a fleet.
    let edge = with_spec(&base, "edges", |s| {
        s["read"]["pollInterval"] = json!("5m");
        s["read"]["shardSyncInterval"] = json!("1s");
        s["sink"] = json!({
            "file": { "path": "/var/lib/kinesis-ingester/out/orders.ndjson" },
            "deadLetterPath": "/var/lib/kinesis-ingester/dead.ndjson",
            "batch": { "maxAge": "10ms" },
        });
        s["workers"]["scratch"] = json!({ "type": "PersistentVolumeClaim", "size": "16Ti" });
        s["workers"]["podLabels"] = json!({ "example.com/team": "a.b-c_d" });
    });
    assert_eq!(fleet(&edge)?, None);
    let edge: KinesisIngester = serde_json::from_value(edge)?;
    api.create(&PostParams::default(), &edge).await?;

    let cases = cases();
    // Untyped, because some of these documents do not even parse into the Rust types.
    let raw = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::erase::<KinesisIngester>(&()),
    );
    let mut docs: Vec<(String, Value, &'static str, bool)> = cases
        .into_iter()
        .map(|c| {
            let doc = with_spec(&base, &c.name, c.edit);
            (c.name, doc, c.field, c.fleet_only)
        })
        .collect();
    let long_name = "n".repeat(46);
    docs.push((
        long_name.clone(),
        with_spec(&base, &long_name, |_| {}),
        "metadata.name",
        true,
    ));
    let count = docs.len();
    assert!(count >= 40, "only {count} invalid specs");
    let mut failures = Vec::new();
    for (name, doc, field, fleet_only) in &docs {
        let obj: DynamicObject = serde_json::from_value(doc.clone())?;
        match raw.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!(
                "{name}: admitted, but must be rejected naming {field}"
            )),
            Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains(field) => {}
            Err(e) => failures.push(format!("{name}: rejected without naming {field}: {e}")),
        }
        let (who, verdict) = match standalone(name, doc)? {
            None if *fleet_only => ("a fleet worker", fleet(doc)?),
            Some(e) if *fleet_only => {
                failures.push(format!(
                    "{name}: a fleet-only rule, but the standalone ingester rejects it: {e}"
                ));
                continue;
            }
            verdict => ("the standalone validator", verdict),
        };
        match verdict {
            None => failures.push(format!("{name}: {who} accepts it")),
            Some(e) if !e.contains(field) => failures.push(format!(
                "{name}: {who} rejects it without naming {field}: {e}"
            )),
            Some(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems over {count} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // A claim template cannot change: the transition rule is the API server's alone.
    let patch =
        |scratch: Value| Patch::Merge(json!({ "spec": { "workers": { "scratch": scratch } } }));
    let params = PatchParams::default();
    for (object, scratch) in [
        (
            "valid",
            json!({ "type": "PersistentVolumeClaim", "size": "1Gi" }),
        ),
        (
            "edges",
            json!({ "type": "PersistentVolumeClaim", "size": "8Ti" }),
        ),
        ("edges", Value::Null),
    ] {
        match api.patch(object, &params, &patch(scratch.clone())).await {
            Err(kube::Error::Api(s))
                if s.code == 422 && s.message.contains("spec.workers.scratch") => {}
            other => panic!("{object} -> {scratch}: must be refused, got {other:?}"),
        }
    }
    api.patch("valid", &params, &patch(scratch())).await?;
    Ok(())
}

//! Unit tests of the client-side checks: each CEL rule of the CRD has a twin here, and the schema check names the field.

use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;

fn ingester(name: &str, edit: impl FnOnce(&mut Value)) -> KinesisIngester {
    let mut v = json!({
        "apiVersion": "kinesis-operator.dev/v1alpha1",
        "kind": "KinesisIngester",
        "metadata": {"name": name},
        "spec": {"stream": {"name": "orders"}, "sink": {"stdout": {}}},
    });
    edit(&mut v["spec"]);
    serde_json::from_value(v).expect("parses into the types")
}

/// (edit of a valid spec, field the error must name, fleet only)
type Case = (Box<dyn FnOnce(&mut Value)>, &'static str, bool);

/// Replaces `spec.sink` with `spec.sinks` set to `sinks`.
fn sinks(s: &mut Value, sinks: Value) {
    s.as_object_mut().map(|o| o.remove("sink"));
    s["sinks"] = sinks;
}

fn cases() -> Vec<Case> {
    vec![
        (
            Box::new(
                |s| s["network"] = json!({"caBundle": {"path": "/ca.pem", "secret": {"name": "ca", "key": "ca.crt"}}}),
            ),
            "spec.network.caBundle",
            false,
        ),
        (
            Box::new(|s| s["sinks"] = json!([{"name": "a", "stdout": {}}])),
            "spec",
            false,
        ),
        (
            Box::new(|s| {
                sinks(
                    s,
                    json!([{"name": "a", "stdout": {}}, {"name": "a", "stdout": {}}]),
                )
            }),
            "spec.sinks",
            false,
        ),
        (
            Box::new(|s| {
                sinks(
                    s,
                    json!([
                        {"name": "a", "default": true, "stdout": {}},
                        {"name": "b", "default": true, "stdout": {}},
                    ]),
                )
            }),
            "spec.sinks",
            false,
        ),
        (
            Box::new(|s| {
                let h = |n: &str| json!({"name": n, "http": {"url": "http://h/", "headersFrom": {"secretName": "x"}}});
                sinks(s, json!([h("a"), h("b")]))
            }),
            "spec.sinks",
            false,
        ),
        (
            Box::new(|s| {
                sinks(
                    s,
                    json!([{"name": "a", "default": true, "route": {"logGroups": ["g"]}, "stdout": {}}]),
                )
            }),
            "spec.sinks[0].default",
            false,
        ),
        (
            Box::new(|s| {
                sinks(
                    s,
                    json!([{"name": "a", "route": {"logGroups": ["g"], "vrl": "true"}, "stdout": {}}]),
                )
            }),
            "spec.sinks[0].route",
            false,
        ),
        (
            Box::new(|s| {
                sinks(
                    s,
                    json!([{"name": "a", "stdout": {}, "deadLetterAfter": "25h"}]),
                )
            }),
            "spec.sinks[0].deadLetterAfter",
            false,
        ),
        (
            Box::new(|s| {
                sinks(
                    s,
                    json!([{"name": "a", "stdout": {}, "file": {"path": "/x"}}]),
                )
            }),
            "spec.sinks[0]",
            false,
        ),
        (
            Box::new(|s| {
                sinks(
                    s,
                    json!([{"name": "a", "file": {"path": "/tmp/x"}, "deadLetterPath": "/tmp/d"}]),
                );
                s["workers"] = json!({"scratch": {"size": "1Gi"}});
            }),
            "spec.sinks[0].file.path",
            true,
        ),
        (
            Box::new(|s| {
                s["transform"] = json!({"vrl": {"source": "."}, "http": {"url": "http://t/"}})
            }),
            "spec.transform",
            false,
        ),
        (
            Box::new(|s| s["transform"] = json!({"http": {"url": "http://t/", "timeout": "20m"}})),
            "spec.transform.http.timeout",
            false,
        ),
        (
            Box::new(|s| {
                s["transform"] = json!({"http": {"url": "http://t/", "retryDuration": "25h"}})
            }),
            "spec.transform.http.retryDuration",
            false,
        ),
        (
            Box::new(|s| s["reset"] = json!({"to": "AtTimestamp", "requestId": "r1"})),
            "spec.reset.timestamp",
            false,
        ),
        (
            Box::new(|s| {
                s["reset"] = json!({"to": "Latest", "requestId": "r1", "shards": ["x".repeat(129)]})
            }),
            "spec.reset.shards",
            false,
        ),
        (
            Box::new(|s| {
                s["sink"] = json!({"s3": {"bucket": "logs", "partitionBy": {"jsonPointer": "/r"}}})
            }),
            "spec.sink.s3.prefix",
            false,
        ),
        (
            Box::new(|s| s["sink"] = json!({"s3": {"bucket": "logs", "prefix": "{partition}/"}})),
            "spec.sink.s3.prefix",
            false,
        ),
        (
            Box::new(|s| {
                s["stream"]["arn"] = json!("arn:aws:kinesis:us-east-1:123456789012:stream/o")
            }),
            "spec.stream",
            false,
        ),
        (
            Box::new(|s| s["read"] = json!({"pollInterval": "100ms"})),
            "spec.read.pollInterval",
            false,
        ),
        (
            Box::new(|s| s["read"] = json!({"shardSyncInterval": "0s"})),
            "spec.read.shardSyncInterval",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"autoscaling": {"targetLag": "500ms"}})),
            "spec.workers.autoscaling.targetLag",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"autoscaling": {"scaleUpStabilization": "2h"}})),
            "spec.workers.autoscaling.scaleUpStabilization",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"autoscaling": {"scaleDownStabilization": "61m"}})),
            "spec.workers.autoscaling.scaleDownStabilization",
            false,
        ),
        (
            Box::new(|s| s["sink"]["batch"] = json!({"maxAge": "1h"})),
            "spec.sink.batch.maxAge",
            false,
        ),
        (
            Box::new(|s| s["sink"] = json!({"http": {"url": "http://h/", "timeout": "0s"}})),
            "spec.sink.http.timeout",
            false,
        ),
        (
            Box::new(|s| s["read"] = json!({"startingPosition": {"type": "AtTimestamp"}})),
            "spec.read.startingPosition.timestamp",
            false,
        ),
        (
            Box::new(|s| s["sink"]["file"] = json!({"path": "/tmp/x"})),
            "spec.sink",
            false,
        ),
        (
            Box::new(|s| {
                s["sink"] = json!({"http": {"url": "http://h/", "format": "ElasticsearchBulk"}})
            }),
            "spec.sink.http.index",
            false,
        ),
        (
            Box::new(|s| {
                s["sink"] = json!({"http": {"url": "http://h/", "documentId": {"field": "/id"}}})
            }),
            "spec.sink.http.documentId",
            false,
        ),
        (
            Box::new(|s| {
                s["sink"] = json!({"http": {"url": "http://h/", "headers": {"AUTHORIZATION": "t"}}})
            }),
            "spec.sink.http.headers",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"minReplicas": 3, "maxReplicas": 2})),
            "spec.workers.minReplicas",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"scratch": {"size": "17Ti"}})),
            "spec.workers.scratch.size",
            false,
        ),
        (
            Box::new(|s| {
                s["workers"] = json!({"scratch": {"size": "1Gi", "storageClassName": "gp3"}})
            }),
            "spec.workers.scratch.storageClassName",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"podLabels": {"team a": "b"}})),
            "spec.workers.podLabels",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"nodeSelector": {"-zone": "a"}})),
            "spec.workers.nodeSelector",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"podAnnotations": {"a/b/c": "x"}})),
            "spec.workers.podAnnotations",
            false,
        ),
        (
            Box::new(|s| s["workers"] = json!({"serviceAccountAnnotations": {"a/b/c": "x"}})),
            "spec.workers.serviceAccountAnnotations",
            false,
        ),
        (
            Box::new(|s| {
                s["workers"] = json!({
                    "serviceAccountName": "irsa",
                    "serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"},
                })
            }),
            "spec.workers.serviceAccountAnnotations",
            false,
        ),
        (
            Box::new(|s| s["sink"] = json!({"file": {"path": "/data/out.ndjson"}})),
            "spec.sink.file.path",
            true,
        ),
        (
            Box::new(|s| s["sink"]["deadLetterPath"] = json!("dead.ndjson")),
            "spec.sink.deadLetterPath",
            true,
        ),
    ]
}

#[test]
fn each_rule_names_its_field_and_fleet_rules_are_fleet_only() {
    let ok = ingester("orders", |_| {});
    assert_eq!(ok.spec.validate(), Ok(()));
    assert_eq!(ok.validate_fleet(), Ok(()));
    for (edit, field, fleet_only) in cases() {
        let ki = ingester("orders", edit);
        let fleet = ki.validate_fleet().expect_err(field);
        assert!(fleet.0.iter().any(|e| e.field == field), "{field}: {fleet}");
        let standalone = ki.spec.validate();
        if fleet_only {
            assert_eq!(standalone, Ok(()), "{field} is a fleet-only rule");
        } else {
            let e = standalone.expect_err(field);
            assert!(e.0.iter().any(|e| e.field == field), "{field}: {e}");
        }
    }
}

/// Every `message` of an `x-kubernetes-validations` rule in `schema`.
fn rule_messages(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "x-kubernetes-validations" {
                    out.extend(
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|r| r["message"].as_str().map(str::to_owned)),
                    );
                } else {
                    rule_messages(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| rule_messages(v, out)),
        _ => {}
    }
}

#[test]
fn every_cel_rule_of_the_crd_has_a_client_side_twin() {
    let crd = serde_json::to_value(KinesisIngester::crd()).expect("json");
    let mut messages = Vec::new();
    rule_messages(&crd, &mut messages);
    let mut twins = Vec::new();
    for (edit, _, _) in cases() {
        let ki = ingester("orders", edit);
        twins.extend(ki.validate_fleet().err().into_iter().flat_map(|e| e.0));
    }
    let long = ingester(&"n".repeat(MAX_NAME_LEN + 1), |_| {});
    twins.extend(long.validate_fleet().err().into_iter().flat_map(|e| e.0));
    let mut missing = Vec::new();
    for m in &messages {
        // The transition rule needs the old object; only the API server checks it.
        if m.starts_with("workers.scratch cannot be added, changed or removed") {
            continue;
        }
        if !twins.iter().any(|t| m.ends_with(&t.message)) {
            missing.push(m.clone());
        }
    }
    assert!(messages.len() >= 14, "{messages:#?}");
    assert!(missing.is_empty(), "CEL rules without a twin: {missing:#?}");
}

#[test]
fn the_schema_check_names_the_field_and_the_broken_constraint() {
    let spec = json!({
        "stream": {"name": "orders stream", "region": "Europe"},
        "read": {"mode": "Push", "maxRecordsPerCall": 0},
        "sink": {"stdout": {}, "tag": "t".repeat(257), "batch": {"maxRecords": "many"}},
        "workers": {
            "podLabels": {"a": 1, "b": "c d"},
            "scratch": {"type": "EmptyDir"},
        },
    });
    let errors: Vec<String> = check_schema(&spec)
        .into_iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let want = [
        "spec.stream.name: \"orders stream\" must match",
        "spec.stream.region: \"Europe\" must match",
        "spec.read.mode: \"Push\" is not one of Polling, EnhancedFanOut",
        "spec.read.maxRecordsPerCall: must be between 1 and 10000, not 0",
        "spec.sink.tag: must be at most 256 characters",
        "spec.sink.batch.maxRecords: expected an integer",
        "spec.workers.podLabels[a]: expected a string",
        "spec.workers.podLabels[b]: \"c d\" must match",
        "spec.workers.scratch.size: is required",
    ];
    for w in want {
        assert!(
            errors.iter().any(|e| e.starts_with(w)),
            "{w:?} not in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
}

#[test]
fn a_fleet_may_write_files_below_the_scratch_volume_only() {
    let with = |path: &'static str| {
        ingester("orders", move |s| {
            s["sink"] = json!({"file": {"path": path}, "deadLetterPath": path});
            s["workers"] = json!({"scratch": {"size": "1Gi"}});
        })
    };
    assert_eq!(
        with("/var/lib/kinesis-ingester/out/orders.ndjson").validate_fleet(),
        Ok(())
    );
    for bad in [
        "/var/lib/kinesis-ingester",
        "/var/lib/kinesis-ingester/",
        "/var/lib/kinesis-ingester-other/x",
        "/var/lib/kinesis-ingester/../etc/x",
        "/var/lib/kinesis-ingester/./x",
        "/var/lib/kinesis-ingester//x",
        "var/lib/kinesis-ingester/x",
    ] {
        let e = with(bad).validate_fleet().expect_err(bad);
        assert_eq!(e.0.len(), 2, "{bad}: {e}");
        assert!(e.to_string().contains("read-only root filesystem"), "{e}");
    }
    // Without the volume nothing is writable.
    let ki = ingester("orders", |s| {
        s["sink"] = json!({"file": {"path": "/var/lib/kinesis-ingester/o.ndjson"}})
    });
    assert!(ki.validate_fleet().is_err());
    assert_eq!(ki.spec.validate(), Ok(()), "standalone writes anywhere");
}

#[test]
fn bulk_index_names_may_hold_one_or_more_date_parts() {
    for index in ["logs", "logs-{yyyy.MM.dd}", "a-{yyyy}-b-{MM_dd-HH}", "2026"] {
        let ki = ingester("bulk", |s| {
            s["sink"] = json!({"http": {
                "url": "http://h/_bulk", "format": "ElasticsearchBulk", "index": index,
                "documentId": {"field": "/event/id"},
            }})
        });
        assert_eq!(ki.spec.validate(), Ok(()), "{index}");
    }
    for index in [
        "Logs",
        "_logs",
        "logs-{yyyy.ww}",
        "logs-{}",
        "logs-{yyyy",
        "lo gs",
        "a:b",
    ] {
        let ki = ingester(
            "bulk",
            |s| s["sink"] = json!({"http": {"url": "http://h/", "format": "ElasticsearchBulk", "index": index}}),
        );
        let errors = ki.spec.validate().expect_err(index).0;
        assert_eq!(errors[0].field, "spec.sink.http.index", "{index}");
    }
}

//! Smoke tests of the local control plane: StatefulSets run on kwok nodes, and CRD CEL rules reject invalid objects.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{Node, Pod},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kinesis_testkit::{TestNamespace, install_crd, kube_client, unique_name, wait_until};
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, ListParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::json;

#[tokio::test]
async fn statefulset_of_two_reaches_two_running_pods_on_fake_nodes() -> Result<()> {
    let client = kube_client().await?;
    let ns = TestNamespace::create(&client, "smoke-sts").await?;
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "serviceName": "web",
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }],
                    "containers": [{ "name": "web", "image": "registry.example/web:1" }]
                }
            }
        }
    }))?;
    Api::<StatefulSet>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &sts)
        .await?;

    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    let running = wait_until(
        "2 Running pods of StatefulSet web",
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            async move {
                let list = pods.list(&ListParams::default().labels("app=web")).await?;
                let running: Vec<Pod> = list
                    .items
                    .into_iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .collect();
                Ok((running.len() == 2).then_some(running))
            }
        },
    )
    .await?;

    let mut names: Vec<String> = running
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["web-0", "web-1"],
        "StatefulSet pods keep their ordinal names"
    );

    // Every pod runs on a fake node that kwok manages.
    let nodes = Api::<Node>::all(client.clone());
    for pod in &running {
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("pod is scheduled");
        let node = nodes.get(&node_name).await?;
        let annotations = node.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get("kwok.x-k8s.io/node").map(String::as_str),
            Some("fake"),
            "pod {:?} runs on node {node_name}, which is not a kwok node",
            pod.metadata.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn crd_cel_rule_rejects_an_invalid_object_with_the_rule_message() -> Result<()> {
    let client = kube_client().await?;
    let ns = TestNamespace::create(&client, "smoke-cel").await?;
    // A CRD of its own, unique to this run, so the test does not depend on the project's types.
    let plural = unique_name("ranges").replace('-', "");
    let group = "smoke.kinesis-operator.dev";
    let message = "spec.min must not be greater than spec.max";
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{group}") },
        "spec": {
            "group": group,
            "names": { "kind": "Range", "plural": plural, "singular": "range", "listKind": "RangeList" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "required": ["min", "max"],
                        "properties": { "min": { "type": "integer" }, "max": { "type": "integer" } },
                        "x-kubernetes-validations": [{ "rule": "self.min <= self.max", "message": message }]
                    }}
                }}
            }]
        }
    }))?;
    install_crd(&client, &crd).await?;

    let gvk = GroupVersionKind::gvk(group, "v1", "Range");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::from_gvk_with_plural(&gvk, &plural),
    );
    let object = |name: &str, min: i64, max: i64| -> Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": format!("{group}/v1"), "kind": "Range",
            "metadata": { "name": name },
            "spec": { "min": min, "max": max }
        }))?)
    };

    api.create(&PostParams::default(), &object("valid", 1, 5)?)
        .await?;
    let err = api
        .create(&PostParams::default(), &object("invalid", 5, 1)?)
        .await
        .expect_err("the API server must reject min > max");
    let kube::Error::Api(status) = &err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains(message),
        "the rejection carries the rule's message: {}",
        status.message
    );

    Api::<CustomResourceDefinition>::all(client)
        .delete(
            &crd.metadata.name.clone().unwrap_or_default(),
            &DeleteParams::default(),
        )
        .await?;
    Ok(())
}

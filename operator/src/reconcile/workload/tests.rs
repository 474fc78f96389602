use super::*;

fn ingester(yaml: &str) -> KinesisIngester {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kinesis-operator.dev/v1alpha1", "kind": "KinesisIngester",
        "metadata": {"name": "orders", "namespace": "ns", "uid": "u1"},
        "spec": serde_saphyr_like(yaml),
    }))
    .expect("a valid ingester")
}

fn serde_saphyr_like(extra: &str) -> serde_json::Value {
    let mut spec = serde_json::json!({"stream": {"name": "s"}, "sink": {"stdout": {}}});
    if !extra.is_empty() {
        spec["workers"] = serde_json::from_str(extra).expect("json");
    }
    spec
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "kinesis-operator.dev/v1alpha1".into(),
        kind: "KinesisIngester".into(),
        name: "orders".into(),
        uid: "u1".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn settings() -> WorkloadSettings {
    WorkloadSettings {
        default_image: "kinesis-ingester:test".into(),
        worker_args: vec!["--report-interval".into(), "6s".into()],
        grace_period_seconds: 45,
    }
}

#[test]
fn editing_what_a_worker_reads_at_start_up_rolls_the_pods_and_nothing_else_does() {
    let hash = |ki: &KinesisIngester| {
        let names = Names::of(ki, "ns", "orders");
        let sts = stateful_set(ki, &names, &owner(), 3, &settings());
        sts.spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
            .expect("the config hash")
    };
    let base = ingester(r#"{"podAnnotations": {"a": "b"}}"#);
    let mut transformed = base.clone();
    transformed.spec.transform = Some(kinesis_ingester_api::TransformSpec {
        vrl: Some(kinesis_ingester_api::VrlTransform {
            source: ".a = 1".into(),
        }),
        http: None,
    });
    let mut retagged = base.clone();
    retagged.spec.sink.as_mut().expect("sink").tag = Some("other".into());
    assert_ne!(
        hash(&base),
        hash(&transformed),
        "a new program rolls the pods"
    );
    assert_ne!(hash(&base), hash(&retagged), "so does a sink edit");
    let mut suspended = base.clone();
    suspended.spec.suspend = true;
    suspended.spec.workers.max_replicas += 1;
    assert_eq!(
        hash(&base),
        hash(&suspended),
        "fleet settings are not read at start-up"
    );
    assert_eq!(hash(&base), hash(&base.clone()), "stable");
    let names = Names::of(&base, "ns", "orders");
    let annotations = stateful_set(&base, &names, &owner(), 3, &settings())
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .expect("annotations");
    assert_eq!(
        annotations.get("a").map(String::as_str),
        Some("b"),
        "podAnnotations kept"
    );
}

#[test]
fn the_stateful_set_runs_the_fleet_worker_restricted() {
    let ki = ingester(r#"{"podLabels": {"team": "a"}, "serviceAccountName": "irsa"}"#);
    let names = Names::of(&ki, "ns", "orders");
    assert_eq!(names.service_account, "irsa");
    assert!(
        service_account(&names, &owner()).is_none(),
        "a given account is not ours"
    );
    let sts = stateful_set(&ki, &names, &owner(), 3, &settings());
    let spec = sts.spec;
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let pod = spec.template.spec.expect("pod");
    assert_eq!(pod.service_account_name.as_deref(), Some("irsa"));
    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("labels");
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(
        labels.get(INGESTER_LABEL).map(String::as_str),
        Some("orders")
    );
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("kinesis-ingester:test"));
    let args = c.args.clone().expect("args").join(" ");
    assert!(args.starts_with("run --fleet --ingester orders"), "{args}");
    assert!(args.ends_with("--report-interval 6s"), "{args}");
    let sc = c.security_context.clone().expect("security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        pod.security_context
            .and_then(|s| s.seccomp_profile)
            .map(|s| s.type_)
            .as_deref(),
        Some("RuntimeDefault")
    );
}

#[test]
fn the_scratch_volume_is_mounted_where_fleet_files_must_be() {
    let pod_of = |workers: &str| {
        let ki = ingester(workers);
        let names = Names::of(&ki, "ns", "orders");
        stateful_set(&ki, &names, &owner(), 1, &settings()).spec
    };
    let mount = |pod: &PodSpec| {
        pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.name, m.mount_path, m.read_only))
            .collect::<Vec<_>>()
    };
    let want_mount = vec![(
        "scratch".to_owned(),
        "/var/lib/kinesis-ingester".to_owned(),
        None,
    )];

    // Without scratch nothing is writable, and the pod template is as before.
    let sts = pod_of("");
    let pod = sts.template.spec.expect("pod");
    assert!(mount(&pod).is_empty());
    assert!(pod.volumes.is_none() && sts.volume_claim_templates.is_none());
    assert_eq!(pod.security_context.and_then(|s| s.fs_group), None);

    let sts = pod_of(r#"{"scratch": {"size": "2Gi"}}"#);
    let pod = sts.template.spec.expect("pod");
    assert_eq!(mount(&pod), want_mount);
    let volumes = pod.volumes.clone().expect("volumes");
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].name, "scratch");
    let empty_dir = volumes[0].empty_dir.clone().expect("an emptyDir");
    assert_eq!(empty_dir.size_limit, Some(Quantity("2Gi".into())));
    assert!(sts.volume_claim_templates.is_none());
    assert_eq!(pod.security_context.and_then(|s| s.fs_group), Some(65532));

    let sts = pod_of(
        r#"{"scratch": {"type": "PersistentVolumeClaim", "size": "10Gi", "storageClassName": "gp3"}}"#,
    );
    let pod = sts.template.spec.expect("pod");
    assert_eq!(mount(&pod), want_mount);
    assert!(
        pod.volumes.is_none(),
        "the claim template provides the volume"
    );
    let claims = sts.volume_claim_templates.expect("a claim template");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("scratch"));
    let spec = claims[0].spec.clone().expect("claim spec");
    assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
    assert_eq!(
        spec.resources
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned()),
        Some(Quantity("10Gi".into()))
    );
    let sc = pod.containers[0].security_context.clone().expect("sc");
    assert_eq!(sc.read_only_root_filesystem, Some(true), "still read-only");
}

#[test]
fn the_worker_service_account_carries_the_irsa_annotation() {
    let ki = ingester(
        r#"{"serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/reader"}}"#,
    );
    let names = Names::of(&ki, "ns", "orders");
    let sa = service_account(&names, &owner()).expect("ours");
    let annotations = sa.metadata.annotations.expect("annotations");
    assert_eq!(
        annotations["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/reader"
    );
    assert_eq!(sa.metadata.name.as_deref(), Some("orders-worker"));
    let plain = service_account(&Names::of(&ingester(""), "ns", "orders"), &owner()).expect("ours");
    assert_eq!(plain.metadata.annotations, None, "none unless asked");
}

#[test]
fn the_worker_role_grants_only_what_a_worker_does() {
    let ki = ingester("");
    let names = Names::of(&ki, "ns", "orders");
    assert_eq!(names.service_account, "orders-worker");
    assert!(service_account(&names, &owner()).is_some());
    let rules = role(&names, &owner()).rules.expect("rules");
    let summary: Vec<String> = rules
        .iter()
        .map(|r| {
            format!(
                "{}:{}:{}",
                r.resources.clone().unwrap_or_default().join(","),
                r.verbs.join(","),
                r.resource_names.clone().unwrap_or_default().join(",")
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "kinesisingesters:get:orders",
            "kinesisshardassignments:get,list,watch:orders",
            "kinesisworkers:get:",
            "kinesisworkers/status:update:",
        ]
    );
    let binding = role_binding(&names, &owner());
    assert_eq!(binding.subjects.expect("subjects")[0].name, "orders-worker");
    assert_eq!(
        selector_string("orders"),
        "app.kubernetes.io/component=worker,kinesis-operator.dev/ingester=orders"
    );
}

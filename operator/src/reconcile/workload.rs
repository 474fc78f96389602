//! Pure builders of the objects the operator applies for one ingester: the worker ServiceAccount, Role and RoleBinding, and the StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
            HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecurityContext,
            ServiceAccount, Volume, VolumeMount, VolumeResourceRequirements,
        },
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kinesis_ingester_api::{
    INGESTER_LABEL, KinesisIngester, ScratchSpec, ScratchType, bounds::SCRATCH_MOUNT_PATH,
};

use super::{credentials, headers};

/// Port of the worker's `/metrics`, `/healthz` and `/readyz`.
pub const WORKER_METRICS_PORT: i32 = 9464;

/// Name of the scratch volume (and of its claim template).
pub const SCRATCH_VOLUME: &str = "scratch";

/// The user and group worker containers run as; the group owns the scratch volume.
const WORKER_UID: i64 = 65532;

/// What the workload needs beyond the ingester.
#[derive(Clone, Debug)]
pub struct WorkloadSettings {
    /// Image of the worker when `spec.workers.image` is unset.
    pub default_image: String,
    /// Worker flags: report interval and self-fence time.
    pub worker_args: Vec<String>,
    /// `terminationGracePeriodSeconds` of worker pods.
    pub grace_period_seconds: i64,
}

/// The names of an ingester's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Ingester name.
    pub ingester: String,
    /// Namespace.
    pub namespace: String,
    /// StatefulSet (and Role, RoleBinding) name.
    pub workload: String,
    /// ServiceAccount the pods run as.
    pub service_account: String,
    /// Whether the operator owns that ServiceAccount (`spec.workers.serviceAccountName` unset).
    pub own_service_account: bool,
    /// Annotations of the ServiceAccount the operator owns (IRSA).
    pub service_account_annotations: BTreeMap<String, String>,
}

impl Names {
    /// Names for `ki`.
    pub fn of(ki: &KinesisIngester, namespace: &str, name: &str) -> Self {
        let workload = format!("{name}-worker");
        let given = ki.spec.workers.service_account_name.clone();
        Self {
            ingester: name.to_owned(),
            namespace: namespace.to_owned(),
            service_account: given.clone().unwrap_or_else(|| workload.clone()),
            own_service_account: given.is_none(),
            service_account_annotations: ki.spec.workers.service_account_annotations.clone(),
            workload,
        }
    }
}

/// Labels that select an ingester's worker pods.
pub fn selector_labels(ingester: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INGESTER_LABEL.to_owned(), ingester.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "worker".to_owned(),
        ),
    ])
}

/// The same, as a label selector string (the scale subresource's `status.selector`).
pub fn selector_string(ingester: &str) -> String {
    selector_labels(ingester)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(ingester: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(ingester);
    l.insert("app.kubernetes.io/name".into(), "kinesis-ingester".into());
    l.insert("app.kubernetes.io/instance".into(), ingester.into());
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "kinesis-operator".into(),
    );
    l
}

fn meta(names: &Names, name: &str, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(&names.ingester)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// The worker ServiceAccount, when the operator owns it.
pub fn service_account(names: &Names, owner: &OwnerReference) -> Option<ServiceAccount> {
    names.own_service_account.then(|| ServiceAccount {
        metadata: ObjectMeta {
            annotations: (!names.service_account_annotations.is_empty())
                .then(|| names.service_account_annotations.clone()),
            ..meta(names, &names.service_account, owner)
        },
        automount_service_account_token: Some(true),
        ..Default::default()
    })
}

fn rule(resource: &str, verbs: &[&str], names: Option<&str>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec!["kinesis-operator.dev".into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        resource_names: names.map(|n| vec![n.to_owned()]),
        ..Default::default()
    }
}

/// The worker Role: read this ingester and its shard table, read worker objects, write worker
/// reports. Nothing else.
pub fn role(names: &Names, owner: &OwnerReference) -> Role {
    let n = Some(names.ingester.as_str());
    Role {
        metadata: meta(names, &names.workload, owner),
        rules: Some(vec![
            rule("kinesisingesters", &["get"], n),
            rule("kinesisshardassignments", &["get", "list", "watch"], n),
            rule("kinesisworkers", &["get"], None),
            rule("kinesisworkers/status", &["update"], None),
        ]),
    }
}

/// Binds the worker Role to the worker ServiceAccount.
pub fn role_binding(names: &Names, owner: &OwnerReference) -> RoleBinding {
    RoleBinding {
        metadata: meta(names, &names.workload, owner),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: names.workload.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names.service_account.clone(),
            namespace: Some(names.namespace.clone()),
            ..Default::default()
        }]),
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        ..Default::default()
    }
}

/// The worker StatefulSet: stable pod names `<name>-worker-<n>` are the worker identities.
/// Pods run as non-root with a read-only root filesystem and no capabilities (the `restricted`
/// Pod Security Standard).
pub fn stateful_set(
    ki: &KinesisIngester,
    names: &Names,
    owner: &OwnerReference,
    replicas: i32,
    settings: &WorkloadSettings,
) -> StatefulSet {
    let w = &ki.spec.workers;
    let mut pod_labels = w.pod_labels.clone();
    pod_labels.extend(labels(&names.ingester));
    let mut args = vec![
        "run".to_owned(),
        "--fleet".into(),
        "--ingester".into(),
        names.ingester.clone(),
        "--metrics-addr".into(),
        format!("0.0.0.0:{WORKER_METRICS_PORT}"),
        "--log-format".into(),
        "json".into(),
    ];
    args.extend(settings.worker_args.iter().cloned());
    let container = Container {
        name: "ingester".into(),
        image: Some(
            w.image
                .clone()
                .unwrap_or_else(|| settings.default_image.clone()),
        ),
        args: Some(args),
        env: Some(
            [
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_UID", "metadata.uid"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
            ]
            .into_iter()
            .chain(credentials::env(ki))
            .collect(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: WORKER_METRICS_PORT,
            ..Default::default()
        }]),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        resources: w.resources.clone(),
        volume_mounts: {
            let scratch = w.scratch.as_ref().map(|_| VolumeMount {
                name: SCRATCH_VOLUME.into(),
                mount_path: SCRATCH_MOUNT_PATH.into(),
                ..Default::default()
            });
            let headers = headers::mount(ki);
            let mounts: Vec<_> = scratch.into_iter().chain(headers).collect();
            (!mounts.is_empty()).then_some(mounts)
        },
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    StatefulSet {
        metadata: meta(names, &names.workload, owner),
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.workload.clone()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&names.ingester)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!w.pod_annotations.is_empty()).then(|| w.pod_annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.service_account.clone()),
                    termination_grace_period_seconds: Some(settings.grace_period_seconds),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(WORKER_UID),
                        // A claimed volume's root belongs to root: let the worker's group write.
                        fs_group: w.scratch.as_ref().map(|_| WORKER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: {
                        let volumes: Vec<_> = scratch_volume(w.scratch.as_ref())
                            .into_iter()
                            .chain(headers::volume(ki))
                            .collect();
                        (!volumes.is_empty()).then_some(volumes)
                    },
                    node_selector: (!w.node_selector.is_empty()).then(|| w.node_selector.clone()),
                    tolerations: (!w.tolerations.is_empty()).then(|| w.tolerations.clone()),
                    affinity: w.affinity.clone(),
                    priority_class_name: w.priority_class_name.clone(),
                    ..Default::default()
                }),
            },
            volume_claim_templates: scratch_claim(w.scratch.as_ref()).map(|c| vec![c]),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The pod volume of an `EmptyDir` scratch.
fn scratch_volume(scratch: Option<&ScratchSpec>) -> Option<Volume> {
    let s = scratch.filter(|s| s.kind == ScratchType::EmptyDir)?;
    Some(Volume {
        name: SCRATCH_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(s.size.clone())),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The claim template of a `PersistentVolumeClaim` scratch: one claim per worker, kept by the
/// StatefulSet's default retention policy.
fn scratch_claim(scratch: Option<&ScratchSpec>) -> Option<PersistentVolumeClaim> {
    let s = scratch.filter(|s| s.kind == ScratchType::PersistentVolumeClaim)?;
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(SCRATCH_VOLUME.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: s.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(s.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
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
        let plain =
            service_account(&Names::of(&ingester(""), "ns", "orders"), &owner()).expect("ours");
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
}

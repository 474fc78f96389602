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

use super::{ca, credentials, headers};

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

/// Hash of the spec a worker reads once, at start-up, on the pod template: editing it
/// (`stream`, `read`, `decode`, `transform`, `sink`, `sinks` or `network`) rolls the workers, which hand their shards
/// over at their checkpoints, so the new spec applies.
pub const CONFIG_HASH_ANNOTATION: &str = "kinesis-operator.dev/config-hash";

/// The pod template's annotations: `workers.podAnnotations` and [`CONFIG_HASH_ANNOTATION`].
fn pod_annotations(ki: &KinesisIngester) -> BTreeMap<String, String> {
    let s = &ki.spec;
    let mut read_once = serde_json::json!([s.stream, s.read, s.decode, s.transform, s.sink]);
    if !s.sinks.is_empty()
        && let Some(fields) = read_once.as_array_mut()
    {
        // Only when set: an ingester with `sink` keeps the hash it had before `sinks` existed.
        fields.push(serde_json::json!(s.sinks));
    }
    if let Some(network) = &s.network
        && let Some(fields) = read_once.as_array_mut()
    {
        fields.push(serde_json::json!({ "network": network }));
    }
    // FNV-1a: the same value on every operator version and platform, so an upgrade rolls nothing.
    let hash = read_once
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let mut annotations = ki.spec.workers.pod_annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.to_owned(), format!("{hash:016x}"));
    annotations
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
            let mounts: Vec<_> = scratch
                .into_iter()
                .chain(headers)
                .chain(ca::mount(ki))
                .collect();
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
                    annotations: Some(pod_annotations(ki)),
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
                            .chain(ca::volume(ki))
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
mod tests;

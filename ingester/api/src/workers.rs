//! The `spec.workers` section: the size and pod settings of the worker fleet, and the scratch volume its pods write files to.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, bounds};

/// The worker fleet. The operator runs `ceil(openShards / shardsPerWorker)` workers, kept within
/// `minReplicas..maxReplicas`, unless `replicas` is set (by hand, or by an autoscaler through the
/// scale subresource) or `autoscaling` is enabled (then the lag decides).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("workers.minReplicas must not be greater than workers.maxReplicas").field_path(".minReplicas").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.serviceAccountName) || !has(self.serviceAccountAnnotations)").message("workers.serviceAccountAnnotations applies to the ServiceAccount the operator creates: with workers.serviceAccountName, annotate that account yourself").field_path(".serviceAccountAnnotations").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new(SCRATCH_CLAIM_IMMUTABLE).message(SCRATCH_CLAIM_MESSAGE).field_path(".scratch").reason(Reason::FieldValueForbidden))]
pub struct WorkersSpec {
    /// Shards each worker reads at most, used to size the fleet.
    #[serde(default = "default_shards_per_worker")]
    #[schemars(range(min = 1, max = 10000))]
    pub shards_per_worker: i32,

    /// Fewest workers.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_replicas: i32,

    /// Most workers.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: i32,

    /// Explicit worker count; overrides the count derived from `shardsPerWorker` (still kept
    /// within the bounds). Set by `kubectl scale` or an autoscaler. Ignored while `autoscaling`
    /// is enabled (the status says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: Option<i32>,

    /// Lag-driven autoscaling inside the operator: the fleet grows while the slowest shard's
    /// `MillisBehindLatest` stays above `targetLag` and shrinks while it stays below half of it,
    /// within `minReplicas..maxReplicas` and never past one worker per readable shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Worker container image. Defaults to the ingester image the operator was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^\S+$"))]
    pub image: Option<String>,

    /// Compute resources of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels a worker pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_LABELS, "additionalProperties" = label_value_schema()))]
    #[x_kube(validation = label_keys_rule("workers.nodeSelector"))]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of worker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity rules of worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// PriorityClass of worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub priority_class_name: Option<String>,

    /// ServiceAccount of worker pods, e.g. one annotated for IRSA. When unset the operator
    /// creates `<name>-worker`. Either way it binds the account to a Role that may only read
    /// this ingester and its shard table and write worker reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub service_account_name: Option<String>,

    /// Annotations of the ServiceAccount the operator creates (`<name>-worker`), which is how
    /// workers get an AWS identity: `eks.amazonaws.com/role-arn: arn:aws:iam::…:role/…` for
    /// IRSA. (EKS Pod Identity needs none: associate the role with `<name>-worker`.) Not with
    /// `serviceAccountName`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_LABELS))]
    #[x_kube(validation = label_keys_rule("workers.serviceAccountAnnotations"))]
    pub service_account_annotations: BTreeMap<String, String>,

    /// Static AWS credentials for the workers, from a Secret in the ingester's namespace:
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` when present)
    /// become the worker container's environment. For clusters without IRSA or EKS Pod Identity
    /// (on-premises, another cloud, an emulator); prefer those where they exist, as a Secret
    /// holds long-lived keys. Environment credentials come first in the AWS SDK's chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_credentials: Option<AwsCredentials>,

    /// Extra labels on worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_LABELS, "additionalProperties" = label_value_schema()))]
    #[x_kube(validation = label_keys_rule("workers.podLabels"))]
    pub pod_labels: BTreeMap<String, String>,

    /// Extra annotations on worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_LABELS))]
    #[x_kube(validation = label_keys_rule("workers.podAnnotations"))]
    pub pod_annotations: BTreeMap<String, String>,

    /// A writable volume mounted at `/var/lib/kinesis-ingester` in every worker pod, where
    /// `sink.file.path` and `sink.deadLetterPath` must be in a fleet: the rest of a worker's
    /// filesystem is read-only. Each worker gets its own volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchSpec>,
}

/// Lag-driven autoscaling of the worker fleet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Scale on lag (default `true` once the section is present); `false` keeps the settings and
    /// sizes the fleet as without them.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,

    /// The highest acceptable lag: the slowest shard's `MillisBehindLatest`. Above it the fleet
    /// grows in proportion (lag twice the target asks for twice the workers); below half of it
    /// the fleet shrinks; in between it holds. 1s to 24h, default `1m`.
    #[serde(default = "default_target_lag")]
    #[x_kube(validation = bounds::TARGET_LAG.rule())]
    pub target_lag: Duration,

    /// How long the lag must ask for more workers before the fleet grows: the smallest size
    /// asked for over this window is applied. 0s to 1h, default `30s`.
    #[serde(default = "default_scale_up_window")]
    #[x_kube(validation = bounds::SCALE_UP_STABILIZATION.rule())]
    pub scale_up_stabilization: Duration,

    /// How long the lag must ask for fewer workers before the fleet shrinks: the largest size
    /// asked for over this window is applied. 0s to 1h, default `5m`.
    #[serde(default = "default_scale_down_window")]
    #[x_kube(validation = bounds::SCALE_DOWN_STABILIZATION.rule())]
    pub scale_down_stabilization: Duration,

    /// Most workers added or removed in one step. 1 to 1000, default 4.
    #[serde(default = "default_max_step")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_step: i32,
}

fn enabled_by_default() -> bool {
    true
}

fn default_target_lag() -> Duration {
    Duration::from_millis(60_000)
}

fn default_scale_up_window() -> Duration {
    Duration::from_millis(30_000)
}

fn default_scale_down_window() -> Duration {
    Duration::from_millis(300_000)
}

fn default_max_step() -> i32 {
    4
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            target_lag: default_target_lag(),
            scale_up_stabilization: default_scale_up_window(),
            scale_down_stabilization: default_scale_down_window(),
            max_step: default_max_step(),
        }
    }
}

impl WorkersSpec {
    /// The autoscaling settings when autoscaling is on.
    pub fn autoscaler(&self) -> Option<&AutoscalingSpec> {
        self.autoscaling.as_ref().filter(|a| a.enabled)
    }
}

/// A Secret holding static AWS credentials.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentials {
    /// Name of the Secret, in the ingester's namespace. Its keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` are required (a worker pod does not start without them);
    /// `AWS_SESSION_TOKEN` is optional. The operator never reads the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
}

/// The environment variables [`AwsCredentials`] sets, each from the Secret key of the same
/// name, and whether the key is optional.
pub const AWS_CREDENTIAL_KEYS: [(&str, bool); 3] = [
    ("AWS_ACCESS_KEY_ID", false),
    ("AWS_SECRET_ACCESS_KEY", false),
    ("AWS_SESSION_TOKEN", true),
];

/// The worker's scratch volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'PersistentVolumeClaim' || !has(self.storageClassName)").message("workers.scratch.storageClassName is allowed only when type is PersistentVolumeClaim").field_path(".storageClassName").reason(Reason::FieldValueForbidden))]
pub struct ScratchSpec {
    /// `EmptyDir` (default): a per-pod `emptyDir` limited to `size`, emptied when the pod is
    /// deleted or moved. `PersistentVolumeClaim`: one claim of `size` per worker (the
    /// StatefulSet's `volumeClaimTemplates`, claim `scratch-<name>-worker-<n>`), kept across
    /// pod restarts, scale-down and deletion of the ingester; it cannot be changed later.
    #[serde(default, rename = "type")]
    pub kind: ScratchType,

    /// Size of the volume, a whole number of `Mi`, `Gi` or `Ti` from 1Mi to 16Ti, e.g. `1Gi`:
    /// the `emptyDir` size limit (the pod is evicted past it) or the claim's storage request.
    #[schemars(length(max = 16), regex(pattern = bounds::SIZE_PATTERN))]
    #[x_kube(validation = bounds::SCRATCH_SIZE.rule())]
    pub size: String,

    /// StorageClass of the claims (`PersistentVolumeClaim` only); the cluster's default class
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub storage_class_name: Option<String>,
}

/// Kinds of scratch volume.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScratchType {
    /// An `emptyDir` per pod: gone with the pod.
    #[default]
    EmptyDir,
    /// A PersistentVolumeClaim per worker, kept until deleted by hand.
    PersistentVolumeClaim,
}

/// A DNS subdomain (RFC 1123), as names of ServiceAccounts and classes must be.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A label or annotation key: an optional DNS-subdomain prefix and `/`, then a name of at most
/// 63 characters that starts and ends alphanumeric.
pub const LABEL_KEY_PATTERN: &str = "^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// A label value: empty, or at most 63 characters that start and end alphanumeric.
pub const LABEL_VALUE_PATTERN: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";

/// Most entries in `podLabels`, `podAnnotations` and `nodeSelector`.
pub const MAX_LABELS: usize = 64;

/// Longest label or annotation key: a 253-character prefix, `/` and a 63-character name.
pub const MAX_LABEL_KEY_LEN: usize = 317;

/// What the keys of `podLabels`, `nodeSelector` and `podAnnotations` must be.
pub const LABEL_KEY_REQUIREMENT: &str = "keys must be label keys: an optional DNS prefix and '/', then at most 63 characters of A-Z, a-z, 0-9, '-', '_' or '.', starting and ending alphanumeric";

/// The admission rule on the keys of a label map: the API server would refuse the StatefulSet
/// otherwise, and the operator would retry it forever. Values are checked by the schema (a
/// pattern costs nothing in CEL's budget).
fn label_keys_rule(field: &str) -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "self.all(k, k.size() <= {MAX_LABEL_KEY_LEN} && k.matches('{LABEL_KEY_PATTERN}'))"
    ))
    .message(format!("{field}: {LABEL_KEY_REQUIREMENT}").as_str())
    .reason(kube::core::Reason::FieldValueInvalid)
}

/// The schema of a label value.
fn label_value_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "string",
        "maxLength": 63,
        "pattern": LABEL_VALUE_PATTERN,
    })
}

/// A claim template cannot change: adding, changing or removing a `PersistentVolumeClaim`
/// scratch is refused (a transition rule: only the API server checks it).
const SCRATCH_CLAIM_IMMUTABLE: &str = "((has(self.scratch) && self.scratch.type == 'PersistentVolumeClaim') || (has(oldSelf.scratch) && oldSelf.scratch.type == 'PersistentVolumeClaim')) ? (has(self.scratch) && has(oldSelf.scratch) && self.scratch == oldSelf.scratch) : true";

const SCRATCH_CLAIM_MESSAGE: &str = "workers.scratch cannot be added, changed or removed while it is a PersistentVolumeClaim: a StatefulSet's volumeClaimTemplates cannot change; delete and re-create the ingester (with checkpoints.retention: Retain it resumes where it stopped)";

fn default_shards_per_worker() -> i32 {
    4
}

fn default_min_replicas() -> i32 {
    1
}

fn default_max_replicas() -> i32 {
    10
}

impl Default for WorkersSpec {
    fn default() -> Self {
        Self {
            shards_per_worker: default_shards_per_worker(),
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            replicas: None,
            autoscaling: None,
            image: None,
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            priority_class_name: None,
            service_account_name: None,
            service_account_annotations: BTreeMap::new(),
            aws_credentials: None,
            pod_labels: BTreeMap::new(),
            pod_annotations: BTreeMap::new(),
            scratch: None,
        }
    }
}

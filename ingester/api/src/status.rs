//! The `KinesisIngester` status: conditions, fleet size, lag, and one entry per shard.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a KinesisIngester, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KinesisIngesterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Progressing and Degraded, with reasons and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Name of the stream being read (from `spec.stream.name` or the ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,

    /// Shards that are open (accept new records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_shards: Option<i32>,

    /// Desired number of workers (the scale subresource's status.replicas).
    #[serde(default)]
    pub replicas: i32,

    /// Workers whose pod is ready.
    #[serde(default)]
    pub ready_replicas: i32,

    /// `ready/desired` workers, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<String>,

    /// Label selector of the worker pods, for autoscalers (the scale subresource's selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Largest MillisBehindLatest over all shards being read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_millis_behind_latest: Option<i64>,

    /// `maxMillisBehindLatest` for display, e.g. `1.2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,

    /// When `lag` was measured: the time of the oldest worker report it is computed from (the
    /// workers' clocks, RFC 3339). Absent while the lag is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_measured_at: Option<String>,

    /// While the sink delivers nothing although records wait: how long the slowest such shard
    /// has waited (e.g. `1m35s`). Absent while delivery keeps up. `lag` measures reading; this
    /// measures delivering, so a stuck sink shows here even when every record was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undelivered: Option<String>,

    /// What the lag-driven autoscaler decided last and why (absent while
    /// `spec.workers.autoscaling` is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,

    /// The last `spec.reset` applied, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<crate::AppliedReset>,

    /// One entry per shard that is being read or still has to be.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub shards: Vec<ShardStatus>,
}

/// The autoscaler's last decision.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// Workers the autoscaler wants.
    pub desired_workers: i32,
    /// Why, in one word: `LagAboveTarget`, `LagBelowTarget`, `LagWithinTarget`, `LagUnknown`,
    /// `Stabilizing`, `Settling`, `AtMaxReplicas`, `AtMinReplicas`, `OneWorkerPerShard` or
    /// `RecentlyTooFew`.
    pub reason: String,
    /// Why, for people: the lag, the target and what happens next.
    pub message: String,
    /// When the autoscaler last changed the fleet's size (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
}

/// Progress of one shard.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard id, e.g. `shardId-000000000003`.
    pub shard_id: String,

    /// Parent shards that must be finished before this one is read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_shard_ids: Vec<String>,

    /// Worker pod that owns the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,

    /// Where the shard is in its life.
    pub state: ShardState,

    /// MillisBehindLatest last reported for the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis_behind_latest: Option<i64>,

    /// Sequence number of the last record delivered and checkpointed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,

    /// When `checkpoint` was stored: the first worker report that carried it (the worker's
    /// clock). Absent until this operator saw the checkpoint move. While records wait and this
    /// stands still, nothing is being delivered; the owner's `KinesisWorker` status has the
    /// shard's `lastDelivery` and what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<String>,
}

/// Life of a shard in the fleet.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardState {
    /// Waiting for its parents to finish, or for an owner.
    Pending,
    /// Being read by its owner.
    Reading,
    /// Being handed over: the owner flushes and writes its final checkpoint.
    Draining,
    /// Read to its end (SHARD_END) and checkpointed.
    Finished,
}

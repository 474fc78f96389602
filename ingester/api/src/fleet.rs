//! The two internal kinds of a fleet: `KinesisShardAssignment` (the shard table, written only by
//! the operator) and `KinesisWorker` (one per worker pod: fences in `spec` from the operator,
//! checkpoints, lag and liveness in `status` from that worker only). See docs/design.md.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AppliedReset, ShardRewind};

/// Label put on every object the operator makes for an ingester, naming the ingester.
pub const INGESTER_LABEL: &str = "kinesis-operator.dev/ingester";

/// Label on `KinesisWorker` objects and worker pods: the worker's ordinal in the StatefulSet.
pub const ORDINAL_LABEL: &str = "kinesis-operator.dev/ordinal";

/// Label on `KinesisWorker` objects: the ServiceAccount its pod runs as. The chart's admission
/// policy lets only that ServiceAccount (or `<ingester>-worker`) update the worker's status.
pub const SERVICE_ACCOUNT_LABEL: &str = "kinesis-operator.dev/service-account";

/// The shard table of one KinesisIngester: owner, epoch and start position of every shard that
/// is not finished. Written only by the operator, with a `resourceVersion` precondition; every
/// worker of the ingester watches it.
// clippy reads the repeated `type_ = ...` of the printcolumns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kinesis-operator.dev",
    version = "v1alpha1",
    kind = "KinesisShardAssignment",
    plural = "kinesisshardassignments",
    shortname = "ksa",
    category = "kinesis",
    namespaced,
    derive = "PartialEq",
    doc = "Internal: the shard table of one KinesisIngester (owner, epoch and start position per shard). Written only by kinesis-operator.",
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".spec.shardCount",
        description = "Shards not finished"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KinesisShardAssignmentSpec {
    /// UID of the KinesisIngester this table belongs to.
    pub ingester_uid: String,

    /// ARN of the stream the positions belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_arn: Option<String>,

    /// ARN of the enhanced fan-out consumer registered by the operator (EnhancedFanOut only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_arn: Option<String>,

    /// `StreamCreationTimestamp` of the stream the positions belong to (RFC 3339). A stream
    /// deleted and created again under the same name keeps its ARN but not this: the operator
    /// then resets every position (`Degraded=StreamRecreated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_created: Option<String>,

    /// The last `spec.reset` applied, written with the positions it rewrote: a reset whose
    /// `requestId` is recorded here is never applied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<AppliedReset>,

    /// Every shard that is not finished.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub shards: Vec<AssignedShard>,

    /// Ids of finished shards (read to their end and checkpointed), kept while the stream
    /// still lists them.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub finished: Vec<String>,

    /// The number of entries in `shards`, for `kubectl get` (which cannot count a list); set
    /// by [`KinesisShardAssignmentSpec::count_shards`] before every write.
    #[serde(default)]
    pub shard_count: i32,
}

impl KinesisShardAssignmentSpec {
    /// Sets `shard_count` from `shards`.
    pub fn count_shards(&mut self) {
        self.shard_count = count_i32(self.shards.len());
    }
}

/// A list length as the `int32` of a schema (saturating; the lists are far shorter).
pub fn count_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// One shard of the table.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AssignedShard {
    /// Shard id.
    pub shard_id: String,

    /// Parent shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,

    /// First hash key of the shard, decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_hash_key: Option<String>,

    /// Last hash key of the shard, decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending_hash_key: Option<String>,

    /// Worker that owns the shard at `epoch`; none while the shard waits for an owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,

    /// Raised every time the shard gets a new owner. Checkpoints at any other epoch are ignored.
    #[serde(default)]
    pub epoch: i64,

    /// Whether the owner must release the shard: flush, store its final checkpoint and
    /// acknowledge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,

    /// The owner starts just after this position (the last checkpoint of the previous owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after: Option<CheckpointPosition>,

    /// For `startingPosition: Latest`: when the operator first recorded the shard (RFC 3339).
    /// An owner without `startAfter` reads from this time rather than from "latest" again, so
    /// the records put between one owner's start and the next owner's are not skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_timestamp: Option<String>,

    /// Set by a rewind (`spec.reset`): where an owner without `startAfter` starts, over the
    /// starting position and the parent rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind: Option<ShardRewind>,
}

/// A position inside a shard.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointPosition {
    /// Sequence number of the last record delivered.
    pub sequence: String,

    /// Index of the last user record delivered inside a KPL-aggregated record; absent when the
    /// whole record was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_sequence: Option<u64>,
}

/// One worker of a KinesisIngester. The operator creates it before the pod and writes fences
/// into `spec`; only the worker process writes `status`, with a `resourceVersion` precondition.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kinesis-operator.dev",
    version = "v1alpha1",
    kind = "KinesisWorker",
    plural = "kinesisworkers",
    shortname = "kw",
    category = "kinesis",
    namespaced,
    status = "KinesisWorkerStatus",
    derive = "PartialEq",
    doc = "Internal: one worker of a KinesisIngester. Fences come from kinesis-operator; checkpoints, lag and liveness from the worker.",
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".status.shardsHeld",
        description = "Shards the worker holds (not released or finished)"
    ),
    printcolumn(name = "Renewed", type_ = "date", json_path = ".status.renewTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KinesisWorkerSpec {
    /// UID of the KinesisIngester this worker belongs to.
    pub ingester_uid: String,

    /// Shards taken away from this worker: it must stop reading them and never write a
    /// checkpoint for them at that epoch or below.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub fences: Vec<Fence>,
}

/// A shard taken away from a worker by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Fence {
    /// Shard id.
    pub shard_id: String,
    /// The epoch taken away (and every lower one).
    pub epoch: i64,
    /// The last position the worker had stored for this epoch when the fence was written, read
    /// in the same compare-and-swap: the worker can never store a later one, so the shard
    /// resumes after this even when the worker's status no longer lists the shard. Absent when
    /// the worker never stored a position for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<CheckpointPosition>,
}

/// What a worker reports, in one write every report interval.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KinesisWorkerStatus {
    /// The process that writes this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<Holder>,

    /// When the worker last wrote (its own clock; shown, never compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,

    /// Set by a worker that released every shard and stopped cleanly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,

    /// Checkpoint, lag, delivery and handoff state of each shard the worker holds or just
    /// released.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub shards: Vec<WorkerShard>,

    /// How many entries of `shards` the worker still holds (neither released nor finished), for
    /// `kubectl get`.
    #[serde(default)]
    pub shards_held: i32,
}

/// The process behind a worker.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// UID of the pod.
    pub pod_uid: String,
    /// Random per process start.
    pub incarnation: String,
}

impl AssignedShard {
    /// A shard of the table owned by `owner` at `epoch`, with nothing else known yet: no
    /// parents, hash range or position.
    pub fn new(shard_id: impl Into<String>, owner: Option<&str>, epoch: i64) -> Self {
        Self {
            shard_id: shard_id.into(),
            parents: vec![],
            starting_hash_key: None,
            ending_hash_key: None,
            owner: owner.map(str::to_owned),
            epoch,
            draining: false,
            start_after: None,
            start_at_timestamp: None,
            rewind: None,
        }
    }
}

/// One shard as its worker reports it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerShard {
    /// Shard id.
    pub shard_id: String,

    /// The table epoch this entry belongs to.
    pub epoch: i64,

    /// Last position the sink acknowledged; absent while nothing was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<CheckpointPosition>,

    /// MillisBehindLatest of the last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis_behind_latest: Option<i64>,

    /// The worker stopped reading the shard and `position` is final (handoff acknowledged).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,

    /// The shard was read to its end and everything in it delivered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,

    /// When this worker's sink last acknowledged records of the shard (the worker's clock;
    /// shown, never compared). Absent while it acknowledged none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<String>,

    /// Set while records of the shard wait for the sink (read, not acknowledged) and none was
    /// acknowledged for longer than the worker's threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_stuck: Option<DeliveryStuck>,

    /// While records of the shard wait for the sink: seconds since the sink last acknowledged
    /// any of them (or since they started waiting, when that is later). Absent when nothing
    /// waits or under a second. The continuous form of `deliveryStuck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_seconds: Option<i64>,

    /// Set while every Kinesis call for the shard has failed (throttling aside) for longer than
    /// the worker's threshold: the shard is held but not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_error: Option<ReadError>,
}

/// A shard the worker cannot read.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReadError {
    /// Category: `credentials`, `access_denied`, `not_found`, `connect` or `other` (the same
    /// names as the `category` label of `kinesis_ingester_source_errors_total`).
    pub category: String,

    /// The Kinesis call that failed, e.g. `GetShardIterator`.
    pub operation: String,

    /// The error, at most 256 characters.
    pub message: String,

    /// Seconds the calls have failed since the last success.
    pub failing_seconds: i64,
}

/// A shard whose records the sink has not acknowledged for too long.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStuck {
    /// Seconds records have waited with no acknowledgement (since the last one, or since they
    /// started waiting when that is later).
    pub stalled_seconds: i64,

    /// The threshold the worker applied, in seconds.
    pub threshold_seconds: i64,

    /// Category of the sink's last failed send (e.g. `connect`, `http_5xx`), when one failed
    /// since the last delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_error: Option<String>,

    /// The sink that failed (its name in `spec.sinks`, or `sink`), when one failed since the
    /// last delivery and the ingester has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

impl WorkerShard {
    /// The entry of a shard held at `epoch`, with nothing reported yet: no position, lag,
    /// delivery or error, neither released nor finished.
    pub fn new(shard_id: impl Into<String>, epoch: i64) -> Self {
        Self {
            shard_id: shard_id.into(),
            epoch,
            position: None,
            millis_behind_latest: None,
            released: false,
            finished: false,
            last_delivery: None,
            delivery_stuck: None,
            read_error: None,
            waiting_seconds: None,
        }
    }
}

impl KinesisWorkerStatus {
    /// The entry for `shard_id` at `epoch`, if reported.
    pub fn entry(&self, shard_id: &str, epoch: i64) -> Option<&WorkerShard> {
        self.shards
            .iter()
            .find(|s| s.shard_id == shard_id && s.epoch == epoch)
    }
}

impl KinesisWorkerSpec {
    /// Whether `shard_id` at `epoch` is fenced off this worker.
    pub fn is_fenced(&self, shard_id: &str, epoch: i64) -> bool {
        self.fence(shard_id, epoch).is_some()
    }

    /// The fence that covers `shard_id` at `epoch`, if any.
    pub fn fence(&self, shard_id: &str, epoch: i64) -> Option<&Fence> {
        self.fences
            .iter()
            .find(|f| f.shard_id == shard_id && f.epoch >= epoch)
    }
}

/// Name of worker `ordinal` of ingester `ingester` (the StatefulSet's pod name).
pub fn worker_name(ingester: &str, ordinal: i32) -> String {
    format!("{ingester}-worker-{ordinal}")
}

/// The ordinal of a worker name of `ingester`, if it is one.
pub fn worker_ordinal(ingester: &str, worker: &str) -> Option<i32> {
    worker
        .strip_prefix(ingester)?
        .strip_prefix("-worker-")?
        .parse()
        .ok()
        .filter(|n: &i32| *n >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_round_trip() {
        assert_eq!(worker_name("orders", 3), "orders-worker-3");
        assert_eq!(worker_ordinal("orders", "orders-worker-3"), Some(3));
        assert_eq!(worker_ordinal("orders", "orders-eu-worker-3"), None);
        assert_eq!(worker_ordinal("orders", "orders-worker-x"), None);
    }

    #[test]
    fn a_worker_shard_of_an_older_worker_still_parses() {
        let old: WorkerShard = serde_json::from_value(serde_json::json!({
            "shardId": "s", "epoch": 2, "millisBehindLatest": 5
        }))
        .expect("parses");
        assert_eq!(old.last_delivery, None);
        assert_eq!(old.delivery_stuck, None);
        let back = serde_json::to_value(&old).expect("serializes");
        assert!(back.get("deliveryStuck").is_none() && back.get("lastDelivery").is_none());
    }

    #[test]
    fn a_fence_covers_its_epoch_and_below() {
        let spec = KinesisWorkerSpec {
            ingester_uid: "u".into(),
            fences: vec![Fence {
                shard_id: "s".into(),
                epoch: 4,
                position: None,
            }],
        };
        assert!(spec.is_fenced("s", 4));
        assert!(spec.is_fenced("s", 3));
        assert!(!spec.is_fenced("s", 5));
        assert!(!spec.is_fenced("t", 1));
    }
}

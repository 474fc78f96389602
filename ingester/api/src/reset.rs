//! Rewinding a fleet (`spec.reset`): where its shards restart, and how a reset is recorded once
//! applied.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::StartingPositionType;

/// Most shards one reset may name.
pub const MAX_RESET_SHARDS: usize = 100;

/// A request to restart reading from another position: every shard of the stream, or only the
/// ones in `shards`. Applied once per `requestId`: the operator fences the shards, rewrites their
/// positions and hands them out again; change `requestId` to rewind again. Ignored by the
/// standalone ingester (move or delete its checkpoint files instead).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.to == 'AtTimestamp' ? has(self.timestamp) : !has(self.timestamp)").message("reset.timestamp is required when reset.to is AtTimestamp, and allowed only then").field_path(".timestamp").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.shards) || self.shards.all(s, size(s) <= 128)").message("reset.shards: a shard id has at most 128 characters").field_path(".shards").reason(Reason::FieldValueInvalid))]
pub struct ResetSpec {
    /// Where the shards restart: `TrimHorizon` (the oldest record retained), `Latest` (the
    /// time the reset is applied: everything put before is skipped) or `AtTimestamp` (the first
    /// record at or after `timestamp`; shards created later are read from their start).
    pub to: StartingPositionType,

    /// RFC 3339 time, e.g. `2026-11-23T15:00:00Z`. Required with `AtTimestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,

    /// Any new value applies the reset once; the applied value is shown in `status.reset`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    )]
    pub request_id: String,

    /// Only these shards (for example to replay one shard); every shard the stream lists when
    /// empty. A whole-stream reset also re-reads finished parents, before their children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub shards: Vec<String>,
}

/// Where a rewound shard starts when it has no `startAfter` yet (set by `spec.reset`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShardRewind {
    /// RFC 3339: start at the first record at or after this time; at TRIM_HORIZON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// A reset as applied: recorded in the shard table in the same write as the positions it
/// rewrote (so it is applied exactly once), and shown in `status.reset`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppliedReset {
    /// The `spec.reset.requestId` applied.
    pub request_id: String,
    /// When (RFC 3339).
    pub applied_at: String,
    /// Where the shards restarted, e.g. `AtTimestamp 2026-11-23T15:00:00Z`.
    pub to: String,
    /// Shards rewound.
    pub shards: i32,
    /// Shards `spec.reset.shards` named that the stream does not list (not rewound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_shards: Vec<String>,
}

//! Transforms (`spec.transform`): a program run on every decoded record before the sink.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, bounds};

/// Most bytes of a VRL program; the ingester's compiler refuses longer ones too.
pub const MAX_VRL_SOURCE_BYTES: usize = 16 * 1024;

/// A transform run on every decoded record, before the sink: decode → transform → sink. The
/// checkpoint rules are unchanged: a dropped record counts as delivered, and a record the
/// transform fails on goes to the dead-letter path with the error.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.vrl) != has(self.http)").message("transform: set exactly one of vrl or http").reason(Reason::FieldValueInvalid))]
pub struct TransformSpec {
    /// A VRL program (Vector Remap Language), compiled once at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrl: Option<VrlTransform>,

    /// An HTTP endpoint that speaks Amazon Data Firehose's transform contract (a Firehose
    /// transform Lambda behind any HTTP endpoint works unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTransform>,
}

/// An endpoint POSTed batches of records as Firehose invokes a transform Lambda:
/// `{invocationId, records: [{recordId, data (base64), approximateArrivalTimestamp,
/// kinesisRecordMetadata}]}`, answering `{records: [{recordId, result, data}]}` with `result`
/// `Ok`, `Dropped` or `ProcessingFailed` for every record, once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpTransform {
    /// URL batches are POSTed to, e.g. `http://transform.team.svc:8080/`.
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"))]
    pub url: String,

    /// Time allowed for one request before it is tried again. 1s to 15m.
    #[serde(default = "default_transform_timeout")]
    #[x_kube(validation = bounds::TRANSFORM_TIMEOUT.rule())]
    pub timeout: Duration,

    /// How long a batch is tried again (with backoff) after an error, a timeout or an answer
    /// that breaks the contract; then its records go to the dead-letter path with the error, as
    /// Firehose sends them to its error output. 0s to 24h.
    #[serde(default = "default_retry_duration")]
    #[x_kube(validation = bounds::TRANSFORM_RETRY_DURATION.rule())]
    pub retry_duration: Duration,
}

fn default_transform_timeout() -> Duration {
    Duration::from_millis(60_000)
}

fn default_retry_duration() -> Duration {
    Duration::from_millis(60_000)
}

/// A VRL program: `.` is the record (its payload parsed as JSON, or the payload as a string),
/// `%kinesis`, `%tag` and `%cloudwatch` its read-only context; the record becomes `.` as it is
/// at the end, `abort` drops it, and an error dead-letters it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VrlTransform {
    /// The program's source, e.g. `. = parse_json!(.)` (`kinesis-ingester validate` compiles
    /// it and reports errors with line and column).
    #[schemars(length(min = 1, max = 16384))]
    pub source: String,
}

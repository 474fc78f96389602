//! The S3 sink's spec: bucket, object key templates with Firehose-style partitioning, object format and compression.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Objects in an S3 bucket (or an S3-compatible store), one per shard and partition of each
/// batch, named after the shard and the sequence range they hold so that an upload retried after
/// a crash or a handoff overwrites the same object (docs/ingester.md, "S3 sink").
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.partitionBy) == self.prefix.contains('{partition}')").message("sink.s3.prefix must contain {partition} when sink.s3.partitionBy is set, and only then").field_path(".prefix").reason(Reason::FieldValueInvalid))]
pub struct S3Sink {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"))]
    pub bucket: String,

    /// Region of the bucket; the default chain's (`AWS_REGION`, the profile) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,

    /// Endpoint of an S3-compatible store instead of AWS's, e.g. `http://127.0.0.1:8333`.
    /// Requests then use path-style addressing (`<endpoint>/<bucket>/<key>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"))]
    pub endpoint: Option<String>,

    /// Key prefix of each object. Placeholders: `{yyyy}`, `{MM}`, `{dd}`, `{HH}` of the record's
    /// arrival time (UTC), `{stream}`, `{shard}`, and `{partition}` (the `partitionBy` value).
    #[serde(default = "default_prefix")]
    #[schemars(length(max = 512))]
    #[schemars(regex(pattern = r"^([^{}]|\{(yyyy|MM|dd|HH|stream|shard|partition)\})*$"))]
    pub prefix: String,

    /// Dynamic partitioning: a field of the JSON payload whose value fills `{partition}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<PartitionBy>,

    /// Key prefix of records that cannot be partitioned (a payload that is not JSON, or without
    /// the field and no `partitionBy.fallback`). Same placeholders as `prefix`, but `{partition}`.
    #[serde(default = "default_error_prefix")]
    #[schemars(length(max = 512))]
    #[schemars(regex(pattern = r"^([^{}]|\{(yyyy|MM|dd|HH|stream|shard)\})*$"))]
    pub error_prefix: String,

    /// Object body: `Ndjson` (one JSON line per record, with its metadata) or `Raw` (each
    /// payload followed by a newline).
    #[serde(default)]
    pub format: S3Format,

    /// Object compression; `Gzip` adds `.gz` to the key.
    #[serde(default)]
    pub compression: S3Compression,

    /// Most partitions (objects) one batch may span; a record of one more partition closes the
    /// batch first. Bounds the objects written per batch.
    #[serde(default = "default_max_open_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_open_partitions: i32,
}

/// Which payload field partitions the objects.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionBy {
    /// JSON pointer (RFC 6901) into the payload, e.g. `/customer/region`. Strings, numbers and
    /// booleans become the partition; characters other than letters, digits, `.`, `_`, `=` and
    /// `-` become `_`.
    #[schemars(length(min = 2, max = 256))]
    #[schemars(regex(pattern = r"^(/([^~/]|~[01])*)+$"))]
    pub json_pointer: String,

    /// The partition of JSON payloads without the field (or with a null, object or array
    /// there). Without it such records go to `errorPrefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._=-]+$"))]
    pub fallback: Option<String>,
}

/// Object body formats.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum S3Format {
    /// One JSON line per record, with its stream, shard, sequence number and metadata.
    #[default]
    Ndjson,
    /// Each payload as it is, followed by a newline.
    Raw,
}

/// Object compression.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum S3Compression {
    /// gzip (`Content-Encoding: gzip`, key ending in `.gz`).
    #[default]
    Gzip,
    /// Plain bytes.
    None,
}

fn default_prefix() -> String {
    "{stream}/{yyyy}/{MM}/{dd}/{HH}/".to_owned()
}

fn default_error_prefix() -> String {
    "errors/{stream}/{yyyy}/{MM}/{dd}/{HH}/".to_owned()
}

fn default_max_open_partitions() -> i32 {
    64
}

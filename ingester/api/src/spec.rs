//! The `KinesisIngester` spec: which stream to read, how to read and decode it, where to deliver, and how many workers.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Duration, ResetSpec, S3Sink, TransformSpec, WorkersSpec,
    bounds::{self, SCRATCH_MOUNT_PATH},
    status::KinesisIngesterStatus,
};

/// Desired state of a KinesisIngester: read one Kinesis data stream and deliver its records to a
/// sink. The same document is the standalone ingester's config file
/// (`kinesis-ingester run -f ingester.yaml`).
// clippy reads the repeated `type_ = "string"` of the printcolumns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kinesis-operator.dev",
    version = "v1alpha1",
    kind = "KinesisIngester",
    plural = "kinesisingesters",
    shortname = "ki",
    category = "kinesis",
    namespaced,
    status = "KinesisIngesterStatus",
    validation = name_length_rule(),
    derive = "PartialEq",
    doc = "A KinesisIngester reads one Amazon Kinesis data stream with a fleet of worker pods and delivers its records to a sink.",
    scale(
        spec_replicas_path = ".spec.workers.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Stream",
        type_ = "string",
        json_path = ".status.streamName",
        description = "Stream being read"
    ),
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".status.openShards",
        description = "Open shards in the stream"
    ),
    printcolumn(
        name = "Workers",
        type_ = "string",
        json_path = ".status.workers",
        description = "Ready/desired worker pods"
    ),
    printcolumn(
        name = "Lag",
        type_ = "string",
        json_path = ".status.lag",
        description = "Largest MillisBehindLatest over all shards"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Measured",
        type_ = "date",
        json_path = ".status.lagMeasuredAt",
        description = "How old the lag figure is: the oldest worker report it comes from",
        priority = 1
    ),
    printcolumn(
        name = "Undelivered",
        type_ = "string",
        json_path = ".status.undelivered",
        description = "How long records have waited for a sink that acknowledges nothing",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why it is (not) Ready, e.g. NotDelivering, ReadErrors",
        priority = 1
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].reason",
        description = "The problem found, e.g. SinkFailing, ReadErrors, WorkerExpired",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = fleet_path_rule("sink.file", "sink.file.path"))]
#[x_kube(validation = fleet_path_rule("sink.deadLetterPath", "sink.deadLetterPath"))]
#[x_kube(validation = fleet_sinks_path_rule())]
#[x_kube(validation = Rule::new("has(self.sink) != has(self.sinks)").message("set exactly one of sink or sinks").reason(Reason::FieldValueRequired))]
pub struct KinesisIngesterSpec {
    /// The Kinesis data stream to read.
    pub stream: StreamSpec,

    /// How records are read: polling with GetRecords or enhanced fan-out, and where to start.
    #[serde(default)]
    pub read: ReadSpec,

    /// How record payloads are decoded before delivery.
    #[serde(default)]
    pub decode: DecodeSpec,

    /// A program run on every decoded record before the sink: reshape, drop or dead-letter it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformSpec>,

    /// Where decoded records are delivered, and how they are batched: the one-sink shorthand
    /// of `sinks`. Set exactly one of `sink` or `sinks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkSpec>,

    /// Several named sinks, each with an optional route; a record goes to every sink whose
    /// route it matches, and a shard's checkpoint moves only once each of them acknowledged it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("sinks: names must be unique").reason(Reason::FieldValueDuplicate))]
    #[x_kube(validation = Rule::new("self.filter(s, has(s.default) && s.default).size() <= 1").message("sinks: at most one sink is the default").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("self.filter(s, has(s.http) && has(s.http.headersFrom)).size() <= 1").message("sinks: at most one sink may set http.headersFrom (its Secret is mounted once per pod)").reason(Reason::FieldValueInvalid))]
    pub sinks: Vec<crate::route::NamedSink>,

    /// A forward proxy and a private CA for every outbound connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::NetworkSpec>,

    /// The worker pods that read the shards (ignored by the standalone ingester).
    #[serde(default)]
    pub workers: WorkersSpec,

    /// Stop reading without deleting anything: every worker hands its shards back with final
    /// checkpoints and the fleet scales to zero, keeping the shard table; `false` (the default)
    /// resumes exactly where it stopped. Ignored by the standalone ingester.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Rewind: restart reading every shard (or some) from another position, once per
    /// `requestId` (see [`ResetSpec`]). Ignored by the standalone ingester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<ResetSpec>,

    /// What happens to the fleet's checkpoints when the ingester is deleted (ignored by the
    /// standalone ingester, whose checkpoints are files).
    #[serde(default)]
    pub checkpoints: CheckpointsSpec,
}

/// Checkpoint retention of a fleet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointsSpec {
    /// `Retain` (default) keeps the shard table with the final positions when the ingester is
    /// deleted; a new ingester with the same name on the same stream resumes from them.
    /// `Delete` removes it, so a re-created ingester starts at `read.startingPosition`.
    #[serde(default)]
    pub retention: CheckpointRetention,
}

/// What happens to checkpoints on deletion.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CheckpointRetention {
    /// Keep the shard table (labelled `kinesis-operator.dev/retained=true`).
    #[default]
    Retain,
    /// Delete the shard table with the ingester.
    Delete,
}

/// Identifies the stream by name or ARN, with the region and an optional endpoint override.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.arn)").message("stream: set exactly one of name or arn").reason(Reason::FieldValueRequired))]
pub struct StreamSpec {
    /// Name of the stream, e.g. `orders`. Set either this or `arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub name: Option<String>,

    /// ARN of the stream, e.g. `arn:aws:kinesis:us-east-1:123456789012:stream/orders`. Set either
    /// this or `name`. The ARN form is needed to read a stream in another account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/[a-zA-Z0-9_.-]{1,128}$"
    ))]
    pub arn: Option<String>,

    /// AWS region of the stream, e.g. `us-east-1`. Defaults to the region in `arn`, then to the
    /// region of the default AWS configuration chain (AWS_REGION, profile, IMDS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// Endpoint URL that replaces the regional Kinesis endpoint, e.g. a VPC endpoint or a local
    /// emulator such as `http://127.0.0.1:4568`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"))]
    pub endpoint: Option<String>,

    /// IAM role to assume before reading, for a stream in another account. The worker's own
    /// credentials (IRSA, Pod Identity, or the default chain) must be allowed to assume it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"))]
    pub role_arn: Option<String>,
}

/// Reading mode and position.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReadSpec {
    /// `Polling` calls GetRecords on each shard every `pollInterval` and shares the shard's
    /// 2 MB/s read limit with other consumers. `EnhancedFanOut` registers a stream consumer and
    /// receives records pushed over SubscribeToShard with a dedicated 2 MB/s per shard.
    #[serde(default)]
    pub mode: ReadMode,

    /// Where a shard without a checkpoint starts.
    #[serde(default)]
    pub starting_position: StartingPosition,

    /// Time between GetRecords calls on one shard when the previous call returned no backlog.
    /// 200ms to 5m: Kinesis allows 5 calls per shard per second across all consumers, and a
    /// shard iterator expires after 5 minutes.
    #[serde(default = "default_poll_interval")]
    #[x_kube(validation = bounds::POLL_INTERVAL.rule())]
    pub poll_interval: Duration,

    /// Largest number of records one GetRecords call returns (1 to 10000).
    #[serde(default = "default_max_records")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_records_per_call: i32,

    /// Name of the enhanced fan-out consumer to register. Defaults to
    /// `kinesis-operator-<namespace>-<name>`. Used only in `EnhancedFanOut` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub consumer_name: Option<String>,

    /// How often the shard list is refreshed to notice resharding (SplitShard, MergeShards,
    /// UpdateShardCount) that no reader has reached yet. 1s to 24h.
    #[serde(default = "default_shard_sync_interval")]
    #[x_kube(validation = bounds::SHARD_SYNC_INTERVAL.rule())]
    pub shard_sync_interval: Duration,

    /// Read a child shard only after all of its parents have been read to their end, so records
    /// of one partition key are delivered in order across a reshard. Turn off to start children
    /// at once, trading order for latency.
    #[serde(default = "default_true")]
    pub strict_order: bool,

    /// GetRecords pages (fan-out events) buffered between the shard readers and the sink, for
    /// all shards together (1 to 1024). A page holds at most `maxRecordsPerCall` records and
    /// 10 MiB, so this bounds the memory of records read but not yet delivered; more pages
    /// smooth a bursty sink. The ingester's `--buffer-pages` flag overrides it.
    #[serde(default = "default_buffer_pages")]
    #[schemars(range(min = 1, max = 1024))]
    pub buffer_pages: i32,
}

fn default_buffer_pages() -> i32 {
    16
}

fn default_poll_interval() -> Duration {
    Duration::from_millis(1000)
}

fn default_shard_sync_interval() -> Duration {
    Duration::from_millis(60_000)
}

fn default_max_records() -> i32 {
    10_000
}

fn default_true() -> bool {
    true
}

impl Default for ReadSpec {
    fn default() -> Self {
        Self {
            mode: ReadMode::default(),
            starting_position: StartingPosition::default(),
            poll_interval: default_poll_interval(),
            max_records_per_call: default_max_records(),
            consumer_name: None,
            shard_sync_interval: default_shard_sync_interval(),
            strict_order: true,
            buffer_pages: default_buffer_pages(),
        }
    }
}

/// How shards are read.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// GetRecords polling (shared throughput).
    #[default]
    Polling,
    /// SubscribeToShard with a registered consumer (dedicated throughput).
    EnhancedFanOut,
}

/// Where a shard without a checkpoint starts reading.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'AtTimestamp' ? has(self.timestamp) : !has(self.timestamp)").message("read.startingPosition.timestamp is required when type is AtTimestamp, and allowed only then").field_path(".timestamp").reason(Reason::FieldValueInvalid))]
pub struct StartingPosition {
    /// `TrimHorizon` starts at the oldest record still retained, `Latest` just after the newest
    /// record, `AtTimestamp` at the first record at or after `timestamp`.
    #[serde(default, rename = "type")]
    pub kind: StartingPositionType,

    /// RFC 3339 time, e.g. `2026-11-23T15:00:00Z`. Required with `AtTimestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
}

/// Starting position kinds, as Kinesis' ShardIteratorType.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartingPositionType {
    /// The oldest record in the shard (TRIM_HORIZON).
    TrimHorizon,
    /// Just after the most recent record (LATEST).
    #[default]
    Latest,
    /// The first record at or after a timestamp (AT_TIMESTAMP).
    AtTimestamp,
}

/// Record decoding, applied in order: KPL de-aggregation, decompression, then format.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DecodeSpec {
    /// Split records written by the Kinesis Producer Library with aggregation into their user
    /// records. Records that are not aggregated pass through unchanged.
    #[serde(default = "default_true")]
    pub kpl_deaggregation: bool,

    /// Compression of each (user) record's payload.
    #[serde(default)]
    pub compression: Compression,

    /// Payload format. `CloudWatchLogs` unpacks subscription-filter envelopes into one output
    /// event per log event and drops CONTROL_MESSAGE envelopes; gzip-compressed envelopes (as
    /// CloudWatch Logs writes them) are recognised by their magic bytes, plain JSON works too.
    #[serde(default)]
    pub format: RecordFormat,
}

impl Default for DecodeSpec {
    fn default() -> Self {
        Self {
            kpl_deaggregation: true,
            compression: Compression::default(),
            format: RecordFormat::default(),
        }
    }
}

/// Payload compression.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Payloads are used as they are.
    #[default]
    None,
    /// Payloads are gzip streams and are decompressed.
    Gzip,
}

/// Payload format.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecordFormat {
    /// Payload bytes are delivered as they are.
    #[default]
    Raw,
    /// CloudWatch Logs subscription-filter envelopes (gzip-compressed JSON).
    CloudWatchLogs,
}

/// Exactly one sink (`stdout`, `file`, `http` or `s3`), with batching and a dead-letter file.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.stdout), has(self.file), has(self.http), has(self.s3)].filter(x, x).size() == 1").message("sink: set exactly one of stdout, file, http or s3").reason(Reason::FieldValueRequired))]
pub struct SinkSpec {
    /// Write NDJSON records to standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<StdoutSink>,

    /// Append NDJSON records to a local file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSink>,

    /// POST batches to an HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSink>,

    /// Write batches as objects to an S3 bucket, partitioned by time, shard and payload field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Sink>,

    /// A free-form tag copied into every delivered record, e.g. the source system's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub tag: Option<String>,

    /// When a batch is closed and sent: on count, bytes or age, whichever comes first.
    #[serde(default)]
    pub batch: BatchSpec,

    /// File that receives records that cannot be decoded, one NDJSON line each with the reason.
    /// Without it, such records are logged and counted, then skipped. In a fleet it must be
    /// below `/var/lib/kinesis-ingester`, with `workers.scratch` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub dead_letter_path: Option<String>,

    /// Give up on a batch this sink has failed to deliver for this long: its records go to
    /// `deadLetterPath` (or, without one, are logged and counted) and the shards move on.
    /// Unset (the default), a batch is retried until it is delivered, and the shards wait.
    /// 1s to 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::DEAD_LETTER_AFTER.rule())]
    pub dead_letter_after: Option<Duration>,
}

/// The stdout sink has no settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct StdoutSink {}

/// A local NDJSON file.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileSink {
    /// Path of the file; it is created if missing and appended to. In a fleet it must be below
    /// `/var/lib/kinesis-ingester`, with `workers.scratch` set; each worker writes its own file.
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
}

/// An HTTP endpoint that receives POSTed batches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.format != 'ElasticsearchBulk' || has(self.index)").message("sink.http.index is required when format is ElasticsearchBulk").field_path(".index").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("self.format == 'ElasticsearchBulk' || !has(self.documentId)").message(DOCUMENT_ID_REQUIREMENT).field_path(".documentId").reason(Reason::FieldValueForbidden))]
pub struct HttpSink {
    /// URL that batches are POSTed to, e.g. `https://search.example.com:9200/_bulk`.
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"))]
    pub url: String,

    /// Body format: `Ndjson` sends one JSON record per line; `ElasticsearchBulk` sends the
    /// Elasticsearch/OpenSearch `_bulk` format with an index action before each record.
    #[serde(default)]
    pub format: HttpFormat,

    /// Index name for `ElasticsearchBulk`: lowercase, e.g. `logs`. A `{...}` part is a date
    /// from the record's arrival time in UTC, written with `yyyy`, `MM`, `dd` and `HH` and the
    /// separators `.`, `-` and `_`: `logs-{yyyy.MM.dd}` indexes into `logs-2026.11.26`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[schemars(regex(
        pattern = r#"^[a-z0-9][^\\/*?"<>| ,#:{}A-Z]*(\{(yyyy|MM|dd|HH|[-._])+\}[^\\/*?"<>| ,#:{}A-Z]*)*$"#
    ))]
    pub index: Option<String>,

    /// Where each `_bulk` document's `_id` comes from. By default it is the record's position,
    /// `<stream>:<shardId>:<sequenceNumber>` with `.<subSequenceNumber>` for a KPL user record
    /// and `:<id>` for a CloudWatch Logs event, so a batch delivered twice leaves one document
    /// per record. Only with `ElasticsearchBulk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<DocumentId>,

    /// Extra request headers with values that are not secret, e.g. `X-Team: payments`. Stored in
    /// plain text in the resource: credentials (`Authorization`) belong in `headersFrom`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(INLINE_CREDENTIAL_RULE).message("sink.http.headers: Authorization is a credential, and inline headers are stored in plain text; put it in a Secret and name it in sink.http.headersFrom").reason(Reason::FieldValueForbidden))]
    pub headers: BTreeMap<String, String>,

    /// Request headers from a Secret in the ingester's namespace: each key is a header name, its
    /// value the header value. Worker pods mount the Secret read-only; the operator never reads
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_from: Option<HeadersFrom>,

    /// Time allowed for one request before it is retried. 1s to 5m.
    #[serde(default = "default_http_timeout")]
    #[x_kube(validation = bounds::HTTP_TIMEOUT.rule())]
    pub timeout: Duration,
}

/// Why `sink.http.documentId` was refused.
pub const DOCUMENT_ID_REQUIREMENT: &str =
    "sink.http.documentId is allowed only when format is ElasticsearchBulk";

/// A `_bulk` document's `_id` taken from its payload.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentId {
    /// JSON pointer (RFC 6901) to a string or number in the payload, read as JSON, e.g. `/id`
    /// or `/event/uuid`. A record whose payload has no such field (or is not JSON) gets the
    /// position `_id` instead. Two records with the same value are one document: the later
    /// one replaces the earlier.
    #[schemars(length(min = 2, max = 256))]
    #[schemars(regex(pattern = r"^(/([^~/]|~[01])*)+$"))]
    pub field: String,
}

/// CEL: no inline `Authorization` or `Proxy-Authorization` header (constant cost: `in`, not a
/// scan, so the rule fits the API server's budget for a map of any size).
const INLINE_CREDENTIAL_RULE: &str = "!['Authorization', 'authorization', 'AUTHORIZATION', 'Proxy-Authorization', 'proxy-authorization', 'PROXY-AUTHORIZATION'].exists(h, h in self)";

/// Header names that carry credentials, refused in `sink.http.headers` (any case).
pub const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

/// A Secret whose keys are request headers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeadersFrom {
    /// Name of the Secret, in the ingester's namespace.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub secret_name: String,

    /// Keys of the Secret to send (each a header name); all keys when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub keys: Vec<String>,
}

fn default_http_timeout() -> Duration {
    Duration::from_millis(30_000)
}

/// HTTP body formats.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HttpFormat {
    /// Newline-delimited JSON, one record per line.
    #[default]
    Ndjson,
    /// Elasticsearch/OpenSearch `_bulk` request body.
    ElasticsearchBulk,
}

/// Batch limits, like Firehose buffering hints. A batch is sent when any limit is reached.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// Most records in one batch.
    #[serde(default = "default_batch_records")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_records: i32,

    /// Most bytes in one batch, measured on the encoded request body (records with their
    /// metadata, and `_bulk` action lines). A single larger record is sent alone.
    #[serde(default = "default_batch_bytes")]
    #[schemars(range(min = 1024, max = 134217728))]
    pub max_bytes: i64,

    /// Longest time a record waits in an open batch. 10ms to 15m.
    #[serde(default = "default_batch_age")]
    #[x_kube(validation = bounds::BATCH_MAX_AGE.rule())]
    pub max_age: Duration,
}

fn default_batch_records() -> i32 {
    500
}

fn default_batch_bytes() -> i64 {
    1 << 20
}

fn default_batch_age() -> Duration {
    Duration::from_millis(1000)
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_records: default_batch_records(),
            max_bytes: default_batch_bytes(),
            max_age: default_batch_age(),
        }
    }
}

/// Whether `path` names a file below [`SCRATCH_MOUNT_PATH`], without `.` or `..` parts: a path
/// a worker pod can write to when `workers.scratch` is set. The twin of [`fleet_path_rule`].
pub fn is_scratch_path(path: &str) -> bool {
    path.strip_prefix(SCRATCH_MOUNT_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| {
            rest.split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..")
        })
}

/// Why a fleet rejects a file path that [`is_scratch_path`] rejects.
pub const FLEET_PATH_REQUIREMENT: &str = "must be a file below /var/lib/kinesis-ingester/ and workers.scratch must be set: worker pods have a read-only root filesystem; set workers.scratch and put the path under /var/lib/kinesis-ingester";

/// The admission rule for a file the fleet writes: when `present` (a field path below `spec`)
/// is set, `path` must be below the scratch mount and `workers.scratch` must be set. The
/// standalone ingester does not apply it (see `validate_fleet`).
/// `sinks[].file.path` and `sinks[].deadLetterPath` of a fleet are below the scratch volume.
fn fleet_sinks_path_rule() -> kube::core::Rule {
    let below = |path: &str| {
        format!(
            "(has(self.workers) && has(self.workers.scratch) \
             && {path}.matches('^{SCRATCH_MOUNT_PATH}(/[^/]+)+$') \
             && !{path}.matches('/[.][.]?(/|$)'))"
        )
    };
    let rule = format!(
        "!has(self.sinks) || self.sinks.all(s, (!has(s.file) || {}) && (!has(s.deadLetterPath) || {}))",
        below("s.file.path"),
        below("s.deadLetterPath")
    );
    kube::core::Rule::new(rule)
        .message(
            format!("sinks[].file.path and sinks[].deadLetterPath {FLEET_PATH_REQUIREMENT}")
                .as_str(),
        )
        .field_path(".sinks")
        .reason(kube::core::Reason::FieldValueInvalid)
}

fn fleet_path_rule(present: &str, path: &str) -> kube::core::Rule {
    let rule = format!(
        "!has(self.sink) || !has(self.{present}) || (has(self.workers) && has(self.workers.scratch) \
         && self.{path}.matches('^{SCRATCH_MOUNT_PATH}(/[^/]+)+$') \
         && !self.{path}.matches('/[.][.]?(/|$)'))"
    );
    kube::core::Rule::new(rule)
        .message(format!("{path} {FLEET_PATH_REQUIREMENT}").as_str())
        .field_path(format!(".{path}"))
        .reason(kube::core::Reason::FieldValueInvalid)
}

/// Longest `metadata.name` of an ingester a fleet can run: its StatefulSet `<name>-worker` labels
/// every pod with `<name>-worker-<revision hash>` (up to 10 characters), and a label value has at
/// most 63 characters.
pub const MAX_NAME_LEN: usize = 45;

/// Why a longer name is refused.
pub const NAME_LENGTH_REQUIREMENT: &str = "must be at most 45 characters: the worker StatefulSet <name>-worker labels its pods with its name and a 10-character revision hash, 63 characters at most";

fn name_length_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!("self.metadata.name.size() <= {MAX_NAME_LEN}"))
        .message(format!("metadata.name {NAME_LENGTH_REQUIREMENT}").as_str())
        .reason(kube::core::Reason::FieldValueInvalid)
}

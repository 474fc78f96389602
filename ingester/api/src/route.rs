//! Several sinks with routing (`spec.sinks`): each record goes to every sink whose route it
//! matches, and a shard's checkpoint moves only once every sink it went to acknowledged it.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{KinesisIngesterSpec, SinkSpec};

/// Most sinks one ingester may have.
pub const MAX_SINKS: usize = 8;

/// Most values in one route's list (`logGroups`, `field.values`).
pub const MAX_ROUTE_VALUES: usize = 64;

/// Longest VRL route condition, in bytes.
pub const MAX_ROUTE_VRL_BYTES: usize = 4096;

/// The name the one-sink shorthand `spec.sink` has in metrics and status.
pub const SHORTHAND_SINK_NAME: &str = "sink";

/// One entry of `spec.sinks`: a name, an optional route, and a sink as `spec.sink` has it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.route) && has(self.default) && self.default)").message("sinks[].default: a default sink takes what no route matched, so it has no route of its own").reason(Reason::FieldValueInvalid))]
pub struct NamedSink {
    /// The sink's name: a DNS label, unique in the list; the `sink` label of its metrics.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Which records this sink receives. Without a route (and without `default`) it receives
    /// every record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteSpec>,

    /// Receives the records that matched no other sink's route. At most one sink is the default;
    /// without one, such records are counted as unrouted (`kinesis_ingester_unrouted_records_total`)
    /// and checkpointed past.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,

    /// The sink itself: exactly one of `stdout`, `file`, `http` or `s3`, with `batch`, `tag`,
    /// `deadLetterPath` and `deadLetterAfter`, as in `spec.sink`.
    #[serde(flatten)]
    pub sink: SinkSpec,
}

/// A route: exactly one of `logGroups`, `field` or `vrl`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.logGroups), has(self.field), has(self.vrl)].filter(x, x).size() == 1").message("route: set exactly one of logGroups, field or vrl").reason(Reason::FieldValueInvalid))]
pub struct RouteSpec {
    /// CloudWatch Logs log groups, exact names: log events of these groups (decoded with
    /// `decode.format: CloudWatchLogs`) match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 512)))]
    pub log_groups: Vec<String>,

    /// A field of the JSON payload and the values that match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<FieldRoute>,

    /// A VRL condition: a program that ends in `true` (match) or `false`. It sees the record as
    /// the transform does (`.` and the read-only `%kinesis`, `%cloudwatch`); an error, or a
    /// result that is not a boolean, counts as no match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub vrl: Option<String>,
}

/// Matches records whose JSON payload has `path` equal to one of `values`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FieldRoute {
    /// Dot-separated keys from the payload's top-level object, e.g. `level` or `detail.type`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^.]+(\.[^.]+)*$"))]
    pub path: String,

    /// Values that match: a string field equal to one of them, or a number or boolean whose
    /// JSON text is (`"42"`, `"true"`).
    #[schemars(length(min = 1, max = 64), inner(length(max = 1024)))]
    pub values: Vec<String>,
}

/// One sink as the ingester runs it, from `spec.sink` or an entry of `spec.sinks`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Output<'a> {
    /// `sink` for the shorthand, else the entry's name.
    pub name: &'a str,
    /// The field path of the sink, for errors: `spec.sink` or `spec.sinks[2]`.
    pub index: Option<usize>,
    /// Which records it receives; `None` means all (or, with `default`, the unmatched).
    pub route: Option<&'a RouteSpec>,
    /// Receives what no route matched.
    pub default: bool,
    /// The sink.
    pub sink: &'a SinkSpec,
}

impl Output<'_> {
    /// Where the sink is in the spec, e.g. `spec.sink` or `spec.sinks[2]`.
    pub fn field(&self) -> String {
        match self.index {
            None => "spec.sink".to_owned(),
            Some(i) => format!("spec.sinks[{i}]"),
        }
    }
}

impl KinesisIngesterSpec {
    /// The sinks, in order: `spec.sink` alone, or the entries of `spec.sinks`.
    pub fn outputs(&self) -> Vec<Output<'_>> {
        match &self.sink {
            Some(sink) => vec![Output {
                name: SHORTHAND_SINK_NAME,
                index: None,
                route: None,
                default: false,
                sink,
            }],
            None => self
                .sinks
                .iter()
                .enumerate()
                .map(|(i, s)| Output {
                    name: &s.name,
                    index: Some(i),
                    route: s.route.as_ref(),
                    default: s.default,
                    sink: &s.sink,
                })
                .collect(),
        }
    }

    /// Every sink, mutably (to move file paths).
    pub fn sink_specs_mut(&mut self) -> impl Iterator<Item = &mut SinkSpec> {
        self.sink
            .iter_mut()
            .chain(self.sinks.iter_mut().map(|s| &mut s.sink))
    }
}

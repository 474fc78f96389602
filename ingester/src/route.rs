//! Routing (`spec.sinks[].route`): which of several sinks each record goes to.
//!
//! A record goes to every sink whose route it matches and to every sink without a route; one
//! that matched no route goes to the default sink, or, without one, nowhere (counted as
//! unrouted, and checkpointed past like a dropped record).

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use kinesis_ingester_api::{KinesisIngesterSpec, RouteSpec};
use kinesis_transform::VrlProgram;

use crate::record::{Record, ShardContext};

/// A route that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A VRL condition does not compile.
    #[error("{field}: {source}")]
    Vrl {
        /// e.g. `spec.sinks[1].route.vrl`.
        field: String,
        /// The compiler's message.
        source: kinesis_transform::CompileError,
    },
}

/// Counters of the router, read at scrape time.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Records that went to no sink.
    pub unrouted: AtomicU64,
    /// Per sink, in spec order: records routed to it.
    pub routed: Vec<AtomicU64>,
    /// Per sink: records its VRL condition failed on (counted as no match).
    pub errors: Vec<AtomicU64>,
}

enum Matcher {
    /// No route: every record.
    All,
    /// `default: true`: what no route matched.
    Default,
    LogGroups(HashSet<String>),
    Field {
        path: Vec<String>,
        values: HashSet<String>,
    },
    Vrl(Box<VrlProgram>),
}

struct Target {
    matcher: Matcher,
    /// The sink's `tag`, put into its records.
    tag: Option<Arc<str>>,
}

/// Splits each chunk's records among the sinks.
pub struct Router {
    targets: Vec<Target>,
    /// Any `field` route: payloads are parsed as JSON once per record.
    needs_json: bool,
    stats: Arc<RouteStats>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("sinks", &self.targets.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// The router of `spec`'s sinks, with its VRL conditions compiled.
    pub fn from_spec(spec: &KinesisIngesterSpec) -> Result<Self, RouteError> {
        let outputs = spec.outputs();
        let mut targets = Vec::with_capacity(outputs.len());
        for output in &outputs {
            let matcher = match (output.route, output.default) {
                (_, true) => Matcher::Default,
                (None, false) => Matcher::All,
                (Some(route), false) => matcher(route, &output.field())?,
            };
            targets.push(Target {
                matcher,
                tag: output.sink.tag.as_deref().map(Arc::from),
            });
        }
        let needs_json = targets
            .iter()
            .any(|t| matches!(t.matcher, Matcher::Field { .. }));
        let stats = Arc::new(RouteStats {
            unrouted: AtomicU64::new(0),
            routed: targets.iter().map(|_| AtomicU64::new(0)).collect(),
            errors: targets.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        Ok(Self {
            targets,
            needs_json,
            stats,
        })
    }

    /// The router's counters.
    pub fn stats(&self) -> Arc<RouteStats> {
        self.stats.clone()
    }

    /// How many sinks records are split among.
    pub fn sinks(&self) -> usize {
        self.targets.len()
    }

    /// `records` split among the sinks, in spec order: each keeps shard order.
    pub fn split(&self, records: Vec<Record>) -> Vec<Vec<Record>> {
        let mut out: Vec<Vec<Record>> = self.targets.iter().map(|_| Vec::new()).collect();
        // Each sink's records carry its tag: one context per sink for the chunk's shard.
        let contexts: Vec<Option<Arc<ShardContext>>> = match records.first() {
            Some(first) => self
                .targets
                .iter()
                .map(|t| {
                    (t.tag != first.shard.tag).then(|| {
                        Arc::new(ShardContext {
                            tag: t.tag.clone(),
                            ..(*first.shard).clone()
                        })
                    })
                })
                .collect(),
            None => return out,
        };
        let mut to = Vec::with_capacity(self.targets.len());
        for record in records {
            to.clear();
            let json = self
                .needs_json
                .then(|| parse_object(&record.data))
                .flatten();
            let mut matched_a_route = false;
            for (i, target) in self.targets.iter().enumerate() {
                let hit = match &target.matcher {
                    Matcher::All => true,
                    Matcher::Default => false,
                    Matcher::LogGroups(groups) => record
                        .cloudwatch
                        .as_ref()
                        .is_some_and(|cw| groups.contains(&cw.envelope.log_group)),
                    Matcher::Field { path, values } => json
                        .as_ref()
                        .and_then(|doc| lookup(doc, path))
                        .is_some_and(|v| values.contains(&v)),
                    Matcher::Vrl(program) => {
                        let context = crate::transform::context_of(&record);
                        match program.matches(&record.data, &context) {
                            Ok(hit) => hit,
                            Err(failure) => {
                                self.stats.errors[i].fetch_add(1, Relaxed);
                                tracing::debug!(%failure, sink = i, "route condition failed on a record; not routed there");
                                false
                            }
                        }
                    }
                };
                if hit {
                    matched_a_route |= !matches!(target.matcher, Matcher::All);
                    to.push(i);
                }
            }
            if !matched_a_route
                && let Some(d) = self
                    .targets
                    .iter()
                    .position(|t| matches!(t.matcher, Matcher::Default))
            {
                to.push(d);
            }
            let Some((&last, rest)) = to.split_last() else {
                self.stats.unrouted.fetch_add(1, Relaxed);
                continue;
            };
            for &i in rest {
                out[i].push(retagged(record.clone(), &contexts[i]));
                self.stats.routed[i].fetch_add(1, Relaxed);
            }
            out[last].push(retagged(record, &contexts[last]));
            self.stats.routed[last].fetch_add(1, Relaxed);
        }
        out
    }
}

fn retagged(mut record: Record, context: &Option<Arc<ShardContext>>) -> Record {
    if let Some(c) = context {
        record.shard = c.clone();
    }
    record
}

fn matcher(route: &RouteSpec, field: &str) -> Result<Matcher, RouteError> {
    if let Some(source) = &route.vrl {
        let program = VrlProgram::compile(source).map_err(|source| RouteError::Vrl {
            field: format!("{field}.route.vrl"),
            source,
        })?;
        return Ok(Matcher::Vrl(Box::new(program)));
    }
    if let Some(f) = &route.field {
        return Ok(Matcher::Field {
            path: f.path.split('.').map(str::to_owned).collect(),
            values: f.values.iter().cloned().collect(),
        });
    }
    Ok(Matcher::LogGroups(
        route.log_groups.iter().cloned().collect(),
    ))
}

/// The payload as a JSON object, when it is one.
fn parse_object(data: &[u8]) -> Option<serde_json::Value> {
    let start = data.iter().position(|b| !b.is_ascii_whitespace())?;
    if data[start] != b'{' {
        return None;
    }
    serde_json::from_slice(data)
        .ok()
        .filter(serde_json::Value::is_object)
}

/// The text of the value at `path`: a string as it is, a number or boolean as JSON.
fn lookup(doc: &serde_json::Value, path: &[String]) -> Option<String> {
    let mut v = doc;
    for key in path {
        v = v.as_object()?.get(key)?;
    }
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

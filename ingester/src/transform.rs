//! The transform stage (`spec.transform`): decode → transform → sink. Runs in each shard reader on
//! the records of one page, before their chunk is handed to the sink, so the checkpoint rules are
//! unchanged: a dropped record counts as delivered, and a record the transform fails on is
//! dead-lettered (stored before the chunk that covers it can be acknowledged).
//!
//! Two kinds: a VRL program run in process ([`kinesis_transform::VrlProgram`]), and an HTTP
//! endpoint that speaks Firehose's transform contract ([`http::HttpStage`]).

pub mod firehose;
pub mod http;

use std::sync::Arc;

use kinesis_ingester_api::KinesisIngesterSpec;
use kinesis_transform::{CloudWatchContext, Context, Outcome, VrlProgram};
use tokio_util::sync::CancellationToken;

use crate::record::{DeadLetter, RawRecord, Record};

/// The field a compile error names.
pub const VRL_SOURCE_FIELD: &str = "spec.transform.vrl.source";

/// A transform, ready to run, shared by every shard reader of the process.
#[derive(Debug)]
pub struct Transform {
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    Vrl {
        program: VrlProgram,
        /// Most bytes one transformed record may have (the decoder's limit on a decoded record).
        max_output: usize,
    },
    Http(http::HttpStage),
}

/// Why a transform cannot be set up; names its field.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The VRL program does not compile.
    #[error(
        "{VRL_SOURCE_FIELD}: the program does not compile; fix it (`kinesis-ingester validate -f FILE` shows the same):\n{0}"
    )]
    Compile(#[from] kinesis_transform::CompileError),
    /// The HTTP client cannot be built.
    #[error("spec.transform.http: {0}")]
    Http(String),
}

/// What transforming one page did, for metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TransformStats {
    /// Records passed on, changed or not.
    pub kept: u64,
    /// Records the transform dropped (`abort`, or `Dropped`).
    pub dropped: u64,
    /// Records the transform failed on, by category ([`kinesis_transform::Failure::category`], or
    /// `processing_failed` for the HTTP transform).
    pub failed: Vec<(&'static str, u64)>,
    /// Failed HTTP transform requests, by [`http::InvokeError::category`].
    pub invocation_errors: Vec<(&'static str, u64)>,
}

impl TransformStats {
    fn fail(&mut self, category: &'static str) {
        bump(&mut self.failed, category);
    }

    fn invocation_error(&mut self, category: &'static str) {
        bump(&mut self.invocation_errors, category);
    }
}

fn bump(counts: &mut Vec<(&'static str, u64)>, category: &'static str) {
    match counts.iter_mut().find(|(c, _)| *c == category) {
        Some((_, n)) => *n += 1,
        None => counts.push((category, 1)),
    }
}

impl Transform {
    /// The transform `spec` asks for, ready to run (a VRL program compiled); `None` without one.
    pub fn from_spec(spec: &KinesisIngesterSpec) -> Result<Option<Arc<Self>>, TransformError> {
        Self::from_spec_with(spec, &kinesis_client::net::Network::default())
    }

    /// [`Self::from_spec`] with the HTTP transform's requests over `network`.
    pub fn from_spec_with(
        spec: &KinesisIngesterSpec,
        network: &kinesis_client::net::Network,
    ) -> Result<Option<Arc<Self>>, TransformError> {
        let Some(t) = spec.transform.as_ref() else {
            return Ok(None);
        };
        let stage = match (&t.vrl, &t.http) {
            (Some(vrl), _) => {
                let program = VrlProgram::compile(&vrl.source)?;
                if let Some(warnings) = program.warnings() {
                    tracing::warn!(field = VRL_SOURCE_FIELD, %warnings, "the transform compiled with warnings");
                }
                Stage::Vrl {
                    program,
                    max_output: crate::decode::DEFAULT_MAX_DECOMPRESSED_BYTES,
                }
            }
            (None, Some(http)) => {
                Stage::Http(http::HttpStage::new(http, network).map_err(TransformError::Http)?)
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(Arc::new(Self { stage })))
    }

    /// Transforms `records` (one page, in shard order): kept records (with their new payload)
    /// are returned, dropped ones are left out, failed ones are appended to `dead`. `None` when
    /// `cancel` fired first (the HTTP transform waits on its endpoint; nothing of the page is
    /// used, and it is read again from the checkpoint).
    pub async fn apply(
        &self,
        records: Vec<Record>,
        dead: &mut Vec<DeadLetter>,
        stats: &mut TransformStats,
        cancel: &CancellationToken,
    ) -> Option<Vec<Record>> {
        match &self.stage {
            Stage::Vrl {
                program,
                max_output,
            } => Some(apply_vrl(program, *max_output, records, dead, stats)),
            Stage::Http(stage) => {
                let answers = stage.run(&records, stats, cancel).await?;
                let mut out = Vec::with_capacity(records.len());
                for (record, answer) in records.into_iter().zip(answers) {
                    let verdict = match answer {
                        firehose::Answer::Ok(data) => Verdict::Keep(data),
                        firehose::Answer::Dropped => Verdict::Dropped,
                        firehose::Answer::Failed(reason) => Verdict::Failed {
                            category: "processing_failed",
                            reason: format!("transform: {reason}"),
                        },
                    };
                    settle(record, verdict, &mut out, dead, stats);
                }
                Some(out)
            }
        }
    }
}

/// What a transform made of one record, whichever kind it is.
enum Verdict {
    Keep(bytes::Bytes),
    Dropped,
    Failed {
        /// Bounded label for metrics.
        category: &'static str,
        /// The dead letter's reason, `transform: …`.
        reason: String,
    },
}

/// Acts on `verdict`: a kept record goes to `out` with its new payload, a dropped one is only
/// counted, a failed one is dead-lettered.
fn settle(
    mut record: Record,
    verdict: Verdict,
    out: &mut Vec<Record>,
    dead: &mut Vec<DeadLetter>,
    stats: &mut TransformStats,
) {
    match verdict {
        Verdict::Keep(data) => {
            stats.kept += 1;
            record.data = data;
            out.push(record);
        }
        Verdict::Dropped => stats.dropped += 1,
        Verdict::Failed { category, reason } => {
            stats.fail(category);
            dead.push(dead_letter(record, reason));
        }
    }
}

/// Runs `program` on each record in order.
fn apply_vrl(
    program: &VrlProgram,
    max_output: usize,
    records: Vec<Record>,
    dead: &mut Vec<DeadLetter>,
    stats: &mut TransformStats,
) -> Vec<Record> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let context = context_of(&record);
        let verdict = match program.run(&record.data, &context, max_output) {
            Outcome::Keep(data) => Verdict::Keep(data),
            Outcome::Dropped => Verdict::Dropped,
            // `Failure` renders as `transform: …`.
            Outcome::Failed(failure) => Verdict::Failed {
                category: failure.category(),
                reason: failure.to_string(),
            },
        };
        settle(record, verdict, &mut out, dead, stats);
    }
    out
}

/// What a VRL program sees of `record` besides its payload.
pub(crate) fn context_of(record: &Record) -> Context<'_> {
    Context {
        stream: &record.shard.stream,
        shard_id: &record.shard.shard_id,
        partition_key: &record.partition_key,
        sequence_number: record.position.sequence.as_str(),
        sub_sequence_number: record.position.sub_sequence,
        approximate_arrival_ms: record.approximate_arrival_ms,
        tag: record.shard.tag.as_deref(),
        cloudwatch: record.cloudwatch.as_deref().map(|cw| CloudWatchContext {
            owner: &cw.envelope.owner,
            log_group: &cw.envelope.log_group,
            log_stream: &cw.envelope.log_stream,
            id: &cw.id,
            timestamp_ms: cw.timestamp_ms,
        }),
    }
}

/// The dead letter of a record the transform failed on: its decoded payload (what the
/// transform was given), and the error naming the user record for a KPL aggregate.
fn dead_letter(record: Record, failure: String) -> DeadLetter {
    let reason = match record.position.sub_sequence {
        Some(sub) => format!("{failure} (user record {sub} of the aggregated record)"),
        None => failure,
    };
    DeadLetter {
        raw: RawRecord {
            data: record.data,
            partition_key: record.partition_key,
            sequence_number: record.position.sequence,
            approximate_arrival_ms: record.approximate_arrival_ms,
        },
        shard: record.shard,
        reason,
        category: "transform",
    }
}

#[cfg(test)]
mod tests;

//! Record transforms: a VRL program (Vector Remap Language) compiled once and run on every
//! decoded record, shared by the ingester (which runs it) and the operator (which checks it
//! before it starts workers).
//!
//! What a program sees and returns (docs/ingester.md "Transforms"):
//! - `.` is the payload parsed as JSON when it is valid JSON, otherwise the payload as a string;
//! - `%` is read-only context: `%kinesis` (stream, shard id, partition key, sequence numbers,
//!   arrival time), `%tag` and, for CloudWatch Logs events, `%cloudwatch`;
//! - the record becomes `.` as it is at the end: a string as its bytes, anything else as JSON;
//! - `abort` drops the record (it counts as delivered); any other error sends it to the
//!   dead-letter path with the error.
//!
//! Bounds: the library has no network, file, environment or system functions; each record may
//! take at most [`MAX_STEPS`] evaluation steps, and its output at most the caller's byte limit.

use std::ops::ControlFlow;

use bytes::Bytes;
use vrl::{
    compiler::{
        CompileConfig, ExpressionError, Program, TargetValue, TimeZone,
        runtime::{Runtime, Terminate},
        state::{ExternalEnv, RuntimeState},
    },
    diagnostic::Formatter,
    path::OwnedTargetPath,
    value::{Kind, ObjectMap, Secrets, Value, kind::Collection},
};

/// Most bytes of a program's source (`spec.transform.vrl.source`, also the CRD's `maxLength`).
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;

/// Most evaluation steps (expressions) one record may take before it is dead-lettered as too
/// costly. VRL has no unbounded loops, so this bounds iteration over large arrays and objects.
pub const MAX_STEPS: u64 = 1_000_000;

/// Why a program does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The source is longer than [`MAX_SOURCE_BYTES`].
    #[error("the program is {0} bytes; at most {MAX_SOURCE_BYTES} are allowed")]
    TooLong(usize),
    /// The compiler's diagnostics, with line, column and a hint, as `vector vrl` prints them.
    #[error("{0}")]
    Diagnostics(String),
    /// The compiler panicked on this source (a bug in VRL): reported, never a crash of the
    /// ingester or of the operator, which compiles every tenant's program.
    #[error(
        "the VRL compiler failed on this program ({0}); simplify the program around the construct it names"
    )]
    CompilerPanicked(String),
}

/// A compiled program. Cheap to share between threads: each run has its own runtime state.
#[derive(Debug)]
pub struct VrlProgram {
    program: Program,
    /// Compiler warnings (for example an unused result), to log once at start-up.
    warnings: Option<String>,
}

/// Read-only context of one record, seen by the program as `%`.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Shard id.
    pub shard_id: &'a str,
    /// Partition key.
    pub partition_key: &'a str,
    /// Kinesis sequence number.
    pub sequence_number: &'a str,
    /// KPL sub-sequence number, for a user record of an aggregated record.
    pub sub_sequence_number: Option<u64>,
    /// ApproximateArrivalTimestamp, ms since the Unix epoch.
    pub approximate_arrival_ms: Option<i64>,
    /// `spec.sink.tag`.
    pub tag: Option<&'a str>,
    /// CloudWatch Logs metadata, for a log event unpacked from a subscription envelope.
    pub cloudwatch: Option<CloudWatchContext<'a>>,
}

/// CloudWatch Logs metadata of one log event, seen by the program as `%cloudwatch`.
#[derive(Debug, Clone, Default)]
pub struct CloudWatchContext<'a> {
    /// Account that owns the log group.
    pub owner: &'a str,
    /// Log group.
    pub log_group: &'a str,
    /// Log stream.
    pub log_stream: &'a str,
    /// Log event id.
    pub id: &'a str,
    /// Log event time, ms since the Unix epoch.
    pub timestamp_ms: i64,
}

/// What a program made of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deliver these bytes instead of the payload.
    Keep(Bytes),
    /// The program called `abort`: deliver nothing (the record counts as delivered).
    Dropped,
    /// The program failed on this record: dead-letter it with this reason.
    Failed(Failure),
}

/// Why a program failed on one record (a dead letter's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A runtime error: a fallible call without `!` handling failed, a path was missing, or the
    /// program raised an error.
    #[error("transform: {0}")]
    Error(String),
    /// The record took more than [`MAX_STEPS`] steps.
    #[error(
        "transform: stopped after {MAX_STEPS} evaluation steps; simplify the program or drop such records earlier"
    )]
    TooCostly,
    /// The output is longer than the limit.
    #[error("transform: the output is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Output bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// VRL panicked on this record (a bug in VRL).
    #[error("transform: VRL failed on this record ({0})")]
    Panicked(String),
    /// The final `.` cannot be written as JSON (e.g. a regex value).
    #[error("transform: the result cannot be written as JSON: {0}")]
    Unencodable(String),
}

impl Failure {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Error(_) => "error",
            Self::TooCostly => "too_costly",
            Self::TooLarge { .. } => "too_large",
            Self::Unencodable(_) => "unencodable",
            Self::Panicked(_) => "panicked",
        }
    }
}

impl VrlProgram {
    /// Compiles `source` with VRL's base library. Warnings are kept for [`Self::warnings`].
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(CompileError::TooLong(source.len()));
        }
        std::panic::catch_unwind(|| Self::compile_unguarded(source))
            .unwrap_or_else(|panic| Err(CompileError::CompilerPanicked(panic_text(&*panic))))
    }

    fn compile_unguarded(source: &str) -> Result<Self, CompileError> {
        let functions = vrl::stdlib::all();
        let mut config = CompileConfig::default();
        // `%` is context the ingester fills in; the program may read it, not change it.
        config.set_read_only_path(OwnedTargetPath::metadata_root(), true);
        // `.` is any value: a JSON payload of any type, or a string.
        let external = ExternalEnv::new_with_kind(Kind::any(), Kind::object(Collection::any()));
        let result = vrl::compiler::compile_with_external(source, &functions, &external, config)
            .map_err(|diagnostics| {
                CompileError::Diagnostics(Formatter::new(source, diagnostics).to_string())
            })?;
        let warnings = (!result.warnings.is_empty())
            .then(|| Formatter::new(source, result.warnings).to_string());
        Ok(Self {
            program: result.program,
            warnings,
        })
    }

    /// The compiler's warnings, if any.
    pub fn warnings(&self) -> Option<&str> {
        self.warnings.as_deref()
    }

    /// Runs the program on one record's `payload`; an output over `max_output` bytes fails. A
    /// panic inside VRL on this record fails the record, not the process.
    pub fn run(&self, payload: &[u8], context: &Context<'_>, max_output: usize) -> Outcome {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_unguarded(payload, context, max_output)
        }))
        .unwrap_or_else(|panic| Outcome::Failed(Failure::Panicked(panic_text(&*panic))))
    }

    /// Runs the program as a condition on one record: `Ok(true)` when it ends in `true`,
    /// `Ok(false)` when it ends in `false` or aborts. An error, a result that is not a boolean or
    /// too many steps is a [`Failure`]; a panic inside VRL too.
    pub fn matches(&self, payload: &[u8], context: &Context<'_>) -> Result<bool, Failure> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (result, _) = self.resolve(payload, context);
            match result {
                Ok(Value::Boolean(b)) => Ok(b),
                Ok(other) => Err(Failure::Error(format!(
                    "a route condition must end in true or false, not {}",
                    other.kind_str()
                ))),
                Err(Terminate::Abort(ExpressionError::Abort { .. })) => Ok(false),
                Err(Terminate::Interrupted) => Err(Failure::TooCostly),
                Err(Terminate::Abort(e) | Terminate::Error(e)) => {
                    Err(Failure::Error(e.to_string()))
                }
            }
        }))
        .unwrap_or_else(|panic| Err(Failure::Panicked(panic_text(&*panic))))
    }

    /// Evaluates the program on `payload` within [`MAX_STEPS`]: its result and the target as
    /// the program left it.
    fn resolve(
        &self,
        payload: &[u8],
        context: &Context<'_>,
    ) -> (Result<Value, Terminate>, TargetValue) {
        // Straight into VRL's value (no intermediate JSON tree).
        let value = serde_json::from_slice::<Value>(payload)
            .unwrap_or_else(|_| Value::Bytes(Bytes::copy_from_slice(payload)));
        let mut target = TargetValue {
            value,
            metadata: context.to_value(),
            secrets: Secrets::default(),
        };
        let mut runtime = Runtime::new(RuntimeState::default());
        let mut steps = 0u64;
        let mut budget = || {
            steps += 1;
            if steps > MAX_STEPS {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let result = runtime.resolve_with_control(
            &mut target,
            &self.program,
            &TimeZone::default(),
            &mut budget,
        );
        (result, target)
    }

    fn run_unguarded(&self, payload: &[u8], context: &Context<'_>, max_output: usize) -> Outcome {
        let (result, target) = self.resolve(payload, context);
        match result {
            Ok(_) => {}
            Err(Terminate::Abort(ExpressionError::Abort { .. })) => return Outcome::Dropped,
            Err(Terminate::Interrupted) => return Outcome::Failed(Failure::TooCostly),
            Err(Terminate::Abort(e) | Terminate::Error(e)) => {
                return Outcome::Failed(Failure::Error(e.to_string()));
            }
        }
        let bytes = match target.value {
            Value::Bytes(b) => b,
            Value::String(s) => s.into_bytes(),
            other => match serde_json::to_vec(&other) {
                Ok(v) => Bytes::from(v),
                Err(e) => return Outcome::Failed(Failure::Unencodable(e.to_string())),
            },
        };
        if bytes.len() > max_output {
            return Outcome::Failed(Failure::TooLarge {
                size: bytes.len(),
                limit: max_output,
            });
        }
        Outcome::Keep(bytes)
    }
}

/// A panic's message, for an error.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

impl Context<'_> {
    fn to_value(&self) -> Value {
        let mut kinesis = ObjectMap::new();
        kinesis.insert("stream".into(), self.stream.into());
        kinesis.insert("shard_id".into(), self.shard_id.into());
        kinesis.insert("partition_key".into(), self.partition_key.into());
        kinesis.insert("sequence_number".into(), self.sequence_number.into());
        if let Some(sub) = self.sub_sequence_number {
            kinesis.insert(
                "sub_sequence_number".into(),
                Value::Integer(i64::try_from(sub).unwrap_or(i64::MAX)),
            );
        }
        if let Some(ms) = self.approximate_arrival_ms {
            kinesis.insert("approximate_arrival_ms".into(), Value::Integer(ms));
        }
        let mut root = ObjectMap::new();
        root.insert("kinesis".into(), Value::Object(kinesis));
        if let Some(tag) = self.tag {
            root.insert("tag".into(), tag.into());
        }
        if let Some(cw) = &self.cloudwatch {
            let mut o = ObjectMap::new();
            o.insert("owner".into(), cw.owner.into());
            o.insert("log_group".into(), cw.log_group.into());
            o.insert("log_stream".into(), cw.log_stream.into());
            o.insert("id".into(), cw.id.into());
            o.insert("timestamp_ms".into(), Value::Integer(cw.timestamp_ms));
            root.insert("cloudwatch".into(), Value::Object(o));
        }
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests;

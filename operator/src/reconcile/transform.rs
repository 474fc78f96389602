//! `spec.transform` as the operator checks it: admission cannot compile a VRL program, so the
//! operator does before it starts workers. A program that does not compile stops the fleet (as
//! `spec.suspend` would: shards are handed back with final checkpoints, no worker runs) and
//! shows as a `TransformInvalid` problem, instead of workers that crash at start-up.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use kinesis_ingester_api::KinesisIngester;
use kinesis_transform::VrlProgram;

use super::status::StreamProblem;

/// The condition reason (`Ready` and `Degraded`) and the Warning event's reason.
pub const TRANSFORM_INVALID: &str = "TransformInvalid";

/// Most programs whose verdict is remembered (each pass would otherwise compile again).
const REMEMBERED: usize = 256;

/// Why `spec.transform` cannot run, if it cannot: the compiler's diagnostics.
pub fn problem(ki: &KinesisIngester) -> Option<StreamProblem> {
    let error = compile_error(ki)?;
    Some(StreamProblem {
        reason: TRANSFORM_INVALID,
        message: format!(
            "spec.transform.vrl.source does not compile, so no worker runs (shards were handed back at their checkpoints); fix the program (`kinesis-ingester validate -f FILE` shows the same):\n{error}"
        ),
    })
}

/// Whether the fleet is stopped: suspended, or its transform cannot run. Asked several times a
/// pass: the verdict is remembered, and no message is built.
pub fn stopped(ki: &KinesisIngester) -> bool {
    ki.spec.suspend || compile_error(ki).is_some()
}

/// The compile error of `spec.transform.vrl`, if it has one.
fn compile_error(ki: &KinesisIngester) -> Option<String> {
    verdict(&ki.spec.transform.as_ref()?.vrl.as_ref()?.source)
}

/// The compile error of `source`, remembered by source.
fn verdict(source: &str) -> Option<String> {
    static SEEN: OnceLock<Mutex<HashMap<String, Option<String>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = seen.lock().ok()?.get(source) {
        return v.clone();
    }
    let v = VrlProgram::compile(source).err().map(|e| e.to_string());
    if let Ok(mut seen) = seen.lock() {
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(source.to_owned(), v.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ki(source: Option<&str>, suspend: bool) -> KinesisIngester {
        let mut spec = serde_json::json!({"stream": {"name": "s"}, "sink": {"stdout": {}}, "suspend": suspend});
        if let Some(source) = source {
            spec["transform"] = serde_json::json!({"vrl": {"source": source}});
        }
        KinesisIngester::new("t", serde_json::from_value(spec).expect("spec"))
    }

    #[test]
    fn a_program_that_does_not_compile_stops_the_fleet_with_the_diagnostics() {
        let bad = ki(Some(".a = 1\n.b = nosuch(.a)"), false);
        let p = problem(&bad).expect("a problem");
        assert_eq!(p.reason, "TransformInvalid");
        assert!(
            p.message.contains("nosuch") && p.message.contains("2:"),
            "{}",
            p.message
        );
        assert!(stopped(&bad));
        // Asked again (every pass), the same verdict.
        assert_eq!(problem(&bad), Some(p));
    }

    #[test]
    fn a_valid_program_or_none_runs_unless_suspended() {
        assert_eq!(
            problem(&ki(Some(". = parse_json!(string!(.))"), false)),
            None
        );
        assert!(!stopped(&ki(Some(".a = 1"), false)));
        assert!(!stopped(&ki(None, false)));
        assert!(stopped(&ki(None, true)));
    }
}

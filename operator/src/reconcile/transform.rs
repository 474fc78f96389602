//! The VRL programs of a spec as the operator checks them (`spec.transform.vrl.source` and each
//! `spec.sinks[].route.vrl`): admission cannot compile VRL, so the operator does before it
//! starts workers. A program that does not compile stops the fleet (as `spec.suspend` would:
//! shards are handed back with final checkpoints, no worker runs) and shows as a
//! `TransformInvalid` or `RouteInvalid` problem, instead of workers that crash at start-up.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use kinesis_ingester_api::KinesisIngester;
use kinesis_transform::VrlProgram;

use super::status::StreamProblem;

/// The condition reason (`Ready` and `Degraded`) and the Warning event's reason.
pub const TRANSFORM_INVALID: &str = "TransformInvalid";

/// The reason when a route's VRL condition does not compile.
pub const ROUTE_INVALID: &str = "RouteInvalid";

/// Most programs whose verdict is remembered (each pass would otherwise compile again).
const REMEMBERED: usize = 256;

/// Why a program of the spec cannot run, if one cannot: the field and the compiler's diagnostics.
pub fn problem(ki: &KinesisIngester) -> Option<StreamProblem> {
    let (field, error) = compile_error(ki)?;
    Some(StreamProblem {
        reason: if field.starts_with("spec.transform") {
            TRANSFORM_INVALID
        } else {
            ROUTE_INVALID
        },
        message: format!(
            "{field} does not compile, so no worker runs (shards were handed back at their checkpoints); fix the program (`kinesis-ingester validate -f FILE` shows the same):\n{error}"
        ),
    })
}

/// Whether the fleet is stopped: suspended, or its transform cannot run. Asked several times a
/// pass: the verdict is remembered, and no message is built.
pub fn stopped(ki: &KinesisIngester) -> bool {
    ki.spec.suspend || compile_error(ki).is_some()
}

/// The first program of the spec that does not compile: its field and the compile error.
fn compile_error(ki: &KinesisIngester) -> Option<(String, String)> {
    let transform = ki
        .spec
        .transform
        .as_ref()
        .and_then(|t| t.vrl.as_ref())
        .map(|v| ("spec.transform.vrl.source".to_owned(), v.source.as_str()));
    let routes = ki.spec.sinks.iter().enumerate().filter_map(|(i, s)| {
        let source = s.route.as_ref()?.vrl.as_deref()?;
        Some((format!("spec.sinks[{i}].route.vrl"), source))
    });
    transform
        .into_iter()
        .chain(routes)
        .find_map(|(field, source)| Some((field, verdict(source)?)))
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
    fn a_route_condition_that_does_not_compile_is_named_and_stops_the_fleet() {
        let spec = serde_json::json!({"stream": {"name": "s"}, "sinks": [
            {"name": "a", "stdout": {}, "route": {"vrl": ".level == \"error\""}},
            {"name": "b", "stdout": {}, "route": {"vrl": ".level =="}},
        ]});
        let bad = KinesisIngester::new("t", serde_json::from_value(spec).expect("spec"));
        let p = problem(&bad).expect("a problem");
        assert_eq!(p.reason, "RouteInvalid");
        assert!(
            p.message
                .starts_with("spec.sinks[1].route.vrl does not compile"),
            "{}",
            p.message
        );
        assert!(stopped(&bad));
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

//! Loads a KinesisIngester YAML file (the same document users `kubectl apply`) and checks it like admission would.

use std::path::{Path, PathBuf};

use kinesis_ingester_api::{
    API_VERSION, FieldError, KIND, KinesisIngester, ValidationErrors, check_schema,
};

/// Why a config file was rejected; each names the file and the field or line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not parse into a KinesisIngester.
    #[error("{path} is not a valid KinesisIngester: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: Box<serde_saphyr::Error>,
    },
    /// Fields break the CRD's rules.
    #[error("{path} has invalid fields:\n{source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every invalid field.
        source: ValidationErrors,
    },
}

/// Reads, parses and validates `path`.
pub fn load(path: &Path) -> Result<KinesisIngester, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Paths of fields in `given` that `known` lacks: fields the types do not have, which the API
/// server would reject (kubectl's strict field validation) and serde would silently drop.
fn unknown_fields(
    given: &serde_json::Value,
    known: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            for (name, value) in g {
                let here = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                match k.get(name) {
                    Some(kv) => unknown_fields(value, kv, &here, out),
                    // Null and empty values serialize away, and metadata/status are not ours to check.
                    None if value.is_null()
                        || here.starts_with("metadata")
                        || here.starts_with("status") => {}
                    None if value.as_object().is_some_and(|o| o.is_empty())
                        || value.as_array().is_some_and(|a| a.is_empty()) => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                unknown_fields(gv, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Parses and validates `text`, read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<KinesisIngester, ConfigError> {
    let parse_error = |source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let invalid = |errors: Vec<FieldError>| ConfigError::Invalid {
        path: path.to_owned(),
        source: ValidationErrors(errors),
    };
    let given: serde_json::Value = serde_saphyr::from_str(text).map_err(parse_error)?;
    let mut errors = Vec::new();
    for (field, want) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        if given[field] != want {
            errors.push(FieldError {
                field: field.into(),
                message: format!(
                    "expected {want}, found {}: the file must be a KinesisIngester (apiVersion: {API_VERSION}, kind: {KIND})",
                    given.get(field).map_or_else(|| "nothing".to_owned(), ToString::to_string)
                ),
            });
        }
    }
    // The CRD's schema next, so that a wrong type, enum value or unknown key is named by its
    // field path, all at once.
    errors.extend(check_schema(&given["spec"]));
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let ingester: KinesisIngester = serde_saphyr::from_str(text).map_err(parse_error)?;
    let known = serde_json::to_value(&ingester).unwrap_or_default();
    let mut unknown = Vec::new();
    unknown_fields(&given, &known, "", &mut unknown);
    if !unknown.is_empty() {
        let message = "unknown field; check its spelling against docs/ingester.md";
        return Err(invalid(
            unknown
                .into_iter()
                .map(|field| FieldError {
                    field,
                    message: message.into(),
                })
                .collect(),
        ));
    }
    ingester.spec.validate().map_err(|e| invalid(e.0))?;
    // Checked here rather than in the API crate: admission checks the format with the schema.
    ingester.start_at().map_err(|message| {
        invalid(vec![FieldError {
            field: "spec.read.startingPosition.timestamp".into(),
            message,
        }])
    })?;
    // Admission cannot compile a program; `validate` and start-up can.
    if let Some(vrl) = ingester
        .spec
        .transform
        .as_ref()
        .and_then(|t| t.vrl.as_ref())
        && let Err(e) = kinesis_transform::VrlProgram::compile(&vrl.source)
    {
        return Err(invalid(vec![FieldError {
            field: crate::transform::VRL_SOURCE_FIELD.into(),
            message: e.to_string(),
        }]));
    }
    if let Err(crate::route::RouteError::Vrl { field, source }) =
        crate::route::Router::from_spec(&ingester.spec)
    {
        return Err(invalid(vec![FieldError {
            field,
            message: source.to_string(),
        }]));
    }
    Ok(ingester)
}

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::StartAt;

    use super::*;

    const BASE: &str = "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {name: t}\nspec:\n  sink: {stdout: {}}\n";

    #[test]
    fn an_arn_names_the_stream_and_a_timestamp_is_parsed() {
        let text = format!(
            "{BASE}  stream: {{arn: 'arn:aws:kinesis:eu-west-1:123456789012:stream/orders'}}\n  read: {{startingPosition: {{type: AtTimestamp, timestamp: '2026-11-23T15:00:00Z'}}}}\n"
        );
        let ki = parse(Path::new("t.yaml"), &text).unwrap();
        assert_eq!(ki.stream_ref().name(), "orders");
        assert_eq!(
            ki.start_at().unwrap(),
            StartAt::AtTimestamp(1_795_446_000_000)
        );
    }

    #[test]
    fn a_vrl_program_that_does_not_compile_is_named_with_its_line() {
        let text = format!(
            "{BASE}  stream: {{name: s}}\n  transform:\n    vrl:\n      source: |\n        .a = 1\n        .b = nosuch(.a)\n"
        );
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("spec.transform.vrl.source")
                && err.contains("nosuch")
                && err.contains("2:"),
            "{err}"
        );
        let text =
            format!("{BASE}  stream: {{name: s}}\n  transform: {{vrl: {{source: '.a = 1'}}}}\n");
        parse(Path::new("cfg.yaml"), &text).expect("a program that compiles is valid");
    }

    #[test]
    fn the_consumer_name_defaults_to_one_per_stream() {
        let named = format!(
            "{BASE}  stream: {{name: orders}}\n  read: {{mode: EnhancedFanOut, consumerName: billing}}\n"
        );
        let ki = parse(Path::new("t.yaml"), &named).unwrap();
        assert_eq!(ki.consumer_name(), "billing");
        let unnamed =
            format!("{BASE}  stream: {{name: orders}}\n  read: {{mode: EnhancedFanOut}}\n");
        let ki = parse(Path::new("t.yaml"), &unnamed).unwrap();
        assert_eq!(ki.consumer_name(), "kinesis-ingester-orders");
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let text = format!(
            "{BASE}  stream: {{name: s}}\n  read: {{startingPosition: {{type: AtTimestamp, timestamp: 'yesterday'}}}}\n"
        );
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("cfg.yaml") && err.contains("spec.read.startingPosition.timestamp"),
            "{err}"
        );

        let text = format!("{BASE}  stream: {{name: s}}\n  read: {{mode: Push}}\n");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("spec.read.mode: \"Push\" is not one of Polling, EnhancedFanOut"),
            "{err}"
        );

        let text = format!("{BASE}  stream: {{name: s}}\n  read: {{pollInterval: 1.5s}}\n");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(err.contains("spec.read.pollInterval"), "{err}");

        let text = format!(
            "{BASE}  stream: {{name: s}}\n  read: {{shardSyncInterval: 9999999999999999h}}\n"
        );
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(err.contains("spec.read.shardSyncInterval"), "{err}");

        let text = format!("{BASE}  stream: {{name: s}}\n  read: {{mode: [Polling]}}\n");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("spec.read.mode: expected a string, found [\"Polling\"]"),
            "{err}"
        );

        // Everything wrong at once: the kind, an unknown key with a suggestion, a type, a range
        // and the endpoint's scheme.
        let text = "apiVersion: kinesis-operator.dev/v1\nkind: KinesisIngestor\nmetadata: {name: t}\nspec:\n  stream: {name: s, endpoint: 'localhost:4567'}\n  read: {maxRecordsPerCall: lots, pollIntervall: 1s}\n  sink: {stdout: {}, batch: {maxBytes: 1}}\n";
        let err = parse(Path::new("cfg.yaml"), text).unwrap_err().to_string();
        for wanted in [
            "apiVersion: expected kinesis-operator.dev/v1alpha1, found \"kinesis-operator.dev/v1\"",
            "kind: expected KinesisIngester, found \"KinesisIngestor\"",
            "spec.read.pollIntervall: unknown field `pollIntervall`, did you mean `pollInterval`?",
            "spec.read.maxRecordsPerCall: expected an integer, found \"lots\"",
            "spec.sink.batch.maxBytes: must be between",
            "spec.stream.endpoint:",
        ] {
            assert!(err.contains(wanted), "{wanted:?} not in {err}");
        }
        let text = format!("{BASE}  stream: {{name: s}}\n  sinc: {{stdout: {{}}}}\n");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("spec.sinc: unknown field `sinc`, did you mean `sink`?"),
            "{err}"
        );
        let sinks = |entries: &str| {
            format!(
                "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {{name: t}}\nspec:\n  stream: {{name: s}}\n  sinks:\n{entries}"
            )
        };
        let text = sinks("  - {name: a, stdout: {}, routes: {logGroups: [g]}}\n");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("spec.sinks[0].routes: unknown field `routes`, did you mean `route`?"),
            "{err}"
        );
        let text = sinks("  - {name: a, stdout: {}, route: {vrl: '.x =='}}\n");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("spec.sinks[0].route.vrl:") && err.contains("error[E204]"),
            "{err}"
        );
        let text = sinks(
            "  - {name: a, stdout: {}}\n  - {name: a, default: true, route: {}, stdout: {}, deadLetterAfter: 1ms}\n",
        );
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        for wanted in [
            "spec.sinks: names must be unique",
            "spec.sinks[1].default: a default sink takes what no route matched",
            "spec.sinks[1].route: set exactly one of logGroups, field or vrl",
            "spec.sinks[1].deadLetterAfter: must be between 1s and 24h",
        ] {
            assert!(err.contains(wanted), "{wanted:?} not in {err}");
        }

        let text = format!("{BASE}  stream: {{name: s}}\n  read: {{mode: Polling\n");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("line 7"),
            "broken YAML is reported by line: {err}"
        );

        let text = format!("{BASE}  stream: {{name: s}}\n  read: {{pollIntervall: 1ms}}\n");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("spec.read.pollIntervall: unknown field"),
            "{err}"
        );

        let text = format!("{BASE}  stream: {{name: s}}\n")
            .replace("kind: KinesisIngester", "kind: Whatever");
        let err = parse(Path::new("cfg.yaml"), &text).unwrap_err().to_string();
        assert!(
            err.contains("apiVersion") && err.contains("kind: KinesisIngester"),
            "{err}"
        );
    }
}

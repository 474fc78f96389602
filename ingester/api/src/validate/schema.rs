//! Checks a spec, as JSON, against the CRD's own OpenAPI schema: types, enums, required fields, patterns, lengths and ranges, as the API server does before the CEL rules.

use std::sync::LazyLock;

use kube::CustomResourceExt;
use serde_json::Value;

use super::FieldError;
use crate::{DURATION_PATTERN, Duration, KinesisIngester};

/// The `spec` schema of the generated CRD, the same one the API server enforces.
static SPEC_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let crd = serde_json::to_value(KinesisIngester::crd()).unwrap_or_default();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
});

/// Every violation of the CRD's schema in `spec` (a KinesisIngester's `spec` as JSON), each
/// named by its path (`spec.stream.region`, `spec.workers.podLabels[team]`). The CEL rules are
/// not evaluated here; `KinesisIngesterSpec::validate` mirrors them.
pub fn check_schema(spec: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk(spec, &SPEC_SCHEMA, "spec", &mut out);
    out
}

fn fail(out: &mut Vec<FieldError>, path: &str, message: String) {
    out.push(FieldError {
        field: path.to_owned(),
        message,
    });
}

fn walk(value: &Value, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    // Null means unset, as for the typed parser; unknown fields are the caller's check.
    if value.is_null() || schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    if !type_matches(value, schema) {
        let want = match schema["type"].as_str() {
            Some("integer") => "an integer",
            Some("number") => "a number",
            Some("string") => "a string",
            Some("boolean") => "true or false",
            Some("object") => "a map",
            Some("array") => "a list",
            _ => "another value",
        };
        fail(out, path, format!("expected {want}, found {value}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned))
            .collect();
        fail(
            out,
            path,
            format!("{value} is not one of {}", names.join(", ")),
        );
        return;
    }
    match value {
        Value::String(s) => check_string(s, schema, path, out),
        Value::Number(n) => check_number(n.as_f64().unwrap_or_default(), schema, path, out),
        Value::Object(map) => {
            count(map.len(), schema, "Properties", "entries", path, out);
            for name in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = name.as_str()
                    && map.get(name).is_none_or(Value::is_null)
                {
                    fail(out, &format!("{path}.{name}"), "is required".into());
                }
            }
            for (name, v) in map {
                if let Some(s) = schema["properties"].get(name) {
                    walk(v, s, &format!("{path}.{name}"), out);
                } else if schema["additionalProperties"].is_object() {
                    walk(
                        v,
                        &schema["additionalProperties"],
                        &format!("{path}[{name}]"),
                        out,
                    );
                } else if let Some(known) = schema["properties"].as_object() {
                    let hint = closest(name, known.keys().map(String::as_str))
                        .map(|k| format!(", did you mean `{k}`?"))
                        .unwrap_or_default();
                    fail(
                        out,
                        &format!("{path}.{name}"),
                        format!("unknown field `{name}`{hint}"),
                    );
                }
            }
        }
        Value::Array(items) => {
            count(items.len(), schema, "Items", "items", path, out);
            for (i, v) in items.iter().enumerate() {
                walk(v, &schema["items"], &format!("{path}[{i}]"), out);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// The known name closest to `name` (case-insensitive edit distance at most 2, or one a prefix
/// of the other), for "did you mean".
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .map(|k| (distance(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| {
            *d <= 2 || {
                let k = k.to_ascii_lowercase();
                k.starts_with(&lower) || lower.starts_with(&k)
            }
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars; names are short, so the quadratic cost is nothing.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn type_matches(value: &Value, schema: &Value) -> bool {
    if schema["x-kubernetes-int-or-string"] == true {
        return value.is_string() || value.is_i64() || value.is_u64();
    }
    match schema["type"].as_str() {
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        _ => true,
    }
}

fn check_string(s: &str, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    let len = s.chars().count();
    if let Some(min) = schema["minLength"].as_u64()
        && (len as u64) < min
    {
        fail(out, path, format!("must be at least {min} characters"));
    }
    if let Some(max) = schema["maxLength"].as_u64()
        && (len as u64) > max
    {
        fail(out, path, format!("must be at most {max} characters"));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        match super::compiled(pattern) {
            Ok(re) if re.is_match(s) => {
                // What the pattern lets through may still be too long for CEL's duration().
                if pattern == DURATION_PATTERN
                    && let Err(e) = s.parse::<Duration>()
                {
                    fail(out, path, e.to_string());
                }
            }
            Ok(_) => fail(out, path, format!("{s:?} must match {pattern}")),
            Err(e) => fail(
                out,
                path,
                format!("cannot check the pattern {pattern}: {e}"),
            ),
        }
    }
}

fn check_number(n: f64, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    let (min, max) = (schema["minimum"].as_f64(), schema["maximum"].as_f64());
    if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
        let text = |b: Option<f64>| b.map_or_else(|| "any".to_owned(), |b| format!("{b}"));
        fail(
            out,
            path,
            format!("must be between {} and {}, not {n}", text(min), text(max)),
        );
    }
}

/// `minItems`/`maxItems` or `minProperties`/`maxProperties`.
fn count(n: usize, schema: &Value, kind: &str, noun: &str, path: &str, out: &mut Vec<FieldError>) {
    let n = n as u64;
    if let Some(min) = schema[format!("min{kind}")].as_u64()
        && n < min
    {
        fail(out, path, format!("must have at least {min} {noun}"));
    }
    if let Some(max) = schema[format!("max{kind}")].as_u64()
        && n > max
    {
        fail(out, path, format!("must have at most {max} {noun}"));
    }
}

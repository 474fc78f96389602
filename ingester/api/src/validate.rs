//! Client-side checks that mirror the CRD's admission rules (its schema and its CEL rules), for the standalone ingester that has no API server and for fleet workers.
//!
//! Two levels: [`KinesisIngesterSpec::validate`] is everything the API server checks that also
//! matters to the standalone ingester; [`KinesisIngester::validate_fleet`] adds the rules that
//! only a fleet needs (files below the scratch volume, a short enough name). The one rule not
//! mirrored is the transition rule on `workers.scratch`, which needs the previous object.

mod schema;
#[cfg(test)]
mod tests;

use std::fmt;

pub use schema::check_schema;

use crate::{
    HttpFormat, KinesisIngester, KinesisIngesterSpec, ScratchType, StartingPositionType,
    bounds::{self, DurationBounds},
    spec::{FLEET_PATH_REQUIREMENT, MAX_NAME_LEN, NAME_LENGTH_REQUIREMENT, is_scratch_path},
    workers::{LABEL_KEY_PATTERN, LABEL_KEY_REQUIREMENT, MAX_LABEL_KEY_LEN},
};

/// One invalid field: its path (as in the YAML, e.g. `spec.sink.http.index`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.read.pollInterval`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every invalid field of a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// Collects field errors.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn duration(&mut self, bounds: DurationBounds, value: &crate::Duration) {
        self.duration_at(&format!("spec.{}", bounds.field), bounds, value);
    }

    /// [`Self::duration`] for a field at another path than `bounds` names (a sink of a list).
    fn duration_at(&mut self, field: &str, bounds: DurationBounds, value: &crate::Duration) {
        if !bounds.contains(value) {
            self.fail(field, bounds.requirement());
        }
    }

    /// A timestamp goes with `AtTimestamp` and only with it (`kind_field` names the kind).
    fn timestamp_with_kind(
        &mut self,
        field: &str,
        kind_field: &str,
        kind: StartingPositionType,
        timestamp: Option<&String>,
    ) {
        if (kind == StartingPositionType::AtTimestamp) != timestamp.is_some() {
            self.fail(
                field,
                format!("is required when {kind_field} is AtTimestamp, and allowed only then"),
            );
        }
    }

    fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.0))
        }
    }
}

impl KinesisIngesterSpec {
    /// Checks what the API server checks (the schema's types, patterns, lengths and ranges, and
    /// the CEL rules), so that a standalone config file fails the way a `kubectl apply` would.
    /// The fleet-only rules are left to [`KinesisIngester::validate_fleet`]: a standalone
    /// ingester may write files anywhere.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Errors::default();
        match serde_json::to_value(self) {
            Ok(json) => errors.0.extend(check_schema(&json)),
            Err(e) => errors.fail("spec", format!("cannot be written as JSON: {e}")),
        }
        self.check_rules(&mut errors);
        errors.into_result()
    }

    /// The twins of the CEL rules that apply everywhere.
    fn check_rules(&self, errors: &mut Errors) {
        if self.stream.name.is_some() == self.stream.arn.is_some() {
            errors.fail("spec.stream", "set exactly one of name or arn");
        }
        errors.duration(bounds::POLL_INTERVAL, &self.read.poll_interval);
        errors.duration(bounds::SHARD_SYNC_INTERVAL, &self.read.shard_sync_interval);
        errors.timestamp_with_kind(
            "spec.read.startingPosition.timestamp",
            "type",
            self.read.starting_position.kind,
            self.read.starting_position.timestamp.as_ref(),
        );
        if let Some(t) = &self.transform {
            if t.vrl.is_some() == t.http.is_some() {
                errors.fail("spec.transform", "set exactly one of vrl or http");
            }
            if let Some(http) = &t.http {
                errors.duration(bounds::TRANSFORM_TIMEOUT, &http.timeout);
                errors.duration(bounds::TRANSFORM_RETRY_DURATION, &http.retry_duration);
            }
        }
        if let Some(ca) = self.network.as_ref().and_then(|n| n.ca_bundle.as_ref()) {
            let set = [
                ca.config_map.is_some(),
                ca.secret.is_some(),
                ca.path.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                errors.fail(
                    "spec.network.caBundle",
                    "set exactly one of configMap, secret or path",
                );
            }
        }
        if let Some(reset) = &self.reset {
            errors.timestamp_with_kind(
                "spec.reset.timestamp",
                "reset.to",
                reset.to,
                reset.timestamp.as_ref(),
            );
            if let Some(t) = &reset.timestamp
                && t.parse::<jiff::Timestamp>().is_err()
            {
                errors.fail(
                    "spec.reset.timestamp",
                    format!("{t:?} is not an RFC 3339 time such as 2026-11-23T15:00:00Z"),
                );
            }
            if reset.shards.iter().any(|s| s.len() > 128) {
                errors.fail("spec.reset.shards", "a shard id has at most 128 characters");
            }
        }
        self.check_sinks(errors);
        self.check_workers(errors);
    }

    /// `sink` or `sinks`, and each sink's own rules.
    fn check_sinks(&self, errors: &mut Errors) {
        if self.sink.is_some() != self.sinks.is_empty() {
            errors.fail("spec", "set exactly one of sink or sinks");
        }
        let mut names = std::collections::BTreeSet::new();
        for named in &self.sinks {
            if !names.insert(named.name.as_str()) {
                errors.fail("spec.sinks", "names must be unique");
            }
        }
        if self.sinks.iter().filter(|s| s.default).count() > 1 {
            errors.fail("spec.sinks", "at most one sink is the default");
        }
        let with_headers = self.sinks.iter().filter(|s| {
            s.sink
                .http
                .as_ref()
                .is_some_and(|h| h.headers_from.is_some())
        });
        if with_headers.count() > 1 {
            errors.fail(
                "spec.sinks",
                "at most one sink may set http.headersFrom (its Secret is mounted once per pod)",
            );
        }
        for output in self.outputs() {
            let at = output.field();
            if let Some(route) = output.route {
                if output.default {
                    errors.fail(
                        &format!("{at}.default"),
                        "a default sink takes what no route matched, so it has no route of its own",
                    );
                }
                let kinds = [
                    !route.log_groups.is_empty(),
                    route.field.is_some(),
                    route.vrl.is_some(),
                ];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    errors.fail(
                        &format!("{at}.route"),
                        "set exactly one of logGroups, field or vrl",
                    );
                }
            }
            check_sink(&at, output.sink, errors);
        }
    }

    fn check_workers(&self, errors: &mut Errors) {
        let w = &self.workers;
        if w.service_account_name.is_some() && !w.service_account_annotations.is_empty() {
            errors.fail(
                "spec.workers.serviceAccountAnnotations",
                "applies to the ServiceAccount the operator creates: with workers.serviceAccountName, annotate that account yourself",
            );
        }
        if w.min_replicas > w.max_replicas {
            errors.fail(
                "spec.workers.minReplicas",
                "must not be greater than workers.maxReplicas",
            );
        }
        if let Some(a) = &w.autoscaling {
            errors.duration(bounds::TARGET_LAG, &a.target_lag);
            errors.duration(bounds::SCALE_UP_STABILIZATION, &a.scale_up_stabilization);
            errors.duration(
                bounds::SCALE_DOWN_STABILIZATION,
                &a.scale_down_stabilization,
            );
        }
        if let Some(scratch) = &w.scratch {
            // A size that does not match the pattern is reported by the schema check.
            if bounds::bytes(&scratch.size).is_some()
                && !bounds::SCRATCH_SIZE.contains(&scratch.size)
            {
                errors.fail(
                    "spec.workers.scratch.size",
                    bounds::SCRATCH_SIZE.requirement(),
                );
            }
            if scratch.kind != ScratchType::PersistentVolumeClaim
                && scratch.storage_class_name.is_some()
            {
                errors.fail(
                    "spec.workers.scratch.storageClassName",
                    "is allowed only when type is PersistentVolumeClaim",
                );
            }
        }
        // Label values are checked by the schema.
        for (field, map) in [
            ("spec.workers.podLabels", &w.pod_labels),
            ("spec.workers.nodeSelector", &w.node_selector),
            ("spec.workers.podAnnotations", &w.pod_annotations),
            (
                "spec.workers.serviceAccountAnnotations",
                &w.service_account_annotations,
            ),
        ] {
            if !map.keys().all(|k| label_key_ok(k)) {
                errors.fail(field, LABEL_KEY_REQUIREMENT);
            }
        }
    }
}

fn matches(pattern: &str, text: &str) -> bool {
    compiled(pattern).is_ok_and(|re| re.is_match(text))
}

/// `pattern` compiled once per process: validating a spec checks a pattern per string field
/// (and per label), and compiling costs far more than matching. Only the CRD schema's own
/// patterns and the label-key pattern come here, so the cache is bounded by the schema.
pub(crate) fn compiled(pattern: &str) -> Result<regex::Regex, regex::Error> {
    static CACHE: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, Result<regex::Regex, regex::Error>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache
        .entry(pattern.to_owned())
        .or_insert_with(|| regex::Regex::new(pattern))
        .clone()
}

fn label_key_ok(key: &str) -> bool {
    key.len() <= MAX_LABEL_KEY_LEN && matches(LABEL_KEY_PATTERN, key)
}

/// The rules of one sink at `at` (`spec.sink` or `spec.sinks[i]`).
fn check_sink(at: &str, sink: &crate::SinkSpec, errors: &mut Errors) {
    errors.duration_at(
        &format!("{at}.batch.maxAge"),
        bounds::BATCH_MAX_AGE,
        &sink.batch.max_age,
    );
    if let Some(after) = &sink.dead_letter_after {
        errors.duration_at(
            &format!("{at}.deadLetterAfter"),
            bounds::DEAD_LETTER_AFTER,
            after,
        );
    }
    let kinds = [
        sink.stdout.is_some(),
        sink.file.is_some(),
        sink.http.is_some(),
        sink.s3.is_some(),
    ];
    if kinds.iter().filter(|s| **s).count() != 1 {
        errors.fail(at, "set exactly one of stdout, file, http or s3");
    }
    if let Some(s3) = &sink.s3
        && s3.partition_by.is_some() != s3.prefix.contains("{partition}")
    {
        errors.fail(
            &format!("{at}.s3.prefix"),
            "must contain {partition} when sink.s3.partitionBy is set, and only then",
        );
    }
    if let Some(http) = &sink.http {
        if http.format == HttpFormat::ElasticsearchBulk && http.index.is_none() {
            errors.fail(
                &format!("{at}.http.index"),
                "is required when format is ElasticsearchBulk",
            );
        }
        if http.format != HttpFormat::ElasticsearchBulk && http.document_id.is_some() {
            errors.fail(
                &format!("{at}.http.documentId"),
                crate::spec::DOCUMENT_ID_REQUIREMENT,
            );
        }
        errors.duration_at(
            &format!("{at}.http.timeout"),
            bounds::HTTP_TIMEOUT,
            &http.timeout,
        );
        if http
            .headers
            .keys()
            .any(|h| crate::CREDENTIAL_HEADERS.contains(&h.to_ascii_lowercase().as_str()))
        {
            errors.fail(
                &format!("{at}.http.headers"),
                "Authorization is a credential, and inline headers are stored in plain text; put it in a Secret and name it in sink.http.headersFrom",
            );
        }
    }
}

impl KinesisIngester {
    /// [`KinesisIngesterSpec::validate`] plus the rules of a fleet: `sink.file.path` and
    /// `sink.deadLetterPath` below the scratch volume (worker pods have a read-only root
    /// filesystem), and a name short enough for the worker StatefulSet.
    pub fn validate_fleet(&self) -> Result<(), ValidationErrors> {
        let mut errors = Errors(self.spec.validate().err().map(|e| e.0).unwrap_or_default());
        let spec = &self.spec;
        let writable = |path: &str| spec.workers.scratch.is_some() && is_scratch_path(path);
        for output in spec.outputs() {
            let at = output.field();
            if let Some(file) = &output.sink.file
                && !writable(&file.path)
            {
                errors.fail(&format!("{at}.file.path"), FLEET_PATH_REQUIREMENT);
            }
            if let Some(path) = &output.sink.dead_letter_path
                && !writable(path)
            {
                errors.fail(&format!("{at}.deadLetterPath"), FLEET_PATH_REQUIREMENT);
            }
        }
        let name = self.metadata.name.as_deref().unwrap_or_default();
        if name.chars().count() > MAX_NAME_LEN {
            errors.fail("metadata.name", NAME_LENGTH_REQUIREMENT);
        }
        errors.into_result()
    }
}

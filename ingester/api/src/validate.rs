//! Client-side checks that mirror the CRD's admission rules, for the standalone ingester that has no API server.

use std::fmt;

use crate::{HttpFormat, KinesisIngesterSpec, StartingPositionType};

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

impl KinesisIngesterSpec {
    /// Checks the rules the API server enforces with CEL, so that a standalone config file fails
    /// the same way a `kubectl apply` would.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.stream.name.is_some() == self.stream.arn.is_some() {
            fail("spec.stream", "set exactly one of name or arn");
        }
        if self.read.poll_interval.get() < std::time::Duration::from_millis(200) {
            fail(
                "spec.read.pollInterval",
                "must be at least 200ms: Kinesis allows 5 GetRecords calls per shard per second",
            );
        }
        if !(1..=10_000).contains(&self.read.max_records_per_call) {
            fail("spec.read.maxRecordsPerCall", "must be between 1 and 10000");
        }
        let at_timestamp = self.read.starting_position.kind == StartingPositionType::AtTimestamp;
        if at_timestamp != self.read.starting_position.timestamp.is_some() {
            fail(
                "spec.read.startingPosition.timestamp",
                "is required when type is AtTimestamp, and allowed only then",
            );
        }
        let sink = &self.sink;
        let sinks = [
            sink.stdout.is_some(),
            sink.file.is_some(),
            sink.http.is_some(),
        ];
        if sinks.iter().filter(|s| **s).count() != 1 {
            fail("spec.sink", "set exactly one of stdout, file or http");
        }
        if let Some(http) = &sink.http
            && http.format == HttpFormat::ElasticsearchBulk
            && http.index.is_none()
        {
            fail(
                "spec.sink.http.index",
                "is required when format is ElasticsearchBulk",
            );
        }
        if self.workers.min_replicas > self.workers.max_replicas {
            fail(
                "spec.workers.minReplicas",
                "must not be greater than workers.maxReplicas",
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

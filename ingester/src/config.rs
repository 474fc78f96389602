//! Loads a KinesisIngester YAML file (the same document users `kubectl apply`) and checks it like admission would.

use std::path::{Path, PathBuf};

use kinesis_ingester_api::{KinesisIngester, StartingPositionType, ValidationErrors};

use crate::source::api::{StartAt, StreamRef};

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

/// Parses and validates `text`, read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<KinesisIngester, ConfigError> {
    let ingester: KinesisIngester =
        serde_saphyr::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    let invalid = |source| ConfigError::Invalid {
        path: path.to_owned(),
        source,
    };
    ingester.spec.validate().map_err(invalid)?;
    // Checked here rather than in the API crate: admission checks the format with the schema.
    start_at(&ingester).map_err(|message| {
        invalid(ValidationErrors(vec![kinesis_ingester_api::FieldError {
            field: "spec.read.startingPosition.timestamp".into(),
            message,
        }]))
    })?;
    Ok(ingester)
}

/// The stream named by the spec.
pub fn stream_ref(ingester: &KinesisIngester) -> StreamRef {
    match (&ingester.spec.stream.arn, &ingester.spec.stream.name) {
        (Some(arn), _) => StreamRef::Arn(arn.clone()),
        (None, Some(name)) => StreamRef::Name(name.clone()),
        // validate() guarantees one of them.
        (None, None) => StreamRef::Name(String::new()),
    }
}

/// Name of the enhanced fan-out consumer: `read.consumerName`, else `kinesis-ingester-<stream>`.
pub fn consumer_name(ingester: &KinesisIngester) -> String {
    ingester
        .spec
        .read
        .consumer_name
        .clone()
        .unwrap_or_else(|| format!("kinesis-ingester-{}", stream_ref(ingester).name()))
}

/// The configured starting position.
pub fn start_at(ingester: &KinesisIngester) -> Result<StartAt, String> {
    let sp = &ingester.spec.read.starting_position;
    Ok(match sp.kind {
        StartingPositionType::TrimHorizon => StartAt::TrimHorizon,
        StartingPositionType::Latest => StartAt::Latest,
        StartingPositionType::AtTimestamp => {
            let text = sp.timestamp.as_deref().unwrap_or_default();
            let ts: jiff::Timestamp = text.parse().map_err(|e| {
                format!("{text:?} is not an RFC 3339 time such as 2026-11-23T15:00:00Z: {e}")
            })?;
            StartAt::AtTimestamp(ts.as_millisecond())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "apiVersion: kinesis-operator.dev/v1alpha1\nkind: KinesisIngester\nmetadata: {name: t}\nspec:\n  sink: {stdout: {}}\n";

    #[test]
    fn an_arn_names_the_stream_and_a_timestamp_is_parsed() {
        let text = format!(
            "{BASE}  stream: {{arn: 'arn:aws:kinesis:eu-west-1:123456789012:stream/orders'}}\n  read: {{startingPosition: {{type: AtTimestamp, timestamp: '2026-11-23T15:00:00Z'}}}}\n"
        );
        let ki = parse(Path::new("t.yaml"), &text).unwrap();
        assert_eq!(stream_ref(&ki).name(), "orders");
        assert_eq!(
            start_at(&ki).unwrap(),
            StartAt::AtTimestamp(1_795_446_000_000)
        );
    }

    #[test]
    fn the_consumer_name_defaults_to_one_per_stream() {
        let named = format!(
            "{BASE}  stream: {{name: orders}}\n  read: {{mode: EnhancedFanOut, consumerName: billing}}\n"
        );
        let ki = parse(Path::new("t.yaml"), &named).unwrap();
        assert_eq!(consumer_name(&ki), "billing");
        let unnamed =
            format!("{BASE}  stream: {{name: orders}}\n  read: {{mode: EnhancedFanOut}}\n");
        let ki = parse(Path::new("t.yaml"), &unnamed).unwrap();
        assert_eq!(consumer_name(&ki), "kinesis-ingester-orders");
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
        assert!(err.contains("line 7") && err.contains("Push"), "{err}");
    }
}

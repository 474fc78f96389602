//! `kinesis-ingester`: reads a Kinesis data stream as a `KinesisIngester` resource describes it.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use kinesis_ingester_api::KinesisIngester;

/// Reads every shard of a Kinesis data stream, decodes the records and delivers them to a sink.
/// Its configuration is a KinesisIngester resource: the same YAML you would `kubectl apply`.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a KinesisIngester file without reading anything: report every invalid field.
    Validate {
        /// Path of the KinesisIngester YAML file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid KinesisIngester: {source}")]
    Parse {
        path: PathBuf,
        source: Box<serde_saphyr::Error>,
    },
    #[error("{path} has invalid fields:\n{source}")]
    Invalid {
        path: PathBuf,
        source: kinesis_ingester_api::ValidationErrors,
    },
}

fn load(path: &Path) -> Result<KinesisIngester, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let ingester: KinesisIngester =
        serde_saphyr::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    ingester
        .spec
        .validate()
        .map_err(|source| ConfigError::Invalid {
            path: path.to_owned(),
            source,
        })?;
    Ok(ingester)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { file } => match load(&file) {
            Ok(_) => {
                println!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

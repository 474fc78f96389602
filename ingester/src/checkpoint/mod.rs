//! Checkpoints: where each shard resumes. Only positions a sink acknowledged are ever stored.

mod file;
mod tracker;

use std::collections::HashMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use file::FileStore;
pub use tracker::{DeliveryState, Tracker};

use kinesis_ingester_api::sequence::Position;

/// The stored state of one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardCheckpoint {
    /// Shard id.
    pub shard_id: String,
    /// Position after the last delivered record; `None` when nothing was delivered yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The shard was read to its end and everything in it delivered.
    #[serde(default)]
    pub finished: bool,
}

/// Errors of the checkpoint layer.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the store failed.
    #[error("checkpoint store {path}: {source}")]
    Io {
        /// File or directory involved.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stored checkpoint cannot be parsed.
    #[error(
        "checkpoint {path} is corrupt: {message}; move it away to restart that shard from the starting position"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// The parse error.
        message: String,
    },
}

impl CheckpointError {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Corrupt { .. } => "corrupt",
        }
    }
}

/// Where checkpoints live: a local directory standalone, the Kubernetes API in a fleet.
pub trait CheckpointStore: Send + Sync + 'static {
    /// Every stored checkpoint, by shard id.
    fn load(&self) -> BoxFuture<'_, Result<HashMap<String, ShardCheckpoint>, CheckpointError>>;

    /// Stores one shard's checkpoint, durably, replacing the previous one.
    fn save<'a>(
        &'a self,
        checkpoint: &'a ShardCheckpoint,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;
}

//! Sinks: batching, delivery with retries, acknowledgement, and the dead-letter file.

mod batch;
mod error;
pub mod ndjson;
mod stats;

pub use self::{
    batch::{Batch, BatchLimits, Batcher},
    error::SinkError,
    ndjson::Encoding,
    stats::SinkStats,
};

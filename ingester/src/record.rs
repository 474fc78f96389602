//! The records that flow from shard readers through decoders to sinks, and the contract by which sinks acknowledge delivery.

use std::sync::Arc;

use bytes::Bytes;

pub use kinesis_client::RawRecord;
use kinesis_ingester_api::sequence::Position;

/// Where a record comes from; shared by all records of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardContext {
    /// Stream name.
    pub stream: Arc<str>,
    /// Shard id.
    pub shard_id: Arc<str>,
    /// The shard's hash key range, inclusive. User records of an aggregated record whose
    /// effective hash key falls outside are dropped (they belong to a sibling after a reshard).
    pub hash_range: (u128, u128),
    /// The user-set tag copied into every record (`spec.sink.tag`).
    pub tag: Option<Arc<str>>,
}

/// CloudWatch Logs metadata of one envelope, shared by all of its log events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudWatchEnvelope {
    /// AWS account that owns the log group.
    pub owner: String,
    /// Log group name.
    pub log_group: String,
    /// Log stream name.
    pub log_stream: String,
    /// Subscription filters that matched.
    pub subscription_filters: Vec<String>,
}

/// CloudWatch Logs metadata of one log event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudWatchMeta {
    /// The envelope's metadata: one allocation for all of its events, not a copy per event.
    pub envelope: Arc<CloudWatchEnvelope>,
    /// Log event id.
    pub id: String,
    /// Log event time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// One decoded record, ready for a sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The payload after decoding (a user record, a decompressed payload or a log message).
    pub data: Bytes,
    /// The shard it came from.
    pub shard: Arc<ShardContext>,
    /// Position in the shard: the Kinesis sequence number, and the KPL sub-sequence number for a
    /// user record of an aggregated record.
    pub position: Position,
    /// Partition key: the user record's own key for KPL user records. Shared, not copied, by
    /// every record decoded from one Kinesis record or KPL key-table entry.
    pub partition_key: Arc<str>,
    /// ApproximateArrivalTimestamp of the Kinesis record, ms since the Unix epoch.
    pub approximate_arrival_ms: Option<i64>,
    /// Set for records unpacked from a CloudWatch Logs subscription envelope.
    pub cloudwatch: Option<Box<CloudWatchMeta>>,
}

/// A record that could not be decoded, with the reason, for the dead-letter file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The raw record as Kinesis returned it.
    pub raw: RawRecord,
    /// The shard it came from.
    pub shard: Arc<ShardContext>,
    /// Why decoding failed, e.g. `gzip: invalid header`.
    pub reason: String,
    /// Bounded category for metric labels: `gzip`, `cloudwatch` or `kpl`.
    pub category: &'static str,
}

/// A run of decoded records from one shard, and the position the shard may be checkpointed at
/// once every record in it has been delivered.
#[derive(Debug)]
pub struct Chunk {
    /// Decoded records, in shard order. May be empty (e.g. all records were CONTROL_MESSAGEs),
    /// yet still carry a checkpoint.
    pub records: Vec<Record>,
    /// Shard id the chunk belongs to.
    pub shard_id: Arc<str>,
    /// Which reading of the shard produced it (see [`Reading`]); 0 in the standalone ingester.
    pub generation: u64,
    /// The position after the last raw record this chunk covers.
    pub checkpoint: Position,
}

impl Chunk {
    /// The reading of a shard this chunk belongs to.
    pub fn reading(&self) -> Reading {
        Reading {
            shard_id: self.shard_id.clone(),
            generation: self.generation,
        }
    }
}

/// One reading of a shard by this process: a fleet worker starts a new generation each time it
/// starts (or restarts) a reader, always from the shard's last acknowledged position. The sink
/// delivers only the current generation of each shard, so chunks of an earlier one still queued
/// when the shard was handed back and taken again are dropped, never delivered after (or
/// before) what the new reader reads again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reading {
    /// The shard.
    pub shard_id: Arc<str>,
    /// The worker's reader generation.
    pub generation: u64,
}

/// Called by a sink, in shard order, once every record of a chunk has been acknowledged by the
/// destination. Only positions passed here are ever checkpointed (at-least-once delivery).
pub type AckFn = Arc<dyn Fn(&str, &Position) + Send + Sync>;

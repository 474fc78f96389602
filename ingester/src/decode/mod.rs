//! Decoding of Kinesis records: KPL de-aggregation, gzip, CloudWatch Logs envelopes, raw bytes.
//!
//! Each Kinesis record goes `kpl` (split into user records, if enabled) -> `gzip` (each user
//! record, if enabled) -> format (`Raw` passes bytes through, `cloudwatch` unpacks envelopes).
//! Undecodable payloads become [`DeadLetter`]s; nothing here fails the shard.

mod cloudwatch;
pub mod gzip;
pub mod kpl;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use kinesis_ingester_api::{Compression, DecodeSpec, RecordFormat};

use kinesis_client::RawRecord;
use kinesis_ingester_api::sequence::Position;

use crate::record::{DeadLetter, Record, ShardContext};
use cloudwatch::LogEvent;
use kpl::Deaggregated;

pub use gzip::DEFAULT_MAX_DECOMPRESSED_BYTES;

/// Why a payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid gzip stream.
    #[error("gzip: {0}")]
    Gzip(String),
    /// Decompresses to more than the cap.
    #[error("gzip: decompressed size exceeds the cap of {max_bytes} bytes")]
    GzipTooLarge {
        /// The cap.
        max_bytes: usize,
    },
    /// Not a CloudWatch Logs envelope (bad JSON, unknown messageType, missing field).
    #[error("cloudwatch: {0}")]
    CloudWatchJson(String),
    /// A DATA_MESSAGE envelope without `logEvents`.
    #[error("cloudwatch: DATA_MESSAGE without logEvents")]
    CloudWatchMissingLogEvents,
}

impl DecodeError {
    /// Every value [`DecodeError::category`] returns, in the order of
    /// [`DecodeStats::dead_letters`].
    pub const CATEGORIES: [&'static str; 2] = ["gzip", "cloudwatch"];

    /// Bounded label for metrics and dead letters.
    pub fn category(&self) -> &'static str {
        Self::CATEGORIES[self.category_index()]
    }

    fn category_index(&self) -> usize {
        match self {
            Self::Gzip(_) | Self::GzipTooLarge { .. } => 0,
            Self::CloudWatchJson(_) | Self::CloudWatchMissingLogEvents => 1,
        }
    }
}

/// Counters of what [`Decoder::decode`] did, for the caller to turn into metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Kinesis records decoded.
    pub kinesis_records: u64,
    /// Records appended to `out`.
    pub records_out: u64,
    /// Valid KPL aggregated records (including those dropped as outside the hash range).
    pub kpl_aggregated: u64,
    /// Records that start with the KPL magic but failed a check (digest, protobuf, key index)
    /// and were therefore decoded whole, as plain records.
    pub kpl_invalid_as_plain: u64,
    /// User records dropped because their aggregated record belongs to another shard's hash
    /// key range.
    pub kpl_outside_hash_range: u64,
    /// CloudWatch Logs CONTROL_MESSAGE envelopes dropped.
    pub cloudwatch_control_messages: u64,
    /// Dead letters, counted by category in the order of [`DecodeError::CATEGORIES`].
    pub dead_letters: [u64; DecodeError::CATEGORIES.len()],
}

impl DecodeStats {
    /// Dead letters by category label.
    pub fn dead_letters_by_category(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DecodeError::CATEGORIES
            .into_iter()
            .zip(self.dead_letters.iter().copied())
    }

    /// Total dead letters.
    pub fn dead_letters_total(&self) -> u64 {
        self.dead_letters.iter().sum()
    }

    /// Adds `other`'s counters to these.
    pub fn merge(&mut self, other: &Self) {
        self.kinesis_records += other.kinesis_records;
        self.records_out += other.records_out;
        self.kpl_aggregated += other.kpl_aggregated;
        self.kpl_invalid_as_plain += other.kpl_invalid_as_plain;
        self.kpl_outside_hash_range += other.kpl_outside_hash_range;
        self.cloudwatch_control_messages += other.cloudwatch_control_messages;
        for (mine, theirs) in self.dead_letters.iter_mut().zip(other.dead_letters) {
            *mine += theirs;
        }
    }
}

/// A payload after decompression and format decoding.
enum Payload {
    Raw(Bytes),
    LogEvents(Vec<LogEvent>),
    Control,
}

/// Decodes Kinesis records as a stream's `spec.decode` says.
#[derive(Clone, Debug)]
pub struct Decoder {
    kpl_deaggregation: bool,
    compression: Compression,
    format: RecordFormat,
    max_decompressed_bytes: usize,
}

impl Decoder {
    /// A decoder for `spec`; no payload may decompress to more than `max_decompressed_bytes`
    /// (see [`DEFAULT_MAX_DECOMPRESSED_BYTES`]).
    pub fn new(spec: &DecodeSpec, max_decompressed_bytes: usize) -> Self {
        Self {
            kpl_deaggregation: spec.kpl_deaggregation,
            compression: spec.compression,
            format: spec.format,
            max_decompressed_bytes,
        }
    }

    /// Decodes one Kinesis record of `shard`: appends its records to `out` in order and any
    /// payload that cannot be decoded to `dead`. Every output record of a KPL user record has
    /// that user record's sub-sequence number and partition key.
    pub fn decode(
        &self,
        shard: &Arc<ShardContext>,
        raw: RawRecord,
        out: &mut Vec<Record>,
        dead: &mut Vec<DeadLetter>,
        stats: &mut DecodeStats,
    ) {
        stats.kinesis_records += 1;
        if self.kpl_deaggregation {
            match kpl::deaggregate(&raw.data, shard.hash_range) {
                Deaggregated::Plain => {}
                Deaggregated::Invalid(check) => {
                    stats.kpl_invalid_as_plain += 1;
                    tracing::debug!(
                        shard = %shard.shard_id,
                        sequence = %raw.sequence_number,
                        ?check,
                        "KPL aggregated record failed a check; decoding it whole"
                    );
                }
                Deaggregated::OutsideHashRange { user_records } => {
                    stats.kpl_aggregated += 1;
                    stats.kpl_outside_hash_range += user_records;
                    return;
                }
                Deaggregated::Aggregated(user_records) => {
                    stats.kpl_aggregated += 1;
                    out.reserve(user_records.len());
                    for user in user_records {
                        let position = Position {
                            sequence: raw.sequence_number.clone(),
                            sub_sequence: Some(user.sub_sequence),
                        };
                        match self.decode_payload(user.data.clone()) {
                            Ok(payload) => {
                                let out_record = OutRecord {
                                    shard,
                                    position,
                                    partition_key: user.partition_key,
                                    approximate_arrival_ms: raw.approximate_arrival_ms,
                                };
                                out_record.emit(payload, out, stats);
                            }
                            Err(error) => {
                                let reason =
                                    format!("{error} (KPL user record {})", user.sub_sequence);
                                let user_raw = RawRecord {
                                    data: user.data,
                                    partition_key: user.partition_key,
                                    sequence_number: raw.sequence_number.clone(),
                                    approximate_arrival_ms: raw.approximate_arrival_ms,
                                };
                                dead_letter(shard, user_raw, &error, reason, dead, stats);
                            }
                        }
                    }
                    return;
                }
            }
        }
        match self.decode_payload(raw.data.clone()) {
            Ok(payload) => {
                let out_record = OutRecord {
                    shard,
                    position: Position::whole(raw.sequence_number),
                    partition_key: raw.partition_key,
                    approximate_arrival_ms: raw.approximate_arrival_ms,
                };
                out_record.emit(payload, out, stats);
            }
            Err(error) => {
                let reason = error.to_string();
                dead_letter(shard, raw, &error, reason, dead, stats);
            }
        }
    }

    /// Decompression, then format decoding, of one (user) record's payload.
    fn decode_payload(&self, data: Bytes) -> Result<Payload, DecodeError> {
        let data = match self.compression {
            Compression::None => data,
            Compression::Gzip => gzip::decompress(&data, self.max_decompressed_bytes)?,
        };
        Ok(match self.format {
            RecordFormat::Raw => Payload::Raw(data),
            RecordFormat::CloudWatchLogs => {
                match cloudwatch::unpack(&data, self.max_decompressed_bytes)? {
                    Some(events) => Payload::LogEvents(events),
                    None => Payload::Control,
                }
            }
        })
    }
}

/// What the output records of one (user) record share.
struct OutRecord<'a> {
    shard: &'a Arc<ShardContext>,
    position: Position,
    partition_key: String,
    approximate_arrival_ms: Option<i64>,
}

impl OutRecord<'_> {
    fn emit(self, payload: Payload, out: &mut Vec<Record>, stats: &mut DecodeStats) {
        match payload {
            Payload::Raw(data) => {
                stats.records_out += 1;
                out.push(Record {
                    data,
                    shard: Arc::clone(self.shard),
                    position: self.position,
                    partition_key: self.partition_key,
                    approximate_arrival_ms: self.approximate_arrival_ms,
                    cloudwatch: None,
                });
            }
            Payload::LogEvents(events) => {
                stats.records_out += events.len() as u64;
                out.extend(events.into_iter().map(|event| Record {
                    data: event.message,
                    shard: Arc::clone(self.shard),
                    position: self.position.clone(),
                    partition_key: self.partition_key.clone(),
                    approximate_arrival_ms: self.approximate_arrival_ms,
                    cloudwatch: Some(Box::new(event.meta)),
                }));
            }
            Payload::Control => stats.cloudwatch_control_messages += 1,
        }
    }
}

fn dead_letter(
    shard: &Arc<ShardContext>,
    raw: RawRecord,
    error: &DecodeError,
    reason: String,
    dead: &mut Vec<DeadLetter>,
    stats: &mut DecodeStats,
) {
    stats.dead_letters[error.category_index()] += 1;
    dead.push(DeadLetter {
        raw,
        shard: Arc::clone(shard),
        reason,
        category: error.category(),
    });
}

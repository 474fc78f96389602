//! Decoding of Kinesis records: KPL de-aggregation, gzip, CloudWatch Logs envelopes, raw bytes.
//!
//! Each Kinesis record goes `kpl` (split into user records, if enabled) -> `gzip` (each user
//! record, if enabled) -> format (`Raw` passes bytes through, `cloudwatch` unpacks envelopes).
//! Undecodable payloads, and records over a limit AWS itself enforces ([`limits`]), become
//! [`DeadLetter`]s; nothing here fails the shard.

mod cloudwatch;
mod error;
pub mod gzip;
pub mod kpl;
pub mod limits;
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
use gzip::Budget;
use kpl::{Deaggregated, UserRecords};
use limits::MAX_RECORDS_PER_KINESIS_RECORD;

pub use error::{DecodeError, RecordRef};
pub use gzip::DEFAULT_MAX_DECOMPRESSED_BYTES;

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
    /// Dead letters, counted by `(category, reason)` in the order of [`DecodeError::LABELS`].
    pub dead_letters: [u64; DecodeError::LABELS.len()],
}

impl DecodeStats {
    /// Dead letters by category label, in the order of [`DecodeError::CATEGORIES`].
    pub fn dead_letters_by_category(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DecodeError::CATEGORIES.into_iter().map(|category| {
            let n = self
                .dead_letters_by_reason()
                .filter(|&(c, _, _)| c == category)
                .map(|(_, _, n)| n)
                .sum();
            (category, n)
        })
    }

    /// Dead letters by `(category, reason)` labels.
    pub fn dead_letters_by_reason(
        &self,
    ) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        DecodeError::LABELS
            .into_iter()
            .zip(self.dead_letters.iter().copied())
            .map(|((category, reason), n)| (category, reason, n))
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
    ///
    /// Bounded: the payloads of one Kinesis record inflate at most `max_decompressed_bytes`
    /// together and decode to at most [`MAX_RECORDS_PER_KINESIS_RECORD`] records, and a record
    /// over a limit of [`limits`] is dead-lettered, so the cost follows the decoded size.
    pub fn decode(
        &self,
        shard: &Arc<ShardContext>,
        raw: RawRecord,
        out: &mut Vec<Record>,
        dead: &mut Vec<DeadLetter>,
        stats: &mut DecodeStats,
    ) {
        stats.kinesis_records += 1;
        let record = RecordRef {
            shard_id: Arc::clone(&shard.shard_id),
            sequence: raw.sequence_number.clone(),
            user_record: None,
        };
        if self.kpl_deaggregation {
            match kpl::deaggregate(&raw.data, shard.hash_range, &record) {
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
                Deaggregated::OverLimit(error) => {
                    let reason = error.to_string();
                    dead_letter(shard, raw, &error, reason, dead, stats);
                    return;
                }
                Deaggregated::OutsideHashRange { user_records } => {
                    stats.kpl_aggregated += 1;
                    stats.kpl_outside_hash_range += user_records;
                    return;
                }
                Deaggregated::Aggregated(user_records) => {
                    stats.kpl_aggregated += 1;
                    self.decode_aggregate(shard, raw, user_records, out, dead, stats);
                    return;
                }
            }
        }
        let mut budget = Budget::new(self.max_decompressed_bytes);
        match self.decode_payload(raw.data.clone(), &record, &mut budget) {
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

    /// Decodes the user records of a valid aggregated record. A user record that cannot be
    /// decoded is dead-lettered alone; but if together they are over a limit (decompressed size,
    /// records), none of them is delivered: the Kinesis record is dead-lettered whole.
    fn decode_aggregate(
        &self,
        shard: &Arc<ShardContext>,
        raw: RawRecord,
        user_records: UserRecords,
        out: &mut Vec<Record>,
        dead: &mut Vec<DeadLetter>,
        stats: &mut DecodeStats,
    ) {
        let record = RecordRef {
            shard_id: Arc::clone(&shard.shard_id),
            sequence: raw.sequence_number.clone(),
            user_record: None,
        };
        let (out_start, dead_start, stats_start) = (out.len(), dead.len(), stats.clone());
        let mut budget = Budget::new(self.max_decompressed_bytes);
        out.reserve(user_records.len());
        for user in user_records {
            let user_ref = RecordRef {
                user_record: Some(user.sub_sequence),
                ..record.clone()
            };
            let over = match self.decode_payload(user.data.clone(), &user_ref, &mut budget) {
                Ok(payload) => {
                    let out_record = OutRecord {
                        shard,
                        position: Position {
                            sequence: raw.sequence_number.clone(),
                            sub_sequence: Some(user.sub_sequence),
                        },
                        partition_key: user.partition_key,
                        approximate_arrival_ms: raw.approximate_arrival_ms,
                    };
                    out_record.emit(payload, out, stats);
                    (out.len() - out_start > MAX_RECORDS_PER_KINESIS_RECORD).then(|| {
                        DecodeError::TooManyRecords {
                            record: record.clone(),
                        }
                    })
                }
                // The user records share the cap: any over it is the aggregate over it.
                Err(DecodeError::GzipTooLarge { max_bytes }) => {
                    Some(DecodeError::AggregateTooLarge {
                        record: record.clone(),
                        max_bytes,
                    })
                }
                Err(error) => {
                    let reason = match error.record() {
                        Some(_) => error.to_string(),
                        None => format!("{error} (KPL user record {})", user.sub_sequence),
                    };
                    let user_raw = RawRecord {
                        data: user.data,
                        partition_key: user.partition_key,
                        sequence_number: raw.sequence_number.clone(),
                        approximate_arrival_ms: raw.approximate_arrival_ms,
                    };
                    dead_letter(shard, user_raw, &error, reason, dead, stats);
                    None
                }
            };
            if let Some(error) = over {
                out.truncate(out_start);
                out.shrink_to(out_start);
                dead.truncate(dead_start);
                *stats = stats_start;
                let reason = error.to_string();
                dead_letter(shard, raw, &error, reason, dead, stats);
                return;
            }
        }
    }

    /// Decompression, then format decoding, of one (user) record's payload, within `budget`.
    fn decode_payload(
        &self,
        data: Bytes,
        record: &RecordRef,
        budget: &mut Budget,
    ) -> Result<Payload, DecodeError> {
        let data = match self.compression {
            Compression::None => data,
            Compression::Gzip => gzip::decompress_within(&data, budget)?,
        };
        Ok(match self.format {
            RecordFormat::Raw => Payload::Raw(data),
            RecordFormat::CloudWatchLogs => match cloudwatch::unpack(&data, budget, record)? {
                Some(events) => Payload::LogEvents(events),
                None => Payload::Control,
            },
        })
    }
}

/// What the output records of one (user) record share.
struct OutRecord<'a> {
    shard: &'a Arc<ShardContext>,
    position: Position,
    partition_key: Arc<str>,
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
                    partition_key: Arc::clone(&self.partition_key),
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
    stats.dead_letters[error.label_index()] += 1;
    dead.push(DeadLetter {
        raw,
        shard: Arc::clone(shard),
        reason,
        category: error.category(),
    });
}

//! What the fuzz targets share: a shard, a raw record around the fuzz input, decoding with invariant checks.

use std::sync::Arc;

use bytes::Bytes;
use kinesis_client::RawRecord;
use kinesis_ingester::{
    decode::{DEFAULT_MAX_DECOMPRESSED_BYTES, DecodeStats, Decoder},
    record::ShardContext,
};
use kinesis_ingester_api::{Compression, DecodeSpec, RecordFormat};

/// The sequence number every fuzzed record carries.
pub const SEQUENCE: &str = "49590338271490256608559692538361571095921575989136588898";

/// A shard whose hash key range is `hash_range`.
pub fn shard(hash_range: (u128, u128)) -> Arc<ShardContext> {
    Arc::new(ShardContext {
        stream: "fuzz".into(),
        shard_id: "shardId-000000000000".into(),
        hash_range,
        tag: None,
    })
}

/// A Kinesis record whose payload is `data`.
pub fn raw(data: &[u8]) -> RawRecord {
    RawRecord {
        data: Bytes::copy_from_slice(data),
        partition_key: "outer".into(),
        sequence_number: SEQUENCE.parse().unwrap_or_else(|_| unreachable!()),
        approximate_arrival_ms: Some(1_700_000_000_000),
    }
}

/// A decoder with the production cap on decompressed bytes.
pub fn decoder(kpl_deaggregation: bool, compression: Compression, format: RecordFormat) -> Decoder {
    let spec = DecodeSpec {
        kpl_deaggregation,
        compression,
        format,
    };
    Decoder::new(&spec, DEFAULT_MAX_DECOMPRESSED_BYTES)
}

/// Decodes `data` as one Kinesis record of `shard` and checks what holds for every input: the
/// counters match the outputs, every output carries the record's sequence number, and no output
/// is larger than the decompression cap.
pub fn decode_checked(decoder: &Decoder, shard: &Arc<ShardContext>, data: &[u8]) -> DecodeStats {
    let mut out = Vec::new();
    let mut dead = Vec::new();
    let mut stats = DecodeStats::default();
    decoder.decode(shard, raw(data), &mut out, &mut dead, &mut stats);
    assert_eq!(stats.kinesis_records, 1);
    assert_eq!(stats.records_out, out.len() as u64);
    assert_eq!(stats.dead_letters_total(), dead.len() as u64);
    for record in &out {
        assert_eq!(record.position.sequence.as_str(), SEQUENCE);
        assert!(record.data.len() <= DEFAULT_MAX_DECOMPRESSED_BYTES);
    }
    for letter in &dead {
        assert!(kinesis_ingester::decode::DecodeError::CATEGORIES.contains(&letter.category));
    }
    stats
}

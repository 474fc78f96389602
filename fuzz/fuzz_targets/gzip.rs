//! Gzip decompression: any bytes as one gzip-compressed Kinesis record, under the production cap.
#![no_main]

use kinesis_ingester_api::{Compression, RecordFormat};
use kinesis_operator_fuzz::{decode_checked, decoder, shard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = decoder(false, Compression::Gzip, RecordFormat::Raw);
    let stats = decode_checked(&decoder, &shard((0, u128::MAX)), data);
    // Exactly one outcome: the payload, or a gzip dead letter.
    assert_eq!(stats.records_out + stats.dead_letters_total(), 1);
});

//! CloudWatch Logs envelopes: any bytes (plain JSON, or gzip as CloudWatch writes it) as one Kinesis record.
#![no_main]

use kinesis_ingester_api::{Compression, RecordFormat};
use kinesis_operator_fuzz::{decode_checked, decoder, shard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = decoder(false, Compression::None, RecordFormat::CloudWatchLogs);
    let stats = decode_checked(&decoder, &shard((0, u128::MAX)), data);
    // An envelope is dropped, dead-lettered or unpacked; never two of these.
    let outcomes = [
        stats.cloudwatch_control_messages > 0,
        stats.dead_letters_total() > 0,
        stats.records_out > 0,
    ];
    assert!(outcomes.iter().filter(|&&o| o).count() <= 1);
});

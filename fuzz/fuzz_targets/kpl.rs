//! KPL de-aggregation: any bytes as one Kinesis record, in a shard owning all hash keys and in one owning half.
#![no_main]

use kinesis_ingester_api::{Compression, RecordFormat};
use kinesis_operator_fuzz::{decode_checked, decoder, shard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = decoder(true, Compression::None, RecordFormat::Raw);
    let whole = decode_checked(&decoder, &shard((0, u128::MAX)), data);
    // Without compression only an aggregate over a cap fails, and then as one dead letter
    // with nothing of it delivered.
    assert!(whole.dead_letters_total() <= 1);
    if whole.dead_letters_total() == 1 {
        assert_eq!(whole.records_out, 0);
        return;
    }
    assert_eq!(whole.kpl_outside_hash_range, 0);
    let half = decode_checked(&decoder, &shard((0, u128::MAX / 2)), data);
    assert_eq!(half.dead_letters_total(), 0);
    assert_eq!(half.kpl_aggregated, whole.kpl_aggregated);
    if half.kpl_outside_hash_range > 0 {
        // Like the KCL, one user record outside the range drops them all.
        assert_eq!(half.records_out, 0);
        assert_eq!(half.kpl_outside_hash_range, whole.records_out);
    } else {
        assert_eq!(half.records_out, whole.records_out);
    }
});

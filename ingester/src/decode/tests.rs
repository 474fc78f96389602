//! Tests of the whole decode pipeline: KPL -> gzip -> format, outputs, dead letters and stats.

use std::sync::Arc;

use bytes::Bytes;
use kinesis_ingester_api::{Compression, DecodeSpec, RecordFormat};

use super::{
    DecodeError, DecodeStats, Decoder,
    testing::{self, UserRecordSpec, encode_aggregated, gzip},
};
use kinesis_client::RawRecord;
use kinesis_ingester_api::sequence::Position;

use crate::record::{DeadLetter, Record, ShardContext};

const CAP: usize = 1 << 20;

fn shard(hash_range: (u128, u128)) -> Arc<ShardContext> {
    Arc::new(ShardContext {
        stream: "s".into(),
        shard_id: "shardId-000000000000".into(),
        hash_range,
        tag: None,
    })
}

fn raw(data: Bytes) -> RawRecord {
    RawRecord {
        data,
        partition_key: "outer".into(),
        sequence_number: "49590338271490256608559692538361571095921575989136588898"
            .parse()
            .expect("valid sequence number"),
        approximate_arrival_ms: Some(1_700_000_000_000),
    }
}

fn decoder(kpl_deaggregation: bool, compression: Compression, format: RecordFormat) -> Decoder {
    let spec = DecodeSpec {
        kpl_deaggregation,
        compression,
        format,
    };
    Decoder::new(&spec, CAP)
}

struct Run {
    out: Vec<Record>,
    dead: Vec<DeadLetter>,
    stats: DecodeStats,
}

fn run(decoder: &Decoder, shard: &Arc<ShardContext>, raws: Vec<RawRecord>) -> Run {
    let mut run = Run {
        out: Vec::new(),
        dead: Vec::new(),
        stats: DecodeStats::default(),
    };
    for raw in raws {
        decoder.decode(shard, raw, &mut run.out, &mut run.dead, &mut run.stats);
    }
    run
}

fn user<'a>(partition_key: &'a str, data: &'a [u8]) -> UserRecordSpec<'a> {
    UserRecordSpec {
        partition_key,
        explicit_hash_key: None,
        data,
    }
}

fn summary(out: &[Record]) -> Vec<(Option<u64>, &str, &[u8])> {
    out.iter()
        .map(|r| (r.position.sub_sequence, &*r.partition_key, &r.data[..]))
        .collect()
}

const DATA_MESSAGE: &str = r#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g",
    "logStream":"s","subscriptionFilters":["f"],"logEvents":[
    {"id":"a","timestamp":1,"message":"m1"},{"id":"b","timestamp":2,"message":"m2"},
    {"id":"c","timestamp":3,"message":"m3"}]}"#;

#[test]
fn aggregated_records_become_user_records_with_their_own_positions_and_keys() {
    let shard = shard((0, u128::MAX));
    let data = encode_aggregated(&[user("p0", b"zero"), user("p1", b"one"), user("p0", b"two")]);
    let r = run(
        &decoder(true, Compression::None, RecordFormat::Raw),
        &shard,
        vec![raw(data)],
    );
    assert_eq!(
        summary(&r.out),
        [
            (Some(0), "p0", &b"zero"[..]),
            (Some(1), "p1", &b"one"[..]),
            (Some(2), "p0", &b"two"[..])
        ]
    );
    let first = &r.out[0];
    assert_eq!(first.position.sequence, raw(Bytes::new()).sequence_number);
    assert_eq!(first.approximate_arrival_ms, Some(1_700_000_000_000));
    assert!(Arc::ptr_eq(&first.shard, &shard));
    assert_eq!(first.cloudwatch, None);
    let expected = DecodeStats {
        kinesis_records: 1,
        records_out: 3,
        kpl_aggregated: 1,
        ..DecodeStats::default()
    };
    assert_eq!(r.stats, expected);
}

#[test]
fn plain_records_and_disabled_deaggregation_pass_records_through_whole() {
    let shard = shard((0, u128::MAX));
    let aggregated = encode_aggregated(&[user("p0", b"zero")]);
    let plain = Bytes::from_static(b"plain payload");

    let r = run(
        &decoder(false, Compression::None, RecordFormat::Raw),
        &shard,
        vec![raw(aggregated.clone())],
    );
    assert_eq!(summary(&r.out), [(None, "outer", &aggregated[..])]);
    assert_eq!(r.stats.kpl_aggregated, 0);

    let r = run(
        &decoder(true, Compression::None, RecordFormat::Raw),
        &shard,
        vec![raw(plain.clone())],
    );
    assert_eq!(summary(&r.out), [(None, "outer", &b"plain payload"[..])]);
    assert_eq!(
        r.out[0].position,
        Position::whole(raw(plain).sequence_number)
    );
    assert_eq!(r.stats.kpl_invalid_as_plain, 0);
}

#[test]
fn a_digest_mismatch_passes_the_record_through_whole_and_is_counted() {
    let mut data = encode_aggregated(&[user("p0", b"zero"), user("p1", b"one")]).to_vec();
    let last = data.len() - 1;
    data[last] ^= 0x55;
    let r = run(
        &decoder(true, Compression::None, RecordFormat::Raw),
        &shard((0, u128::MAX)),
        vec![raw(data.clone().into())],
    );
    assert_eq!(summary(&r.out), [(None, "outer", &data[..])]);
    assert_eq!(r.stats.kpl_invalid_as_plain, 1);
    assert_eq!(r.stats.kpl_aggregated, 0);
}

#[test]
fn aggregated_records_outside_the_hash_range_are_dropped_and_counted() {
    let in_range = UserRecordSpec {
        explicit_hash_key: Some("10"),
        ..user("a", b"in")
    };
    let out_of_range = UserRecordSpec {
        explicit_hash_key: Some("21"),
        ..user("b", b"out")
    };
    let raws = vec![
        raw(encode_aggregated(&[in_range, in_range])),
        raw(encode_aggregated(&[in_range, out_of_range, in_range])),
    ];
    let r = run(
        &decoder(true, Compression::None, RecordFormat::Raw),
        &shard((10, 20)),
        raws,
    );
    assert_eq!(
        summary(&r.out),
        [(Some(0), "a", &b"in"[..]), (Some(1), "a", &b"in"[..])]
    );
    assert_eq!(r.stats.kpl_outside_hash_range, 3);
    assert_eq!(r.stats.kpl_aggregated, 2);
    assert!(r.dead.is_empty());
}

#[test]
fn gzip_user_records_are_decompressed_and_bad_ones_become_dead_letters() {
    let good = gzip(b"hello");
    let data = encode_aggregated(&[user("a", &good), user("b", b"not gzip"), user("c", &good)]);
    let r = run(
        &decoder(true, Compression::Gzip, RecordFormat::Raw),
        &shard((0, u128::MAX)),
        vec![raw(data)],
    );
    assert_eq!(
        summary(&r.out),
        [(Some(0), "a", &b"hello"[..]), (Some(2), "c", &b"hello"[..])]
    );
    let [dead] = &r.dead[..] else {
        panic!("expected one dead letter, got {:?}", r.dead)
    };
    assert_eq!(dead.category, "gzip");
    assert!(dead.reason.starts_with("gzip: "), "{}", dead.reason);
    assert!(
        dead.reason.ends_with("(KPL user record 1)"),
        "{}",
        dead.reason
    );
    assert_eq!(
        (&dead.raw.data[..], &*dead.raw.partition_key),
        (&b"not gzip"[..], "b")
    );
    assert_eq!(
        r.stats.dead_letters_by_category().collect::<Vec<_>>(),
        [("gzip", 1), ("cloudwatch", 0), ("kpl", 0)]
    );
    assert_eq!(r.stats.records_out, 2);
}

#[test]
fn a_gzip_bomb_becomes_a_dead_letter() {
    let bomb = gzip(&vec![b'x'; CAP + 1]);
    let r = run(
        &decoder(true, Compression::Gzip, RecordFormat::Raw),
        &shard((0, u128::MAX)),
        vec![raw(bomb.clone())],
    );
    assert!(r.out.is_empty());
    assert_eq!(r.dead.len(), 1);
    assert!(
        r.dead[0].reason.contains("exceeds the cap"),
        "{}",
        r.dead[0].reason
    );
    assert_eq!(
        r.dead[0].raw,
        raw(bomb),
        "the dead letter keeps the raw record"
    );
}

#[test]
fn cloudwatch_envelopes_become_one_record_per_log_event() {
    let shard = shard((0, u128::MAX));
    let aggregated = encode_aggregated(&[user("k", &gzip(DATA_MESSAGE.as_bytes()))]);
    let r = run(
        &decoder(true, Compression::None, RecordFormat::CloudWatchLogs),
        &shard,
        vec![raw(gzip(DATA_MESSAGE.as_bytes())), raw(aggregated)],
    );
    assert_eq!(
        summary(&r.out),
        [
            (None, "outer", &b"m1"[..]),
            (None, "outer", &b"m2"[..]),
            (None, "outer", &b"m3"[..]),
            (Some(0), "k", &b"m1"[..]),
            (Some(0), "k", &b"m2"[..]),
            (Some(0), "k", &b"m3"[..]),
        ]
    );
    let meta = r.out[1].cloudwatch.as_deref().expect("cloudwatch metadata");
    assert_eq!(
        (
            meta.envelope.owner.as_str(),
            meta.envelope.log_group.as_str(),
            meta.envelope.log_stream.as_str()
        ),
        ("1", "g", "s")
    );
    assert_eq!((meta.id.as_str(), meta.timestamp_ms), ("b", 2));
    assert_eq!(meta.envelope.subscription_filters, ["f"]);
    assert_eq!(r.stats.records_out, 6);
}

#[test]
fn cloudwatch_control_messages_are_dropped_and_bad_json_is_a_dead_letter() {
    let control = br#"{"messageType":"CONTROL_MESSAGE","logEvents":[]}"#;
    let bad = br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"x","timestamp":"soon"}]}"#;
    let r = run(
        &decoder(false, Compression::Gzip, RecordFormat::CloudWatchLogs),
        &shard((0, u128::MAX)),
        vec![raw(gzip(control)), raw(gzip(bad))],
    );
    assert!(r.out.is_empty());
    assert_eq!(r.stats.cloudwatch_control_messages, 1);
    assert_eq!(r.dead.len(), 1);
    assert_eq!(r.dead[0].category, "cloudwatch");
    let reason = &r.dead[0].reason;
    assert!(
        reason.starts_with("cloudwatch: invalid type: string \"soon\", expected i64"),
        "{reason}"
    );
    assert_eq!(r.stats.dead_letters_total(), 1);
}

#[test]
fn stats_merge_adds_every_counter() {
    let labels = |pairs: &[(usize, u64)]| {
        let mut counts = [0; DecodeError::LABELS.len()];
        for &(i, n) in pairs {
            counts[i] = n;
        }
        counts
    };
    let mut a = DecodeStats {
        kinesis_records: 1,
        records_out: 2,
        dead_letters: labels(&[(0, 1)]),
        ..DecodeStats::default()
    };
    let b = DecodeStats {
        kinesis_records: 3,
        kpl_outside_hash_range: 4,
        cloudwatch_control_messages: 5,
        dead_letters: labels(&[(2, 2), (16, 1)]),
        ..DecodeStats::default()
    };
    a.merge(&b);
    assert_eq!(
        a,
        DecodeStats {
            kinesis_records: 4,
            records_out: 2,
            kpl_outside_hash_range: 4,
            cloudwatch_control_messages: 5,
            dead_letters: labels(&[(0, 1), (2, 2), (16, 1)]),
            ..DecodeStats::default()
        }
    );
    assert_eq!(
        a.dead_letters_by_category().collect::<Vec<_>>(),
        [("gzip", 1), ("cloudwatch", 2), ("kpl", 1)]
    );
}

#[test]
fn the_events_of_an_envelope_share_its_metadata_and_partition_key() {
    let r = run(
        &decoder(true, Compression::None, RecordFormat::CloudWatchLogs),
        &shard((0, u128::MAX)),
        vec![raw(gzip(DATA_MESSAGE.as_bytes()))],
    );
    let [first, rest @ ..] = &r.out[..] else {
        panic!("no records")
    };
    let envelope = |r: &Record| Arc::clone(&r.cloudwatch.as_ref().expect("metadata").envelope);
    for other in rest {
        assert!(Arc::ptr_eq(&envelope(first), &envelope(other)));
        assert!(Arc::ptr_eq(&first.partition_key, &other.partition_key));
    }
}

#[test]
fn the_cloudwatch_metadata_bomb_is_dead_lettered_and_the_next_record_delivered() {
    let bomb = testing::cloudwatch_bomb(2 << 20, 50_000);
    let decoder = Decoder::new(
        &DecodeSpec {
            kpl_deaggregation: true,
            compression: Compression::None,
            format: RecordFormat::CloudWatchLogs,
        },
        super::DEFAULT_MAX_DECOMPRESSED_BYTES,
    );
    let r = run(
        &decoder,
        &shard((0, u128::MAX)),
        vec![raw(bomb.clone()), raw(gzip(DATA_MESSAGE.as_bytes()))],
    );
    assert_eq!(summary(&r.out).len(), 3, "the next record is delivered");
    let [dead] = &r.dead[..] else {
        panic!("expected one dead letter, got {}", r.dead.len())
    };
    assert_eq!(dead.raw.data, bomb, "the dead letter keeps the raw record");
    assert_eq!(dead.category, "cloudwatch");
    assert!(
        dead.reason.contains("log group name of 2097152 characters")
            && dead.reason.contains("shardId-000000000000"),
        "{}",
        dead.reason
    );
    let by_reason: Vec<_> = r
        .stats
        .dead_letters_by_reason()
        .filter(|&(_, _, n)| n > 0)
        .collect();
    assert_eq!(by_reason, [("cloudwatch", "log_group_too_long", 1)]);
}

#[test]
fn the_kpl_key_bomb_is_dead_lettered_whole_and_the_next_record_delivered() {
    let bomb = testing::kpl_key_bomb(460_800, 80_000);
    let r = run(
        &decoder(true, Compression::None, RecordFormat::Raw),
        &shard((0, u128::MAX)),
        vec![
            raw(bomb.clone()),
            raw(encode_aggregated(&[user("k", b"next")])),
        ],
    );
    assert_eq!(summary(&r.out), [(Some(0), "k", &b"next"[..])]);
    let [dead] = &r.dead[..] else {
        panic!("expected one dead letter, got {}", r.dead.len())
    };
    assert_eq!((dead.raw.data.len(), dead.category), (bomb.len(), "kpl"));
    assert!(
        dead.reason.contains("partition key 0 of 460800 characters"),
        "{}",
        dead.reason
    );
    assert_eq!(
        r.stats.kpl_aggregated, 1,
        "the bomb is not counted as aggregated"
    );
}

#[test]
fn user_records_decompressing_to_more_than_the_cap_together_dead_letter_the_aggregate() {
    // Three user records of 400 KiB each: each under the 1 MiB cap, together over it. The
    // user record that fails alone (not gzip) is not dead-lettered on its own either.
    let part = gzip(&vec![b'z'; 400 << 10]);
    let data = encode_aggregated(&[
        user("a", &part),
        user("b", b"not gzip"),
        user("c", &part),
        user("d", &part),
    ]);
    let r = run(
        &decoder(true, Compression::Gzip, RecordFormat::Raw),
        &shard((0, u128::MAX)),
        vec![raw(data.clone()), raw(gzip(b"next"))],
    );
    assert_eq!(summary(&r.out), [(None, "outer", &b"next"[..])]);
    let [dead] = &r.dead[..] else {
        panic!("expected one dead letter, got {:?}", r.dead)
    };
    assert_eq!(dead.raw, raw(data), "the whole Kinesis record");
    assert!(
        dead.reason
            .contains("decompress to more than the cap of 1048576 bytes"),
        "{}",
        dead.reason
    );
    let by_reason: Vec<_> = r
        .stats
        .dead_letters_by_reason()
        .filter(|&(_, _, n)| n > 0)
        .collect();
    assert_eq!(by_reason, [("kpl", "decompressed_too_large", 1)]);
    assert_eq!(
        r.stats.records_out, 1,
        "the rolled-back records are not counted"
    );
}

#[test]
fn an_aggregate_of_envelopes_decoding_to_too_many_records_is_dead_lettered_whole() {
    let envelope = {
        let events: Vec<String> = (0..super::limits::MAX_LOG_EVENTS)
            .map(|i| format!(r#"{{"id":"{i}","timestamp":1,"message":"m"}}"#))
            .collect();
        gzip(
            format!(
                r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s",
                "subscriptionFilters":[],"logEvents":[{}]}}"#,
                events.join(",")
            )
            .as_bytes(),
        )
    };
    let users: Vec<_> = (0..18).map(|_| user("k", &envelope)).collect();
    let decoder = Decoder::new(
        &DecodeSpec {
            kpl_deaggregation: true,
            compression: Compression::None,
            format: RecordFormat::CloudWatchLogs,
        },
        super::DEFAULT_MAX_DECOMPRESSED_BYTES,
    );
    let r = run(
        &decoder,
        &shard((0, u128::MAX)),
        vec![
            raw(encode_aggregated(&users[..17])),
            raw(encode_aggregated(&users)),
        ],
    );
    assert_eq!(
        r.out.len(),
        170_000,
        "17 envelopes of 10,000 are within the limit"
    );
    let [dead] = &r.dead[..] else {
        panic!("expected one dead letter, got {}", r.dead.len())
    };
    assert!(
        dead.reason.contains("more than 174762 records"),
        "{}",
        dead.reason
    );
}

#[test]
fn an_envelope_over_a_limit_in_a_user_record_dead_letters_that_user_record() {
    let too_many_filters = gzip(
        br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s",
        "subscriptionFilters":["a","b","c"],"logEvents":[{"id":"x","timestamp":1,"message":"m"}]}"#,
    );
    let good = gzip(DATA_MESSAGE.as_bytes());
    let data = encode_aggregated(&[user("a", &good), user("b", &too_many_filters)]);
    let r = run(
        &decoder(true, Compression::None, RecordFormat::CloudWatchLogs),
        &shard((0, u128::MAX)),
        vec![raw(data)],
    );
    assert_eq!(r.out.len(), 3);
    let [dead] = &r.dead[..] else {
        panic!("expected one dead letter, got {:?}", r.dead)
    };
    assert_eq!(&*dead.raw.partition_key, "b");
    assert!(
        dead.reason.ends_with(
            "(KPL user record 1): 3 subscription filters, over the 2 a log group can have"
        ),
        "{}",
        dead.reason
    );
}

//! Tests of KPL de-aggregation: round trips, checks, hash ranges and the KPL limits.

use super::*;
use crate::decode::testing::{UserRecordSpec, encode_aggregated, frame, kpl_key_bomb};

const FULL: (u128, u128) = (0, u128::MAX);

fn record() -> RecordRef {
    RecordRef {
        shard_id: "shardId-000000000000".into(),
        sequence: "42".parse().expect("sequence number"),
        user_record: None,
    }
}

fn deaggregate(data: &Bytes, hash_range: (u128, u128)) -> Deaggregated {
    super::deaggregate(data, hash_range, &record())
}

fn over_limit(d: Deaggregated) -> DecodeError {
    match d {
        Deaggregated::OverLimit(error) => error,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

fn user(partition_key: &'static str, data: &'static [u8]) -> UserRecordSpec<'static> {
    UserRecordSpec {
        partition_key,
        explicit_hash_key: None,
        data,
    }
}

fn user_records(d: Deaggregated) -> Vec<UserRecord> {
    match d {
        Deaggregated::Aggregated(records) => records.collect(),
        other => panic!("expected user records, got {other:?}"),
    }
}

#[test]
fn round_trips_user_records_with_their_keys_and_sub_sequence_numbers() {
    let data = encode_aggregated(&[user("a", b"one"), user("b", b"two"), user("a", b"")]);
    let records = user_records(deaggregate(&data, FULL));
    let got: Vec<_> = records
        .iter()
        .map(|r| (r.sub_sequence, &*r.partition_key, &r.data[..]))
        .collect();
    assert_eq!(
        got,
        [
            (0, "a", &b"one"[..]),
            (1, "b", &b"two"[..]),
            (2, "a", &b""[..])
        ]
    );
}

#[test]
fn user_record_payloads_are_slices_of_the_kinesis_payload() {
    let data = encode_aggregated(&[user("k", &[7; 300])]);
    let records = user_records(deaggregate(&data, FULL));
    let range = data.as_ptr_range();
    assert!(
        range.contains(&records[0].data.as_ptr()),
        "payload was copied"
    );
}

#[test]
fn non_aggregated_and_truncated_records_are_plain() {
    assert!(matches!(
        deaggregate(&Bytes::from_static(b"{\"a\":1}"), FULL),
        Deaggregated::Plain
    ));
    let short = Bytes::copy_from_slice(&[MAGIC.as_slice(), &[0; DIGEST_LEN]].concat());
    assert!(matches!(deaggregate(&short, FULL), Deaggregated::Plain));
    assert!(matches!(
        deaggregate(&Bytes::new(), FULL),
        Deaggregated::Plain
    ));
}

#[test]
fn digest_mismatch_and_unparsable_bodies_are_invalid() {
    let mut bad_digest = encode_aggregated(&[user("k", b"x")]).to_vec();
    *bad_digest.last_mut().expect("not empty") ^= 1;
    let d = deaggregate(&Bytes::from(bad_digest), FULL);
    assert!(matches!(d, Deaggregated::Invalid(Invalid::Digest)), "{d:?}");

    // A correct digest over bytes that are not a protobuf message (truncated varint).
    let d = deaggregate(&frame(&[0x08, 0xFF]), FULL);
    assert!(
        matches!(d, Deaggregated::Invalid(Invalid::Protobuf)),
        "{d:?}"
    );
}

#[test]
fn key_index_out_of_range_is_invalid() {
    let message = AggregatedRecord {
        partition_key_table: vec!["k".into()],
        explicit_hash_key_table: vec![],
        records: vec![UserRecordMessage {
            partition_key_index: 1,
            explicit_hash_key_index: None,
            data: Bytes::from_static(b"x"),
        }],
    };
    let data = frame(&prost::Message::encode_to_vec(&message));
    let d = deaggregate(&data, FULL);
    assert!(
        matches!(d, Deaggregated::Invalid(Invalid::KeyIndex)),
        "{d:?}"
    );

    let mut message = message;
    message.records[0].partition_key_index = 0;
    message.records[0].explicit_hash_key_index = Some(0);
    let d = deaggregate(&frame(&prost::Message::encode_to_vec(&message)), FULL);
    assert!(
        matches!(d, Deaggregated::Invalid(Invalid::KeyIndex)),
        "{d:?}"
    );
}

#[test]
fn explicit_hash_keys_decide_the_hash_range() {
    let data = encode_aggregated(&[
        UserRecordSpec {
            explicit_hash_key: Some("100"),
            ..user("a", b"1")
        },
        UserRecordSpec {
            explicit_hash_key: Some("200"),
            ..user("b", b"2")
        },
    ]);
    assert_eq!(user_records(deaggregate(&data, (100, 200))).len(), 2);
    let d = deaggregate(&data, (101, 300));
    assert!(
        matches!(d, Deaggregated::OutsideHashRange { user_records: 2 }),
        "{d:?}"
    );
    let d = deaggregate(&data, (0, 199));
    assert!(
        matches!(d, Deaggregated::OutsideHashRange { user_records: 2 }),
        "{d:?}"
    );

    let bad = encode_aggregated(&[UserRecordSpec {
        explicit_hash_key: Some("0x10"),
        ..user("a", b"1")
    }]);
    let d = deaggregate(&bad, FULL);
    assert!(
        matches!(d, Deaggregated::Invalid(Invalid::ExplicitHashKey)),
        "{d:?}"
    );
}

#[test]
fn partition_key_hashes_decide_the_hash_range_without_explicit_keys() {
    // MD5("a") = 0cc175b9c0f1b6a831c399e269772661.
    let hash_a = 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661_u128;
    assert_eq!(partition_key_hash("a"), hash_a);
    let data = encode_aggregated(&[user("a", b"1")]);
    assert_eq!(user_records(deaggregate(&data, (hash_a, hash_a))).len(), 1);
    let d = deaggregate(&data, (hash_a + 1, u128::MAX));
    assert!(
        matches!(d, Deaggregated::OutsideHashRange { user_records: 1 }),
        "{d:?}"
    );
}

#[test]
fn user_records_of_one_key_share_one_copy_of_it() {
    let data = encode_aggregated(&[user("a", b"1"), user("b", b"2"), user("a", b"3")]);
    let records = user_records(deaggregate(&data, FULL));
    assert!(Arc::ptr_eq(
        &records[0].partition_key,
        &records[2].partition_key
    ));
    assert!(!Arc::ptr_eq(
        &records[0].partition_key,
        &records[1].partition_key
    ));
}

#[test]
fn the_key_bomb_is_refused_before_any_user_record_is_made() {
    // One 450 KiB key shared by 80,000 user records, in under 1 MiB: it once cost a copy
    // and an MD5 of the key per user record (36 GB of each).
    let bomb = kpl_key_bomb(460_800, 80_000);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let err = over_limit(deaggregate(&bomb, FULL));
    assert!(
        matches!(
            err,
            DecodeError::PartitionKeyTooLong {
                index: 0,
                chars: 460_800,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        (err.category(), err.reason()),
        ("kpl", "partition_key_too_long")
    );
    assert!(
        err.to_string()
            .contains("record 42 of shardId-000000000000"),
        "{err}"
    );
    assert!(err.to_string().contains("limit of 256"), "{err}");
}

#[test]
fn keys_at_the_limits_are_accepted_and_longer_ones_refused() {
    let at_limit = "é".repeat(MAX_PARTITION_KEY_CHARS);
    let max_hash = u128::MAX.to_string();
    assert_eq!(max_hash.len(), MAX_EXPLICIT_HASH_KEY_CHARS);
    let data = encode_aggregated(&[UserRecordSpec {
        partition_key: &at_limit,
        explicit_hash_key: Some(&max_hash),
        data: b"x",
    }]);
    assert_eq!(user_records(deaggregate(&data, FULL)).len(), 1);

    let long = "é".repeat(MAX_PARTITION_KEY_CHARS + 1);
    let err = over_limit(deaggregate(
        &encode_aggregated(&[
            user("a", b"1"),
            UserRecordSpec {
                partition_key: &long,
                explicit_hash_key: None,
                data: b"2",
            },
        ]),
        FULL,
    ));
    assert!(
        matches!(
            err,
            DecodeError::PartitionKeyTooLong {
                index: 1,
                chars: 257,
                ..
            }
        ),
        "{err:?}"
    );

    let forty_digits = "1".repeat(40);
    let err = over_limit(deaggregate(
        &encode_aggregated(&[UserRecordSpec {
            explicit_hash_key: Some(&forty_digits),
            ..user("a", b"1")
        }]),
        FULL,
    ));
    assert!(
        matches!(
            err,
            DecodeError::ExplicitHashKeyTooLong {
                index: 0,
                chars: 40,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reason(), "explicit_hash_key_too_long");
}

#[test]
fn more_user_records_or_keys_than_fit_in_a_kpl_aggregate_are_refused() {
    let empty = UserRecordMessage {
        partition_key_index: 0,
        explicit_hash_key_index: None,
        data: Bytes::new(),
    };
    let message = AggregatedRecord {
        partition_key_table: vec!["k".into()],
        explicit_hash_key_table: vec![],
        records: vec![empty.clone(); MAX_KPL_USER_RECORDS],
    };
    let data = frame(&prost::Message::encode_to_vec(&message));
    assert_eq!(
        user_records(deaggregate(&data, FULL)).len(),
        MAX_KPL_USER_RECORDS
    );

    let mut over = message.clone();
    over.records.push(empty);
    let err = over_limit(deaggregate(
        &frame(&prost::Message::encode_to_vec(&over)),
        FULL,
    ));
    assert!(
        matches!(err, DecodeError::TooManyUserRecords { count, .. } if count == MAX_KPL_USER_RECORDS + 1),
        "{err:?}"
    );

    let mut keys = message;
    keys.records.truncate(1);
    keys.partition_key_table = vec![String::new(); MAX_KPL_USER_RECORDS + 1];
    let err = over_limit(deaggregate(
        &frame(&prost::Message::encode_to_vec(&keys)),
        FULL,
    ));
    assert_eq!(err.reason(), "too_many_keys");
}

#[test]
fn entries_are_counted_from_the_wire_format_as_prost_decodes_them() {
    let data = encode_aggregated(&[
        UserRecordSpec {
            explicit_hash_key: Some("7"),
            ..user("a", b"one")
        },
        user("b", &[9; 300]),
        user("a", b""),
    ]);
    let body = &data[MAGIC.len()..data.len() - DIGEST_LEN];
    assert_eq!(
        count_entries(body),
        Some(Counts {
            keys: 3,
            records: 3
        })
    );
    // Truncated inside a length-delimited field, and a group (wire type 3).
    assert_eq!(count_entries(&body[..body.len() - 1]), None);
    assert_eq!(count_entries(&[0x0B]), None);
}

//! A stream deleted and created again under the same name (design §4.5).

use kinesis_ingester_api::{CheckpointPosition, Fence};

use super::super::tests::{absorb, entry, shard, table, worker};
use super::super::*;

fn listed(id: &str) -> ListedShard {
    ListedShard {
        shard_id: id.into(),
        parents: vec![],
        hash_range: ("0".into(), "1".into()),
        closed: false,
    }
}

#[test]
fn only_another_known_creation_time_is_a_new_stream() {
    let mut t = table(vec![]);
    assert!(
        !stream_recreated(&t, Some("2026-11-27T04:00:00Z")),
        "unknown: the same"
    );
    t.stream_created = Some("2026-11-27T04:00:00Z".into());
    assert!(!stream_recreated(&t, Some("2026-11-27T04:00:00Z")));
    assert!(!stream_recreated(&t, None), "Kinesis did not say: the same");
    assert!(stream_recreated(&t, Some("2026-11-27T05:00:00Z")));
}

#[test]
fn a_reset_forgets_every_position_above_every_epoch_ever_reported() {
    let mut t = table(vec![
        shard("s0", Some("w0"), 3),
        shard("s1", Some("w1"), 2),
        shard("gone", None, 9),
    ]);
    t.shards[0].start_after = Some(CheckpointPosition {
        sequence: "42".into(),
        sub_sequence: None,
    });
    t.shards[1].draining = true;
    t.finished = vec!["s2".into()];
    t.stream_created = Some("2026-11-27T04:00:00Z".into());
    // w1 once read s2 at epoch 12 (finished, no longer in the table), and w0 holds a fence at 15.
    let (n1, w1) = worker("w1", Liveness::Live, vec![entry("s2", 12, Some("7"))]);
    let (n0, mut w0) = worker("w0", Liveness::Live, vec![entry("s0", 3, Some("42"))]);
    w0.object.spec.fences.push(Fence {
        shard_id: "old".into(),
        epoch: 15,
        position: None,
    });
    let workers: Workers = [(n0, w0), (n1, w1)].into();

    let out = reset_for_new_stream(
        &mut t,
        &[listed("s1"), listed("s0"), listed("s2")],
        "2026-11-27T05:00:00Z",
        &workers,
        None,
    );

    assert_eq!(
        out,
        Transition::StreamRecreated {
            shards: 3,
            was: "2026-11-27T04:00:00Z".into(),
            now: "2026-11-27T05:00:00Z".into(),
        }
    );
    let ids: Vec<&str> = t.shards.iter().map(|s| s.shard_id.as_str()).collect();
    assert_eq!(ids, ["s0", "s1", "s2"], "exactly what the new stream lists");
    for s in &t.shards {
        assert_eq!(
            s.epoch, 16,
            "above every epoch of table, reports and fences: {s:?}"
        );
        assert_eq!((s.owner.as_deref(), s.draining), (None, false), "{s:?}");
        assert_eq!(s.start_after, None, "{s:?}");
        assert_eq!(s.start_at_timestamp, None, "{s:?}");
    }
    assert!(
        t.finished.is_empty(),
        "s2 of the new stream is not finished"
    );
    assert_eq!(t.stream_created.as_deref(), Some("2026-11-27T05:00:00Z"));

    // The old owner's report at its old epoch no longer moves anything.
    let before = t.clone();
    let _ = absorb(&mut t, &workers);
    assert_eq!(t, before);
    // The next owner gets the shard above the reset epoch, with no position: startingPosition.
    let planned = plan_owners(&mut t, &["w0".to_owned()], &workers, false, 3);
    assert!(
        planned
            .iter()
            .all(|p| matches!(p, Transition::Assigned { epoch: 17, .. })),
        "{planned:?}"
    );
}

#[test]
fn a_reset_pins_latest_readers_to_the_reset() {
    let mut t = table(vec![shard("s0", None, 1)]);
    t.stream_created = Some("a".into());
    let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
    reset_for_new_stream(&mut t, &[listed("s0")], "b", &Workers::new(), Some(now));
    assert_eq!(
        t.shards[0].start_at_timestamp.as_deref(),
        Some(now.to_string().as_str())
    );
}

//! Rewinding a fleet (design §4.7).

use kinesis_ingester_api::{CheckpointPosition, ResetSpec, ShardRewind, StartingPositionType};

use super::super::tests::{absorb, entry, shard, table, worker};
use super::super::*;

fn listed(id: &str, parents: &[&str]) -> ListedShard {
    ListedShard {
        shard_id: id.into(),
        parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        hash_range: ("0".into(), "1".into()),
        closed: false,
    }
}

fn reset(to: StartingPositionType, timestamp: Option<&str>, id: &str) -> ResetSpec {
    ResetSpec {
        to,
        timestamp: timestamp.map(str::to_owned),
        request_id: id.into(),
        shards: vec![],
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).expect("time")
}

/// p was split into c1 and c2 (p finished, the children read with positions); s is another open
/// shard. w0 holds c1 at epoch 4 and once reported p at epoch 6.
fn resharded() -> (KinesisShardAssignmentSpec, Vec<ListedShard>, Workers) {
    let mut t = table(vec![
        shard("c1", Some("w0"), 4),
        shard("c2", None, 2),
        shard("s", Some("w1"), 3),
    ]);
    t.shards[0].parents = vec!["p".into()];
    t.shards[1].parents = vec!["p".into()];
    for s in &mut t.shards {
        s.start_after = Some(CheckpointPosition {
            sequence: "42".into(),
            sub_sequence: None,
        });
    }
    t.shards[2].draining = true;
    t.finished = vec!["p".into()];
    let listing = vec![
        listed("c1", &["p"]),
        listed("c2", &["p"]),
        listed("p", &[]),
        listed("s", &[]),
    ];
    let (n0, w0) = worker("w0", Liveness::Live, vec![entry("p", 6, Some("9"))]);
    (t, listing, [(n0, w0)].into())
}

#[test]
fn a_whole_stream_rewind_rereads_finished_parents_before_their_children() {
    let (mut t, listing, workers) = resharded();
    let r = reset(
        StartingPositionType::AtTimestamp,
        Some("2026-11-27T05:00:00+01:00"),
        "r1",
    );
    assert!(rewind_pending(&t, &r));
    let out = rewind(&mut t, &listing, &r, &workers, now()).expect("applies");
    assert_eq!(
        out,
        Transition::Rewound {
            request_id: "r1".into(),
            shards: 4,
            to: "AtTimestamp 2026-11-27T04:00:00Z".into(),
            unknown: vec![],
        }
    );
    let ids: Vec<&str> = t.shards.iter().map(|s| s.shard_id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "p", "s"], "the finished parent is back");
    assert!(t.finished.is_empty());
    for s in &t.shards {
        assert_eq!(s.epoch, 7, "above every epoch held or reported: {s:?}");
        assert_eq!((s.owner.as_deref(), s.draining), (None, false), "{s:?}");
        assert_eq!(s.start_after, None, "{s:?}");
        assert_eq!(
            s.rewind.as_ref().and_then(|r| r.timestamp.as_deref()),
            Some("2026-11-27T04:00:00Z"),
            "{s:?}"
        );
    }
    // Parent before child: with strict order only p and s may be read.
    assert_eq!(eligible(&t, true), ["p", "s"]);
    let applied = t.reset.clone().expect("recorded in the table");
    assert_eq!((applied.request_id.as_str(), applied.shards), ("r1", 4));
    assert_eq!(applied.applied_at, now().to_string());
    // Applied once: the same request id is no longer pending.
    assert!(!rewind_pending(&t, &r));
    assert!(rewind_pending(
        &t,
        &reset(StartingPositionType::TrimHorizon, None, "r2")
    ));

    // w0's report about c1 at its old epoch moves nothing.
    let before = t.clone();
    let (n0, w0) = worker("w0", Liveness::Live, vec![entry("c1", 4, Some("99"))]);
    let _ = absorb(&mut t, &[(n0, w0)].into());
    assert_eq!(t, before);
}

#[test]
fn rewind_targets_become_shard_starts() {
    let (t0, listing, workers) = resharded();
    let mut t = t0.clone();
    rewind(
        &mut t,
        &listing,
        &reset(StartingPositionType::TrimHorizon, None, "a"),
        &workers,
        now(),
    )
    .expect("applies");
    assert!(
        t.shards
            .iter()
            .all(|s| s.rewind == Some(ShardRewind { timestamp: None }))
    );
    assert_eq!(t.reset.as_ref().map(|r| r.to.as_str()), Some("TrimHorizon"));

    let mut t = t0.clone();
    rewind(
        &mut t,
        &listing,
        &reset(StartingPositionType::Latest, None, "b"),
        &workers,
        now(),
    )
    .expect("applies");
    let pinned = Some(now().to_string());
    assert!(
        t.shards
            .iter()
            .all(|s| s.rewind.as_ref().map(|r| r.timestamp.clone()) == Some(pinned.clone()))
    );

    let mut t = t0.clone();
    let err = rewind(
        &mut t,
        &listing,
        &reset(StartingPositionType::AtTimestamp, Some("yesterday"), "c"),
        &workers,
        now(),
    )
    .expect_err("not a time");
    assert_eq!(err, RewindError::BadTimestamp("yesterday".into()));
    assert_eq!(t, t0, "nothing changes");
}

#[test]
fn a_per_shard_rewind_touches_only_the_named_shards() {
    let (mut t, listing, workers) = resharded();
    let before = t.clone();
    let mut r = reset(StartingPositionType::TrimHorizon, None, "one");
    r.shards = vec!["s".into(), "p".into(), "nope".into(), "s".into()];
    let out = rewind(&mut t, &listing, &r, &workers, now()).expect("applies");
    assert_eq!(
        out,
        Transition::Rewound {
            request_id: "one".into(),
            shards: 2,
            to: "TrimHorizon".into(),
            unknown: vec!["nope".into()],
        }
    );
    let by_id = |t: &KinesisShardAssignmentSpec, id: &str| {
        t.shards.iter().find(|s| s.shard_id == id).cloned()
    };
    // The children keep their owners and positions.
    assert_eq!(by_id(&t, "c1"), by_id(&before, "c1"));
    assert_eq!(by_id(&t, "c2"), by_id(&before, "c2"));
    // s is fenced off its owner and restarts; p is read again.
    for id in ["s", "p"] {
        let s = by_id(&t, id).expect("an entry");
        assert_eq!((s.owner, s.epoch, s.start_after), (None, 7, None), "{id}");
        assert_eq!(s.rewind, Some(ShardRewind { timestamp: None }));
    }
    assert!(t.finished.is_empty());
    assert_eq!(
        t.reset.as_ref().map(|r| r.unknown_shards.clone()),
        Some(vec!["nope".to_owned()])
    );
}

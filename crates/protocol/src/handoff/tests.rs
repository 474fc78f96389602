//! Unit tests of the handoff steps: one per transition of docs/design.md §3.3, with a fake clock.

use kinesis_ingester_api::{
    CheckpointPosition, Fence, Holder, KinesisWorkerSpec, KinesisWorkerStatus, WorkerShard,
};

use super::*;

fn pos(seq: &str) -> CheckpointPosition {
    CheckpointPosition {
        sequence: seq.into(),
        sub_sequence: None,
    }
}

pub(super) fn shard(id: &str, owner: Option<&str>, epoch: i64) -> AssignedShard {
    AssignedShard::new(id, owner, epoch)
}

pub(super) fn table(shards: Vec<AssignedShard>) -> KinesisShardAssignmentSpec {
    KinesisShardAssignmentSpec {
        ingester_uid: "u".into(),
        shards,
        ..Default::default()
    }
}

pub(super) fn worker(
    name: &str,
    liveness: Liveness,
    entries: Vec<WorkerShard>,
) -> (String, WorkerState) {
    let mut object = KinesisWorker::new(
        name,
        KinesisWorkerSpec {
            ingester_uid: "u".into(),
            fences: vec![],
        },
    );
    object.status = Some(KinesisWorkerStatus {
        holder: Some(Holder {
            pod_uid: "p".into(),
            incarnation: "i".into(),
        }),
        shards: entries,
        ..Default::default()
    });
    (name.to_owned(), WorkerState { object, liveness })
}

pub(super) fn entry(id: &str, epoch: i64, seq: Option<&str>) -> WorkerShard {
    WorkerShard {
        position: seq.map(pos),
        ..WorkerShard::new(id, epoch)
    }
}

const EXPIRIES: Expiries = Expiries {
    drain: Duration::from_secs(60),
    start: Duration::from_secs(60),
    gone: Duration::from_secs(14),
};

/// `absorb_reports` at one instant with fresh timers.
pub(super) fn absorb(t: &mut KinesisShardAssignmentSpec, workers: &Workers) -> Vec<Transition> {
    absorb_reports(t, workers, &mut Timers::default(), EXPIRIES, Instant::now())
}

#[test]
fn a_release_clears_the_owner_and_keeps_the_final_position() {
    let mut t = table(vec![shard("s0", Some("w0"), 3)]);
    t.shards[0].draining = true;
    let mut e = entry("s0", 3, Some("42"));
    e.released = true;
    let workers: Workers = [worker("w0", Liveness::Live, vec![e])].into();
    let out = absorb(&mut t, &workers);
    assert_eq!(
        out,
        vec![Transition::Released {
            shard: "s0".into(),
            owner: "w0".into()
        }]
    );
    assert_eq!(t.shards[0].owner, None);
    assert!(!t.shards[0].draining);
    assert_eq!(t.shards[0].start_after, Some(pos("42")));
    assert_eq!(
        t.shards[0].epoch, 3,
        "the epoch rises only with the next owner"
    );
}

#[test]
fn a_release_at_an_older_epoch_is_ignored() {
    let mut t = table(vec![shard("s0", Some("w0"), 4)]);
    let mut e = entry("s0", 3, Some("42"));
    e.released = true;
    let workers: Workers = [worker("w0", Liveness::Live, vec![e])].into();
    assert!(absorb(&mut t, &workers).is_empty());
    assert_eq!(t.shards[0].owner.as_deref(), Some("w0"));
}

#[test]
fn a_finished_shard_leaves_the_table_and_unblocks_its_children() {
    let mut child = shard("s1", None, 0);
    child.parents = vec!["s0".into()];
    let mut t = table(vec![shard("s0", Some("w0"), 1), child]);
    assert_eq!(eligible(&t, true), vec!["s0".to_owned()]);
    let mut e = entry("s0", 1, Some("9"));
    e.finished = true;
    let workers: Workers = [worker("w0", Liveness::Live, vec![e])].into();
    absorb(&mut t, &workers);
    assert_eq!(t.finished, vec!["s0".to_owned()]);
    assert_eq!(eligible(&t, true), vec!["s1".to_owned()]);
    assert_eq!(eligible(&table(vec![]), true), Vec::<String>::new());
}

#[test]
fn without_strict_order_children_are_eligible_at_once() {
    let mut child = shard("s1", None, 0);
    child.parents = vec!["s0".into()];
    let t = table(vec![shard("s0", Some("w0"), 1), child]);
    assert_eq!(eligible(&t, false), vec!["s0".to_owned(), "s1".to_owned()]);
}

#[test]
fn an_existing_fence_finishes_a_half_done_move() {
    let mut t = table(vec![shard("s0", Some("w0"), 2)]);
    let (name, mut w) = worker("w0", Liveness::Expired, vec![entry("s0", 2, Some("77"))]);
    w.object.spec.fences.push(Fence {
        shard_id: "s0".into(),
        epoch: 2,
        position: None,
    });
    let workers: Workers = [(name, w)].into();
    let out = absorb(&mut t, &workers);
    assert_eq!(
        out,
        vec![Transition::AlreadyFenced {
            shard: "s0".into(),
            owner: "w0".into()
        }]
    );
    assert_eq!(t.shards[0].start_after, Some(pos("77")));
    assert_eq!(t.shards[0].owner, None);
}

/// Defect 9.1.1: the fence landed, the table write did not, and the fenced worker's next
/// status write left the shard out. The next pass must resume after the position the fence
/// holds, not after the table's older `startAfter`.
#[test]
fn a_fence_whose_table_write_failed_keeps_the_position() {
    let mut t = table(vec![shard("s0", Some("w0"), 2)]);
    t.shards[0].start_after = Some(pos("10"));
    // The operator read the worker (checkpoint 77 for epoch 2) and fenced it in one write.
    let (name, mut w) = worker("w0", Liveness::Expired, vec![entry("s0", 2, Some("77"))]);
    let candidate = FenceCandidate {
        worker: name.clone(),
        shard: "s0".into(),
        epoch: 2,
        reason: FenceReason::Expired,
    };
    w.object.spec.fences = fences_with(&w.object, &candidate, &t);
    // The table write failed; the worker wrote once more and dropped the fenced shard.
    if let Some(status) = w.object.status.as_mut() {
        status.shards.clear();
    }
    let workers: Workers = [(name, w)].into();
    absorb(&mut t, &workers);
    assert_eq!(t.shards[0].owner, None);
    assert_eq!(t.shards[0].start_after, Some(pos("77")));
}

/// Found by the model checker (docs/model-check.md): a deposed leader wrote the fence, the
/// worker then dropped the fenced entry, and the leader's own fence step found the fence already
/// there. The shard must resume after the position the fence holds, not the older `startAfter`.
#[test]
fn a_fence_found_written_releases_after_its_position() {
    let mut t = table(vec![shard("s0", Some("w0"), 1)]);
    let (_, mut w) = worker("w0", Liveness::Live, vec![]);
    w.object.spec.fences = vec![Fence {
        shard_id: "s0".into(),
        epoch: 1,
        position: Some(pos("7")),
    }];
    apply_fence(&mut t, &w.object, "s0", 1);
    assert_eq!(t.shards[0].owner, None);
    assert_eq!(t.shards[0].start_after, Some(pos("7")));
}

#[test]
fn fences_are_pruned_once_their_shard_left_the_table() {
    let mut t = table(vec![shard("s0", None, 5), shard("s1", Some("w0"), 3)]);
    t.finished = vec!["s2".into()];
    let (name, mut w) = worker("w0", Liveness::Live, vec![entry("s1", 3, Some("9"))]);
    let fence = |id: &str, epoch| Fence {
        shard_id: id.into(),
        epoch,
        position: None,
    };
    w.object.spec.fences = vec![
        // s0 was reassigned at a higher epoch: kept, a lagging table watch may still show
        // this worker s0 at epoch 4.
        fence("s0", 4),
        // s2 finished: kept while the table lists it as finished, for the same reason.
        fence("s2", 1),
        // s9 left the table and the finished list (past retention): pruned.
        fence("s9", 1),
        // An older fence of the candidate's shard: replaced by the new one.
        fence("s1", 2),
    ];
    let candidate = FenceCandidate {
        worker: name,
        shard: "s1".into(),
        epoch: 3,
        reason: FenceReason::DrainTimeout,
    };
    let fences = fences_with(&w.object, &candidate, &t);
    let mut s1 = fence("s1", 3);
    s1.position = Some(pos("9"));
    assert_eq!(fences, vec![fence("s0", 4), fence("s2", 1), s1]);
}

/// Found by the model checker (docs/model-check.md): a worker whose table watch lags still sees
/// itself owning a shard at an epoch it was fenced at; once the operator had pruned that fence
/// (when it wrote a fence of another shard) the worker read and delivered the shard again,
/// after its new owner had finished it. The fence of a finished or moved shard must stay.
#[test]
fn a_pruned_fence_does_not_let_a_lagging_worker_take_its_shard_back() {
    // The operator's table: s0 finished (read by w1 at epoch 2), s1 given to w0.
    let mut now = table(vec![shard("s1", Some("w0"), 1)]);
    now.finished = vec!["s0".into()];
    // w0 was fenced off s0 at epoch 1; its watch still shows the older table.
    let lagging = table(vec![shard("s0", Some("w0"), 1), shard("s1", None, 0)]);
    let (name, mut w) = worker("w0", Liveness::Live, vec![]);
    w.object.spec.fences = vec![Fence {
        shard_id: "s0".into(),
        epoch: 1,
        position: None,
    }];
    // The next fence written to w0 (s1 never started) must keep the fence of s0.
    let candidate = FenceCandidate {
        worker: name,
        shard: "s1".into(),
        epoch: 1,
        reason: FenceReason::StartTimeout,
    };
    w.object.spec.fences = fences_with(&w.object, &candidate, &now);
    let owned = crate::owned::desired(&lagging, &w.object.spec, "w0", false);
    assert!(!owned.contains_key("s0"), "w0 takes s0@1 back: {owned:?}");
}

#[test]
fn an_expired_or_stopped_owner_is_fenced_at_once() {
    let t = table(vec![shard("s0", Some("w0"), 1), shard("s1", Some("w1"), 1)]);
    let workers: Workers = [
        worker("w0", Liveness::Expired, vec![entry("s0", 1, None)]),
        worker("w1", Liveness::Stopped, vec![entry("s1", 1, None)]),
    ]
    .into();
    let got = fence_candidates(
        &t,
        &workers,
        &mut Timers::default(),
        EXPIRIES,
        Instant::now(),
    );
    let reasons: Vec<_> = got.iter().map(|c| (c.shard.as_str(), c.reason)).collect();
    assert_eq!(
        reasons,
        vec![("s0", FenceReason::Expired), ("s1", FenceReason::Stopped)]
    );
}

#[test]
fn a_drain_or_start_that_takes_too_long_is_fenced_after_its_expiry() {
    let mut t = table(vec![shard("s0", Some("w0"), 1), shard("s1", Some("w0"), 5)]);
    t.shards[0].draining = true;
    // s0 is confirmed (entry at epoch 1) but draining; s1 was never confirmed at epoch 5.
    let workers: Workers = [worker(
        "w0",
        Liveness::Live,
        vec![entry("s0", 1, Some("1"))],
    )]
    .into();
    let mut timers = Timers::default();
    let t0 = Instant::now();
    assert!(fence_candidates(&t, &workers, &mut timers, EXPIRIES, t0).is_empty());
    let early = t0 + Duration::from_secs(59);
    assert!(fence_candidates(&t, &workers, &mut timers, EXPIRIES, early).is_empty());
    let late = t0 + Duration::from_secs(60);
    let got = fence_candidates(&t, &workers, &mut timers, EXPIRIES, late);
    let reasons: Vec<_> = got.iter().map(|c| (c.shard.as_str(), c.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            ("s0", FenceReason::DrainTimeout),
            ("s1", FenceReason::StartTimeout)
        ]
    );
}

#[test]
fn timers_restart_when_the_state_changes() {
    let mut t = table(vec![shard("s0", Some("w0"), 1)]);
    let workers: Workers = [worker("w0", Liveness::Live, vec![])].into();
    let mut timers = Timers::default();
    let t0 = Instant::now();
    fence_candidates(&t, &workers, &mut timers, EXPIRIES, t0);
    // A new epoch is a new state: its timer starts when first seen.
    t.shards[0].epoch = 2;
    let later = t0 + Duration::from_secs(61);
    assert!(fence_candidates(&t, &workers, &mut timers, EXPIRIES, later).is_empty());
    assert_eq!(timers.since.len(), 1, "the old epoch's timer is forgotten");
}

#[test]
fn elapsing_ages_every_timer_up_to_the_cap() {
    let mut t = table(vec![shard("s0", Some("w0"), 1)]);
    t.shards[0].draining = true;
    let workers: Workers = [worker("w0", Liveness::Live, vec![entry("s0", 1, None)])].into();
    let mut timers = Timers::default();
    let now = Instant::now() + Duration::from_secs(3600);
    assert!(fence_candidates(&t, &workers, &mut timers, EXPIRIES, now).is_empty());
    // 59 s pass, in a relative clock: still not due; one more second and it is.
    timers.elapse(now, Duration::from_secs(59), Duration::from_secs(60));
    assert!(fence_candidates(&t, &workers, &mut timers, EXPIRIES, now).is_empty());
    let mut capped = timers.clone();
    timers.elapse(now, Duration::from_secs(1), Duration::from_secs(60));
    assert_eq!(
        fence_candidates(&t, &workers, &mut timers, EXPIRIES, now).len(),
        1
    );
    // Ages stop at the cap, so timers past every expiry compare equal.
    capped.elapse(now, Duration::from_secs(500), Duration::from_secs(60));
    timers.elapse(now, Duration::from_secs(3), Duration::from_secs(60));
    assert_eq!(capped, timers);
}

#[test]
fn a_fence_moves_the_shard_after_the_last_stored_position() {
    let mut t = table(vec![shard("s0", Some("w0"), 1), shard("s1", Some("w0"), 1)]);
    let mut done = entry("s1", 1, Some("5"));
    done.finished = true;
    let (_, w) = worker(
        "w0",
        Liveness::Expired,
        vec![entry("s0", 1, Some("33")), done],
    );
    apply_fence(&mut t, &w.object, "s0", 1);
    apply_fence(&mut t, &w.object, "s1", 1);
    assert_eq!(t.shards.len(), 1);
    assert_eq!(t.shards[0].owner, None);
    assert_eq!(t.shards[0].start_after, Some(pos("33")));
    assert_eq!(t.finished, vec!["s1".to_owned()]);
}

fn listed(id: &str, parents: &[&str]) -> ListedShard {
    ListedShard {
        shard_id: id.into(),
        parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        hash_range: ("0".into(), "9".into()),
        closed: false,
    }
}

#[test]
fn topology_adds_new_shards_and_forgets_what_the_stream_no_longer_lists() {
    let mut t = table(vec![shard("s0", None, 2)]);
    t.finished = vec!["old".into()];
    let out = merge_topology(
        &mut t,
        &[listed("s1", &["s0"]), listed("s2", &["s0"])],
        None,
    );
    assert_eq!(out.len(), 2);
    let ids: Vec<_> = t.shards.iter().map(|s| s.shard_id.as_str()).collect();
    assert_eq!(ids, vec!["s1", "s2"], "s0 (ownerless, unlisted) is gone");
    assert!(t.finished.is_empty());
    assert_eq!(t.shards[0].parents, vec!["s0".to_owned()]);
    // Merging again changes nothing.
    let before = t.clone();
    assert!(
        merge_topology(
            &mut t,
            &[listed("s1", &["s0"]), listed("s2", &["s0"])],
            None
        )
        .is_empty()
    );
    assert_eq!(t, before);
}

#[test]
fn owners_are_assigned_with_a_new_epoch_and_moves_drain_first() {
    let mut t = table(vec![
        shard("s0", Some("w0"), 1),
        shard("s1", Some("w0"), 1),
        shard("s2", None, 0),
        shard("s3", None, 7),
    ]);
    let workers: Workers = [
        worker("w0", Liveness::Live, vec![]),
        worker("w1", Liveness::Live, vec![]),
    ]
    .into();
    let names = vec!["w0".to_owned(), "w1".to_owned()];
    let out = plan_owners(&mut t, &names, &workers, true, 1);
    // w0 keeps its two shards; the two new ones go to w1 with epoch + 1.
    assert_eq!(t.shards[2].owner.as_deref(), Some("w1"));
    assert_eq!(t.shards[2].epoch, 1);
    assert_eq!(t.shards[3].epoch, 8);
    assert!(
        out.iter()
            .all(|tr| matches!(tr, Transition::Assigned { .. }))
    );
    // Planning again is a no-op.
    let before = t.clone();
    assert!(plan_owners(&mut t, &names, &workers, true, 1).is_empty());
    assert_eq!(t, before);

    // Scale down to w1 only: w0's shards drain, one at a time.
    let out = plan_owners(&mut t, &names[1..], &workers, true, 1);
    assert_eq!(
        out,
        vec![Transition::Draining {
            shard: "s0".into(),
            owner: "w0".into()
        }]
    );
    assert_eq!(
        t.shards[0].owner.as_deref(),
        Some("w0"),
        "the owner keeps it until it releases"
    );
    assert!(plan_owners(&mut t, &names[1..], &workers, true, 1).is_empty());
}

#[test]
fn shards_of_a_worker_that_is_not_live_are_never_drained() {
    let mut t = table(vec![shard("s0", Some("w0"), 1)]);
    let workers: Workers = [
        worker("w0", Liveness::NotStarted, vec![]),
        worker("w1", Liveness::Live, vec![]),
    ]
    .into();
    assert!(plan_owners(&mut t, &["w1".to_owned()], &workers, true, 5).is_empty());
    assert!(!t.shards[0].draining);
}

#[test]
fn suspension_drains_every_live_owner_within_the_handoff_limit() {
    let mut t = table(vec![
        shard("s0", Some("w0"), 1),
        shard("s1", Some("w1"), 1),
        shard("s2", Some("w2"), 1),
        shard("s3", None, 4),
    ]);
    let workers: Workers = [
        worker("w0", Liveness::Live, vec![]),
        worker("w1", Liveness::Live, vec![]),
        worker("w2", Liveness::Expired, vec![]),
    ]
    .into();
    let out = drain_all(&mut t, &workers, 1);
    assert_eq!(
        out,
        vec![Transition::Draining {
            shard: "s0".into(),
            owner: "w0".into()
        }]
    );
    let out = drain_all(&mut t, &workers, 2);
    assert_eq!(out.len(), 1, "one more, up to the limit: {out:?}");
    assert!(t.shards[1].draining);
    assert!(
        !t.shards[2].draining,
        "an expired owner is fenced, not asked to drain"
    );
    assert_eq!(t.shards[3].owner, None);
    assert!(drain_all(&mut t, &workers, 5).is_empty(), "idempotent");
    // With nobody assignable, planning assigns nothing: the shards wait.
    assert!(plan_owners(&mut t, &[], &workers, true, 5).is_empty());
    assert_eq!(t.shards[3].owner, None);
}

/// Defect 9.1.5: a deleted KinesisWorker cannot be fenced, and its process may still be
/// reading. The shard moves only after the lease, by which time that process has self-fenced.
#[test]
fn a_gone_owner_keeps_its_shard_for_the_lease_then_releases_at_the_table_position() {
    let mut t = table(vec![shard("s0", Some("ghost"), 1)]);
    t.shards[0].start_after = Some(pos("8"));
    let mut timers = Timers::default();
    let t0 = Instant::now();
    let out = absorb_reports(&mut t, &Workers::new(), &mut timers, EXPIRIES, t0);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(t.shards[0].owner.as_deref(), Some("ghost"));
    let later = t0 + EXPIRIES.gone - Duration::from_millis(1);
    assert!(absorb_reports(&mut t, &Workers::new(), &mut timers, EXPIRIES, later).is_empty());
    let out = absorb_reports(
        &mut t,
        &Workers::new(),
        &mut timers,
        EXPIRIES,
        t0 + EXPIRIES.gone,
    );
    assert!(matches!(out[0], Transition::OwnerGone { .. }));
    assert_eq!(t.shards[0].owner, None);
    assert_eq!(t.shards[0].start_after, Some(pos("8")));
}

#[test]
fn handoffs_are_limited_to_a_tenth_of_the_shards() {
    assert_eq!(max_handoffs(0), 1);
    assert_eq!(max_handoffs(9), 1);
    assert_eq!(max_handoffs(1000), 100);
}

#[test]
fn a_table_over_a_mebibyte_is_too_large() {
    let small = table(
        (0..100)
            .map(|i| shard(&format!("shardId-{i:012}"), Some("w0"), 1))
            .collect(),
    );
    assert_eq!(too_large(&small), None);
    let big = table(
        (0..4000)
            .map(|i| {
                let mut s = shard(&format!("shardId-{i:012}"), Some("orders-worker-1"), 1);
                s.start_after = Some(pos(
                    "49655121380712095233960537406412683491498406931375063042",
                ));
                s.starting_hash_key = Some("170141183460469231731687303715884105728".into());
                s.ending_hash_key = Some("173543007129678616366321049790201782271".into());
                s
            })
            .collect(),
    );
    assert!(too_large(&big).is_some_and(|b| b > MAX_TABLE_BYTES));
}

/// Defect 9.1.1, second half: the size check must run before any fence, so it bounds what
/// owners will add. A table of unowned shards just under the limit is over it once each shard
/// has an owner.
#[test]
fn the_size_bound_counts_the_owners_the_plan_will_add() {
    let unowned = |n: usize| {
        table(
            (0..n)
                .map(|i| {
                    let mut s = shard(&format!("shardId-{i:012}"), None, 1);
                    s.start_after = Some(pos(
                        "49655121380712095233960537406412683491498406931375063042",
                    ));
                    s
                })
                .collect(),
        )
    };
    // The largest n that fits, by bisection.
    let (mut fits, mut over) = (1, 10_000);
    assert!(too_large(&unowned(over)).is_some());
    while over - fits > 1 {
        let mid = (fits + over) / 2;
        if too_large(&unowned(mid)).is_some() {
            over = mid;
        } else {
            fits = mid;
        }
    }
    let n = fits;
    let t = unowned(n);
    assert_eq!(too_large(&t), None);
    assert!(too_large_after(&t, None, "orders-worker-99").is_some());
    assert_eq!(
        too_large_after(&unowned(n / 2), None, "orders-worker-99"),
        None
    );
}

/// Defect 9.1.4: with `Latest`, a shard handed over before any position was stored must not be
/// read from "latest" again by the next owner: the table pins it to when it was first seen.
#[test]
fn latest_shards_without_a_position_are_pinned_once() {
    let mut t = table(vec![shard("s0", Some("w0"), 1)]);
    t.shards[0].start_after = Some(pos("5"));
    let first: jiff::Timestamp = "2026-11-26T08:00:00Z".parse().expect("time");
    let later: jiff::Timestamp = "2026-11-26T09:00:00Z".parse().expect("time");
    merge_topology(&mut t, &[listed("s0", &[]), listed("s1", &[])], Some(first));
    merge_topology(&mut t, &[listed("s0", &[]), listed("s1", &[])], Some(later));
    let pin = |id: &str| {
        t.shards
            .iter()
            .find(|s| s.shard_id == id)
            .and_then(|s| s.start_at_timestamp.clone())
    };
    assert_eq!(pin("s0"), None, "a shard with a position needs no pin");
    assert_eq!(
        pin("s1"),
        Some(first.to_string()),
        "pinned once, at first sight"
    );
}

/// Defect 9.1.8: table writes are coalesced, at most one per `MIN_TABLE_WRITE_GAP`.
#[test]
fn table_writes_wait_out_the_coalescing_gap() {
    let t0 = Instant::now();
    assert_eq!(
        table_write_wait(None, t0),
        None,
        "the first write goes at once"
    );
    assert_eq!(
        table_write_wait(Some(t0), t0 + Duration::from_millis(500)),
        Some(MIN_TABLE_WRITE_GAP - Duration::from_millis(500))
    );
    assert_eq!(table_write_wait(Some(t0), t0 + MIN_TABLE_WRITE_GAP), None);
}

//! Unit tests of the pure status computation.

use kinesis_ingester_api::{
    AssignedShard, DeliveryStuck, Holder, KinesisWorker, KinesisWorkerSpec, KinesisWorkerStatus,
    ReadError, ShardState, WorkerShard,
};

use super::*;
use kinesis_protocol::handoff::WorkerState;

fn table(owners: &[Option<&str>]) -> KinesisShardAssignmentSpec {
    KinesisShardAssignmentSpec {
        ingester_uid: "u".into(),
        shards: owners
            .iter()
            .enumerate()
            .map(|(i, o)| AssignedShard::new(format!("s{i}"), *o, 1))
            .collect(),
        ..Default::default()
    }
}

fn workers(live: Liveness, lags: &[(usize, i64)]) -> Workers {
    let mut o = KinesisWorker::new(
        "w0",
        KinesisWorkerSpec {
            ingester_uid: "u".into(),
            fences: vec![],
        },
    );
    o.status = Some(KinesisWorkerStatus {
        holder: Some(Holder {
            pod_uid: "p".into(),
            incarnation: "i".into(),
        }),
        shards: lags
            .iter()
            .map(|(i, lag)| WorkerShard {
                millis_behind_latest: Some(*lag),
                ..WorkerShard::new(format!("s{i}"), 1)
            })
            .collect(),
        ..Default::default()
    });
    [(
        "w0".to_owned(),
        WorkerState {
            object: o,
            liveness: live,
        },
    )]
    .into()
}

fn input<'a>(t: &'a KinesisShardAssignmentSpec, w: &'a Workers) -> StatusInput<'a> {
    StatusInput {
        generation: Some(3),
        stream_name: "orders".into(),
        table: Some(t),
        workers: w,
        desired: 1,
        ready_pods: 1,
        open_shards: Some(2),
        strict_order: true,
        problem: None,
        selector: "a=b".into(),
        previous: None,
        suspended: false,
        autoscaling: None,
        recreated: None,
        now: Timestamp::UNIX_EPOCH,
    }
}

fn cond<'a>(s: &'a KinesisIngesterStatus, t: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .expect("condition")
}

#[test]
fn all_shards_reading_is_ready_with_the_largest_lag() {
    let t = table(&[Some("w0"), Some("w0")]);
    let w = workers(Liveness::Live, &[(0, 1200), (1, 0)]);
    let (s, g) = compute(&input(&t, &w));
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(cond(&s, "Ready").reason, "AllShardsReading");
    assert_eq!(cond(&s, "Progressing").status, "False");
    assert_eq!(cond(&s, "Degraded").reason, "AsExpected");
    assert_eq!(s.max_millis_behind_latest, Some(1200));
    assert_eq!(s.lag.as_deref(), Some("1.2s"));
    assert_eq!(s.workers.as_deref(), Some("1/1"));
    assert_eq!(s.observed_generation, Some(3));
    assert!(s.shards.iter().all(|e| e.state == ShardState::Reading));
    assert_eq!(g.max_shards_per_worker, 2);
    assert_eq!(g.max_millis_behind_latest, Some(1200));
}

#[test]
fn the_lag_says_when_it_was_measured_by_the_oldest_report() {
    let t = table(&[Some("w0"), Some("w1")]);
    let mut w = workers(Liveness::Live, &[(0, 1200)]);
    let mut w1 = w["w0"].clone();
    if let Some(st) = w1.object.status.as_mut() {
        st.shards[0].shard_id = "s1".into();
        st.renew_time = Some("2026-11-26T10:00:04Z".into());
    }
    w.insert("w1".into(), w1);
    if let Some(st) = w.get_mut("w0").and_then(|w| w.object.status.as_mut()) {
        st.renew_time = Some("2026-11-26T10:00:07Z".into());
    }
    let (s, _) = compute(&input(&t, &w));
    assert_eq!(s.max_millis_behind_latest, Some(1200));
    assert_eq!(s.lag_measured_at.as_deref(), Some("2026-11-26T10:00:04Z"));

    // Unknown lag: no time either.
    if let Some(st) = w.get_mut("w1").and_then(|w| w.object.status.as_mut()) {
        st.shards[0].millis_behind_latest = None;
    }
    let (s, _) = compute(&input(&t, &w));
    assert_eq!(s.lag, None);
    assert_eq!(s.lag_measured_at, None);
}

#[test]
fn each_shard_says_when_its_checkpoint_last_moved() {
    let t = table(&[Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0)]);
    let report = |w: &mut Workers, at: &str, seq: Option<&str>| {
        if let Some(st) = w.get_mut("w0").and_then(|w| w.object.status.as_mut()) {
            st.renew_time = Some(at.into());
            st.shards[0].position = seq.map(|s| kinesis_ingester_api::CheckpointPosition {
                sequence: s.into(),
                sub_sequence: None,
            });
            st.shards[0].last_delivery = seq.map(|_| "2026-11-26T10:00:01Z".into());
        }
    };
    report(&mut w, "2026-11-26T10:00:00Z", None);
    let (s0, _) = compute(&input(&t, &w));
    assert_eq!(s0.shards[0].last_checkpoint, None, "nothing stored yet");

    report(&mut w, "2026-11-26T10:00:06Z", Some("100"));
    let mut i = input(&t, &w);
    i.previous = Some(&s0);
    let (s1, _) = compute(&i);
    assert_eq!(
        s1.shards[0].last_checkpoint.as_deref(),
        Some("2026-11-26T10:00:06Z")
    );

    // Later reports with the same position keep the time it was first stored.
    report(&mut w, "2026-11-26T10:00:12Z", Some("100"));
    let mut i = input(&t, &w);
    i.previous = Some(&s1);
    let (s2, _) = compute(&i);
    assert_eq!(
        s2.shards[0].last_checkpoint.as_deref(),
        Some("2026-11-26T10:00:06Z")
    );
    assert!(
        !structurally_different(&s1, &s2),
        "checkpoint times ride on the slow path"
    );
}

#[test]
fn lag_jumps_are_written_at_once_and_drift_waits() {
    assert!(lag_jumped(None, Some(0)), "the lag became known");
    assert!(lag_jumped(Some(0), None), "the lag became unknown");
    assert!(!lag_jumped(None, None));
    assert!(lag_jumped(Some(14_300), Some(0)), "caught up");
    assert!(lag_jumped(Some(5_000), Some(10_000)), "doubled by 5 s");
    assert!(!lag_jumped(Some(200), Some(900)), "sub-second jitter waits");
    assert!(
        !lag_jumped(Some(60_000), Some(100_000)),
        "under double waits"
    );
    // A lag growing without bound: one write per doubling.
    let mut written = 0;
    let mut shown = 0;
    for lag in (0..3_600_000).step_by(6_000) {
        if lag_jumped(Some(shown), Some(lag)) {
            written += 1;
            shown = lag;
        }
    }
    assert!(written <= 12, "{written} immediate writes in an hour");
}

#[test]
fn an_unconfirmed_shard_is_pending_and_not_ready() {
    let t = table(&[Some("w0"), None]);
    let w = workers(Liveness::Live, &[(0, 5)]);
    let (s, _) = compute(&input(&t, &w));
    assert_eq!(cond(&s, "Ready").reason, "ShardsNotReading");
    assert_eq!(cond(&s, "Progressing").reason, "Rebalancing");
    assert_eq!(s.shards[1].state, ShardState::Pending);
}

#[test]
fn a_stream_problem_is_degraded_with_its_reason() {
    let t = table(&[]);
    let w = workers(Liveness::Live, &[]);
    let mut i = input(&t, &w);
    i.problem = Some(StreamProblem {
        reason: "StreamNotFound",
        message: "stream orders not found".into(),
    });
    let (s, _) = compute(&i);
    assert_eq!(cond(&s, "Ready").reason, "StreamUnavailable");
    assert_eq!(cond(&s, "Degraded").reason, "StreamNotFound");
    assert!(cond(&s, "Degraded").message.contains("orders"));
}

#[test]
fn an_expired_worker_is_degraded_and_transition_times_are_kept() {
    let t = table(&[Some("w0")]);
    let w = workers(Liveness::Expired, &[(0, 0)]);
    let (first, _) = compute(&input(&t, &w));
    assert_eq!(cond(&first, "Degraded").reason, "WorkerExpired");
    let mut i = input(&t, &w);
    i.previous = Some(&first);
    i.now = Timestamp::from_second(1000).expect("time");
    let (second, _) = compute(&i);
    assert_eq!(
        cond(&second, "Degraded").last_transition_time,
        Time(Timestamp::UNIX_EPOCH)
    );
    assert!(!structurally_different(&first, &second));
}

#[test]
fn a_shard_with_unknown_lag_makes_the_largest_lag_unknown_not_zero() {
    let t = table(&[Some("w0"), Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0), (1, 0)]);
    if let Some(st) = w.get_mut("w0").and_then(|w| w.object.status.as_mut()) {
        for e in &mut st.shards {
            e.millis_behind_latest = None;
        }
        st.shards[0].millis_behind_latest = Some(700);
    }
    let (s, g) = compute(&input(&t, &w));
    assert_eq!(s.max_millis_behind_latest, None, "s1's lag is unknown");
    assert_eq!(s.lag, None);
    assert_eq!(g.max_millis_behind_latest, None);
    assert_eq!(s.shards[0].millis_behind_latest, Some(700));
    assert_eq!(s.shards[1].millis_behind_latest, None);
}

#[test]
fn a_worker_that_never_read_reports_no_lag() {
    let t = table(&[Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0)]);
    if let Some(st) = w.get_mut("w0").and_then(|w| w.object.status.as_mut()) {
        st.shards[0].millis_behind_latest = None;
    }
    let (s, g) = compute(&input(&t, &w));
    assert_eq!(s.max_millis_behind_latest, None);
    assert_eq!(g.max_millis_behind_latest, None);
    let (s, g) = compute(&input(&table(&[None]), &w));
    assert_eq!(
        s.max_millis_behind_latest, None,
        "a pending shard's lag is unknown"
    );
    assert_eq!(g.max_millis_behind_latest, None);
}

fn stuck(w: &mut Workers, shard: usize, error: Option<&str>) {
    if let Some(e) = w
        .get_mut("w0")
        .and_then(|w| w.object.status.as_mut())
        .and_then(|s| s.shards.get_mut(shard))
    {
        e.delivery_stuck = Some(DeliveryStuck {
            stalled_seconds: 95,
            threshold_seconds: 30,
            sink_error: error.map(str::to_owned),
            sink: None,
        });
    }
}

#[test]
fn shards_nobody_can_read_are_not_ready_and_degraded_naming_the_error() {
    let t = table(&[Some("w0"), Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0), (1, 0)]);
    let (s, g) = compute(&input(&t, &w));
    assert_eq!(cond(&s, "Ready").status, "True", "control");
    assert!(g.ready);
    if let Some(e) = w
        .get_mut("w0")
        .and_then(|w| w.object.status.as_mut())
        .and_then(|s| s.shards.get_mut(1))
    {
        e.millis_behind_latest = None;
        e.read_error = Some(ReadError {
            category: "credentials".into(),
            operation: "GetShardIterator".into(),
            message: "no credentials in the chain".into(),
            failing_seconds: 42,
        });
    }
    let (s, g) = compute(&input(&t, &w));
    let ready = cond(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ReadErrors")
    );
    for wanted in [
        "1 shards",
        "s1",
        "GetShardIterator",
        "credentials",
        "42s",
        "no credentials in the chain",
    ] {
        assert!(
            ready.message.contains(wanted),
            "{wanted}: {}",
            ready.message
        );
    }
    let degraded = cond(&s, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ReadErrors")
    );
    assert!(!g.ready && g.degraded);
    assert_eq!(s.lag, None, "the unread shard's lag is unknown");
}

#[test]
fn a_stuck_sink_is_not_ready_and_degraded_with_its_error_category() {
    let t = table(&[Some("w0"), Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0), (1, 0)]);
    stuck(&mut w, 1, Some("connect"));
    let (s, _) = compute(&input(&t, &w));
    let ready = cond(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotDelivering")
    );
    assert!(
        ready.message.contains("1 shards") && ready.message.contains("1m35s"),
        "{}",
        ready.message
    );
    assert_eq!(
        s.undelivered.as_deref(),
        Some("1m35s"),
        "a stuck sink shows how long records waited, whatever the read lag"
    );
    let degraded = cond(&s, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SinkFailing")
    );
    assert!(degraded.message.contains("connect"), "{}", degraded.message);
    assert_eq!(
        s.lag.as_deref(),
        Some("0s"),
        "the lag is still what was read"
    );
}

#[test]
fn a_sink_stuck_without_errors_says_so() {
    let t = table(&[Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0)]);
    stuck(&mut w, 0, None);
    let (s, _) = compute(&input(&t, &w));
    assert_eq!(cond(&s, "Degraded").reason, "SinkFailing");
    assert!(
        cond(&s, "Degraded")
            .message
            .contains("hangs without failing")
    );
}

#[test]
fn with_several_sinks_the_message_names_the_failing_one() {
    let t = table(&[Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0)]);
    stuck(&mut w, 0, Some("http_5xx"));
    if let Some(d) = w
        .get_mut("w0")
        .and_then(|w| w.object.status.as_mut())
        .and_then(|s| s.shards[0].delivery_stuck.as_mut())
    {
        d.sink = Some("app-b".into());
    }
    let (s, _) = compute(&input(&t, &w));
    let degraded = cond(&s, "Degraded");
    assert_eq!(degraded.reason, "SinkFailing");
    assert!(
        degraded.message.contains("app-b/http_5xx"),
        "{}",
        degraded.message
    );
}

#[test]
fn sink_error_labels_in_the_message_are_bounded() {
    let t = table(&[Some("w0"), Some("w0"), Some("w0"), Some("w0"), Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]);
    let long = "x".repeat(5000);
    for (i, e) in ["a", "b", "c", "d", long.as_str()].iter().enumerate() {
        stuck(&mut w, i, Some(e));
    }
    let (s, _) = compute(&input(&t, &w));
    let msg = &cond(&s, "Degraded").message;
    assert!(msg.len() < 200, "{msg}");
    assert!(msg.contains("2 more"), "{msg}");
}

#[test]
fn the_stuck_report_of_an_expired_worker_is_not_trusted() {
    let t = table(&[Some("w0")]);
    let mut w = workers(Liveness::Expired, &[(0, 0)]);
    stuck(&mut w, 0, Some("connect"));
    let (s, _) = compute(&input(&t, &w));
    assert_eq!(cond(&s, "Degraded").reason, "WorkerExpired");
    assert_ne!(cond(&s, "Ready").reason, "NotDelivering");
}

#[test]
fn a_stream_problem_outranks_a_stuck_sink_and_recovery_is_ready_again() {
    let t = table(&[Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0)]);
    stuck(&mut w, 0, Some("http_5xx"));
    let mut i = input(&t, &w);
    i.problem = Some(StreamProblem {
        reason: "StreamNotFound",
        message: "gone".into(),
    });
    let (s, _) = compute(&i);
    assert_eq!(cond(&s, "Degraded").reason, "StreamNotFound");
    let (stuck_status, _) = compute(&input(&t, &w));
    let healthy = workers(Liveness::Live, &[(0, 0)]);
    let mut i = input(&t, &healthy);
    i.previous = Some(&stuck_status);
    let (s, _) = compute(&i);
    assert_eq!(cond(&s, "Ready").reason, "AllShardsReading");
    assert_eq!(cond(&s, "Degraded").reason, "AsExpected");
    assert!(
        structurally_different(&stuck_status, &s),
        "the change is written"
    );
}

#[test]
fn lags_read_well() {
    assert_eq!(format_lag(0), "0s");
    assert_eq!(format_lag(250), "0.2s");
    assert_eq!(format_lag(1200), "1.2s");
    assert_eq!(format_lag(185_000), "3m5s");
    assert_eq!(format_lag(7_300_000), "2h1m");
}

#[test]
fn a_suspended_ingester_says_so_while_it_stops_and_once_stopped() {
    // Still reading: being handed back.
    let t = table(&[Some("w0"), Some("w0")]);
    let w = workers(Liveness::Live, &[(0, 10), (1, 10)]);
    let mut i = input(&t, &w);
    i.suspended = true;
    i.desired = 0;
    let (s, g) = compute(&i);
    assert_eq!(cond(&s, "Ready").status, "False");
    assert_eq!(cond(&s, "Ready").reason, "Suspended");
    assert!(cond(&s, "Ready").message.contains("2 shards"));
    assert_eq!(cond(&s, "Progressing").reason, "Suspending");
    assert_eq!(s.workers.as_deref(), Some("1/0 suspended"));
    assert!(g.suspended && !g.ready);

    // Every shard handed back, no pod left: stopped, positions kept, nothing in progress.
    let t = table(&[None, None]);
    let w = Workers::new();
    let mut i = input(&t, &w);
    i.suspended = true;
    i.desired = 0;
    i.ready_pods = 0;
    let (s, _) = compute(&i);
    assert_eq!(cond(&s, "Ready").reason, "Suspended");
    assert!(cond(&s, "Ready").message.contains("resumes"));
    assert_eq!(cond(&s, "Progressing").status, "False");
    assert_eq!(cond(&s, "Progressing").reason, "Suspended");
    assert_eq!(cond(&s, "Degraded").reason, "AsExpected");
    assert_eq!(s.workers.as_deref(), Some("0/0 suspended"));
}

#[test]
fn records_waiting_for_a_slow_sink_show_as_undelivered_before_it_counts_as_stuck() {
    let t = table(&[Some("w0"), Some("w0")]);
    let mut w = workers(Liveness::Live, &[(0, 0), (1, 0)]);
    let set = |w: &mut Workers, secs: [Option<i64>; 2]| {
        if let Some(st) = w.get_mut("w0").and_then(|w| w.object.status.as_mut()) {
            for (e, s) in st.shards.iter_mut().zip(secs) {
                e.waiting_seconds = s;
            }
        }
    };
    set(&mut w, [Some(2), None]);
    let (s, _) = compute(&input(&t, &w));
    assert_eq!(s.undelivered, None, "a sink that keeps up shows nothing");
    set(&mut w, [Some(2), Some(12)]);
    let (s2, _) = compute(&input(&t, &w));
    assert_eq!(s2.undelivered.as_deref(), Some("12.0s"), "the longest wait");
    assert_eq!(
        cond(&s2, "Ready").reason,
        "AllShardsReading",
        "not stuck yet"
    );
    assert!(
        !structurally_different(&s, &s2),
        "a waiting figure rides on the slow path"
    );
}

#[test]
fn an_autoscaled_fleet_says_so_and_its_message_alone_is_not_worth_a_write() {
    let t = table(&[Some("w0"), Some("w0")]);
    let w = workers(Liveness::Live, &[(0, 10), (1, 10)]);
    let mut i = input(&t, &w);
    let decision = |message: &str| kinesis_ingester_api::AutoscalingStatus {
        desired_workers: 1,
        reason: "LagWithinTarget".into(),
        message: message.into(),
        last_scale_time: None,
    };
    i.autoscaling = Some(decision("lag 40.0s is within the target 1m0s"));
    let (a, _) = compute(&i);
    assert_eq!(a.workers.as_deref(), Some("1/1 autoscaled"));
    assert_eq!(
        a.autoscaling.as_ref().map(|s| s.reason.as_str()),
        Some("LagWithinTarget")
    );
    i.autoscaling = Some(decision("lag 41.0s is within the target 1m0s"));
    let (b, _) = compute(&i);
    assert!(
        !structurally_different(&a, &b),
        "only the lag in the message moved"
    );
    let mut c = b.clone();
    if let Some(s) = &mut c.autoscaling {
        s.reason = "Stabilizing".into();
    }
    assert!(
        structurally_different(&b, &c),
        "a new reason is written at once"
    );
}

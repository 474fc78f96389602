//! The phase machine of a held shard: every rule as a table row, and seeded random schedules
//! of one shard's life through the interpreter's contract.

use std::time::Duration;

use kinesis_ingester_api::{StartAt, sequence::Position};
use kinesis_protocol::{
    owned::{Owned, Want},
    report::Handed,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

fn pos(seq: &str) -> Position {
    Position::whole(seq.parse().expect("seq"))
}

fn owned(epoch: i64, want: Want) -> Owned {
    Owned {
        epoch,
        want,
        hash_range: (0, u128::MAX),
        start_after: None,
        known_parent: false,
        pinned_at_ms: None,
        rewind: None,
    }
}

fn held(epoch: i64, phase: Phase) -> Held {
    Held {
        epoch,
        generation: 1,
        start: StartAt::TrimHorizon,
        phase,
    }
}

fn frozen(handed: Handed) -> Phase {
    Phase::Frozen {
        position: Some(pos("7")),
        handed,
    }
}

/// Wanted, held, reads, stopping, and the step expected.
type Row = (Option<Owned>, Option<Held>, bool, bool, ShardStep);

/// Every rule of the worker's per-shard decision, one row each.
#[test]
fn the_shard_step_table() {
    use ShardStep::*;
    use Want::{Pause as P, Read as R, Release as L};
    let reading = || Phase::Reading(CancellationToken::new());
    let paused = || Phase::Paused { last_sent: None };
    let draining = || Phase::Draining {
        last_sent: None,
        deadline: Instant::now(),
    };
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        // Not wanted, or wanted at another epoch: a held shard is revoked, even when stopping.
        (None, None, true, false, Keep),
        (None, Some(held(1, reading())), true, false, Revoke),
        (Some(owned(2, R)), Some(held(1, reading())), true, false, Revoke),
        (Some(owned(2, R)), Some(held(1, reading())), true, true, Revoke),
        // Stopping: nothing starts, nothing more is decided here.
        (Some(owned(1, R)), None, true, true, Keep),
        (Some(owned(1, L)), Some(held(1, reading())), true, true, Keep),
        // A new claim is read (and released at once when so wanted), unless paused or not reading.
        (Some(owned(1, R)), None, true, false, Start { then_release: false }),
        (Some(owned(1, L)), None, true, false, Start { then_release: true }),
        (Some(owned(1, P)), None, true, false, Keep),
        (Some(owned(1, R)), None, false, false, Keep),
        // Held.
        (Some(owned(1, R)), Some(held(1, paused())), true, false, Resume),
        (Some(owned(1, R)), Some(held(1, paused())), false, false, Keep),
        (Some(owned(1, R)), Some(held(1, frozen(Handed::Kept))), true, false, Start { then_release: false }),
        (Some(owned(1, R)), Some(held(1, frozen(Handed::Released))), true, false, Keep),
        (Some(owned(1, R)), Some(held(1, frozen(Handed::Finished))), true, false, Keep),
        (Some(owned(1, L)), Some(held(1, reading())), true, false, Release),
        (Some(owned(1, L)), Some(held(1, paused())), true, false, Release),
        (Some(owned(1, L)), Some(held(1, draining())), true, false, Keep),
        (Some(owned(1, L)), Some(held(1, frozen(Handed::Kept))), true, false, ReleaseUnread),
        (Some(owned(1, L)), Some(held(1, frozen(Handed::Released))), true, false, Keep),
        (Some(owned(1, P)), Some(held(1, reading())), true, false, Pause),
        (Some(owned(1, P)), Some(held(1, paused())), true, false, Keep),
        (Some(owned(1, R)), Some(held(1, reading())), true, false, Keep),
    ];
    for (i, (want, h, reads, stopping, expected)) in rows.iter().enumerate() {
        assert_eq!(
            shard_step(want.as_ref(), h.as_ref(), *reads, *stopping),
            *expected,
            "row {i}: want {want:?}, held {h:?}, reads {reads}, stopping {stopping}"
        );
    }
}

/// Release step 2 on each phase: a reading shard cancels its reader and waits for it, a paused
/// one drains at once, anything else stays as it is.
#[test]
fn the_release_table() {
    let at = Instant::now() + Duration::from_secs(30);
    let (p, e) = begin_release(Phase::Reading(CancellationToken::new()), at);
    assert!(matches!(p, Phase::Stopping { deadline, .. } if deadline == at));
    assert_eq!((e.cancel_reader, e.flush_sink), (true, false));
    let (p, e) = begin_release(
        Phase::Paused {
            last_sent: Some(pos("3")),
        },
        at,
    );
    assert!(
        matches!(&p, Phase::Draining { last_sent: Some(l), deadline } if *l == pos("3") && *deadline == at)
    );
    assert_eq!((e.cancel_reader, e.flush_sink), (false, true));
    for phase in [
        Phase::Ending,
        frozen(Handed::Kept),
        frozen(Handed::Released),
    ] {
        let before = format!("{phase:?}");
        let (p, e) = begin_release(phase, at);
        assert_eq!(format!("{p:?}"), before);
        assert_eq!(e, Effects::default());
    }
}

/// A reader returning: a stopping shard drains what it sent; a reading one stopped on its own.
#[test]
fn the_reader_stopped_table() {
    let at = Instant::now();
    let stopping = Phase::Stopping {
        cancel: CancellationToken::new(),
        deadline: at,
    };
    let (p, e, own) = reader_stopped(stopping, Some(pos("9")));
    assert!(matches!(&p, Phase::Draining { last_sent: Some(l), .. } if *l == pos("9")));
    assert!(e.flush_sink && !own);
    let (p, _, own) = reader_stopped(Phase::Reading(CancellationToken::new()), None);
    assert!(matches!(p, Phase::Paused { last_sent: None }) && own);
    let (p, _, own) = reader_stopped(Phase::Paused { last_sent: None }, Some(pos("4")));
    assert!(matches!(&p, Phase::Paused { last_sent: Some(l) } if *l == pos("4")) && !own);
}

/// The hand-back: a draining shard once drained or at its deadline (then not in time); an
/// ending one once finished; nothing else.
#[test]
fn the_hand_back_table() {
    let t0 = Instant::now();
    let draining = Phase::Draining {
        last_sent: None,
        deadline: t0 + Duration::from_secs(10),
    };
    let back = |handed, in_time| Drain::HandBack { handed, in_time };
    assert_eq!(drain(&draining, false, false, t0), Drain::Wait);
    assert_eq!(
        drain(&draining, true, false, t0),
        back(Handed::Released, true)
    );
    let late = t0 + Duration::from_secs(10);
    assert_eq!(
        drain(&draining, false, false, late),
        back(Handed::Released, false)
    );
    assert_eq!(drain(&Phase::Ending, false, false, t0), Drain::Idle);
    assert_eq!(
        drain(&Phase::Ending, false, true, t0),
        back(Handed::Finished, true)
    );
    let reading = Phase::Reading(CancellationToken::new());
    assert_eq!(drain(&reading, true, true, t0), Drain::Idle);
    assert_eq!(
        drain(&frozen(Handed::Released), true, true, t0),
        Drain::Idle
    );
}

/// The shutdown drain ends only after a write that started once every shard was handed back
/// succeeded, or at its deadline.
#[test]
fn the_shutdown_drain_waits_for_a_write_after_the_last_hand_back() {
    let t0 = Instant::now();
    let s = |n: u64| t0 + Duration::from_secs(n);
    let mut st = Stopping::new(s(20));
    assert_eq!(st.step(false, s(1)), StopStep::Wait { write_now: false });
    // A write that started before every shard was back does not count.
    st.written(s(1));
    assert_eq!(st.step(true, s(2)), StopStep::Wait { write_now: true });
    assert_eq!(st.step(true, s(3)), StopStep::Wait { write_now: false });
    st.written(s(1));
    assert_eq!(st.step(true, s(4)), StopStep::Wait { write_now: false });
    st.written(s(3));
    assert_eq!(st.step(true, s(5)), StopStep::Done);
    let mut late = Stopping::new(s(20));
    assert_eq!(late.step(false, s(20)), StopStep::TimedOut);
}

/// One shard's life under a random schedule, through the interpreter's contract: the reader
/// sends records; the sink acknowledges them in order, but once the shard is closed only those
/// already in flight; a self-fence pauses it; a release and the reader's return come at random
/// times; the clock jumps. Checked at every step: the shard is handed back only after the release
/// began, and in time only when everything it sent was acknowledged; it is handed back at the
/// latest at the first check after its deadline; after that it delivers nothing; and the
/// position it is handed back at is the acknowledged one, so what follows is read again by the
/// next owner: nothing is lost, and a record is delivered twice only by a hand-back not in time.
#[test]
fn random_schedules_of_one_release_keep_the_handoff_rules() {
    const SCHEDULES: u64 = 20_000;
    let (mut in_time, mut late) = (0, 0);
    for seed in 0..SCHEDULES {
        match one_schedule(seed) {
            Outcome::InTime => in_time += 1,
            Outcome::Late => late += 1,
        }
    }
    // Both kinds of hand-back happen, so both branches were checked.
    assert!(in_time > 0 && late > 0, "in time {in_time}, late {late}");
    eprintln!("{SCHEDULES} schedules: {in_time} handed back in time, {late} at the deadline");
}

enum Outcome {
    InTime,
    Late,
}

fn one_schedule(seed: u64) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    let t0 = Instant::now();
    let mut now = t0;
    let timeout = Duration::from_secs(30);
    let mut phase = Phase::Reading(CancellationToken::new());
    let (mut sent, mut acked, mut in_flight_at_close) = (0u64, 0u64, None::<u64>);
    let mut reader_running = true;
    let mut released_at: Option<Instant> = None;
    let mut deadline = None;
    for step in 0..200 {
        macro_rules! why {
            () => {
                format!("seed {seed} step {step}: {phase:?}")
            };
        }
        match rng.u8(0..8) {
            // The reader sends one record.
            0 | 1 if reader_running && matches!(phase, Phase::Reading(_)) => sent += 1,
            // The sink acknowledges the next record: anything sent while the shard delivers;
            // once closed, only what was in flight then.
            2 | 3 if phase.delivers() && acked < in_flight_at_close.unwrap_or(sent) => {
                acked += 1;
            }
            // A self-fence: the manager cancels the reader and pauses the shard.
            4 if matches!(phase, Phase::Reading(_)) && rng.bool() => {
                phase.cancel();
                phase = Phase::Paused { last_sent: None };
                reader_running = false;
                // What was read but not delivered is dropped and read again on resume.
                sent = acked;
            }
            // The planned release begins.
            5 if released_at.is_none() => {
                let at = now + timeout;
                let (p, effects) = begin_release(std::mem::replace(&mut phase, Phase::Ending), at);
                phase = p;
                if effects.cancel_reader {
                    phase.cancel();
                }
                released_at = Some(now);
                deadline = Some(at);
                // Closed: only the requests in flight may still be acknowledged; the sink
                // holds a random part of what was sent.
                in_flight_at_close = Some(rng.u64(acked..=sent));
            }
            // The reader returns.
            6 if reader_running && !matches!(phase, Phase::Reading(_)) => {
                reader_running = false;
                let last = (sent > 0).then(|| pos(&sent.to_string()));
                let (p, _, _) = reader_stopped(std::mem::replace(&mut phase, Phase::Ending), last);
                phase = p;
            }
            // Time passes.
            _ => now += Duration::from_millis(rng.u64(0..5_000)),
        }
        let Phase::Draining { .. } = phase else {
            assert!(
                !matches!(phase, Phase::Frozen { .. }),
                "frozen without a hand-back: {}",
                why!()
            );
            continue;
        };
        let target = in_flight_at_close.unwrap_or(sent);
        let drained = acked >= target;
        match drain(&phase, drained, false, now) {
            Drain::Wait => {
                assert!(
                    now < deadline.expect("draining after a release"),
                    "{}",
                    why!()
                );
            }
            Drain::HandBack { handed, in_time } => {
                assert!(
                    released_at.is_some(),
                    "handed back before a release: {}",
                    why!()
                );
                assert_eq!(handed, Handed::Released, "{}", why!());
                assert_eq!(in_time, drained, "{}", why!());
                // Records still in flight are given up only at the deadline.
                assert!(
                    in_time || now >= deadline.expect("draining after a release"),
                    "{}",
                    why!()
                );
                phase = Phase::Frozen {
                    position: (acked > 0).then(|| pos(&acked.to_string())),
                    handed,
                };
                assert!(!phase.delivers(), "{}", why!());
                // The next owner reads from `acked`: nothing before it is lost, and only a
                // late hand-back leaves records in flight that may arrive twice.
                if in_time {
                    assert_eq!(acked, target, "{}", why!());
                    return Outcome::InTime;
                }
                return Outcome::Late;
            }
            Drain::Idle => unreachable!("draining is never idle: {}", why!()),
        }
    }
    // Schedules that never reached a release (or whose clock did not pass the deadline) end
    // here; release now and run out the clock, which must hand the shard back.
    let at = now + timeout;
    let (p, _) = begin_release(std::mem::replace(&mut phase, Phase::Ending), at);
    let (p, _, _) = if matches!(p, Phase::Stopping { .. }) {
        reader_stopped(p, None)
    } else {
        (p, Effects::default(), false)
    };
    match drain(&p, false, false, at) {
        Drain::HandBack { in_time: false, .. } => Outcome::Late,
        Drain::HandBack { in_time: true, .. } => Outcome::InTime,
        other => panic!("seed {seed}: not handed back at the deadline: {other:?} in {p:?}"),
    }
}

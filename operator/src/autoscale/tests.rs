use std::time::{Duration, Instant};

use super::*;

/// Target 60 s, up window 30 s, down window 300 s, steps of at most 4, 1..=10 workers.
fn policy() -> Policy {
    Policy {
        target_ms: 60_000,
        up_window: Duration::from_secs(30),
        down_window: Duration::from_secs(300),
        max_step: 4,
        min: 1,
        max: 10,
    }
}

fn signal(current: i32, lag_ms: Option<i64>) -> Signal {
    Signal {
        current,
        lag_ms,
        readable: 16,
        settling: false,
    }
}

/// One decision with a memory that already covers both windows with `current`.
fn settled(p: &Policy, s: &Signal) -> Decision {
    let t0 = Instant::now();
    let mut h = History::default();
    h.record(t0, s.current, Duration::from_secs(3600));
    decide(p, s, &mut h, t0 + Duration::from_secs(301))
}

/// (case, current, lag, readable, settling) → (size, reason).
type Row = (&'static str, i32, Option<i64>, usize, bool, i32, Reason);

#[test]
fn each_rule_in_a_table() {
    let p = policy();
    let cases: [Row; 12] = [
        (
            "lag unknown holds",
            3,
            None,
            16,
            false,
            3,
            Reason::LagUnknown,
        ),
        (
            "settling holds",
            3,
            Some(600_000),
            16,
            true,
            3,
            Reason::Settling,
        ),
        (
            "in the band holds",
            3,
            Some(45_000),
            16,
            false,
            3,
            Reason::LagWithinTarget,
        ),
        (
            "at the target holds",
            3,
            Some(60_000),
            16,
            false,
            3,
            Reason::LagWithinTarget,
        ),
        (
            "at half the target holds",
            3,
            Some(30_000),
            16,
            false,
            3,
            Reason::LagWithinTarget,
        ),
        (
            "just above grows by one",
            3,
            Some(60_001),
            16,
            false,
            4,
            Reason::LagAboveTarget,
        ),
        (
            "twice the target doubles",
            3,
            Some(120_000),
            16,
            false,
            6,
            Reason::LagAboveTarget,
        ),
        (
            "far above grows by maxStep",
            3,
            Some(6_000_000),
            16,
            false,
            7,
            Reason::LagAboveTarget,
        ),
        (
            "caught up shrinks by one",
            8,
            Some(0),
            16,
            false,
            7,
            Reason::LagBelowTarget,
        ),
        (
            "just below half shrinks by one",
            3,
            Some(29_999),
            16,
            false,
            2,
            Reason::LagBelowTarget,
        ),
        (
            "above at maxReplicas holds",
            10,
            Some(600_000),
            16,
            false,
            10,
            Reason::AtMaxReplicas,
        ),
        (
            "below at minReplicas holds",
            1,
            Some(0),
            16,
            false,
            1,
            Reason::AtMinReplicas,
        ),
    ];
    for (case, current, lag, readable, settling, size, reason) in cases {
        let d = settled(
            &p,
            &Signal {
                current,
                lag_ms: lag,
                readable,
                settling,
            },
        );
        assert_eq!((d.size, d.reason), (size, reason), "{case}: {}", d.message);
        assert!(!d.message.is_empty(), "{case}");
    }
}

#[test]
fn never_past_one_worker_per_readable_shard() {
    let p = policy();
    let mut s = signal(3, Some(600_000));
    s.readable = 4;
    let d = settled(&p, &s);
    assert_eq!(
        (d.size, d.reason),
        (4, Reason::LagAboveTarget),
        "{}",
        d.message
    );
    s.current = 4;
    let d = settled(&p, &s);
    assert_eq!(
        (d.size, d.reason),
        (4, Reason::OneWorkerPerShard),
        "{}",
        d.message
    );
    assert!(
        d.message.contains("one worker per readable shard: 4"),
        "{}",
        d.message
    );
    // Shards merged away: the fleet comes down to the shard count at once.
    s.readable = 2;
    let d = settled(&p, &s);
    assert_eq!(
        (d.size, d.reason),
        (2, Reason::OneWorkerPerShard),
        "{}",
        d.message
    );
    // ... but never below minReplicas.
    let p = Policy { min: 3, ..p };
    let d = settled(&p, &s);
    assert_eq!(d.size, 3, "{}", d.message);
}

#[test]
fn bounds_moved_apply_at_once_and_forget_the_memory() {
    let p = Policy { max: 5, ..policy() };
    let t0 = Instant::now();
    let mut h = History::default();
    h.record(t0, 9, Duration::from_secs(3600));
    let d = decide(&p, &signal(9, Some(0)), &mut h, t0);
    assert_eq!(
        (d.size, d.reason),
        (5, Reason::AtMaxReplicas),
        "{}",
        d.message
    );
    assert!(h.recommendations.is_empty());
    let p = Policy { min: 4, ..policy() };
    let d = decide(&p, &signal(2, Some(0)), &mut h, t0);
    assert_eq!(
        (d.size, d.reason),
        (4, Reason::AtMinReplicas),
        "{}",
        d.message
    );
}

#[test]
fn a_fresh_memory_holds_for_the_whole_window() {
    let p = policy();
    let t0 = Instant::now();
    let mut h = History::default();
    let high = signal(2, Some(240_000));
    for s in [0, 10, 29] {
        let d = decide(&p, &high, &mut h, t0 + Duration::from_secs(s));
        assert_eq!(
            (d.size, d.reason),
            (2, Reason::Stabilizing),
            "at {s}s: {}",
            d.message
        );
    }
    let d = decide(&p, &high, &mut h, t0 + Duration::from_secs(30));
    assert_eq!(
        (d.size, d.reason),
        (6, Reason::LagAboveTarget),
        "{}",
        d.message
    );
    assert!(d.message.contains("2 → 6"), "{}", d.message);
}

#[test]
fn one_low_reading_in_the_up_window_keeps_the_size() {
    let p = policy();
    let t0 = Instant::now();
    let mut h = History::default();
    let at = |s: u64| t0 + Duration::from_secs(s);
    decide(&p, &signal(2, Some(240_000)), &mut h, at(0));
    // A dip into the band: its recommendation (hold at 2) is within the window until 40 s.
    decide(&p, &signal(2, Some(40_000)), &mut h, at(10));
    let d = decide(&p, &signal(2, Some(240_000)), &mut h, at(35));
    assert_eq!(
        (d.size, d.reason),
        (2, Reason::Stabilizing),
        "{}",
        d.message
    );
    let d = decide(&p, &signal(2, Some(240_000)), &mut h, at(41));
    assert_eq!(d.size, 6, "{}", d.message);
}

#[test]
fn scale_down_waits_for_the_longer_window() {
    let p = policy();
    let t0 = Instant::now();
    let mut h = History::default();
    let at = |s: u64| t0 + Duration::from_secs(s);
    decide(&p, &signal(8, Some(50_000)), &mut h, at(0));
    for s in (10..300).step_by(10) {
        let d = decide(&p, &signal(8, Some(0)), &mut h, at(s));
        assert_eq!(
            (d.size, d.reason),
            (8, Reason::Stabilizing),
            "at {s}s: {}",
            d.message
        );
    }
    // At 300 s the hold recommendation of 0 s is still in the window; at 301 s it is not.
    let d = decide(&p, &signal(8, Some(0)), &mut h, at(300));
    assert_eq!(d.size, 8, "{}", d.message);
    let d = decide(&p, &signal(8, Some(0)), &mut h, at(301));
    assert_eq!(
        (d.size, d.reason),
        (7, Reason::LagBelowTarget),
        "{}",
        d.message
    );
}

#[test]
fn zero_windows_act_at_once() {
    let p = Policy {
        up_window: Duration::ZERO,
        down_window: Duration::ZERO,
        ..policy()
    };
    let t0 = Instant::now();
    let mut h = History::default();
    assert_eq!(decide(&p, &signal(2, Some(120_000)), &mut h, t0).size, 4);
    assert_eq!(
        decide(&p, &signal(4, Some(0)), &mut h, t0 + Duration::from_secs(1)).size,
        3
    );
}

#[test]
fn settling_records_nothing() {
    let p = policy();
    let t0 = Instant::now();
    let mut h = History::default();
    let mut s = signal(2, Some(600_000));
    s.settling = true;
    decide(&p, &s, &mut h, t0);
    assert!(h.since.is_none() && h.recommendations.is_empty());
}

#[test]
fn huge_values_do_not_overflow() {
    let p = Policy {
        max: i32::MAX,
        max_step: 1000,
        ..policy()
    };
    let mut s = signal(i32::MAX - 1, Some(i64::MAX));
    s.readable = usize::MAX;
    let d = settled(&p, &s);
    assert_eq!(d.size, i32::MAX, "{}", d.message);
    assert_eq!(proportional(i32::MAX, i64::MAX, 1), i32::MAX);
    assert_eq!(proportional(3, -5, 60_000), 0);
}

/// A simulated fleet: each worker catches up `drain_per_worker_ms` of lag per tick while the
/// stream adds `arrival_ms`; a step takes effect `settle_ticks` ticks after it was decided.
struct Sim {
    policy: Policy,
    history: History,
    size: i32,
    lag_ms: i64,
    settling_until: u64,
    sizes: Vec<i32>,
}

impl Sim {
    fn new(policy: Policy, size: i32, lag_ms: i64) -> Self {
        Self {
            policy,
            history: History::default(),
            size,
            lag_ms,
            settling_until: 0,
            sizes: vec![size],
        }
    }

    /// Runs `ticks` passes of 5 s each, the lag following `arrival(tick) - drain × size`.
    fn run(&mut self, from: u64, ticks: u64, arrival: impl Fn(u64) -> i64, drain: i64) {
        let t0 = Instant::now();
        for tick in from..from + ticks {
            let now = t0 + Duration::from_secs(tick * 5);
            self.lag_ms = (self.lag_ms + arrival(tick) - drain * i64::from(self.size)).max(0);
            let signal = Signal {
                current: self.size,
                lag_ms: Some(self.lag_ms),
                readable: 16,
                settling: tick < self.settling_until,
            };
            let d = decide(&self.policy, &signal, &mut self.history, now);
            if d.size != self.size {
                self.settling_until = tick + 3;
            }
            self.size = d.size;
            self.sizes.push(d.size);
        }
    }

    /// How often the direction of change reversed.
    fn reversals(&self) -> usize {
        let steps: Vec<i32> = self
            .sizes
            .windows(2)
            .map(|w| (w[1] - w[0]).signum())
            .filter(|d| *d != 0)
            .collect();
        steps.windows(2).filter(|w| w[0] != w[1]).count()
    }
}

/// `size×ticks` runs, for failure messages.
fn runs(sizes: &[i32]) -> String {
    let mut out = Vec::new();
    for chunk in sizes.chunk_by(|a, b| a == b) {
        out.push(format!("{}×{}", chunk[0], chunk.len()));
    }
    out.join(" ")
}

#[test]
fn a_backlog_grows_the_fleet_then_it_shrinks_back_once() {
    // 20 minutes of backlog at the start, no new load; each worker drains 10 s of lag per 5 s.
    let mut sim = Sim::new(policy(), 1, 20 * 60_000);
    sim.run(0, 1000, |_| 0, 10_000);
    let peak = *sim.sizes.iter().max().expect("sizes");
    assert!(peak > 4, "the fleet grew: {:?}", sim.sizes);
    assert!(peak <= 10);
    assert_eq!(sim.lag_ms, 0, "the backlog is gone");
    assert_eq!(
        *sim.sizes.last().expect("sizes"),
        1,
        "back to minReplicas: {:?}",
        sim.sizes
    );
    assert_eq!(
        sim.reversals(),
        1,
        "grew, then shrank, no flapping: {:?}",
        sim.sizes
    );
    // Each step grew by at most maxStep and shrank by one.
    assert!(
        sim.sizes
            .windows(2)
            .all(|w| (-1..=4).contains(&(w[1] - w[0])))
    );
}

#[test]
fn a_noisy_lag_around_the_target_never_flaps() {
    // The lag swings between 35 s and 65 s every tick: above the target half the time.
    let mut sim = Sim::new(policy(), 3, 50_000);
    let noisy = |tick: u64| {
        if tick.is_multiple_of(2) {
            15_000
        } else {
            -15_000
        }
    };
    sim.run(0, 1000, noisy, 0);
    assert_eq!(sim.reversals(), 0, "{:?}", sim.sizes);
    assert!(sim.sizes.iter().all(|s| *s == 3), "{:?}", sim.sizes);
}

#[test]
fn a_steady_load_probes_less_and_less_often() {
    // The stream adds 25 s of lag per tick; each worker drains 10 s: 3 workers keep up, and at
    // 3 the lag is 0 just as with 10. Lag alone cannot tell them apart, so 2 is tried now and
    // then; each failed try holds twice as long (5, 10, 20, 40, 60 min).
    let mut sim = Sim::new(policy(), 1, 0);
    sim.run(0, 4000, |_| 25_000, 10_000); // 5.5 hours
    println!("{}", runs(&sim.sizes));
    let probes = sim.sizes.windows(2).filter(|w| w == &[3, 2]).count();
    assert!(
        (2..=8).contains(&probes),
        "{probes} probes of 2 workers: {:?}",
        sim.sizes
    );
    // Never below what keeps up for longer than a probe takes to fail (lag 60 s past target
    // at 5 s per tick, plus the 30 s scale-up window).
    let longest_at_2 = sim
        .sizes
        .split(|s| *s != 2)
        .map(<[i32]>::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_at_2 <= 20,
        "{longest_at_2} ticks at 2: {:?}",
        sim.sizes
    );
    // The last hour: at most one probe.
    let tail = &sim.sizes[sim.sizes.len() - 720..];
    assert!(
        tail.windows(2).filter(|w| w == &[3, 2]).count() <= 1,
        "{tail:?}"
    );
    assert!(tail.iter().all(|s| (2..=4).contains(s)), "{tail:?}");
}

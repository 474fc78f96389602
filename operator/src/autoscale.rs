//! Lag-driven autoscaling (`spec.workers.autoscaling`): a pure function from the fleet's lag,
//! its size and a short memory of recommendations to the size the fleet should have, and why.
//!
//! The rules, each tested in `autoscale/tests.rs`:
//! - **Bounds first.** The size stays within `minReplicas..=ceiling`, where the ceiling is
//!   `maxReplicas` and one worker per readable shard (never below `minReplicas`); a size outside
//!   moves there at once.
//! - **Grow in proportion, shrink by one.** Lag above the target asks for `ceil(size × lag /
//!   target)` workers (at least one more, at most `maxStep` more); lag below half the target
//!   asks for one worker fewer. Between half the target and the target the fleet holds: the band
//!   is the hysteresis that keeps a fleet at the edge from flapping.
//! - **Remember what was too few.** Lag alone cannot tell a fleet that keeps up with room to
//!   spare from one that just keeps up: both read at the tip, lag ~0. So shrinking is a probe.
//!   When the fleet has to grow again soon after it shrank ([`RELAPSE_WITHIN`]), the smaller size
//!   was too few: the fleet does not go below the size it grew back to for a while, twice as
//!   long after each failed probe (from the scale-down window, at least [`MIN_BACKOFF`], up to
//!   [`MAX_BACKOFF`]). A steady load thus costs one probe per backoff, not one per window.
//! - **Stabilized.** A recommendation is a size; the fleet grows to the smallest size
//!   recommended over the scale-up window and shrinks to the largest over the scale-down window,
//!   and only once the memory covers the whole window (an operator that just started holds).
//! - **One step at a time.** While the last step has not taken effect (worker pods not ready,
//!   shards still draining) the fleet holds and nothing is recorded: a lag measured while shards
//!   move says nothing about the new size.
//! - **Lag unknown, fleet holds.** No worker reported a lag: nothing is decided.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use kinesis_ingester_api::{KinesisShardAssignmentSpec, WorkersSpec, bounds};
use kinesis_protocol::handoff::{Liveness, Workers};

/// Why the fleet has the size it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The lag is above the target: growing.
    LagAboveTarget,
    /// The lag is below half the target: shrinking.
    LagBelowTarget,
    /// The lag is between half the target and the target: holding.
    LagWithinTarget,
    /// No worker reported a lag yet: holding.
    LagUnknown,
    /// The lag asks for another size, but not yet for the whole stabilization window.
    Stabilizing,
    /// The last step has not taken effect yet (pods starting, shards moving): holding.
    Settling,
    /// More workers would help, but `maxReplicas` is reached.
    AtMaxReplicas,
    /// Fewer workers would do, but `minReplicas` is reached.
    AtMinReplicas,
    /// More workers would help, but every readable shard has its own worker already.
    OneWorkerPerShard,
    /// Fewer workers would do by the lag, but that size fell behind recently (see
    /// [`History`]): holding for the backoff.
    RecentlyTooFew,
}

impl Reason {
    /// The reason as status and events show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LagAboveTarget => "LagAboveTarget",
            Self::LagBelowTarget => "LagBelowTarget",
            Self::LagWithinTarget => "LagWithinTarget",
            Self::LagUnknown => "LagUnknown",
            Self::Stabilizing => "Stabilizing",
            Self::Settling => "Settling",
            Self::AtMaxReplicas => "AtMaxReplicas",
            Self::AtMinReplicas => "AtMinReplicas",
            Self::OneWorkerPerShard => "OneWorkerPerShard",
            Self::RecentlyTooFew => "RecentlyTooFew",
        }
    }
}

/// The settings of `spec.workers.autoscaling`, in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `targetLag` in milliseconds.
    pub target_ms: i64,
    /// `scaleUpStabilization`.
    pub up_window: Duration,
    /// `scaleDownStabilization`.
    pub down_window: Duration,
    /// `maxStep`.
    pub max_step: i32,
    /// `minReplicas`.
    pub min: i32,
    /// `maxReplicas` (at least `min`).
    pub max: i32,
}

impl Policy {
    /// The policy of `workers`, or `None` when autoscaling is off. Values are clamped to their
    /// admission bounds, so a resource stored before the bounds existed cannot misbehave.
    pub fn of(workers: &WorkersSpec) -> Option<Self> {
        let a = workers.autoscaler()?;
        let target = bounds::TARGET_LAG.clamp(&a.target_lag);
        Some(Self {
            target_ms: i64::try_from(target.as_millis()).unwrap_or(i64::MAX),
            up_window: bounds::SCALE_UP_STABILIZATION.clamp(&a.scale_up_stabilization),
            down_window: bounds::SCALE_DOWN_STABILIZATION.clamp(&a.scale_down_stabilization),
            max_step: a.max_step.clamp(1, 1000),
            min: workers.min_replicas.max(1),
            max: workers.max_replicas.max(workers.min_replicas.max(1)),
        })
    }
}

/// What the autoscaler looks at in one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    /// The fleet's size now (`status.replicas`; `minReplicas` for a new fleet).
    pub current: i32,
    /// The largest `MillisBehindLatest` live workers report ([`fleet_lag`]); `None` while none
    /// reported one.
    pub lag_ms: Option<i64>,
    /// Shards that may be read now.
    pub readable: usize,
    /// The last step has not taken effect: fewer ready pods than workers, or shards draining.
    pub settling: bool,
}

/// A scale-up this soon after a scale-down means the smaller size was too few.
pub const RELAPSE_WITHIN: Duration = Duration::from_secs(15 * 60);

/// The first hold after a failed probe, when the scale-down window is shorter.
pub const MIN_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// The longest hold after failed probes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The autoscaler's memory: the recommendations of the last hour at most (the longest window),
/// oldest first, and what recent scale-downs taught.
#[derive(Clone, Debug, Default)]
pub struct History {
    recommendations: VecDeque<(Instant, i32)>,
    /// When the memory starts: a window is covered once this is at least a window ago.
    since: Option<Instant>,
    /// The last scale-down: when, and the size it went to.
    last_down: Option<(Instant, i32)>,
    /// No scale-down below this size until then.
    floor: Option<(i32, Instant)>,
    /// The hold after the next failed probe.
    backoff: Option<Duration>,
}

impl History {
    /// Forgets every recommendation (autoscaling turned off, suspended, or the bounds moved).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    fn record(&mut self, now: Instant, size: i32, keep: Duration) {
        self.since.get_or_insert(now);
        self.recommendations.push_back((now, size));
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > keep)
        {
            self.recommendations.pop_front();
        }
    }

    /// The recommendations within `window` of `now`, or `None` while the memory is younger than
    /// the window.
    fn within(&self, now: Instant, window: Duration) -> Option<impl Iterator<Item = i32> + '_> {
        let since = self.since?;
        (now.saturating_duration_since(since) >= window).then(|| {
            self.recommendations
                .iter()
                .filter(move |(t, _)| now.saturating_duration_since(*t) <= window)
                .map(|(_, s)| *s)
        })
    }

    /// Learns from a step from `from` to `to` workers taken at `now`: a scale-up soon after a
    /// scale-down to `from` marks `from` as too few for the backoff, which doubles each time.
    fn learn(&mut self, from: i32, to: i32, down_window: Duration, now: Instant) {
        if to < from {
            self.last_down = Some((now, to));
            return;
        }
        let relapsed = self.last_down.is_some_and(|(at, size)| {
            size == from && now.saturating_duration_since(at) <= RELAPSE_WITHIN
        });
        if relapsed {
            let hold = self
                .backoff
                .unwrap_or(down_window.max(MIN_BACKOFF))
                .min(MAX_BACKOFF);
            self.floor = Some((from + 1, now + hold));
            self.backoff = Some(hold.saturating_mul(2).min(MAX_BACKOFF));
        }
        self.last_down = None;
    }

    /// How long the memory reaches back.
    fn age(&self, now: Instant) -> Duration {
        self.since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}

/// The autoscaler's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Workers to run.
    pub size: i32,
    /// Why.
    pub reason: Reason,
    /// Why, for people: the lag, the target and what happens next.
    pub message: String,
}

/// The size the fleet should have now, and why.
pub fn decide(policy: &Policy, signal: &Signal, history: &mut History, now: Instant) -> Decision {
    let readable = i32::try_from(signal.readable).unwrap_or(i32::MAX);
    let ceiling = policy.max.min(readable).max(policy.min);
    let at_ceiling = if ceiling < policy.max {
        Reason::OneWorkerPerShard
    } else {
        Reason::AtMaxReplicas
    };
    let current = signal.current;
    let target = format_ms(policy.target_ms);
    let decision = |size, reason, message: String| Decision {
        size,
        reason,
        message,
    };

    // Bounds first: a size outside them moves there at once, and what was recommended for
    // the old bounds is forgotten.
    if current > ceiling {
        history.clear();
        let why = match at_ceiling {
            Reason::OneWorkerPerShard => format!("one worker per readable shard ({readable})"),
            _ => format!("maxReplicas ({})", policy.max),
        };
        return decision(
            ceiling,
            at_ceiling,
            format!("{current} workers is more than {why}"),
        );
    }
    if current < policy.min {
        history.clear();
        return decision(
            policy.min,
            Reason::AtMinReplicas,
            format!(
                "{current} workers is fewer than minReplicas ({})",
                policy.min
            ),
        );
    }
    let Some(lag) = signal.lag_ms else {
        return decision(
            current,
            Reason::LagUnknown,
            "no worker has reported a lag yet; holding".to_owned(),
        );
    };
    let lag_text = format_ms(lag);
    if signal.settling {
        return decision(
            current,
            Reason::Settling,
            format!(
                "lag {lag_text} (target {target}); waiting for the last step to take effect (pods starting or shards moving)"
            ),
        );
    }

    // The raw recommendation.
    let proportional = proportional(current, lag, policy.target_ms);
    let (wanted, reason) = if lag > policy.target_ms {
        let step = current.saturating_add(policy.max_step);
        (
            proportional
                .max(current.saturating_add(1))
                .min(step)
                .min(ceiling),
            Reason::LagAboveTarget,
        )
    } else if lag.saturating_mul(2) < policy.target_ms {
        (
            current.saturating_sub(1).max(policy.min),
            Reason::LagBelowTarget,
        )
    } else {
        (current, Reason::LagWithinTarget)
    };
    let keep = policy.up_window.max(policy.down_window);
    history.record(now, wanted, keep);

    if wanted == current {
        let (reason, message) = match reason {
            Reason::LagAboveTarget => (
                at_ceiling,
                format!(
                    "lag {lag_text} is above the target {target}, but {current} workers is the most allowed ({})",
                    limit_text(at_ceiling, policy, readable)
                ),
            ),
            Reason::LagBelowTarget => (
                Reason::AtMinReplicas,
                format!(
                    "lag {lag_text} is below half the target {target}, but {current} workers is minReplicas"
                ),
            ),
            _ => (
                reason,
                format!(
                    "lag {lag_text} is within the target {target} (shrinks below half of it); holding at {current}"
                ),
            ),
        };
        return decision(current, reason, message);
    }

    // What failed before is not tried again until its backoff is over.
    let floor = history
        .floor
        .filter(|(_, until)| now < *until)
        .map(|(size, _)| size);
    if wanted < current
        && let Some(floor) = floor.filter(|f| *f >= current)
    {
        let until = history.floor.map_or(now, |(_, u)| u);
        return decision(
            current,
            Reason::RecentlyTooFew,
            format!(
                "lag {lag_text} is below half the target {target}, but {} workers fell behind recently; not fewer than {floor} for another {}",
                floor - 1,
                format_ms(millis(until.saturating_duration_since(now))),
            ),
        );
    }

    // Stabilized: the whole window must ask for a change in the same direction.
    let (window, stable, direction) = if wanted > current {
        let stable = history
            .within(now, policy.up_window)
            .and_then(Iterator::min)
            .filter(|s| *s > current);
        (policy.up_window, stable, "more")
    } else {
        let stable = history
            .within(now, policy.down_window)
            .and_then(Iterator::max)
            .filter(|s| *s < current);
        (policy.down_window, stable, "fewer")
    };
    match stable {
        Some(size) => {
            history.learn(current, size, policy.down_window, now);
            decision(
                size,
                reason,
                format!(
                    "lag {lag_text} {} the target {target} for {}: {current} → {size} workers",
                    if reason == Reason::LagAboveTarget {
                        "above"
                    } else {
                        "below half of"
                    },
                    format_ms(millis(window)),
                ),
            )
        }
        None => decision(
            current,
            Reason::Stabilizing,
            format!(
                "lag {lag_text} (target {target}) asks for {direction} workers ({wanted}); holding at {current} until it has for the whole {} window ({} so far)",
                format_ms(millis(window)),
                format_ms(millis(history.age(now).min(window))),
            ),
        ),
    }
}

/// `ceil(current × lag / target)`, without overflow.
fn proportional(current: i32, lag: i64, target: i64) -> i32 {
    let target = i128::from(target.max(1));
    let wanted = (i128::from(current.max(1)) * i128::from(lag.max(0)) + target - 1) / target;
    i32::try_from(wanted).unwrap_or(i32::MAX)
}

fn limit_text(reason: Reason, policy: &Policy, readable: i32) -> String {
    match reason {
        Reason::OneWorkerPerShard => format!("one worker per readable shard: {readable}"),
        _ => format!("maxReplicas: {}", policy.max),
    }
}

/// The largest `MillisBehindLatest` that live owners report for the shards they own in
/// `table`; `None` when none reported one.
pub fn fleet_lag(table: &KinesisShardAssignmentSpec, workers: &Workers) -> Option<i64> {
    table
        .shards
        .iter()
        .filter_map(|s| {
            let w = workers.get(s.owner.as_deref()?)?;
            if w.liveness != Liveness::Live {
                return None;
            }
            w.object
                .status
                .as_ref()?
                .entry(&s.shard_id, s.epoch)?
                .millis_behind_latest
        })
        .max()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn format_ms(ms: i64) -> String {
    crate::reconcile::status::format_lag(ms)
}

#[cfg(test)]
mod tests;

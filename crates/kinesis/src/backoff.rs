//! Exponential backoff with full jitter, shared by the shard readers and the sink.

use std::time::Duration;

/// Waits that double from `initial` up to `max`; each wait is uniform in `[0, ceiling]`.
///
/// Use [`Backoff::delay`] with an attempt count, or let [`Backoff::next_delay`] count the
/// attempts and [`Backoff::reset`] start over after a success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first wait.
    pub initial: Duration,
    /// Ceiling of every wait.
    pub max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The wait before retry number `attempt` (0-based): uniform in `[0, min(max, initial·2^attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        ceiling.mul_f64(fastrand::f64())
    }

    /// The next wait, counting this attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to the first ceiling after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_their_cap_with_full_jitter() {
        let b = Backoff::default();
        for attempt in [0, 1, 5, 40, u32::MAX] {
            let cap = Duration::from_millis(100)
                .saturating_mul(2u32.saturating_pow(attempt.min(31)))
                .min(Duration::from_secs(30));
            let delays: Vec<_> = (0..50).map(|_| b.delay(attempt)).collect();
            assert!(delays.iter().all(|d| *d <= cap));
            assert!(delays.iter().any(|d| *d != delays[0]), "jittered");
        }
    }

    #[test]
    fn next_delay_counts_attempts_and_reset_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        for ceiling in [100, 200, 400, 800, 800] {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(ceiling), "{d:?} > {ceiling}ms");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}

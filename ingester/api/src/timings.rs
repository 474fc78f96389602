//! The fleet's timing rules, in one validated type that the operator and every worker build from their flags, so a setting one accepts the other never refuses.

use std::time::Duration;

/// Least report interval: each worker writes its object at most 0.2 times per second.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// How long a worker may take to notice its own self-fence (it checks every 200 ms) and
/// abandon the sink request in flight; the lease must exceed the self-fence by more than this.
pub const SELF_FENCE_MARGIN: Duration = Duration::from_secs(1);

/// Least time records may wait for the sink, with nothing acknowledged, before delivery counts
/// as stuck (`/readyz` false, `deliveryStuck` reported): longer than any sane batch age, so a
/// quiet batch waiting to fill is never mistaken for a failing sink.
pub const MIN_DELIVERY_STUCK_AFTER: Duration = Duration::from_secs(30);

/// When workers report, stop themselves, and lose their shards.
///
/// The rules, each checked by [`FleetTimings::new`]:
/// - `report_interval >= 5s`: the API write budget;
/// - `self_fence_after >= 2 × report_interval`: one failed write must not stop reading;
/// - `worker_lease > self_fence_after + 1s`: a worker cut off from the API server stops
///   delivering (readers stopped, the sink's request in flight abandoned, nothing more
///   acknowledged) before the operator may move its shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetTimings {
    report_interval: Duration,
    self_fence_after: Duration,
    worker_lease: Duration,
}

/// A timing rule that does not hold, naming the flags to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimingsError {
    /// The report interval is below the write budget.
    #[error(
        "--report-interval {0:?} is below {MIN_REPORT_INTERVAL:?}: the API write budget is 0.2 writes/s per worker"
    )]
    ReportTooOften(Duration),
    /// One failed write would stop reading.
    #[error(
        "--self-fence-after {self_fence_after:?} must be at least twice --report-interval {report_interval:?}, or one failed write would stop reading; raise --self-fence-after (and --worker-lease above it)"
    )]
    SelfFenceTooSoon {
        /// The self-fence.
        self_fence_after: Duration,
        /// The report interval.
        report_interval: Duration,
    },
    /// A cut-off worker could still deliver after its shards moved.
    #[error(
        "--worker-lease {worker_lease:?} must be longer than --self-fence-after {self_fence_after:?} plus {SELF_FENCE_MARGIN:?}, so a worker cut off from the API server has stopped delivering before its shards move; raise --worker-lease"
    )]
    LeaseTooShort {
        /// The lease.
        worker_lease: Duration,
        /// The self-fence.
        self_fence_after: Duration,
    },
}

impl FleetTimings {
    /// Checks every rule; the error names the flag to change.
    pub fn new(
        report_interval: Duration,
        self_fence_after: Duration,
        worker_lease: Duration,
    ) -> Result<Self, TimingsError> {
        if report_interval < MIN_REPORT_INTERVAL {
            return Err(TimingsError::ReportTooOften(report_interval));
        }
        if self_fence_after < report_interval.saturating_mul(2) {
            return Err(TimingsError::SelfFenceTooSoon {
                self_fence_after,
                report_interval,
            });
        }
        if worker_lease <= self_fence_after.saturating_add(SELF_FENCE_MARGIN) {
            return Err(TimingsError::LeaseTooShort {
                worker_lease,
                self_fence_after,
            });
        }
        Ok(Self {
            report_interval,
            self_fence_after,
            worker_lease,
        })
    }

    /// How often a worker writes its status.
    pub fn report_interval(&self) -> Duration {
        self.report_interval
    }

    /// A worker that could not write for this long stops reading and delivering.
    pub fn self_fence_after(&self) -> Duration {
        self.self_fence_after
    }

    /// A worker whose object has not changed for this long loses its shards.
    pub fn worker_lease(&self) -> Duration {
        self.worker_lease
    }

    /// Records waiting for the sink with nothing acknowledged for longer than this make
    /// delivery stuck: 2 × the report interval (so at least two reports see records waiting
    /// before it is called stuck), and at least [`MIN_DELIVERY_STUCK_AFTER`].
    pub fn delivery_stuck_after(&self) -> Duration {
        self.report_interval
            .saturating_mul(2)
            .max(MIN_DELIVERY_STUCK_AFTER)
    }

    /// The flags that give a worker the same timings.
    pub fn worker_args(&self) -> Vec<String> {
        let flag = |d: Duration| format!("{}ms", d.as_millis());
        vec![
            "--report-interval".into(),
            flag(self.report_interval),
            "--self-fence-after".into(),
            flag(self.self_fence_after),
            "--worker-lease".into(),
            flag(self.worker_lease),
        ]
    }
}

impl Default for FleetTimings {
    /// 6 s reports, self-fence after 12 s, lease 14 s: a killed worker's shards are read
    /// again within about 15 s.
    fn default() -> Self {
        Self {
            report_interval: Duration::from_secs(6),
            self_fence_after: Duration::from_secs(12),
            worker_lease: Duration::from_secs(14),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(report: u64, fence: u64, lease: u64) -> Result<FleetTimings, TimingsError> {
        FleetTimings::new(
            Duration::from_secs(report),
            Duration::from_secs(fence),
            Duration::from_secs(lease),
        )
    }

    #[test]
    fn the_defaults_hold_and_each_rule_names_its_flag() {
        let d = FleetTimings::default();
        assert_eq!(
            FleetTimings::new(d.report_interval, d.self_fence_after, d.worker_lease),
            Ok(d)
        );
        assert!(
            secs(4, 30, 40)
                .unwrap_err()
                .to_string()
                .contains("--report-interval")
        );
        // What the operator used to accept and every worker then refused.
        let err = secs(10, 12, 14).unwrap_err();
        assert!(matches!(err, TimingsError::SelfFenceTooSoon { .. }));
        assert!(err.to_string().contains("--self-fence-after"));
        assert!(matches!(
            secs(6, 12, 13),
            Err(TimingsError::LeaseTooShort { .. })
        ));
        assert!(
            secs(6, 12, 13)
                .unwrap_err()
                .to_string()
                .contains("--worker-lease")
        );
    }

    #[test]
    fn delivery_is_stuck_after_two_reports_and_never_before_30s() {
        assert_eq!(
            FleetTimings::default().delivery_stuck_after(),
            Duration::from_secs(30)
        );
        let t = secs(20, 40, 50).expect("valid");
        assert_eq!(t.delivery_stuck_after(), Duration::from_secs(40));
    }

    #[test]
    fn worker_args_round_trip_through_the_duration_parser() {
        let t = secs(7, 15, 20).expect("valid");
        let args = t.worker_args();
        let parse = |i: usize| {
            args[i]
                .parse::<crate::Duration>()
                .expect("a duration the worker's flags accept")
                .get()
        };
        assert_eq!(FleetTimings::new(parse(1), parse(3), parse(5)), Ok(t));
    }
}

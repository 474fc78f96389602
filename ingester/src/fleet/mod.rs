//! Fleet mode: one worker of a KinesisIngester run by kinesis-operator, reading the shards the operator's table gives it and reporting checkpoints in its `KinesisWorker` status (docs/design.md §3, §6).
//!
//! `startup` finds the ingester and the worker object and takes it over; `owned` decides, purely,
//! which shards to read, release or pause; `worker` runs one reader per owned shard; `report`
//! builds the status, purely, and is its only writer.

mod owned;
mod report;
mod startup;
mod worker;

use std::{path::PathBuf, time::Duration};

pub use owned::{Owned, Want, desired, hash_range, start_position, to_position};
pub use report::{EntryState, ReportEntry, Reporter, Written, build_status, to_checkpoint};
pub use startup::{Started, connect};
pub use worker::{TableEvents, Worker, WorkerExit, final_entries};

/// Identity and timing of a fleet worker, from the command line and the downward API.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Namespace of the KinesisIngester and of every object of its fleet.
    pub namespace: String,
    /// Name of the KinesisIngester (and of its shard table).
    pub ingester: String,
    /// This pod's name: the name of its `KinesisWorker` object.
    pub pod_name: String,
    /// This pod's UID.
    pub pod_uid: String,
    /// How often the status is written.
    pub report_interval: Duration,
    /// Stop reading when no status write succeeded for this long.
    pub self_fence_after: Duration,
    /// Where the scratch volume is on this machine: `/var/lib/kinesis-ingester` in a pod.
    pub scratch_dir: PathBuf,
}

/// Least report interval: each worker may write its object at most 0.2 times per second.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_secs(5);

impl FleetOptions {
    /// Checks the identity and the timing rules.
    pub fn validate(&self) -> Result<(), FleetError> {
        let invalid = |m: String| Err(FleetError::Options(m));
        for (what, value) in [
            ("--namespace (or POD_NAMESPACE)", &self.namespace),
            ("--ingester", &self.ingester),
            ("--pod-name (or POD_NAME)", &self.pod_name),
            ("--pod-uid (or POD_UID)", &self.pod_uid),
        ] {
            if value.is_empty() {
                return invalid(format!("{what} is required in fleet mode"));
            }
        }
        if self.report_interval < MIN_REPORT_INTERVAL {
            return invalid(format!(
                "--report-interval {:?} is below {MIN_REPORT_INTERVAL:?}: the API write budget is 0.2 writes/s per worker",
                self.report_interval
            ));
        }
        // The defaults (6 s, 12 s) sit exactly on the limit, so equality is allowed.
        if self.self_fence_after < self.report_interval * 2 {
            return invalid(format!(
                "--self-fence-after {:?} must be at least twice --report-interval {:?}, or one failed write would stop reading",
                self.self_fence_after, self.report_interval
            ));
        }
        Ok(())
    }
}

/// Errors of the fleet layer.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The command line is invalid.
    #[error("{0}")]
    Options(String),
    /// The Kubernetes client cannot be built (no in-cluster config, no KUBECONFIG).
    #[error("cannot connect to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    /// The KinesisIngester spec cannot be used.
    #[error("KinesisIngester {name}: {message}")]
    Spec {
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Another process took this worker over (a new incarnation wrote the holder).
    #[error(
        "another process took over KinesisWorker {name} (holder {holder}); this one stops so that only one reads its shards"
    )]
    Replaced {
        /// The worker object.
        name: String,
        /// The new holder, as `podUid/incarnation`.
        holder: String,
    },
}

impl FleetError {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Options(_) => "options",
            Self::Client(_) => "client",
            Self::Spec { .. } => "spec",
            Self::Replaced { .. } => "replaced",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(report: u64, fence: u64) -> FleetOptions {
        FleetOptions {
            namespace: "ns".into(),
            ingester: "orders".into(),
            pod_name: "orders-worker-0".into(),
            pod_uid: "uid".into(),
            report_interval: Duration::from_secs(report),
            self_fence_after: Duration::from_secs(fence),
            scratch_dir: "/var/lib/kinesis-ingester".into(),
        }
    }

    #[test]
    fn timing_rules_are_enforced() {
        assert!(options(6, 12).validate().is_ok(), "the defaults");
        let err = options(4, 30).validate().unwrap_err().to_string();
        assert!(err.contains("0.2 writes/s"), "{err}");
        let err = options(6, 11).validate().unwrap_err().to_string();
        assert!(err.contains("--self-fence-after"), "{err}");
        let mut o = options(6, 13);
        o.pod_uid.clear();
        assert_eq!(o.validate().unwrap_err().category(), "options");
    }
}

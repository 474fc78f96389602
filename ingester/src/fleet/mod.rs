//! Fleet mode: one worker of a KinesisIngester run by kinesis-operator, reading the shards the operator's table gives it and reporting checkpoints in its `KinesisWorker` status (docs/design.md §3, §6).
//!
//! `startup` finds the ingester and the worker object and takes it over; `worker` runs one reader
//! per owned shard, as the pure `kinesis_protocol::owned` decides; `report` is the only writer of
//! the status that `kinesis_protocol::report` builds.

mod phase;
mod report;
mod startup;
mod worker;

use std::path::PathBuf;

use kinesis_ingester_api::FleetTimings;

pub use report::{Reporter, Written};
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
    /// When to report and when to stop reading, checked against the lease.
    pub timings: FleetTimings,
    /// Where the scratch volume is on this machine: `/var/lib/kinesis-ingester` in a pod.
    pub scratch_dir: PathBuf,
}

impl FleetOptions {
    /// Checks the identity (the timings were checked when they were built).
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

    #[test]
    fn the_identity_is_required() {
        let mut o = FleetOptions {
            namespace: "ns".into(),
            ingester: "orders".into(),
            pod_name: "orders-worker-0".into(),
            pod_uid: "uid".into(),
            timings: FleetTimings::default(),
            scratch_dir: "/var/lib/kinesis-ingester".into(),
        };
        assert!(o.validate().is_ok());
        o.pod_uid.clear();
        assert_eq!(o.validate().unwrap_err().category(), "options");
    }
}

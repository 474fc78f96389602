//! The worker's status, as `kinesis_protocol::report` builds it, written by one writer with a `resourceVersion` precondition (409 → re-read, apply fences, retry; another holder → stop).

use std::{sync::Arc, time::Duration};

use kinesis_ingester_api::{Holder, KinesisWorker, KinesisWorkerSpec, KinesisWorkerStatus};
use kube::{Api, api::PostParams};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::FleetError;
use crate::metrics::Metrics;

/// What one write did.
#[derive(Debug)]
pub enum Written {
    /// Stored; the write started at this instant.
    Ok(Instant),
    /// Failed (not a conflict, or conflicts kept coming); retried at the next report.
    Failed,
}

/// The only writer of the worker's status. It remembers the object as last read or written:
/// its `resourceVersion` (the precondition of the next write) and its fences.
pub struct Reporter {
    api: Api<KinesisWorker>,
    holder: Holder,
    object: KinesisWorker,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

fn describe(holder: Option<&Holder>) -> String {
    holder.map_or_else(
        || "none".to_owned(),
        |h| format!("{}/{}", h.pod_uid, h.incarnation),
    )
}

impl Reporter {
    /// A writer for `object` (as written by the takeover) on behalf of `holder`; each request
    /// gives up after `timeout`.
    pub fn new(
        api: Api<KinesisWorker>,
        holder: Holder,
        object: KinesisWorker,
        metrics: Arc<Metrics>,
        timeout: Duration,
    ) -> Self {
        Self {
            api,
            holder,
            object,
            metrics,
            timeout,
        }
    }

    /// The spec as last seen: its fences.
    pub fn spec(&self) -> &KinesisWorkerSpec {
        &self.object.spec
    }

    /// Writes the status `build` makes from the current fences. On a conflict the object is
    /// read again: `on_fences` sees its spec, and the write is retried with the new
    /// `resourceVersion`, unless another process holds the object now.
    pub async fn write(
        &mut self,
        stopped: bool,
        build: impl Fn(&Holder, bool, &KinesisWorkerSpec) -> KinesisWorkerStatus,
        mut on_fences: impl FnMut(&KinesisWorkerSpec),
    ) -> Result<Written, FleetError> {
        let name = self.object.metadata.name.clone().unwrap_or_default();
        for _ in 0..5 {
            let mut object = self.object.clone();
            object.status = Some(build(&self.holder, stopped, &self.object.spec));
            let started = Instant::now();
            let result = tokio::time::timeout(
                self.timeout,
                self.api
                    .replace_status(&name, &PostParams::default(), &object),
            )
            .await;
            match result {
                Ok(Ok(stored)) => {
                    self.metrics.fleet_report_written("ok");
                    debug!(rv = ?stored.metadata.resource_version, "status written");
                    self.object = stored;
                    return Ok(Written::Ok(started));
                }
                Ok(Err(kube::Error::Api(e))) if e.code == 409 => {
                    self.metrics.fleet_report_written("conflict");
                    let fresh = match tokio::time::timeout(self.timeout, self.api.get(&name)).await
                    {
                        Ok(Ok(fresh)) => fresh,
                        Ok(Err(e)) => {
                            warn!(error = %e, "status write conflicted and the object cannot be read; retrying at the next report");
                            return Ok(Written::Failed);
                        }
                        Err(_) => {
                            warn!(
                                "status write conflicted and reading the object timed out; retrying at the next report"
                            );
                            return Ok(Written::Failed);
                        }
                    };
                    let holder = fresh.status.as_ref().and_then(|s| s.holder.as_ref());
                    if holder.map(|h| &h.incarnation) != Some(&self.holder.incarnation) {
                        return Err(FleetError::Replaced {
                            name,
                            holder: describe(holder),
                        });
                    }
                    if fresh.spec != self.object.spec {
                        on_fences(&fresh.spec);
                    }
                    debug!("status write conflicted (the operator wrote the object); retrying");
                    self.object = fresh;
                }
                Ok(Err(e)) => {
                    self.metrics.fleet_report_written("error");
                    warn!(error = %e, "cannot write the worker status; retrying at the next report");
                    return Ok(Written::Failed);
                }
                Err(_) => {
                    self.metrics.fleet_report_written("error");
                    warn!(timeout = ?self.timeout, "writing the worker status timed out; retrying at the next report");
                    return Ok(Written::Failed);
                }
            }
        }
        warn!("the status write kept conflicting; retrying at the next report");
        Ok(Written::Failed)
    }
}

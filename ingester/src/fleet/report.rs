//! The worker's status: built purely from what it holds, and written by one writer with a `resourceVersion` precondition (409 → re-read, apply fences, retry; another holder → stop).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use kinesis_ingester_api::{
    CheckpointPosition, Holder, KinesisWorker, KinesisWorkerSpec, KinesisWorkerStatus, WorkerShard,
};
use kube::{Api, api::PostParams};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::FleetError;
use crate::{metrics::Metrics, sequence::Position};

/// One shard in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportEntry {
    /// The table epoch it belongs to.
    pub epoch: i64,
    /// Its state.
    pub state: EntryState,
}

/// How a shard's position is reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Held: the position is what the sink acknowledged when the status is built.
    Live,
    /// A fixed position: carried over from the previous process, released, or finished.
    Frozen {
        /// The position.
        position: Option<Position>,
        /// Released (handoff acknowledged).
        released: bool,
        /// Read to its end and delivered.
        finished: bool,
    },
}

/// A position as the CRDs store it.
pub fn to_checkpoint(p: &Position) -> CheckpointPosition {
    CheckpointPosition {
        sequence: p.sequence.to_string(),
        sub_sequence: p.sub_sequence,
    }
}

/// The whole status: `holder`, `renew_time` and one entry per shard, leaving out any shard
/// `spec` fences at its epoch (it must never be written again). `acked` gives a live shard's
/// position and `lag` its MillisBehindLatest.
pub fn build_status(
    holder: &Holder,
    renew_time: jiff::Timestamp,
    stopped: bool,
    entries: &BTreeMap<String, ReportEntry>,
    spec: &KinesisWorkerSpec,
    acked: impl Fn(&str) -> Option<Position>,
    lag: impl Fn(&str) -> Option<i64>,
) -> KinesisWorkerStatus {
    let shards = entries
        .iter()
        .filter(|(id, e)| !spec.is_fenced(id, e.epoch))
        .map(|(id, e)| {
            let (position, released, finished, millis) = match &e.state {
                EntryState::Live => (acked(id), false, false, lag(id)),
                EntryState::Frozen {
                    position,
                    released,
                    finished,
                } => (position.clone(), *released, *finished, None),
            };
            WorkerShard {
                shard_id: id.clone(),
                epoch: e.epoch,
                position: position.as_ref().map(to_checkpoint),
                millis_behind_latest: millis,
                released,
                finished,
            }
        })
        .collect();
    KinesisWorkerStatus {
        holder: Some(holder.clone()),
        renew_time: Some(renew_time.to_string()),
        stopped,
        shards,
    }
}

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

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::Fence;

    use super::*;

    fn pos(seq: &str) -> Position {
        Position::whole(seq.parse().expect("seq"))
    }

    #[test]
    fn the_status_holds_every_entry_except_fenced_ones() {
        let holder = Holder {
            pod_uid: "p".into(),
            incarnation: "i".into(),
        };
        let entries: BTreeMap<String, ReportEntry> = [
            ("a", 1, EntryState::Live),
            (
                "b",
                2,
                EntryState::Frozen {
                    position: Some(pos("7")),
                    released: true,
                    finished: false,
                },
            ),
            ("c", 1, EntryState::Live),
            ("d", 5, EntryState::Live),
        ]
        .into_iter()
        .map(|(id, epoch, state)| (id.to_owned(), ReportEntry { epoch, state }))
        .collect();
        let spec = KinesisWorkerSpec {
            ingester_uid: "u".into(),
            fences: vec![Fence {
                shard_id: "c".into(),
                epoch: 1,
            }],
        };
        let now: jiff::Timestamp = "2026-03-02T10:15:30Z".parse().expect("time");
        let status = build_status(
            &holder,
            now,
            false,
            &entries,
            &spec,
            |id| (id == "a").then(|| pos("3")),
            |id| (id == "a").then_some(1200),
        );
        assert_eq!(status.renew_time.as_deref(), Some("2026-03-02T10:15:30Z"));
        assert_eq!(status.holder, Some(holder));
        let ids: Vec<_> = status.shards.iter().map(|s| s.shard_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "d"], "the fenced shard is left out");
        let a = status.entry("a", 1).expect("a");
        assert_eq!(a.position.as_ref().map(|p| p.sequence.as_str()), Some("3"));
        assert_eq!(a.millis_behind_latest, Some(1200));
        let b = status.entry("b", 2).expect("b");
        assert!(b.released && !b.finished);
        assert_eq!(b.position.as_ref().map(|p| p.sequence.as_str()), Some("7"));
        let d = status.entry("d", 5).expect("d");
        assert_eq!(d.position, None, "claimed, nothing delivered yet");
    }
}

//! The watch filter of design §7.2: a worker report that changes nothing the operator decides on
//! does not cost a reconcile.
//!
//! A worker writes its status every report interval with new positions, lag, delivery times and
//! `renewTime`; without the filter each write triggers a reconcile (a read of the table, the
//! workers and the pods). The operator reconciles every ingester at least every requeue interval
//! (5 s) anyway, and that pass reads every report, so positions, lag and liveness are at most that
//! late. What moves shards or changes a condition triggers at once: a release, a finished shard,
//! a new entry (a new owner confirming its shard), a new holder (a restarted process), `stopped`,
//! a read error or stuck delivery starting or ending, fences, labels and the object's identity.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
};

use kinesis_ingester_api::KinesisWorker;
use kube::ResourceExt;

/// A hash of everything in a worker object the operator decides on; equal for two reports that
/// differ only in positions, lag, delivery times and `renewTime`.
pub fn decision_key(w: &KinesisWorker) -> u64 {
    let mut h = DefaultHasher::new();
    w.metadata.uid.hash(&mut h);
    w.metadata.deletion_timestamp.is_some().hash(&mut h);
    w.labels().hash(&mut h);
    w.spec.ingester_uid.hash(&mut h);
    for f in &w.spec.fences {
        (&f.shard_id, f.epoch).hash(&mut h);
    }
    if let Some(s) = &w.status {
        s.holder
            .as_ref()
            .map(|x| (&x.pod_uid, &x.incarnation))
            .hash(&mut h);
        s.stopped.hash(&mut h);
        for e in &s.shards {
            (
                &e.shard_id,
                e.epoch,
                e.released,
                e.finished,
                e.read_error.as_ref().map(|r| &r.category),
                e.delivery_stuck.is_some(),
            )
                .hash(&mut h);
        }
    }
    h.finish()
}

/// The last [`decision_key`] seen of each worker object.
#[derive(Debug, Default)]
pub struct ReportFilter {
    seen: Mutex<HashMap<(String, String), u64>>,
}

impl ReportFilter {
    /// Whether this version of `w` is worth a reconcile: the first seen, or one whose
    /// [`decision_key`] changed. Bounded by the number of worker objects (names are reused).
    pub fn admit(&self, w: &KinesisWorker) -> bool {
        let key = (w.namespace().unwrap_or_default(), w.name_any());
        let hash = decision_key(w);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.insert(key, hash) != Some(hash)
    }
}

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::{
        CheckpointPosition, DeliveryStuck, Fence, Holder, KinesisWorkerSpec, KinesisWorkerStatus,
        ReadError, WorkerShard,
    };

    use super::*;

    fn worker() -> KinesisWorker {
        let mut w = KinesisWorker::new(
            "orders-worker-0",
            KinesisWorkerSpec {
                ingester_uid: "u".into(),
                fences: vec![],
            },
        );
        w.metadata.namespace = Some("ns".into());
        w.metadata.uid = Some("w-uid".into());
        w.status = Some(KinesisWorkerStatus {
            holder: Some(Holder {
                pod_uid: "p".into(),
                incarnation: "i".into(),
            }),
            renew_time: Some("2026-11-27T04:00:00Z".into()),
            shards: vec![WorkerShard::new("s0", 3)],
            shards_held: 1,
            ..Default::default()
        });
        w
    }

    fn edit(f: impl FnOnce(&mut KinesisWorkerStatus)) -> KinesisWorker {
        let mut w = worker();
        if let Some(s) = w.status.as_mut() {
            f(s);
        }
        w
    }

    #[test]
    fn progress_alone_does_not_trigger_a_reconcile() {
        let filter = ReportFilter::default();
        assert!(filter.admit(&worker()), "the first report of a worker");
        let progress = edit(|s| {
            s.renew_time = Some("2026-11-27T04:00:06Z".into());
            let e = &mut s.shards[0];
            e.position = Some(CheckpointPosition {
                sequence: "42".into(),
                sub_sequence: None,
            });
            e.millis_behind_latest = Some(1200);
            e.last_delivery = Some("2026-11-27T04:00:05Z".into());
            e.waiting_seconds = Some(2);
        });
        assert!(
            !filter.admit(&progress),
            "positions, lag, delivery times, renewTime"
        );
        assert!(!filter.admit(&worker()));
    }

    #[test]
    fn what_the_operator_decides_on_triggers_at_once() {
        let decisive: Vec<(&str, KinesisWorker)> = vec![
            ("released", edit(|s| s.shards[0].released = true)),
            ("finished", edit(|s| s.shards[0].finished = true)),
            (
                "a new entry",
                edit(|s| s.shards.push(WorkerShard::new("s1", 1))),
            ),
            ("another epoch", edit(|s| s.shards[0].epoch = 4)),
            (
                "a new holder",
                edit(|s| {
                    s.holder = Some(Holder {
                        pod_uid: "p2".into(),
                        incarnation: "j".into(),
                    });
                }),
            ),
            ("stopped", edit(|s| s.stopped = true)),
            (
                "delivery stuck",
                edit(|s| {
                    s.shards[0].delivery_stuck = Some(DeliveryStuck {
                        stalled_seconds: 31,
                        threshold_seconds: 30,
                        sink_error: None,
                        sink: None,
                    });
                }),
            ),
            (
                "a read error",
                edit(|s| {
                    s.shards[0].read_error = Some(ReadError {
                        category: "access_denied".into(),
                        operation: "GetRecords".into(),
                        message: "denied".into(),
                        failing_seconds: 31,
                    });
                }),
            ),
            ("no status", {
                let mut w = worker();
                w.status = None;
                w
            }),
            ("a fence", {
                let mut w = worker();
                w.spec.fences.push(Fence {
                    shard_id: "s0".into(),
                    epoch: 3,
                    position: None,
                });
                w
            }),
            ("a label", {
                let mut w = worker();
                w.labels_mut().insert("x".into(), "y".into());
                w
            }),
            ("re-created", {
                let mut w = worker();
                w.metadata.uid = Some("w-uid-2".into());
                w
            }),
        ];
        for (what, w) in decisive {
            let filter = ReportFilter::default();
            assert!(filter.admit(&worker()));
            assert!(filter.admit(&w), "{what} triggers a reconcile");
            assert!(!filter.admit(&w), "{what}: once");
        }
    }
}

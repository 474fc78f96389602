//! Conversions between the model's compact state and the API types (`kinesis-ingester-api`) that the protocol functions take and return.

use std::time::{Duration, Instant};

use kinesis_ingester_api::{
    AppliedReset, AssignedShard, CheckpointPosition, Fence, Holder, KinesisShardAssignmentSpec,
    KinesisWorker, KinesisWorkerSpec, KinesisWorkerStatus, ResetSpec, ShardRewind,
    StartingPositionType, WorkerShard, sequence::Position,
};
use kinesis_protocol::handoff::ListedShard;

use crate::model::Model;

/// The request id of the model's one rewind.
pub const REWIND_REQUEST: &str = "r1";

/// The model's rewind: every shard to TRIM_HORIZON.
pub fn rewind_spec() -> ResetSpec {
    ResetSpec {
        to: StartingPositionType::TrimHorizon,
        timestamp: None,
        request_id: REWIND_REQUEST.into(),
        shards: Vec::new(),
    }
}
use crate::state::{Entry, FenceC, Object, Pos, Row, Status, Table};

/// The ingester UID of every object.
pub const UID: &str = "ingester-uid";

/// A position as the CRDs store it.
pub fn cp(p: Pos) -> Option<CheckpointPosition> {
    (p > 0).then(|| CheckpointPosition {
        sequence: p.to_string(),
        sub_sequence: None,
    })
}

/// A stored position back; a malformed one (never written by the model) reads as none.
pub fn pos_of_cp(p: Option<&CheckpointPosition>) -> Pos {
    p.and_then(|p| p.sequence.parse().ok()).unwrap_or(0)
}

/// A position as the worker's tracker holds it.
pub fn position(p: Pos) -> Option<Position> {
    if p == 0 {
        return None;
    }
    p.to_string().parse().ok().map(Position::whole)
}

/// A tracker position back.
pub fn pos_of(p: Option<&Position>) -> Pos {
    p.and_then(|p| p.sequence.as_str().parse().ok())
        .unwrap_or(0)
}

impl Model {
    /// Shard `s`'s id.
    pub fn shard_name(&self, s: u8) -> &str {
        self.shards
            .get(usize::from(s))
            .map_or("?", |d| d.name.as_str())
    }

    /// Worker `w`'s name.
    pub fn worker_name(&self, w: u8) -> String {
        format!("w{w}")
    }

    pub fn shard_of(&self, name: &str) -> Option<u8> {
        self.shards
            .iter()
            .position(|d| d.name == name)
            .and_then(|i| u8::try_from(i).ok())
    }

    pub fn worker_of(&self, name: &str) -> Option<u8> {
        name.strip_prefix('w')?.parse().ok()
    }

    /// The operator's `now`, the same in every pass: a tick ages the timers instead.
    pub fn now(&self) -> Instant {
        self.base + Duration::from_secs(3600)
    }

    pub fn api_table(&self, t: &Table) -> KinesisShardAssignmentSpec {
        let shards = t
            .rows
            .iter()
            .map(|r| {
                let def = &self.shards[usize::from(r.shard)];
                AssignedShard {
                    shard_id: def.name.clone(),
                    parents: def
                        .parents
                        .iter()
                        .map(|p| self.shard_name(*p).to_owned())
                        .collect(),
                    starting_hash_key: Some(def.hash.0.clone()),
                    ending_hash_key: Some(def.hash.1.clone()),
                    owner: r.owner.map(|w| self.worker_name(w)),
                    epoch: i64::from(r.epoch),
                    draining: r.draining,
                    start_after: cp(r.start_after),
                    start_at_timestamp: None,
                    rewind: r.rewound.then_some(ShardRewind { timestamp: None }),
                }
            })
            .collect();
        KinesisShardAssignmentSpec {
            ingester_uid: UID.into(),
            stream_arn: None,
            consumer_arn: None,
            reset: t.reset.then(|| AppliedReset {
                request_id: REWIND_REQUEST.into(),
                ..AppliedReset::default()
            }),
            stream_created: None,
            shards,
            finished: t
                .finished
                .iter()
                .map(|s| self.shard_name(*s).to_owned())
                .collect(),
            shard_count: 0,
        }
    }

    pub fn table_of(&self, t: &KinesisShardAssignmentSpec) -> Table {
        let rows = t
            .shards
            .iter()
            .filter_map(|s| {
                Some(Row {
                    shard: self.shard_of(&s.shard_id)?,
                    owner: s.owner.as_deref().and_then(|o| self.worker_of(o)),
                    epoch: u8::try_from(s.epoch).ok()?,
                    draining: s.draining,
                    start_after: pos_of_cp(s.start_after.as_ref()),
                    rewound: s.rewind.is_some(),
                })
            })
            .collect();
        Table {
            rows,
            finished: t.finished.iter().filter_map(|s| self.shard_of(s)).collect(),
            reset: t.reset.is_some(),
        }
    }

    pub fn api_spec(&self, fences: &[FenceC]) -> KinesisWorkerSpec {
        KinesisWorkerSpec {
            ingester_uid: UID.into(),
            fences: fences
                .iter()
                .map(|f| Fence {
                    shard_id: self.shard_name(f.shard).to_owned(),
                    epoch: i64::from(f.epoch),
                    position: cp(f.position),
                })
                .collect(),
        }
    }

    pub fn fences_of(&self, fences: &[Fence]) -> Vec<FenceC> {
        fences
            .iter()
            .filter_map(|f| {
                Some(FenceC {
                    shard: self.shard_of(&f.shard_id)?,
                    epoch: u8::try_from(f.epoch).ok()?,
                    position: pos_of_cp(f.position.as_ref()),
                })
            })
            .collect()
    }

    pub fn api_status(&self, w: u8, s: &Status) -> KinesisWorkerStatus {
        KinesisWorkerStatus {
            holder: (s.holder > 0).then(|| Holder {
                pod_uid: format!("pod-{}", self.worker_name(w)),
                incarnation: s.holder.to_string(),
            }),
            renew_time: None,
            stopped: false,
            shards_held: 0,
            shards: s
                .shards
                .iter()
                .map(|e| WorkerShard {
                    shard_id: self.shard_name(e.shard).to_owned(),
                    epoch: i64::from(e.epoch),
                    position: cp(e.position),
                    millis_behind_latest: None,
                    released: e.released,
                    finished: e.finished,
                    last_delivery: None,
                    delivery_stuck: None,
                    read_error: None,
                    waiting_seconds: None,
                })
                .collect(),
        }
    }

    /// A status back.
    pub fn status_of(&self, s: &KinesisWorkerStatus) -> Status {
        Status {
            holder: s
                .holder
                .as_ref()
                .and_then(|h| h.incarnation.parse().ok())
                .unwrap_or(0),
            shards: s
                .shards
                .iter()
                .filter_map(|e| {
                    Some(Entry {
                        shard: self.shard_of(&e.shard_id)?,
                        epoch: u8::try_from(e.epoch).ok()?,
                        position: pos_of_cp(e.position.as_ref()),
                        released: e.released,
                        finished: e.finished,
                    })
                })
                .collect(),
        }
    }

    pub fn api_worker(&self, w: u8, o: &Object) -> KinesisWorker {
        let mut k = KinesisWorker::new(&self.worker_name(w), self.api_spec(&o.fences));
        k.status = o.status.as_ref().map(|s| self.api_status(w, s));
        k
    }

    /// What ListShards returns: the parent alone (open) before the split; after it, the parent
    /// (closed) and its children.
    pub fn listed(&self, split: bool) -> Vec<ListedShard> {
        self.shards
            .iter()
            .filter(|d| split || d.parents.is_empty())
            .map(|d| ListedShard {
                shard_id: d.name.clone(),
                parents: d
                    .parents
                    .iter()
                    .map(|p| self.shard_name(*p).to_owned())
                    .collect(),
                hash_range: d.hash.clone(),
                closed: split && d.parents.is_empty(),
            })
            .collect()
    }
}

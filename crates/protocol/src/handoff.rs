//! The handoff protocol's pure steps (docs/design.md §3): absorb worker reports into the shard table, pick the shards to fence, merge the stream's topology, and give shards owners.
//!
//! Nothing here performs I/O. The reconciler calls these in order, writes fences before the
//! table (invariant I1), and writes the table with a `resourceVersion` precondition.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use kinesis_ingester_api::{AssignedShard, Fence, KinesisShardAssignmentSpec, KinesisWorker};

use crate::plan::assign;

mod recreated;
mod rewind;
mod transition;
pub use recreated::{reset_for_new_stream, stream_recreated};
pub use rewind::{RewindError, rewind, rewind_pending};
pub use transition::Transition;

/// How the operator sees a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Created, but no process has taken it over yet.
    NotStarted,
    /// Its object changed within the lease duration.
    Live,
    /// It released everything and stopped cleanly.
    Stopped,
    /// No change for the lease duration: presumed dead or partitioned.
    Expired,
}

/// A worker: its object and liveness.
#[derive(Clone, Debug)]
pub struct WorkerState {
    /// The `KinesisWorker` object.
    pub object: KinesisWorker,
    /// Liveness, from the operator's own clock.
    pub liveness: Liveness,
}

/// Workers by name.
pub type Workers = BTreeMap<String, WorkerState>;

/// Why a shard is fenced off its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FenceReason {
    /// The owner's lease expired.
    Expired,
    /// The owner stopped without releasing the shard.
    Stopped,
    /// The owner did not release a draining shard in time.
    DrainTimeout,
    /// The owner did not confirm a new shard in time.
    StartTimeout,
}

impl FenceReason {
    /// Bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Stopped => "stopped",
            Self::DrainTimeout => "drain_timeout",
            Self::StartTimeout => "start_timeout",
        }
    }
}

/// A fence to write before the shard may move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceCandidate {
    /// The owner being fenced.
    pub worker: String,
    /// The shard.
    pub shard: String,
    /// The owner's epoch.
    pub epoch: i64,
    /// Why.
    pub reason: FenceReason,
}

/// Expiry settings of the protocol (operator flags).
#[derive(Clone, Copy, Debug)]
pub struct Expiries {
    /// A draining shard must be released within this.
    pub drain: Duration,
    /// A newly assigned shard must be confirmed within this.
    pub start: Duration,
    /// A shard whose owner's object is missing (deleted by hand, or by a stale leader) moves
    /// only after this long, the worker lease: no fence can be written to a missing object, so
    /// the owner, which can no longer report, must have stopped itself first (it self-fences
    /// before its lease would expire).
    pub gone: Duration,
}

/// Timer kinds of one shard at one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKind {
    Drain,
    Start,
    Gone,
}

/// When each handoff state was first seen, in the operator's own clock. Restarting the operator
/// restarts every timer at its full value, which only delays expiries. Comparable and hashable,
/// so a model checker can keep it in its states (crates/protocol/tests/model).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Timers {
    since: BTreeMap<(String, i64, TimerKind), Instant>,
}

impl Timers {
    fn age(&mut self, shard: &str, epoch: i64, kind: TimerKind, now: Instant) -> Duration {
        let at = *self
            .since
            .entry((shard.to_owned(), epoch, kind))
            .or_insert(now);
        now.saturating_duration_since(at)
    }

    /// Ages every timer by `by`, as if `by` passed before `now`, keeping none older than
    /// `cap` (every expiry at most `cap` treats them alike). For a model checker that keeps
    /// time relative to a fixed `now`, so that its states do not grow with the clock.
    pub fn elapse(&mut self, now: Instant, by: Duration, cap: Duration) {
        for since in self.since.values_mut() {
            let age = (now.saturating_duration_since(*since) + by).min(cap);
            *since = now.checked_sub(age).unwrap_or(*since);
        }
    }

    /// Forgets the timers of `kinds` whose states no longer exist.
    fn retain(&mut self, kinds: &[TimerKind], live: &BTreeSet<(String, i64, TimerKind)>) {
        self.since
            .retain(|k, _| !kinds.contains(&k.2) || live.contains(k));
    }
}

/// Step 1: apply what owners reported. Finished shards leave the table, released and already
/// fenced ones lose their owner and keep the reported position as `startAfter`. A shard whose
/// owner's object is missing loses its owner once it has been missing for `expiries.gone`.
pub fn absorb_reports(
    table: &mut KinesisShardAssignmentSpec,
    workers: &Workers,
    timers: &mut Timers,
    expiries: Expiries,
    now: Instant,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut finished = Vec::new();
    let mut gone = BTreeSet::new();
    for shard in &mut table.shards {
        let Some(owner) = shard.owner.clone() else {
            continue;
        };
        let Some(worker) = workers.get(&owner) else {
            gone.insert((shard.shard_id.clone(), shard.epoch, TimerKind::Gone));
            if timers.age(&shard.shard_id, shard.epoch, TimerKind::Gone, now) >= expiries.gone {
                out.push(Transition::OwnerGone {
                    shard: shard.shard_id.clone(),
                    owner,
                });
                release(shard, None);
            }
            continue;
        };
        let entry = worker
            .object
            .status
            .as_ref()
            .and_then(|s| s.entry(&shard.shard_id, shard.epoch));
        let (id, owner) = (shard.shard_id.clone(), owner);
        if entry.is_some_and(|e| e.finished) {
            finished.push(id.clone());
            out.push(Transition::Finished { shard: id, owner });
        } else if entry.is_some_and(|e| e.released) {
            release(shard, entry.and_then(|e| e.position.clone()));
            out.push(Transition::Released { shard: id, owner });
        } else if let Some(fence) = worker.object.spec.fence(&shard.shard_id, shard.epoch) {
            // The fence holds the position: the worker drops a fenced shard from its status at
            // its next write, so a fence whose table write failed must not lose it.
            let position = fence
                .position
                .clone()
                .or_else(|| entry.and_then(|e| e.position.clone()));
            release(shard, position);
            out.push(Transition::AlreadyFenced { shard: id, owner });
        }
    }
    finish(table, &finished);
    timers.retain(&[TimerKind::Gone], &gone);
    out
}

fn release(shard: &mut AssignedShard, position: Option<kinesis_ingester_api::CheckpointPosition>) {
    shard.owner = None;
    shard.draining = false;
    if position.is_some() {
        shard.start_after = position;
    }
}

fn finish(table: &mut KinesisShardAssignmentSpec, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    table.shards.retain(|s| !ids.contains(&s.shard_id));
    for id in ids {
        if !table.finished.contains(id) {
            table.finished.push(id.clone());
        }
    }
    table.finished.sort();
}

/// Step 2: shards whose owner must be fenced before they can move: the owner expired or
/// stopped without releasing, a drain took too long, or a new owner never confirmed.
pub fn fence_candidates(
    table: &KinesisShardAssignmentSpec,
    workers: &Workers,
    timers: &mut Timers,
    expiries: Expiries,
    now: Instant,
) -> Vec<FenceCandidate> {
    let mut out = Vec::new();
    let mut live_timers = BTreeSet::new();
    for shard in &table.shards {
        let Some(owner) = &shard.owner else { continue };
        let Some(worker) = workers.get(owner) else {
            continue;
        };
        let candidate = |reason| FenceCandidate {
            worker: owner.clone(),
            shard: shard.shard_id.clone(),
            epoch: shard.epoch,
            reason,
        };
        match worker.liveness {
            Liveness::Expired => {
                out.push(candidate(FenceReason::Expired));
                continue;
            }
            Liveness::Stopped => {
                out.push(candidate(FenceReason::Stopped));
                continue;
            }
            Liveness::Live | Liveness::NotStarted => {}
        }
        let confirmed = worker
            .object
            .status
            .as_ref()
            .is_some_and(|s| s.entry(&shard.shard_id, shard.epoch).is_some());
        let kind = if shard.draining {
            Some((TimerKind::Drain, expiries.drain, FenceReason::DrainTimeout))
        } else if !confirmed {
            Some((TimerKind::Start, expiries.start, FenceReason::StartTimeout))
        } else {
            None
        };
        if let Some((kind, limit, reason)) = kind {
            live_timers.insert((shard.shard_id.clone(), shard.epoch, kind));
            if timers.age(&shard.shard_id, shard.epoch, kind, now) >= limit {
                out.push(candidate(reason));
            }
        }
    }
    timers.retain(&[TimerKind::Drain, TimerKind::Start], &live_timers);
    out
}

/// The fences to write into `worker`'s spec (as just read) to fence `candidate`: the new fence,
/// holding the last position the worker stored for that epoch, plus every earlier fence still
/// needed. A fence is needed while its shard is in the table (at any epoch) or in its finished
/// list: a worker whose table watch lags may still be shown the fenced epoch, and only the
/// fence keeps it from reading and delivering that shard again beside its new owner, or after
/// it finished (docs/model-check.md, found by the model checker). A fence covers its epoch and
/// every lower one, so one per shard is enough: the new one replaces an older one of its shard.
/// A fence goes once its shard has left the table and the finished list (past retention), so a
/// worker's fences are at most the table's shards and finished ids.
pub fn fences_with(
    worker: &KinesisWorker,
    candidate: &FenceCandidate,
    table: &KinesisShardAssignmentSpec,
) -> Vec<Fence> {
    let position = worker
        .status
        .as_ref()
        .and_then(|s| s.entry(&candidate.shard, candidate.epoch))
        .and_then(|e| e.position.clone());
    let needed = |f: &Fence| {
        f.shard_id != candidate.shard
            && (table.finished.contains(&f.shard_id)
                || table.shards.iter().any(|s| s.shard_id == f.shard_id))
    };
    let mut fences: Vec<Fence> = worker
        .spec
        .fences
        .iter()
        .filter(|f| needed(f))
        .cloned()
        .collect();
    fences.push(Fence {
        shard_id: candidate.shard.clone(),
        epoch: candidate.epoch,
        position,
    });
    fences
}

/// Step 3 (after a fence write succeeded, or the fence was found written): the shard loses its
/// owner and resumes after the fenced owner's last stored position, read from the object the
/// fence was written to, else the position the fence holds. A shard
/// the owner reported finished leaves the table.
pub fn apply_fence(
    table: &mut KinesisShardAssignmentSpec,
    fenced: &KinesisWorker,
    shard_id: &str,
    epoch: i64,
) {
    let entry = fenced
        .status
        .as_ref()
        .and_then(|s| s.entry(shard_id, epoch))
        .cloned();
    if entry.as_ref().is_some_and(|e| e.finished) {
        finish(table, &[shard_id.to_owned()]);
        return;
    }
    if let Some(shard) = table
        .shards
        .iter_mut()
        .find(|s| s.shard_id == shard_id && s.epoch == epoch)
    {
        // The fence may have been written by another pass (a deposed leader's) after which the
        // worker dropped the entry: the fence still holds the position.
        let fenced_at = fenced
            .spec
            .fence(shard_id, epoch)
            .and_then(|f| f.position.clone());
        release(shard, entry.and_then(|e| e.position).or(fenced_at));
    }
}

/// A shard as ListShards describes it, in plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedShard {
    /// Shard id.
    pub shard_id: String,
    /// Parents.
    pub parents: Vec<String>,
    /// Hash key range, decimal.
    pub hash_range: (String, String),
    /// Closed (has an ending sequence number).
    pub closed: bool,
}

/// Step 4: add shards the stream lists and the table does not know; forget finished ids and
/// ownerless entries the stream no longer lists (past retention). With `pin_latest` (the
/// ingester starts at `Latest`; the time of this pass), every shard that has no position yet
/// is pinned to that time, so each later owner reads from it instead of from "latest" again.
pub fn merge_topology(
    table: &mut KinesisShardAssignmentSpec,
    listed: &[ListedShard],
    pin_latest: Option<jiff::Timestamp>,
) -> Vec<Transition> {
    let ids: BTreeSet<&str> = listed.iter().map(|s| s.shard_id.as_str()).collect();
    table.finished.retain(|id| ids.contains(id.as_str()));
    table
        .shards
        .retain(|s| s.owner.is_some() || ids.contains(s.shard_id.as_str()));
    let mut out = Vec::new();
    for s in listed {
        let known = table.finished.contains(&s.shard_id)
            || table.shards.iter().any(|t| t.shard_id == s.shard_id);
        if known {
            continue;
        }
        table.shards.push(AssignedShard {
            shard_id: s.shard_id.clone(),
            parents: s.parents.clone(),
            starting_hash_key: Some(s.hash_range.0.clone()),
            ending_hash_key: Some(s.hash_range.1.clone()),
            owner: None,
            epoch: 0,
            draining: false,
            start_after: None,
            start_at_timestamp: None,
            rewind: None,
        });
        out.push(Transition::Discovered {
            shard: s.shard_id.clone(),
        });
    }
    table.shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    if let Some(now) = pin_latest {
        for s in &mut table.shards {
            if s.start_after.is_none() && s.start_at_timestamp.is_none() {
                s.start_at_timestamp = Some(now.to_string());
            }
        }
    }
    out
}

/// Shards that may be read now: with `strict_order`, every parent still in the table must
/// be finished first (a parent that is finished or no longer listed has left the table).
pub fn eligible(table: &KinesisShardAssignmentSpec, strict_order: bool) -> Vec<String> {
    let open: BTreeSet<&str> = table.shards.iter().map(|s| s.shard_id.as_str()).collect();
    table
        .shards
        .iter()
        .filter(|s| !strict_order || s.parents.iter().all(|p| !open.contains(p.as_str())))
        .map(|s| s.shard_id.clone())
        .collect()
}

/// Step 5: give every eligible shard an owner among `assignable` (live workers with an ordinal
/// below the desired count), balanced and with the fewest moves. An unowned shard gets its new
/// owner at once (epoch + 1); a shard held by another live worker is marked draining, at most
/// `max_handoffs` at a time, and moves once its owner releases it.
pub fn plan_owners(
    table: &mut KinesisShardAssignmentSpec,
    assignable: &[String],
    workers: &Workers,
    strict_order: bool,
    max_handoffs: usize,
) -> Vec<Transition> {
    let eligible = eligible(table, strict_order);
    let draining: BTreeSet<String> = table
        .shards
        .iter()
        .filter(|s| s.draining)
        .map(|s| s.shard_id.clone())
        .collect();
    let placeable: Vec<String> = eligible
        .iter()
        .filter(|s| !draining.contains(*s))
        .cloned()
        .collect();
    let current: BTreeMap<String, String> = table
        .shards
        .iter()
        .filter(|s| !s.draining)
        .filter_map(|s| Some((s.shard_id.clone(), s.owner.clone()?)))
        .collect();
    let target = assign(&placeable, assignable, &current);
    let mut handoffs = draining.len();
    let mut out = Vec::new();
    for shard in &mut table.shards {
        let Some(to) = target.get(&shard.shard_id) else {
            continue;
        };
        match &shard.owner {
            Some(owner) if owner == to => {}
            None => {
                shard.owner = Some(to.clone());
                shard.epoch += 1;
                out.push(Transition::Assigned {
                    shard: shard.shard_id.clone(),
                    owner: to.clone(),
                    epoch: shard.epoch,
                });
            }
            Some(_) => out.extend(drain(shard, workers, &mut handoffs, max_handoffs)),
        }
    }
    out
}

/// Marks `shard` draining when its owner is live and fewer than `max_handoffs` handoffs run.
fn drain(
    shard: &mut AssignedShard,
    workers: &Workers,
    handoffs: &mut usize,
    max_handoffs: usize,
) -> Option<Transition> {
    let owner = shard.owner.as_ref()?;
    let live = workers
        .get(owner)
        .is_some_and(|w| w.liveness == Liveness::Live);
    if shard.draining || !live || *handoffs >= max_handoffs {
        return None;
    }
    *handoffs += 1;
    shard.draining = true;
    Some(Transition::Draining {
        shard: shard.shard_id.clone(),
        owner: owner.clone(),
    })
}

/// Suspension (`spec.suspend`): every shard a live worker owns is drained, as in a scale-down
/// to zero, at most `max_handoffs` at once (counting those already draining). Released shards
/// keep their position and wait without an owner, because no worker is assignable.
pub fn drain_all(
    table: &mut KinesisShardAssignmentSpec,
    workers: &Workers,
    max_handoffs: usize,
) -> Vec<Transition> {
    let mut handoffs = table.shards.iter().filter(|s| s.draining).count();
    table
        .shards
        .iter_mut()
        .filter_map(|shard| drain(shard, workers, &mut handoffs, max_handoffs))
        .collect()
}

/// Names of the workers that still own a shard in the table.
pub fn owning_workers(table: &KinesisShardAssignmentSpec) -> BTreeSet<String> {
    table
        .shards
        .iter()
        .filter_map(|s| s.owner.clone())
        .collect()
}

/// The shard table is kept under this many bytes of JSON, well below etcd's 1.5 MiB request
/// limit (about 3,000 active shards).
pub const MAX_TABLE_BYTES: usize = 1 << 20;

/// The serialized size of `table` when it is over [`MAX_TABLE_BYTES`].
pub fn too_large(table: &KinesisShardAssignmentSpec) -> Option<usize> {
    let bytes = serde_json::to_vec(table).map_or(usize::MAX, |b| b.len());
    (bytes > MAX_TABLE_BYTES).then_some(bytes)
}

/// The size [`too_large`] would find after this pass, bounded from above before any fence is
/// written: the table with the shards `listed` adds, every shard owned by a worker with the
/// longest name a worker can have (`longest_owner`). Fences and releases only shrink it.
pub fn too_large_after(
    table: &KinesisShardAssignmentSpec,
    listed: Option<&[ListedShard]>,
    longest_owner: &str,
) -> Option<usize> {
    let mut bound = table.clone();
    if let Some(listed) = listed {
        merge_topology(&mut bound, listed, Some(jiff::Timestamp::MAX));
    }
    for shard in &mut bound.shards {
        shard.owner = Some(longest_owner.to_owned());
        shard.draining = true;
        shard.epoch = shard.epoch.max(i64::MAX / 2);
    }
    too_large(&bound)
}

/// Table writes are coalesced: at most one per this gap (docs/design.md §2.1), so a burst of
/// reports (a rebalance, many shards finishing) costs one write, not one per report.
pub const MIN_TABLE_WRITE_GAP: Duration = Duration::from_secs(2);

/// How long a pass must wait before it may plan and write the table again, after a write at
/// `last`; `None` when it may now. A waiting pass writes nothing, fences included, and comes
/// back after the wait.
pub fn table_write_wait(last: Option<Instant>, now: Instant) -> Option<Duration> {
    let due = last? + MIN_TABLE_WRITE_GAP;
    (due > now).then(|| due.saturating_duration_since(now))
}

/// `max(1, 10 % of the eligible shards)`: how many shards may be draining at once.
pub fn max_handoffs(eligible: usize) -> usize {
    (eligible / 10).max(1)
}

#[cfg(test)]
mod tests;

//! A stream deleted and created again under the same name (design §4.5): how the table notices
//! and how it is reset.

use kinesis_ingester_api::{AssignedShard, KinesisShardAssignmentSpec};

use super::{ListedShard, Transition, Workers};

/// Whether `listed_created`, the creation time of the stream as listed now, says the table's
/// positions belong to another stream of the same name (design §4.5). A table that does not
/// know its stream's creation time (written before it was recorded) is taken as the same.
pub fn stream_recreated(table: &KinesisShardAssignmentSpec, listed_created: Option<&str>) -> bool {
    matches!((table.stream_created.as_deref(), listed_created), (Some(a), Some(b)) if a != b)
}

/// Resets the table for a stream deleted and created again under the same name (design §4.5):
/// its old sequence numbers mean nothing. The table then holds exactly the shards of `listed`,
/// with no owner, no position and nothing finished, all at one epoch above every epoch the table,
/// any worker's report or any fence holds: no report about the old stream can ever be read as one
/// about the new, and every current owner finds its shard gone from the table and stops reading
/// it. Each shard is then read from `startingPosition` (`pin_latest` as in [`merge_topology`]).
pub fn reset_for_new_stream(
    table: &mut KinesisShardAssignmentSpec,
    listed: &[ListedShard],
    listed_created: &str,
    workers: &Workers,
    pin_latest: Option<jiff::Timestamp>,
) -> Transition {
    let floor = epoch_floor(table, workers);
    let was = table.stream_created.clone().unwrap_or_default();
    table.finished.clear();
    table.shards = listed
        .iter()
        .map(|s| AssignedShard {
            start_at_timestamp: pin_latest.map(|t| t.to_string()),
            ..fresh_entry(s, floor)
        })
        .collect();
    table.shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    table.stream_created = Some(listed_created.to_owned());
    Transition::StreamRecreated {
        shards: table.shards.len(),
        was,
        now: listed_created.to_owned(),
    }
}

/// One above every epoch the table, any worker's report or any fence holds: an entry at this
/// epoch can never be mistaken for an earlier one, whoever reports about it.
pub(super) fn epoch_floor(table: &KinesisShardAssignmentSpec, workers: &Workers) -> i64 {
    let reported = workers.values().flat_map(|w| {
        let status = w
            .object
            .status
            .iter()
            .flat_map(|s| s.shards.iter().map(|e| e.epoch));
        status.chain(w.object.spec.fences.iter().map(|f| f.epoch))
    });
    table
        .shards
        .iter()
        .map(|s| s.epoch)
        .chain(reported)
        .max()
        .unwrap_or(0)
        .saturating_add(1)
}

/// A table entry for listed shard `s` at `epoch`: no owner, no position.
pub(super) fn fresh_entry(s: &ListedShard, epoch: i64) -> AssignedShard {
    AssignedShard {
        shard_id: s.shard_id.clone(),
        parents: s.parents.clone(),
        starting_hash_key: Some(s.hash_range.0.clone()),
        ending_hash_key: Some(s.hash_range.1.clone()),
        owner: None,
        epoch,
        draining: false,
        start_after: None,
        start_at_timestamp: None,
        rewind: None,
    }
}

#[cfg(test)]
mod tests;

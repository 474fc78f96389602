//! Which shards this worker reads, releases or pauses: a pure function of the shard table, its fences and whether it is self-fenced.

use std::collections::BTreeMap;

use kinesis_ingester_api::{
    AssignedShard, CheckpointPosition, KinesisShardAssignmentSpec, KinesisWorkerSpec, ShardRewind,
};

use kinesis_ingester_api::{StartAt, sequence::Position};

/// What to do with an owned shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Read it.
    Read,
    /// Stop reading, flush, and acknowledge with the final position (`draining: true`).
    Release,
    /// Keep it, but do not read: this worker is self-fenced.
    Pause,
}

/// A shard the table gives this worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    /// The table's epoch for it.
    pub epoch: i64,
    /// What to do.
    pub want: Want,
    /// Its hash key range, inclusive.
    pub hash_range: (u128, u128),
    /// The table's start position.
    pub start_after: Option<Position>,
    /// Whether one of its parents is in the table or finished (it then starts at TRIM_HORIZON).
    pub known_parent: bool,
    /// For `Latest`: when the operator pinned the shard, in ms since the Unix epoch.
    pub pinned_at_ms: Option<i64>,
    /// Set by a rewind: where to start without a checkpoint, over the other rules.
    pub rewind: Option<StartAt>,
}

/// The shards `table` gives worker `me` at an epoch its fences do not cover. None while `me` is
/// self-fenced would lose their state, so they are then all [`Want::Pause`].
pub fn desired(
    table: &KinesisShardAssignmentSpec,
    spec: &KinesisWorkerSpec,
    me: &str,
    self_fenced: bool,
) -> BTreeMap<String, Owned> {
    let known =
        |id: &String| table.finished.contains(id) || table.shards.iter().any(|s| &s.shard_id == id);
    table
        .shards
        .iter()
        .filter(|s| s.owner.as_deref() == Some(me) && !spec.is_fenced(&s.shard_id, s.epoch))
        .map(|s| {
            let want = match (self_fenced, s.draining) {
                (true, _) => Want::Pause,
                (false, true) => Want::Release,
                (false, false) => Want::Read,
            };
            let owned = Owned {
                epoch: s.epoch,
                want,
                hash_range: hash_range(s),
                start_after: s.start_after.as_ref().and_then(to_position),
                known_parent: s.parents.iter().any(known),
                pinned_at_ms: s
                    .start_at_timestamp
                    .as_deref()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(jiff::Timestamp::as_millisecond),
                rewind: s.rewind.as_ref().map(rewind_start),
            };
            (s.shard_id.clone(), owned)
        })
        .collect()
}

/// Where a rewound shard starts: at its timestamp, or at TRIM_HORIZON without one (or with one
/// that does not parse, which admission and the operator never write).
pub fn rewind_start(r: &ShardRewind) -> StartAt {
    r.timestamp
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(StartAt::TrimHorizon, |t| {
            StartAt::AtTimestamp(t.as_millisecond())
        })
}

/// The shard's hash key range; the full range when absent or unparsable.
pub fn hash_range(shard: &AssignedShard) -> (u128, u128) {
    let parse =
        |k: &Option<String>, default| k.as_deref().and_then(|k| k.parse().ok()).unwrap_or(default);
    (
        parse(&shard.starting_hash_key, 0),
        parse(&shard.ending_hash_key, u128::MAX),
    )
}

/// A table or status position; `None` when its sequence number is not a decimal integer.
pub fn to_position(p: &CheckpointPosition) -> Option<Position> {
    Some(Position {
        sequence: p.sequence.parse().ok()?,
        sub_sequence: p.sub_sequence,
    })
}

/// Where a newly owned shard starts (docs/design.md §2.3): after this worker's own checkpoint
/// for that epoch (`stored`), else after the table's `startAfter`, else where a rewind put it
/// (§4.7), else at TRIM_HORIZON when a parent is known, else at the spec's starting position, where `Latest` means the time the
/// operator pinned the shard (never "latest" again after a handoff). Returns the checkpoint to
/// resume after, if any, and the start used without one.
pub fn start_position(
    owned: &Owned,
    stored: Option<&Position>,
    default: &StartAt,
) -> (Option<Position>, StartAt) {
    let resume = stored.or(owned.start_after.as_ref()).cloned();
    if let Some(rewind) = &owned.rewind {
        return (resume, rewind.clone());
    }
    let start = match (owned.known_parent, default, owned.pinned_at_ms) {
        (true, _, _) => StartAt::TrimHorizon,
        (false, StartAt::Latest, Some(ms)) => StartAt::AtTimestamp(ms),
        (false, default, _) => default.clone(),
    };
    (resume, start)
}

#[cfg(test)]
mod tests {
    use kinesis_ingester_api::Fence;

    use super::*;

    fn shard(id: &str, owner: &str, epoch: i64) -> AssignedShard {
        AssignedShard {
            shard_id: id.into(),
            parents: vec![],
            starting_hash_key: None,
            ending_hash_key: None,
            owner: Some(owner.into()),
            epoch,
            draining: false,
            start_after: None,
            start_at_timestamp: None,
            rewind: None,
        }
    }

    fn table(shards: Vec<AssignedShard>) -> KinesisShardAssignmentSpec {
        KinesisShardAssignmentSpec {
            ingester_uid: "u".into(),
            shards,
            ..Default::default()
        }
    }

    fn pos(seq: &str) -> Position {
        Position::whole(seq.parse().expect("seq"))
    }

    #[test]
    fn only_own_unfenced_shards_are_owned_with_their_draining_flag() {
        let mut draining = shard("s2", "w0", 3);
        draining.draining = true;
        let t = table(vec![
            shard("s0", "w0", 1),
            shard("s1", "w1", 1),
            draining,
            shard("s3", "w0", 2),
            AssignedShard {
                owner: None,
                ..shard("s4", "", 0)
            },
        ]);
        let spec = KinesisWorkerSpec {
            ingester_uid: "u".into(),
            fences: vec![Fence {
                shard_id: "s3".into(),
                epoch: 2,
                position: None,
            }],
        };
        let owned = desired(&t, &spec, "w0", false);
        let got: Vec<_> = owned
            .iter()
            .map(|(id, o)| (id.as_str(), o.epoch, o.want))
            .collect();
        assert_eq!(got, [("s0", 1, Want::Read), ("s2", 3, Want::Release)]);

        // A fence at a lower epoch does not cover a later assignment.
        let t = table(vec![shard("s3", "w0", 3)]);
        assert_eq!(desired(&t, &spec, "w0", false)["s3"].want, Want::Read);
    }

    #[test]
    fn a_self_fenced_worker_pauses_every_owned_shard() {
        let mut draining = shard("s1", "w0", 1);
        draining.draining = true;
        let t = table(vec![shard("s0", "w0", 1), draining]);
        let owned = desired(&t, &KinesisWorkerSpec::default(), "w0", true);
        assert!(owned.values().all(|o| o.want == Want::Pause));
        assert_eq!(owned.len(), 2);
    }

    #[test]
    fn start_positions_follow_the_checkpoint_rules() {
        let mut child = shard("c", "w0", 1);
        child.parents = vec!["p".into()];
        child.starting_hash_key = Some("10".into());
        child.ending_hash_key = Some("20".into());
        let mut t = table(vec![child.clone()]);
        let default = StartAt::Latest;

        // Parent neither listed nor finished: the spec's starting position.
        let o = desired(&t, &KinesisWorkerSpec::default(), "w0", false)["c"].clone();
        assert_eq!(o.hash_range, (10, 20));
        assert_eq!(start_position(&o, None, &default), (None, StartAt::Latest));

        // Parent finished: TRIM_HORIZON.
        t.finished = vec!["p".into()];
        let o = desired(&t, &KinesisWorkerSpec::default(), "w0", false)["c"].clone();
        assert_eq!(
            start_position(&o, None, &default),
            (None, StartAt::TrimHorizon)
        );

        // The table's startAfter wins over both.
        t.shards[0].start_after = Some(CheckpointPosition {
            sequence: "42".into(),
            sub_sequence: Some(2),
        });
        let o = desired(&t, &KinesisWorkerSpec::default(), "w0", false)["c"].clone();
        let want = Position {
            sequence: "42".parse().expect("seq"),
            sub_sequence: Some(2),
        };
        assert_eq!(start_position(&o, None, &default).0, Some(want));

        // This worker's own checkpoint at that epoch wins over startAfter.
        assert_eq!(
            start_position(&o, Some(&pos("50")), &default).0,
            Some(pos("50"))
        );
    }

    /// Defect 9.1.4: the next owner of a `Latest` shard without a position reads from when the
    /// table pinned it, not from "latest" at its own start.
    #[test]
    fn a_pinned_latest_shard_starts_at_the_pin() {
        let mut s = shard("s", "w0", 2);
        s.start_at_timestamp = Some("2026-11-23T15:00:00Z".into());
        let t = table(vec![s]);
        let o = desired(&t, &KinesisWorkerSpec::default(), "w0", false)["s"].clone();
        assert_eq!(
            start_position(&o, None, &StartAt::Latest),
            (None, StartAt::AtTimestamp(1_795_446_000_000))
        );
        // Other starting positions keep their meaning.
        assert_eq!(
            start_position(&o, None, &StartAt::TrimHorizon).1,
            StartAt::TrimHorizon
        );
    }

    /// A rewind (§4.7) wins over the parent rule and the starting position, not over a
    /// checkpoint taken after it.
    #[test]
    fn a_rewound_shard_starts_where_the_rewind_put_it() {
        let mut s = shard("c", "w0", 3);
        s.parents = vec!["p".into()];
        s.start_at_timestamp = Some("2026-11-23T15:00:00Z".into());
        s.rewind = Some(ShardRewind {
            timestamp: Some("2026-11-23T16:00:00Z".into()),
        });
        let mut t = table(vec![s]);
        t.finished = vec!["p".into()];
        let o = desired(&t, &KinesisWorkerSpec::default(), "w0", false)["c"].clone();
        let at = StartAt::AtTimestamp(1_795_449_600_000);
        assert_eq!(
            start_position(&o, None, &StartAt::Latest),
            (None, at.clone())
        );
        assert_eq!(start_position(&o, None, &StartAt::TrimHorizon).1, at);
        assert_eq!(
            start_position(&o, Some(&pos("7")), &StartAt::Latest),
            (Some(pos("7")), at)
        );
        // Without a timestamp: TRIM_HORIZON, whatever the spec says.
        t.shards[0].rewind = Some(ShardRewind { timestamp: None });
        let o = desired(&t, &KinesisWorkerSpec::default(), "w0", false)["c"].clone();
        assert_eq!(
            start_position(&o, None, &StartAt::Latest),
            (None, StartAt::TrimHorizon)
        );
    }

    #[test]
    fn a_missing_hash_range_is_the_full_range() {
        assert_eq!(hash_range(&shard("s", "w", 1)), (0, u128::MAX));
    }
}

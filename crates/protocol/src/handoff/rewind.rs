//! Rewinding a fleet (`spec.reset`, design §4.7): every shard, or some, restarts from another
//! position, once per request.

use kinesis_ingester_api::{
    AppliedReset, KinesisShardAssignmentSpec, ResetSpec, ShardRewind, StartingPositionType,
    count_i32,
};

use super::{
    ListedShard, Transition, Workers,
    recreated::{epoch_floor, fresh_entry},
};

/// Why a reset cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewindError {
    /// `timestamp` is not an RFC 3339 time (admission checks the format; this is the backstop).
    #[error(
        "spec.reset.timestamp {0:?} is not an RFC 3339 time such as 2026-11-23T15:00:00Z: fix it and change spec.reset.requestId"
    )]
    BadTimestamp(String),
}

/// Whether `reset` is still to be applied to `table`: its request id is not the one recorded.
pub fn rewind_pending(table: &KinesisShardAssignmentSpec, reset: &ResetSpec) -> bool {
    table.reset.as_ref().map(|r| r.request_id.as_str()) != Some(reset.request_id.as_str())
}

/// Applies `reset` to `table` (design §4.7) and records it there, in the same write as the
/// positions, so it is applied exactly once. Each shard it names, or every shard the stream lists
/// (finished parents too), gets a fresh entry: no owner, no position, nothing finished, at one
/// epoch above every epoch anyone holds, so the current owners stop and nothing they report any
/// more moves a position; the next owners start where the reset says. Finished parents being
/// entries again holds their children back until they are read again (`strictOrder`). A shard
/// named but not listed is recorded as unknown, not rewound. `now` is the time `Latest` means.
pub fn rewind(
    table: &mut KinesisShardAssignmentSpec,
    listed: &[ListedShard],
    reset: &ResetSpec,
    workers: &Workers,
    now: jiff::Timestamp,
) -> Result<Transition, RewindError> {
    let (rewind, to) = match reset.to {
        StartingPositionType::TrimHorizon => {
            (ShardRewind { timestamp: None }, "TrimHorizon".to_owned())
        }
        StartingPositionType::Latest => (
            ShardRewind {
                timestamp: Some(now.to_string()),
            },
            format!("Latest ({now})"),
        ),
        StartingPositionType::AtTimestamp => {
            let raw = reset.timestamp.clone().unwrap_or_default();
            let at: jiff::Timestamp = raw.parse().map_err(|_| RewindError::BadTimestamp(raw))?;
            (
                ShardRewind {
                    timestamp: Some(at.to_string()),
                },
                format!("AtTimestamp {at}"),
            )
        }
    };
    let floor = epoch_floor(table, workers);
    let entry = |s: &ListedShard| {
        let mut e = fresh_entry(s, floor);
        e.rewind = Some(rewind.clone());
        e
    };
    let mut unknown = Vec::new();
    let rewound = if reset.shards.is_empty() {
        table.finished.clear();
        table.shards = listed.iter().map(entry).collect();
        table.shards.len()
    } else {
        let mut named: Vec<&String> = reset.shards.iter().collect();
        named.sort();
        named.dedup();
        let mut rewound = 0;
        for id in named {
            let Some(s) = listed.iter().find(|s| &s.shard_id == id) else {
                unknown.push(id.clone());
                continue;
            };
            table.finished.retain(|f| f != id);
            match table.shards.iter_mut().find(|e| &e.shard_id == id) {
                Some(e) => *e = entry(s),
                None => table.shards.push(entry(s)),
            }
            rewound += 1;
        }
        rewound
    };
    table.shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    table.reset = Some(AppliedReset {
        request_id: reset.request_id.clone(),
        applied_at: now.to_string(),
        to: to.clone(),
        shards: count_i32(rewound),
        unknown_shards: unknown.clone(),
    });
    Ok(Transition::Rewound {
        request_id: reset.request_id.clone(),
        shards: rewound,
        to,
        unknown,
    })
}

#[cfg(test)]
mod tests;

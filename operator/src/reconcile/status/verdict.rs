//! The three conditions, each judged from the survey of the shard table: the first rule that
//! holds gives the condition's status, reason and message.

use super::{READY_REASONS, StatusInput, survey::Survey, survey::read_errors_message};

/// A condition's status, reason and message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Verdict {
    pub(super) status: bool,
    pub(super) reason: &'static str,
    pub(super) message: String,
}

fn verdict(status: bool, reason: &'static str, message: String) -> Verdict {
    Verdict {
        status,
        reason,
        message,
    }
}

/// Workers by liveness, as the conditions need them.
#[derive(Debug)]
pub(super) struct Fleet {
    pub(super) live: i64,
    pub(super) expired: i64,
}

/// `Ready`: every readable shard read by a live worker, none failing, the sink delivering. Never
/// true while the stream is unknown, the fleet short, or records wait undelivered.
pub(super) fn ready(input: &StatusInput<'_>, s: &Survey<'_>, fleet: &Fleet) -> Verdict {
    let handing_back = s.reading + s.draining;
    if input.suspended {
        let message = if handing_back > 0 {
            format!("spec.suspend is true: {handing_back} shards are being handed back")
        } else {
            "spec.suspend is true: no worker reads, every position is kept; spec.suspend: false resumes from them".to_owned()
        };
        verdict(false, "Suspended", message)
    } else if let Some(p) = &input.problem {
        let reason = READY_REASONS
            .into_iter()
            .find(|r| *r == p.reason)
            .unwrap_or("StreamUnavailable");
        verdict(false, reason, p.message.clone())
    } else if input.table.is_none() {
        verdict(
            false,
            "ShardsNotReading",
            "the stream's shards were not read yet".to_owned(),
        )
    } else if fleet.live < i64::from(input.desired) {
        verdict(
            false,
            "WorkersNotReady",
            format!("{} of {} workers are live", fleet.live, input.desired),
        )
    } else if s.reading < s.readable {
        verdict(
            false,
            "ShardsNotReading",
            format!(
                "{} of {} readable shards are being read",
                s.reading, s.readable
            ),
        )
    } else if !s.failing.is_empty() {
        verdict(false, "ReadErrors", read_errors_message(&s.failing))
    } else if s.stuck.shards > 0 {
        verdict(
            false,
            "NotDelivering",
            format!(
                "{} shards have records waiting and nothing delivered for {} (threshold {}s)",
                s.stuck.shards,
                s.stuck.stalled(),
                s.stuck.threshold_seconds
            ),
        )
    } else {
        verdict(
            true,
            "AllShardsReading",
            format!("{} shards read by {} workers", s.reading, fleet.live),
        )
    }
}

/// `Progressing`: shards moving, or the fleet scaling (or stopping, when suspended).
pub(super) fn progressing(input: &StatusInput<'_>, s: &Survey<'_>, fleet: &Fleet) -> Verdict {
    let handing_back = s.reading + s.draining;
    if input.suspended {
        if handing_back > 0 || input.ready_pods > 0 {
            verdict(
                true,
                "Suspending",
                format!(
                    "{handing_back} shards and {} worker pods to stop",
                    input.ready_pods
                ),
            )
        } else {
            verdict(false, "Suspended", "every worker has stopped".to_owned())
        }
    } else if s.draining > 0 || s.reading < s.readable {
        verdict(
            true,
            "Rebalancing",
            format!(
                "{} shards draining, {} waiting for an owner",
                s.draining,
                s.readable.saturating_sub(s.reading + s.draining)
            ),
        )
    } else if input.ready_pods != input.desired || fleet.live != i64::from(input.desired) {
        verdict(
            true,
            "Scaling",
            format!(
                "{} of {} worker pods ready",
                input.ready_pods, input.desired
            ),
        )
    } else {
        verdict(
            false,
            "Stable",
            "no handoff or scaling in progress".to_owned(),
        )
    }
}

/// `Degraded`: something a person should look at, the most urgent first.
pub(super) fn degraded(input: &StatusInput<'_>, s: &Survey<'_>, fleet: &Fleet) -> Verdict {
    if let Some(p) = &input.problem {
        verdict(true, p.reason, p.message.clone())
    } else if let Some(note) = &input.recreated {
        verdict(true, super::super::STREAM_RECREATED, note.clone())
    } else if !s.failing.is_empty() {
        verdict(true, "ReadErrors", read_errors_message(&s.failing))
    } else if s.stuck.shards > 0 {
        verdict(
            true,
            "SinkFailing",
            format!(
                "the sink delivered nothing of {} shards for up to {}; last sink errors: {}",
                s.stuck.shards,
                s.stuck.stalled(),
                s.stuck.errors()
            ),
        )
    } else if fleet.expired > 0 {
        verdict(
            true,
            "WorkerExpired",
            format!(
                "{} workers stopped reporting; their shards move to live workers",
                fleet.expired
            ),
        )
    } else {
        verdict(false, "AsExpected", "no problem found".to_owned())
    }
}

//! The pure part of a fleet worker: each held shard's phase and the transitions between them
//! (the per-shard decision against the table, the planned release of docs/design.md §3.5, the
//! hand-back), and the shutdown drain. The manager in `worker.rs` is their interpreter: it owns
//! the reader tasks, tokens and clocks, and carries out the [`Effects`] returned here.

use kinesis_ingester_api::{StartAt, sequence::Position};
use kinesis_protocol::{
    owned::{Owned, Want},
    report::{EntryState, Handed},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One shard held by this worker at one epoch.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) epoch: i64,
    /// Identifies the reader task; outcomes of an older one are ignored.
    pub(super) generation: u64,
    /// Where the reader started when there was no checkpoint.
    pub(super) start: StartAt,
    pub(super) phase: Phase,
}

#[derive(Debug)]
pub(super) enum Phase {
    Reading(CancellationToken),
    /// Self-fenced: not read, state kept.
    Paused {
        last_sent: Option<Position>,
    },
    /// Releasing: waiting for the reader to return.
    Stopping {
        cancel: CancellationToken,
        deadline: Instant,
    },
    /// Releasing: waiting for the sink to acknowledge `last_sent`.
    Draining {
        last_sent: Option<Position>,
        deadline: Instant,
    },
    /// Read to SHARD_END: waiting for the sink.
    Ending,
    /// Carried from the previous process, released or finished.
    Frozen {
        position: Option<Position>,
        handed: Handed,
    },
}

impl Phase {
    /// Whether the sink may deliver this shard's records: while it is read, and while a release
    /// or a shard end waits for the sink.
    pub(super) fn delivers(&self) -> bool {
        match self {
            Self::Reading(_) | Self::Stopping { .. } | Self::Draining { .. } | Self::Ending => true,
            Self::Paused { .. } | Self::Frozen { .. } => false,
        }
    }

    pub(super) fn cancel(&self) {
        if let Self::Reading(c) | Self::Stopping { cancel: c, .. } = self {
            c.cancel();
        }
    }

    pub(super) fn entry(&self) -> EntryState {
        match self {
            Self::Frozen { position, handed } => EntryState::Frozen {
                position: position.clone(),
                handed: *handed,
            },
            _ => EntryState::Live,
        }
    }
}

/// The shutdown drain: its deadline, and when every shard was first seen handed back.
#[derive(Debug)]
pub(super) struct Stopping {
    pub(super) deadline: Instant,
    /// When every shard was handed back; a write started after it carries the releases.
    written_after: Option<(Instant, bool)>,
}

/// What the shutdown drain does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StopStep {
    /// Keep going; `write_now`: every shard is handed back, write that at once.
    Wait { write_now: bool },
    /// A write that carries every release succeeded: stop.
    Done,
    /// The deadline passed first: stop with the last acknowledged positions.
    TimedOut,
}

impl Stopping {
    pub(super) fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            written_after: None,
        }
    }

    /// The next step at `now`, given whether every held shard is handed back.
    pub(super) fn step(&mut self, all_handed_back: bool, now: Instant) -> StopStep {
        let mut write_now = false;
        if all_handed_back {
            match self.written_after {
                None => {
                    self.written_after = Some((now, false));
                    write_now = true;
                }
                Some((_, true)) => return StopStep::Done,
                Some((_, false)) => {}
            }
        }
        if now >= self.deadline {
            return StopStep::TimedOut;
        }
        StopStep::Wait { write_now }
    }

    /// A write that started at `started` succeeded.
    pub(super) fn written(&mut self, started: Instant) {
        if let Some((since, done)) = &mut self.written_after
            && started >= *since
        {
            *done = true;
        }
    }
}

/// What the manager's reconcile does with one shard: a pure decision over the table's wish for it
/// (`None`: not this worker's at any epoch) and what this process holds of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ShardStep {
    /// Not wanted at the held epoch (another owner, a higher epoch, fenced, or gone): stop at
    /// once and forget it.
    Revoke,
    /// Read it: a new claim, or a shard carried from the previous process and never read here
    /// (from its carried position). `then_release`: it is to be handed on at once.
    Start { then_release: bool },
    /// Read again after a pause, from the acknowledged position.
    Resume,
    /// Begin the planned release (docs/design.md §3.5).
    Release,
    /// Release a carried shard never read by this process, at its carried position.
    ReleaseUnread,
    /// Stop reading and keep the state (the worker self-fenced).
    Pause,
    /// Nothing to do.
    Keep,
}

pub(super) fn shard_step(
    want: Option<&Owned>,
    held: Option<&Held>,
    reads: bool,
    stopping: bool,
) -> ShardStep {
    let Some(o) = want.filter(|o| held.is_none_or(|h| h.epoch == o.epoch)) else {
        return if held.is_some() {
            ShardStep::Revoke
        } else {
            ShardStep::Keep
        };
    };
    if stopping {
        // Shutting down: `release_all` hands back what is held; nothing starts.
        return ShardStep::Keep;
    }
    let Some(h) = held else {
        return match o.want {
            Want::Pause => ShardStep::Keep,
            _ if !reads => ShardStep::Keep,
            want => ShardStep::Start {
                then_release: want == Want::Release,
            },
        };
    };
    let kept = matches!(
        h.phase,
        Phase::Frozen {
            handed: Handed::Kept,
            ..
        }
    );
    match (o.want, &h.phase) {
        (Want::Read, Phase::Paused { .. }) if reads => ShardStep::Resume,
        (Want::Read, Phase::Frozen { .. }) if reads && kept => ShardStep::Start {
            then_release: false,
        },
        (Want::Release, Phase::Reading(_) | Phase::Paused { .. }) => ShardStep::Release,
        (Want::Release, Phase::Frozen { .. }) if kept => ShardStep::ReleaseUnread,
        (Want::Pause, Phase::Reading(_)) => ShardStep::Pause,
        _ => ShardStep::Keep,
    }
}

/// What a phase change asks of the manager.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Effects {
    /// Cancel the shard's reader.
    pub(super) cancel_reader: bool,
    /// Ask the sink to send what it holds now (a release or an end waits for it).
    pub(super) flush_sink: bool,
}

impl Effects {
    const CANCEL_READER: Self = Self {
        cancel_reader: true,
        flush_sink: false,
    };
    const FLUSH_SINK: Self = Self {
        cancel_reader: false,
        flush_sink: true,
    };
}

/// Release step 2 (docs/design.md §3.5) on one shard's phase: a reading shard stops its reader
/// and waits for it; a paused one waits for the sink at once. Every other phase stays.
pub(super) fn begin_release(phase: Phase, deadline: Instant) -> (Phase, Effects) {
    match phase {
        Phase::Reading(cancel) => (Phase::Stopping { cancel, deadline }, Effects::CANCEL_READER),
        Phase::Paused { last_sent } => (
            Phase::Draining {
                last_sent,
                deadline,
            },
            Effects::FLUSH_SINK,
        ),
        other => (other, Effects::default()),
    }
}

/// The shard's reader returned without reaching the shard's end, having sent up to
/// `last_sent`: a stopping shard drains; a reading one stopped on its own (the sink is gone)
/// and pauses. `.1` is whether the reader stopped on its own.
pub(super) fn reader_stopped(phase: Phase, last_sent: Option<Position>) -> (Phase, Effects, bool) {
    match phase {
        Phase::Stopping { deadline, .. } => (
            Phase::Draining {
                last_sent,
                deadline,
            },
            Effects::FLUSH_SINK,
            false,
        ),
        Phase::Reading(_) => (Phase::Paused { last_sent }, Effects::default(), true),
        Phase::Paused { .. } => (Phase::Paused { last_sent }, Effects::default(), false),
        other => (other, Effects::default(), false),
    }
}

/// Whether a draining or ending shard is handed back now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drain {
    /// Not in a phase that hands back.
    Idle,
    /// Wait for the sink (and ask it to send).
    Wait,
    /// Hand the shard back; `in_time`: everything it sent was acknowledged (else the deadline
    /// passed, and what is in flight may be delivered twice).
    HandBack { handed: Handed, in_time: bool },
}

/// The hand-back decision at `now`. `drained`: everything the reader sent is acknowledged, or
/// nothing of the shard is in flight and nothing will be sent; `finished`: its end was
/// delivered.
pub(super) fn drain(phase: &Phase, drained: bool, finished: bool, now: Instant) -> Drain {
    match phase {
        Phase::Draining { deadline, .. } => {
            if drained || now >= *deadline {
                Drain::HandBack {
                    handed: Handed::Released,
                    in_time: drained,
                }
            } else {
                Drain::Wait
            }
        }
        Phase::Ending if finished => Drain::HandBack {
            handed: Handed::Finished,
            in_time: true,
        },
        _ => Drain::Idle,
    }
}

#[cfg(test)]
mod tests;

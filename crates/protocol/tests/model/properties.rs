//! The properties the checker keeps (docs/model-check.md, "Properties") and their names.

use stateright::Property;

use crate::model::Model;
use crate::state::{State, violation};

/// Every property of the model: safety, liveness and examples.
pub fn all() -> Vec<Property<Model>> {
    vec![
        Property::always(CHECKPOINTS, |_, s: &State| flag(s, violation::REGRESS)),
        Property::always(FENCED_ACKS, |_, s: &State| {
            flag(s, violation::ACK_AFTER_FENCE)
        }),
        Property::always(FENCED_WRITES, |_, s: &State| {
            flag(s, violation::WRITE_AFTER_FENCE)
        }),
        Property::always(ONE_DELIVERER, |_, s: &State| {
            flag(s, violation::SHARED_DELIVERY)
        }),
        Property::always(ORDER, |_, s: &State| flag(s, violation::ORDER)),
        Property::always(FENCES_BOUNDED, |_, s: &State| {
            flag(s, violation::FENCES_UNBOUNDED)
        }),
        Property::always(NO_LOSS, |m: &Model, s| m.no_loss(s)),
        Property::always(REWIND_NO_LOSS, |m: &Model, s| m.rewind_no_loss(s)),
        // Bounded: a path that ends at the bound on handoffs, or at a broken safety property
        // (left to that property), is not a counterexample.
        Property::eventually(ALL_DELIVERED, |m: &Model, s: &State| {
            s.capped || m.broken(s) || m.all_delivered(s)
        }),
        Property::sometimes(EX_FENCE_WITHOUT_TABLE, |_, s: &State| {
            s.pass.is_none()
                && s.deposed.is_none()
                && s.table.rows.iter().any(|r| {
                    r.owner.is_some_and(|w| {
                        s.objects[usize::from(w)]
                            .as_ref()
                            .is_some_and(|o| o.fence(r.shard, r.epoch).is_some())
                    })
                })
        }),
        Property::sometimes(EX_MOVED_AFTER_FENCE, |_, s: &State| {
            s.landed.iter().any(|(_, shard, epoch, _)| {
                s.table
                    .row(*shard)
                    .is_some_and(|r| r.epoch > *epoch && r.owner.is_some())
            })
        }),
        Property::sometimes(EX_SELF_FENCED, |_, s: &State| {
            s.procs.iter().any(|p| p.self_fenced)
        }),
        Property::sometimes(EX_CHILD_DELIVERED, |_, s: &State| {
            s.delivered.iter().skip(1).any(|d| *d != 0)
        }),
        Property::sometimes(EX_ALL_DELIVERED, |m: &Model, s| m.all_delivered(s)),
        Property::sometimes(EX_ALL_REDELIVERED, |m: &Model, s: &State| {
            s.table.reset
                && m.shard_ids().all(|shard| {
                    let all = (1u16 << m.shards[usize::from(shard)].records) - 1;
                    u16::from(s.redelivered[usize::from(shard)]) == all
                })
        }),
    ]
}

/// Whether no violation of kind `v` happened.
fn flag(s: &State, v: u8) -> bool {
    s.violations & v == 0
}

pub const CHECKPOINTS: &str = "no checkpoint moves backwards";
pub const FENCED_ACKS: &str = "nothing of a fenced epoch is acked into a checkpoint";
pub const FENCED_WRITES: &str = "nothing of a fenced epoch is stored beyond the fence";
pub const ONE_DELIVERER: &str = "a worker moved off a shard for expiry delivers none of it";
pub const ORDER: &str = "no child record before all of its parents' records";
pub const FENCES_BOUNDED: &str = "a worker's spec holds at most one fence per shard";
pub const NO_LOSS: &str = "every record up to a checkpoint was delivered";
pub const REWIND_NO_LOSS: &str =
    "after a rewind, every record up to a checkpoint was delivered again";
pub const EX_ALL_REDELIVERED: &str = "example: every record was delivered again after a rewind";
pub const ALL_DELIVERED: &str = "every record is eventually delivered";
pub const EX_FENCE_WITHOUT_TABLE: &str = "example: a fence landed, its table write did not";
pub const EX_MOVED_AFTER_FENCE: &str = "example: a fenced shard has a new owner";
pub const EX_SELF_FENCED: &str = "example: a worker self-fenced";
pub const EX_CHILD_DELIVERED: &str = "example: a child's record was delivered";
pub const EX_ALL_DELIVERED: &str = "example: every record was delivered";

/// The safety properties every configuration of the current code must keep.
pub const SAFETY: [&str; 8] = [
    CHECKPOINTS,
    FENCED_ACKS,
    FENCED_WRITES,
    ONE_DELIVERER,
    ORDER,
    FENCES_BOUNDED,
    NO_LOSS,
    REWIND_NO_LOSS,
];

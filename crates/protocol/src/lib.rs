//! The shard handoff protocol, pure: both halves of it (the operator's table and fences, the worker's view of what it owns and what it reports), with time passed in, so tests and a model checker can drive it.

pub mod handoff;
pub mod owned;
pub mod plan;
pub mod report;

//! Reconciliation: observe, plan (pure functions), apply, status.

pub mod plan;
pub mod handoff;

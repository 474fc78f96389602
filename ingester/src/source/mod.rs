//! Reading shards: the per-shard polling and enhanced fan-out tasks, and the coordinator that starts shards in parent-first order.

pub mod coordinator;
pub mod efo;
pub mod shard;

//! Reading shards: the Kinesis seam, the per-shard polling and enhanced fan-out tasks, and the coordinator that starts shards in parent-first order.

pub mod api;
pub mod aws;
pub mod coordinator;
pub mod efo;
#[doc(hidden)]
pub mod faults;
pub mod shard;

//! The shard-reading core of kinesis-operator: read shards, decode records, deliver them to sinks, checkpoint what was delivered.

pub mod checkpoint;
pub mod config;
pub mod decode;
pub mod fleet;
pub mod metrics;
pub mod net;
pub mod record;
pub mod route;
pub mod run;
pub mod sink;
pub mod source;
pub mod transform;

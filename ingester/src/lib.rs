//! The shard-reading core of kinesis-operator: read shards, decode records, deliver them to sinks, checkpoint what was delivered.

pub mod decode;
pub mod record;
pub mod sequence;
pub mod sink;

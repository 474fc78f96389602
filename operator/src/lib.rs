//! The kinesis-operator controller: plans worker fleets for KinesisIngester resources.

pub mod reconcile;

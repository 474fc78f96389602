//! The kinesis-operator controller: runs a fleet of worker pods per KinesisIngester, assigns shards with a fenced handoff protocol, and reports lag in status.

pub mod allow;
pub mod autoscale;
pub mod context;
pub mod controller;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod report_filter;
pub mod topology;

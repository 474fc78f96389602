//! The Kinesis client both binaries use: the small seam every Kinesis call goes through, its AWS SDK implementation, a fault-injecting wrapper for tests, and backoff.

pub mod api;
pub mod aws;
pub mod backoff;
#[doc(hidden)]
pub mod faults;
pub mod net;
pub mod sdk;

pub use api::{KinesisApi, RawRecord, SourceError, StreamSummary};
pub use sdk::{ClientOptions, SdkKinesis};

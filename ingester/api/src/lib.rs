//! The `KinesisIngester` custom resource: types shared by the operator and the ingester, and the CRD generator.

pub mod bounds;
mod crd;
mod duration;
mod fleet;
mod network;
mod reset;
mod route;
mod s3;
pub mod sequence;
mod spec;
mod status;
mod stream;
mod timings;
mod transform;
mod validate;
mod workers;

pub use crd::{API_VERSION, CRD_FILE_NAME, KIND, all_crds, crd_yaml};
pub use duration::{DURATION_PATTERN, Duration, MAX_DURATION, ParseDurationError};
pub use fleet::*;
pub use network::*;
pub use reset::*;
pub use route::*;
pub use s3::*;
pub use spec::*;
pub use status::*;
pub use stream::{StartAt, StreamRef};
pub use timings::{
    FleetTimings, MIN_DELIVERY_STUCK_AFTER, MIN_REPORT_INTERVAL, SELF_FENCE_MARGIN, TimingsError,
};
pub use transform::*;
pub use validate::{FieldError, ValidationErrors, check_schema};
pub use workers::*;

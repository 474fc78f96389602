//! The `KinesisIngester` custom resource: types shared by the operator and the ingester, and the CRD generator.

pub mod bounds;
mod crd;
mod duration;
mod fleet;
mod spec;
mod status;
mod validate;
mod workers;

pub use crd::{API_VERSION, CRD_FILE_NAME, KIND, all_crds, crd_yaml};
pub use duration::{DURATION_PATTERN, Duration, MAX_DURATION, ParseDurationError};
pub use fleet::*;
pub use spec::*;
pub use status::*;
pub use validate::{FieldError, ValidationErrors, check_schema};
pub use workers::*;

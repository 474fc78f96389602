//! What both binaries share to be observed: logging set-up and the `/metrics`, `/healthz` and `/readyz` endpoints.

pub mod server;
pub mod telemetry;

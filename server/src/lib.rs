//! The pipebridge server: configuration, HTTP routes and middleware, start-up and shutdown.
//! Wiring only; the logic lives in the core crate and the pages in `app/`.

pub mod config;
mod csrf;
mod exports;
mod health;
mod oauth;
mod routes;
pub mod startup;
pub mod telemetry;

pub use config::Config;
pub use startup::{Application, build_router};

//! pipebridge core: domain types, persistence and services.
//!
//! No Leptos, no axum: the web layers (`app/`, `server/`) call into this crate, never the reverse.
//! Every service that touches tenant data takes the [`domain::TenantId`] as an argument.

pub mod accounts;
pub mod brevo;
pub mod checklist;
pub mod connections;
pub mod db;
pub mod domain;
pub mod maintenance;
pub mod mapping;
pub mod pipedrive;
pub mod queue;
pub mod rate;
pub mod secrets;
pub mod sync;
pub mod task;

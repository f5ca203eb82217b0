//! Logging: `tracing` with an env filter (`RUST_LOG`, default `info`), text or JSON.

use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_sessions=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init`: tests may call this more than once.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

//! The pipebridge server binary.

use anyhow::Context;
use leptos::config::get_configuration;
use pipebridge_server::{Application, Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_json);
    let leptos = get_configuration(None).context("reading the LEPTOS_* settings")?.leptos_options;
    let addr = leptos.site_addr;
    let app = Application::build(&config, leptos, addr).await?;
    tracing::info!("listening on http://{}", app.local_addr());
    app.run_until_stopped().await
}

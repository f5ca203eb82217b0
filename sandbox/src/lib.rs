//! The pipebridge sandbox: local servers that behave like Pipedrive and Brevo, with their state in
//! memory, an admin API under `/_sandbox/`, and faults to inject. Written from the official OpenAPI
//! specs and the facts in `shared/reference/`; it shares nothing with the project's API clients.
//!
//! [`start`] serves both on loopback ports (0 picks free ones), for the `sandbox` binary and tests.

pub mod brevo;
pub mod pipedrive;

use std::net::SocketAddr;

use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Config {
    pub pipedrive_addr: SocketAddr,
    pub brevo_addr: SocketAddr,
    pub pipedrive: pipedrive::Settings,
    pub brevo: brevo::Settings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pipedrive_addr: "127.0.0.1:0".parse().unwrap(),
            brevo_addr: "127.0.0.1:0".parse().unwrap(),
            pipedrive: pipedrive::Settings::default(),
            brevo: brevo::Settings::default(),
        }
    }
}

/// A running sandbox: where each fake answers, and handles on their state.
pub struct Running {
    pub pipedrive_url: String,
    pub brevo_url: String,
    pub pipedrive: pipedrive::Pipedrive,
    pub brevo: brevo::Brevo,
}

/// Binds both servers and serves them in the background until the runtime ends.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let pd_listener = TcpListener::bind(config.pipedrive_addr).await?;
    let brevo_listener = TcpListener::bind(config.brevo_addr).await?;
    let pipedrive_url = format!("http://{}", pd_listener.local_addr()?);
    let brevo_url = format!("http://{}", brevo_listener.local_addr()?);

    let pipedrive = pipedrive::Pipedrive::new(config.pipedrive, pipedrive_url.clone());
    let brevo = brevo::Brevo::new(config.brevo);

    let pd_router = pipedrive::router(pipedrive.clone());
    let brevo_router = brevo::router(brevo.clone());
    tokio::spawn(async move {
        let service = pd_router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(pd_listener, service).await {
            tracing::error!(error = %e, "pipedrive sandbox stopped");
        }
    });
    tokio::spawn(async move {
        let service = brevo_router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(brevo_listener, service).await {
            tracing::error!(error = %e, "brevo sandbox stopped");
        }
    });
    Ok(Running { pipedrive_url, brevo_url, pipedrive, brevo })
}

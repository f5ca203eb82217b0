//! The Connections page: what is connected (never the secret itself), the Brevo key, the Pipedrive
//! API-token alternative, and disconnecting. OAuth runs through server routes (server/src/oauth.rs).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub auth_kind: String,
    pub status: String,
    pub account_label: String,
    /// The secret's last four characters, to tell keys apart.
    pub last4: String,
    pub is_sandbox: bool,
    pub last_checked: Option<String>,
    pub last_error: Option<String>,
    /// Pipedrive: the company's own daily token budget, if set.
    pub daily_token_budget: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionsView {
    pub pipedrive: Option<ConnectionView>,
    pub brevo: Option<ConnectionView>,
    /// The server talks to the local sandbox, not the real services.
    pub sandbox: bool,
}

#[server(endpoint = "load_connections")]
pub async fn load_connections(tenant_id: String) -> Result<ConnectionsView, AppError> {
    server::load(tenant_id).await
}

#[server(endpoint = "save_brevo_key")]
pub async fn save_brevo_key(
    tenant_id: String,
    api_key: String,
) -> Result<ConnectionView, AppError> {
    server::save_brevo_key(tenant_id, api_key).await
}

#[server(endpoint = "connect_pipedrive_token")]
pub async fn connect_pipedrive_token(
    tenant_id: String,
    api_token: String,
    company_domain: String,
) -> Result<ConnectionView, AppError> {
    server::connect_pipedrive_token(tenant_id, api_token, company_domain).await
}

/// Sets the Pipedrive company's daily token budget; empty: the server's default.
#[server(endpoint = "set_pipedrive_budget")]
pub async fn set_pipedrive_budget(tenant_id: String, budget: String) -> Result<String, AppError> {
    server::set_budget(tenant_id, budget).await
}

#[server(endpoint = "disconnect")]
pub async fn disconnect(tenant_id: String, provider: String) -> Result<(), AppError> {
    server::disconnect(tenant_id, provider).await
}

#[cfg(feature = "ssr")]
mod server {
    use pipebridge::connections::{self, ConnectError, ConnectionInfo, Provider};
    use pipebridge::secrets::Secret;
    use time::format_description::well_known::Rfc3339;

    use super::{ConnectionView, ConnectionsView};
    use crate::api::server::{self as s, respond};
    use crate::error::AppError;

    fn view(c: &ConnectionInfo) -> ConnectionView {
        ConnectionView {
            auth_kind: c.auth_kind.clone(),
            status: c.status.clone(),
            account_label: c.account_label.clone(),
            last4: c.secret_last4.clone(),
            is_sandbox: c.is_sandbox,
            last_checked: c
                .last_checked_at
                .and_then(|t| t.replace_nanosecond(0).ok())
                .and_then(|t| t.format(&Rfc3339).ok()),
            last_error: c.last_error.clone(),
            daily_token_budget: c.daily_token_budget,
        }
    }

    impl From<ConnectError> for AppError {
        fn from(e: ConnectError) -> Self {
            match e {
                ConnectError::Access(a) => a.into(),
                ConnectError::Refused(m) => AppError::Invalid(m),
                ConnectError::Unavailable(m) => {
                    tracing::warn!(message = %m, "provider unavailable");
                    AppError::Unavailable(m)
                }
                ConnectError::Database(e) => e.into(),
            }
        }
    }

    pub async fn load(tenant_id: String) -> Result<ConnectionsView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let list = connections::list(&state.pool, &member).await?;
                let find = |p: &str| list.iter().find(|c| c.provider == p).map(view);
                Ok(ConnectionsView {
                    pipedrive: find("pipedrive"),
                    brevo: find("brevo"),
                    sandbox: state.providers.sandbox,
                })
            }
            .await,
        )
    }

    pub async fn save_brevo_key(
        tenant_id: String,
        api_key: String,
    ) -> Result<ConnectionView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let info = connections::connect_brevo(
                    &state.pool,
                    &state.secret_key,
                    &state.providers,
                    &member,
                    Secret::new(api_key),
                )
                .await?;
                Ok(view(&info))
            }
            .await,
        )
    }

    pub async fn connect_pipedrive_token(
        tenant_id: String,
        api_token: String,
        company_domain: String,
    ) -> Result<ConnectionView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let info = connections::connect_pipedrive_token(
                    &state.pool,
                    &state.secret_key,
                    &state.providers,
                    &member,
                    Secret::new(api_token),
                    &company_domain,
                )
                .await?;
                Ok(view(&info))
            }
            .await,
        )
    }

    pub async fn disconnect(tenant_id: String, provider: String) -> Result<(), AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let provider = match provider.as_str() {
                    "pipedrive" => Provider::Pipedrive,
                    "brevo" => Provider::Brevo,
                    _ => return Err(AppError::Invalid("Unknown connection.".into())),
                };
                Ok(connections::disconnect(
                    &state.pool,
                    &state.secret_key,
                    &state.providers,
                    &member,
                    provider,
                )
                .await?)
            }
            .await,
        )
    }

    pub async fn set_budget(tenant_id: String, budget: String) -> Result<String, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let cleaned: String = budget
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != ',' && *c != '_')
                    .collect();
                let value = match cleaned.as_str() {
                    "" => None,
                    text => Some(text.parse::<u64>().map_err(|_| {
                        AppError::Invalid(
                            "Write the budget as a whole number of tokens, e.g. 60000.".into(),
                        )
                    })?),
                };
                connections::set_daily_budget(&state.pool, &member, value).await?;
                Ok(match value {
                    Some(v) => format!("Daily token budget set to {v}."),
                    None => "Daily token budget back to the server's default.".to_owned(),
                })
            }
            .await,
        )
    }
}

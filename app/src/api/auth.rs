//! Sign-up, log-in, log-out, and where a signed-in user lands.

use leptos::prelude::*;
use uuid::Uuid;

use crate::error::AppError;

/// Creates a user, a tenant and the owner membership, signs the user in, and opens the tenant.
#[server(endpoint = "sign_up")]
pub async fn sign_up(email: String, password: String, company: String) -> Result<(), AppError> {
    server::sign_up(email, password, company).await
}

#[server(endpoint = "log_in")]
pub async fn log_in(email: String, password: String) -> Result<(), AppError> {
    server::log_in(email, password).await
}

#[server(endpoint = "log_out")]
pub async fn log_out() -> Result<(), AppError> {
    server::log_out().await
}

/// The tenant a signed-in user lands on (`None` when signed out; `Some(None)` with no tenant).
#[server(endpoint = "landing")]
pub async fn landing() -> Result<Option<Option<Uuid>>, AppError> {
    server::landing().await
}

#[cfg(feature = "ssr")]
mod server {
    use pipebridge::accounts;
    use pipebridge::domain::{CompanyName, Email, Password, UserId};
    use uuid::Uuid;

    use crate::api::server::{self as s, respond};
    use crate::error::AppError;

    pub async fn sign_up(email: String, password: String, company: String) -> Result<(), AppError> {
        respond(
            async {
                let state = s::state()?;
                let email = Email::parse(&email)?;
                let password = Password::parse_new(&password)?;
                let company = CompanyName::parse(&company)?;
                let done = accounts::sign_up(&state.pool, &email, password, &company).await?;
                s::log_user_in(&s::session().await?, done.user_id).await?;
                s::redirect(&format!("/t/{}", done.tenant_id));
                Ok(())
            }
            .await,
        )
    }

    pub async fn log_in(email: String, password: String) -> Result<(), AppError> {
        respond(
            async {
                let state = s::state()?;
                let ip = s::client_ip(state.trust_forwarded_for).await;
                let user = accounts::log_in(&state.pool, &email, &password, ip.as_deref()).await?;
                s::log_user_in(&s::session().await?, user).await?;
                s::redirect(&home_of(&state, user).await?);
                Ok(())
            }
            .await,
        )
    }

    pub async fn log_out() -> Result<(), AppError> {
        respond(
            async {
                s::log_user_out(&s::session().await?).await?;
                s::redirect("/login");
                Ok(())
            }
            .await,
        )
    }

    pub async fn landing() -> Result<Option<Option<Uuid>>, AppError> {
        respond(
            async {
                let state = s::state()?;
                match s::current_user(&s::session().await?).await {
                    Ok(user) => {
                        let tenants = accounts::tenants_of(&state.pool, user).await?;
                        Ok(Some(tenants.first().map(|t| t.id.0)))
                    }
                    Err(AppError::Unauthenticated) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            .await,
        )
    }

    async fn home_of(state: &s::ServerState, user: UserId) -> Result<String, AppError> {
        let tenants = accounts::tenants_of(&state.pool, user).await?;
        Ok(match tenants.first() {
            Some(t) => format!("/t/{}", t.id),
            None => "/companies/new".to_owned(),
        })
    }
}

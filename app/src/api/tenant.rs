//! A tenant's frame (name, role, the user's other tenants), renaming, and new tenants.

use leptos::prelude::*;

use super::TenantPage;
use crate::error::AppError;

#[server(endpoint = "load_tenant")]
pub async fn load_tenant(tenant_id: String) -> Result<TenantPage, AppError> {
    server::load_tenant(tenant_id).await
}

#[server(endpoint = "rename_tenant")]
pub async fn rename_tenant(tenant_id: String, name: String) -> Result<String, AppError> {
    server::rename_tenant(tenant_id, name).await
}

#[server(endpoint = "create_tenant")]
pub async fn create_tenant(name: String) -> Result<(), AppError> {
    server::create_tenant(name).await
}

#[cfg(feature = "ssr")]
mod server {
    use pipebridge::accounts::{self, TenantSummary};
    use pipebridge::domain::CompanyName;

    use crate::api::server::{self as s, respond};
    use crate::api::{TenantPage, TenantView};
    use crate::error::AppError;

    fn view(t: &TenantSummary) -> TenantView {
        TenantView {
            id: t.id.0,
            name: t.name.clone(),
            role: t.role.0.to_string(),
            can_manage: t.role.0.can_manage(),
        }
    }

    pub async fn load_tenant(tenant_id: String) -> Result<TenantPage, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let tenants = accounts::tenants_of(&state.pool, member.user_id).await?;
                let tenant = tenants
                    .iter()
                    .find(|t| t.id == member.tenant_id)
                    .map(view)
                    .ok_or(AppError::NotFound)?;
                let user_email = accounts::user_email(&state.pool, member.user_id)
                    .await?
                    .ok_or(AppError::Unauthenticated)?;
                Ok(TenantPage { tenant, user_email, tenants: tenants.iter().map(view).collect() })
            }
            .await,
        )
    }

    pub async fn rename_tenant(tenant_id: String, name: String) -> Result<String, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let name = CompanyName::parse(&name)?;
                accounts::rename_tenant(&state.pool, &member, &name).await?;
                Ok(name.as_str().to_owned())
            }
            .await,
        )
    }

    pub async fn create_tenant(name: String) -> Result<(), AppError> {
        respond(
            async {
                let state = s::state()?;
                let user = s::current_user(&s::session().await?).await?;
                let name = CompanyName::parse(&name)?;
                let id = accounts::create_tenant(&state.pool, user, &name).await?;
                s::redirect(&format!("/t/{id}"));
                Ok(())
            }
            .await,
        )
    }
}

//! The team of a tenant: list, add an existing user, change a role, remove.

use leptos::prelude::*;

use super::MemberView;
use crate::error::AppError;

#[server(endpoint = "team_members")]
pub async fn team_members(tenant_id: String) -> Result<Vec<MemberView>, AppError> {
    server::team_members(tenant_id).await
}

#[server(endpoint = "add_team_member")]
pub async fn add_team_member(
    tenant_id: String,
    email: String,
    role: String,
) -> Result<(), AppError> {
    server::add_team_member(tenant_id, email, role).await
}

#[server(endpoint = "change_team_role")]
pub async fn change_team_role(
    tenant_id: String,
    user_id: String,
    role: String,
) -> Result<(), AppError> {
    server::change_team_role(tenant_id, user_id, role).await
}

#[server(endpoint = "remove_team_member")]
pub async fn remove_team_member(tenant_id: String, user_id: String) -> Result<(), AppError> {
    server::remove_team_member(tenant_id, user_id).await
}

#[cfg(feature = "ssr")]
mod server {
    use pipebridge::accounts;
    use pipebridge::domain::{Email, Role, UserId};

    use crate::api::MemberView;
    use crate::api::server::{self as s, respond};
    use crate::error::AppError;

    fn parse_user(user_id: &str) -> Result<UserId, AppError> {
        user_id
            .trim()
            .parse()
            .map_err(|_| AppError::Invalid("This person is not a member of the team.".into()))
    }

    pub async fn team_members(tenant_id: String) -> Result<Vec<MemberView>, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let rows = accounts::members(&state.pool, &member).await?;
                Ok(rows
                    .into_iter()
                    .map(|m| MemberView {
                        user_id: m.user_id.0,
                        email: m.email,
                        role: m.role.0.to_string(),
                        is_you: m.user_id == member.user_id,
                    })
                    .collect())
            }
            .await,
        )
    }

    pub async fn add_team_member(
        tenant_id: String,
        email: String,
        role: String,
    ) -> Result<(), AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let email = Email::parse(&email)?;
                let role: Role = role.parse()?;
                Ok(accounts::add_member(&state.pool, &member, &email, role).await?)
            }
            .await,
        )
    }

    pub async fn change_team_role(
        tenant_id: String,
        user_id: String,
        role: String,
    ) -> Result<(), AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let role: Role = role.parse()?;
                Ok(accounts::change_role(&state.pool, &member, parse_user(&user_id)?, role).await?)
            }
            .await,
        )
    }

    pub async fn remove_team_member(tenant_id: String, user_id: String) -> Result<(), AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                Ok(accounts::remove_member(&state.pool, &member, parse_user(&user_id)?).await?)
            }
            .await,
        )
    }
}

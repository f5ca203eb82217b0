//! The team of a tenant: listing members, adding an existing user, changing roles, removing.
//!
//! Rules: admins and owners manage the team; only an owner may grant the owner role or change or
//! remove another owner; a tenant always keeps at least one owner.

use sqlx::PgPool;

use super::tenants::{AccessError, Member, RoleColumn};
use crate::domain::{Email, Role, UserId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamMember {
    pub user_id: UserId,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
}

#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("There is no account with this email yet. Ask them to sign up first, then add them.")]
    NoSuchUser,
    #[error("This person is already a member of the team.")]
    AlreadyMember,
    #[error("This person is not a member of the team.")]
    NotAMember,
    #[error("Only an owner can grant, change or remove the owner role.")]
    OwnerOnly,
    #[error("A company needs at least one owner. Make someone else an owner first.")]
    LastOwner,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn members(pool: &PgPool, member: &Member) -> Result<Vec<TeamMember>, sqlx::Error> {
    sqlx::query_as(
        "select u.id as user_id, u.email, m.role
         from memberships m join users u on u.id = m.user_id
         where m.tenant_id = $1
         order by u.email",
    )
    .bind(member.tenant_id)
    .fetch_all(pool)
    .await
}

#[tracing::instrument(skip_all, fields(tenant_id = %actor.tenant_id))]
pub async fn add_member(
    pool: &PgPool,
    actor: &Member,
    email: &Email,
    role: Role,
) -> Result<(), TeamError> {
    actor.require_manage()?;
    if role == Role::Owner && actor.role != Role::Owner {
        return Err(TeamError::OwnerOnly);
    }
    let user_id: Option<UserId> = sqlx::query_scalar("select id from users where email = $1")
        .bind(email.as_str())
        .fetch_optional(pool)
        .await?;
    let user_id = user_id.ok_or(TeamError::NoSuchUser)?;
    let inserted = sqlx::query(
        "insert into memberships (tenant_id, user_id, role) values ($1, $2, $3)
         on conflict on constraint memberships_pkey do nothing",
    )
    .bind(actor.tenant_id)
    .bind(user_id)
    .bind(role.as_str())
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(TeamError::AlreadyMember);
    }
    tracing::info!(%user_id, %role, "member added");
    Ok(())
}

#[tracing::instrument(skip_all, fields(tenant_id = %actor.tenant_id, %target))]
pub async fn change_role(
    pool: &PgPool,
    actor: &Member,
    target: UserId,
    role: Role,
) -> Result<(), TeamError> {
    actor.require_manage()?;
    let mut tx = pool.begin().await?;
    let current = lock_owners_and_get(&mut tx, actor, target).await?;
    if (current.role == Role::Owner || role == Role::Owner) && actor.role != Role::Owner {
        return Err(TeamError::OwnerOnly);
    }
    if current.role == Role::Owner && role != Role::Owner && current.owners == 1 {
        return Err(TeamError::LastOwner);
    }
    sqlx::query("update memberships set role = $3, updated_at = now() where tenant_id = $1 and user_id = $2")
        .bind(actor.tenant_id)
        .bind(target)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(%role, "role changed");
    Ok(())
}

#[tracing::instrument(skip_all, fields(tenant_id = %actor.tenant_id, %target))]
pub async fn remove_member(pool: &PgPool, actor: &Member, target: UserId) -> Result<(), TeamError> {
    actor.require_manage()?;
    let mut tx = pool.begin().await?;
    let current = lock_owners_and_get(&mut tx, actor, target).await?;
    if current.role == Role::Owner && actor.role != Role::Owner {
        return Err(TeamError::OwnerOnly);
    }
    if current.role == Role::Owner && current.owners == 1 {
        return Err(TeamError::LastOwner);
    }
    sqlx::query("delete from memberships where tenant_id = $1 and user_id = $2")
        .bind(actor.tenant_id)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!("member removed");
    Ok(())
}

struct Current {
    role: Role,
    owners: i64,
}

/// Locks the tenant's memberships (so two concurrent demotions cannot remove the last owner)
/// and returns the target's role and the number of owners.
async fn lock_owners_and_get(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    actor: &Member,
    target: UserId,
) -> Result<Current, TeamError> {
    let rows: Vec<(UserId, String)> =
        sqlx::query_as("select user_id, role from memberships where tenant_id = $1 for update")
            .bind(actor.tenant_id)
            .fetch_all(&mut **tx)
            .await?;
    let owners = rows.iter().filter(|(_, r)| r == "owner").count() as i64;
    let (_, role) = rows.into_iter().find(|(u, _)| *u == target).ok_or(TeamError::NotAMember)?;
    let role = role.parse().map_err(|_| TeamError::NotAMember)?;
    Ok(Current { role, owners })
}

//! Tenants and membership: who may see which tenant, in which role.

use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{CompanyName, Role, TenantId, UserId};

/// A user's authorised access to one tenant. Built only by [`authorize`].
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub role: Role,
}

impl Member {
    /// The background workers acting for a tenant (a sync run): no user behind it, and access to
    /// that one tenant's data only.
    pub fn worker(tenant_id: TenantId) -> Self {
        Self { user_id: UserId(uuid::Uuid::nil()), tenant_id, role: Role::Admin }
    }

    /// Refuses viewers: for every action that changes the tenant.
    pub fn require_manage(&self) -> Result<(), AccessError> {
        if self.role.can_manage() { Ok(()) } else { Err(AccessError::Forbidden) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Not a member, or no such tenant: the same answer, so nothing is revealed.
    #[error("Not found.")]
    NotFound,
    #[error("Your role in this company does not allow that.")]
    Forbidden,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantSummary {
    pub id: TenantId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
}

/// `Role` as read from the `role` column (checked by a constraint, parsed again here).
#[derive(Debug, Clone, Copy)]
pub struct RoleColumn(pub Role);

impl TryFrom<String> for RoleColumn {
    type Error = crate::domain::ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().map(RoleColumn)
    }
}

pub async fn authorize(
    pool: &PgPool,
    user_id: UserId,
    tenant_id: TenantId,
) -> Result<Member, AccessError> {
    let role: Option<String> =
        sqlx::query_scalar("select role from memberships where tenant_id = $1 and user_id = $2")
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    let role = role.ok_or(AccessError::NotFound)?;
    let role = role.parse().map_err(|_| AccessError::NotFound)?;
    Ok(Member { user_id, tenant_id, role })
}

/// The tenants a user belongs to, by name.
pub async fn tenants_of(pool: &PgPool, user_id: UserId) -> Result<Vec<TenantSummary>, sqlx::Error> {
    sqlx::query_as(
        "select t.id, t.name, m.role
         from memberships m join tenants t on t.id = m.tenant_id
         where m.user_id = $1
         order by lower(t.name), t.id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

pub async fn user_email(pool: &PgPool, user_id: UserId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("select email from users where id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// A new tenant with `user_id` as its owner (a user may work for several companies).
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn create_tenant(
    pool: &PgPool,
    user_id: UserId,
    name: &CompanyName,
) -> Result<TenantId, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id = insert_tenant(&mut tx, user_id, name).await?;
    tx.commit().await?;
    Ok(id)
}

pub(super) async fn insert_tenant(
    tx: &mut Transaction<'_, Postgres>,
    owner: UserId,
    name: &CompanyName,
) -> Result<TenantId, sqlx::Error> {
    let tenant_id: TenantId =
        sqlx::query_scalar("insert into tenants (name) values ($1) returning id")
            .bind(name.as_str())
            .fetch_one(&mut **tx)
            .await?;
    sqlx::query("insert into memberships (tenant_id, user_id, role) values ($1, $2, 'owner')")
        .bind(tenant_id)
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    Ok(tenant_id)
}

#[tracing::instrument(skip_all, fields(tenant_id = %member.tenant_id))]
pub async fn rename_tenant(
    pool: &PgPool,
    member: &Member,
    name: &CompanyName,
) -> Result<(), AccessError> {
    member.require_manage()?;
    sqlx::query("update tenants set name = $2, updated_at = now() where id = $1")
        .bind(member.tenant_id)
        .bind(name.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

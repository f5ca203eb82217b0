//! Saved mappings, versioned per tenant: who changed it, when. Only a mapping without errors is
//! saved; warnings are returned with the new version.

use sqlx::PgPool;
use time::OffsetDateTime;

use super::MappingConfig;
use super::validate::{Catalog, Problem, Severity, check};
use crate::accounts::{AccessError, Member};

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The YAML does not parse: one message with its line.
    #[error("{0}")]
    Unreadable(String),
    /// It parses but has mistakes: one message each.
    #[error("the mapping has {} mistake(s)", .0.len())]
    Invalid(Vec<Problem>),
    /// The tenant's accounts could not be read to check the mapping against them.
    #[error("{0}")]
    Catalog(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone)]
pub struct Saved {
    pub version: i32,
    pub warnings: Vec<Problem>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionInfo {
    pub version: i32,
    pub created_at: OffsetDateTime,
    pub author: Option<String>,
}

#[tracing::instrument(skip_all, fields(tenant_id = %member.tenant_id))]
/// Saves a new version if the YAML reads and has no mistakes; with a catalog, its references are
/// checked against the tenant's real fields, stages, attributes and lists too.
pub async fn save(
    pool: &PgPool,
    member: &Member,
    yaml: &str,
    catalog: Option<&Catalog>,
) -> Result<Saved, SaveError> {
    member.require_manage()?;
    let config = MappingConfig::from_yaml(yaml).map_err(|e| SaveError::Unreadable(e.message))?;
    let problems = check(&config, catalog);
    let (errors, warnings): (Vec<Problem>, Vec<Problem>) =
        problems.into_iter().partition(|p| p.severity == Severity::Error);
    if !errors.is_empty() {
        return Err(SaveError::Invalid(errors));
    }
    let mut tx = pool.begin().await?;
    // Serialises saves of one tenant, so versions count up without gaps or clashes.
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1::text, 7))")
        .bind(member.tenant_id)
        .execute(&mut *tx)
        .await?;
    let version: i32 = sqlx::query_scalar(
        "insert into mapping_versions (tenant_id, version, yaml, created_by)
         values ($1, coalesce((select max(version) from mapping_versions where tenant_id = $1), 0) + 1, $2, $3)
         returning version",
    )
    .bind(member.tenant_id)
    .bind(config.to_yaml())
    .bind(member.user_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(version, "mapping saved");
    Ok(Saved { version, warnings })
}

/// Saves with the check against the tenant's real accounts when both are connected, on its own
/// before that. The catalog is read only after the YAML parsed and the member may save.
#[allow(clippy::too_many_arguments)]
pub async fn save_checked(
    pool: &PgPool,
    key: &crate::secrets::SecretKey,
    providers: &crate::connections::Providers,
    limits: &crate::pipedrive::limits::Registry,
    member: &Member,
    yaml: &str,
) -> Result<Saved, SaveError> {
    member.require_manage()?;
    MappingConfig::from_yaml(yaml).map_err(|e| SaveError::Unreadable(e.message))?;
    let connect = |e: crate::connections::ConnectError| SaveError::Catalog(e.to_string());
    let pipedrive = crate::connections::pipedrive_client(pool, key, providers, member, limits)
        .await
        .map_err(connect)?;
    let brevo = crate::connections::brevo_api(pool, key, member, limits).await.map_err(connect)?;
    let catalog = match (pipedrive, brevo) {
        (Some(p), Some(b)) => Some(
            super::catalog::load(&p, &b).await.map_err(|e| SaveError::Catalog(e.to_string()))?,
        ),
        _ => None,
    };
    save(pool, member, yaml, catalog.as_ref()).await
}

/// The mapping in force: its version and YAML.
pub async fn current(pool: &PgPool, member: &Member) -> Result<Option<(i32, String)>, sqlx::Error> {
    sqlx::query_as("select version, yaml from mapping_versions where tenant_id = $1 order by version desc limit 1")
        .bind(member.tenant_id)
        .fetch_optional(pool)
        .await
}

pub async fn versions(pool: &PgPool, member: &Member) -> Result<Vec<VersionInfo>, sqlx::Error> {
    sqlx::query_as(
        "select v.version, v.created_at, u.email as author
         from mapping_versions v left join users u on u.id = v.created_by
         where v.tenant_id = $1 order by v.version desc",
    )
    .bind(member.tenant_id)
    .fetch_all(pool)
    .await
}

/// The starting point offered to a tenant without a mapping: the connector spec's seed file.
pub const SEED_YAML: &str = include_str!("seed.yaml");

//! The Mappings page: the mapping in force as YAML, its versions, and saving a new one.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingVersionView {
    pub version: i32,
    pub saved_at: String,
    pub author: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingView {
    /// The YAML in force, or the seed file to start from.
    pub yaml: String,
    pub version: Option<i32>,
    pub versions: Vec<MappingVersionView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedMapping {
    pub version: i32,
    pub warnings: Vec<String>,
}

#[server(endpoint = "load_mapping")]
pub async fn load_mapping(tenant_id: String) -> Result<MappingView, AppError> {
    server::load(tenant_id).await
}

#[server(endpoint = "save_mapping")]
pub async fn save_mapping(tenant_id: String, yaml: String) -> Result<SavedMapping, AppError> {
    server::save(tenant_id, yaml).await
}

#[cfg(feature = "ssr")]
mod server {
    use pipebridge::mapping::store::{self, SaveError};
    use time::format_description::well_known::Rfc3339;

    use super::{MappingVersionView, MappingView, SavedMapping};
    use crate::api::server::{self as s, respond};
    use crate::error::AppError;

    impl From<SaveError> for AppError {
        fn from(e: SaveError) -> Self {
            match e {
                SaveError::Access(a) => a.into(),
                SaveError::Unreadable(m) => AppError::Invalid(m),
                SaveError::Invalid(problems) => AppError::Invalid(
                    problems.iter().map(|p| format!("{}: {}", p.at, p.message)).collect::<Vec<_>>().join("\n"),
                ),
                SaveError::Catalog(m) => {
                    tracing::warn!(message = %m, "reading the catalog failed");
                    AppError::Unavailable(format!("The mapping could not be checked against your accounts ({m}). Try again shortly."))
                }
                SaveError::Database(e) => e.into(),
            }
        }
    }

    pub async fn load(tenant_id: String) -> Result<MappingView, AppError> {
        respond(async {
            let (state, member) = s::member(&tenant_id).await?;
            let current = store::current(&state.pool, &member).await?;
            let versions = store::versions(&state.pool, &member)
                .await?
                .into_iter()
                .map(|v| MappingVersionView { version: v.version, saved_at: v.created_at.format(&Rfc3339).unwrap_or_default(), author: v.author })
                .collect();
            Ok(match current {
                Some((version, yaml)) => MappingView { yaml, version: Some(version), versions },
                None => MappingView { yaml: store::SEED_YAML.to_owned(), version: None, versions },
            })
        }
        .await)
    }

    pub async fn save(tenant_id: String, yaml: String) -> Result<SavedMapping, AppError> {
        respond(async {
            let (state, member) = s::member(&tenant_id).await?;
            let saved = store::save_checked(&state.pool, &state.secret_key, &state.providers, &state.limits, &member, &yaml).await?;
            Ok(SavedMapping { version: saved.version, warnings: saved.warnings.iter().map(|p| format!("{}: {}", p.at, p.message)).collect() })
        }
        .await)
    }
}

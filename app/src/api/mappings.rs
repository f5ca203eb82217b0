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

/// One row of the person mapping form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRow {
    pub path: String,
    pub attribute: String,
}

/// One row of the stage form: a stage id, `won` or `lost`, and its list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRow {
    pub key: String,
    pub label: String,
    pub list: Option<i64>,
}

/// What the forms edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MappingFormData {
    pub all_contacts: Option<i64>,
    pub qualified_leads: Option<i64>,
    pub customers: Option<i64>,
    pub churned: Option<i64>,
    pub person: Vec<PersonRow>,
    pub stages: Vec<StageRow>,
}

/// What the forms' dropdowns offer, from the tenant's real accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FormChoices {
    /// (path, label): built-in paths and custom fields by label.
    pub paths: Vec<(String, String)>,
    /// (name, type)
    pub attributes: Vec<(String, String)>,
    /// (id, name)
    pub lists: Vec<(i64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingFormsView {
    /// Why the forms cannot be shown (accounts not connected, unreachable); the YAML still works.
    pub unavailable: Option<String>,
    pub data: MappingFormData,
    pub choices: FormChoices,
}

#[server(endpoint = "mapping_forms")]
pub async fn mapping_forms(tenant_id: String) -> Result<MappingFormsView, AppError> {
    server::forms(tenant_id).await
}

#[server(endpoint = "save_mapping_forms", input = leptos::server_fn::codec::Json)]
pub async fn save_mapping_forms(tenant_id: String, data: MappingFormData) -> Result<SavedMapping, AppError> {
    server::save_forms(tenant_id, data).await
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

    use pipebridge::mapping::{FormEdit, Lists, StageKey, forms};

    use super::{FormChoices, MappingFormData, MappingFormsView, MappingVersionView, MappingView, PersonRow, SavedMapping, StageRow};
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

    impl From<forms::FormsError> for AppError {
        fn from(e: forms::FormsError) -> Self {
            match e {
                forms::FormsError::Unreadable(m) => AppError::Invalid(m),
                forms::FormsError::Connect(e) => AppError::Unavailable(e.to_string()),
                forms::FormsError::Database(e) => e.into(),
            }
        }
    }

    pub async fn forms(tenant_id: String) -> Result<MappingFormsView, AppError> {
        respond(async {
            let (state, member) = s::member(&tenant_id).await?;
            let shown = forms::load(&state.pool, &state.secret_key, &state.providers, &state.limits, &member).await?;
            Ok(view(shown))
        }
        .await)
    }

    fn view(shown: forms::Shown) -> MappingFormsView {
        let f = match shown {
            forms::Shown::Ready(f) => f,
            forms::Shown::Unavailable(why) => return MappingFormsView { unavailable: Some(why), data: MappingFormData::default(), choices: FormChoices::default() },
        };
        MappingFormsView {
            unavailable: None,
            data: MappingFormData {
                all_contacts: f.lists.all_contacts,
                qualified_leads: f.lists.qualified_leads,
                customers: f.lists.customers,
                churned: f.lists.churned,
                person: f.person.into_iter().map(|(path, attribute)| PersonRow { path, attribute }).collect(),
                stages: f.stages.into_iter().map(|r| StageRow { key: r.key, label: r.label, list: r.list }).collect(),
            },
            choices: FormChoices { paths: f.choices.paths, attributes: f.choices.attributes, lists: f.choices.lists },
        }
    }

    pub async fn save_forms(tenant_id: String, data: MappingFormData) -> Result<SavedMapping, AppError> {
        respond(async {
            let (state, member) = s::member(&tenant_id).await?;
            let mut stages = Vec::new();
            for row in &data.stages {
                let key = StageKey::parse(&row.key).ok_or_else(|| AppError::Invalid(format!("{:?} is not a stage.", row.key)))?;
                stages.extend(row.list.map(|list| (key, list)));
            }
            let edit = FormEdit {
                lists: Lists { all_contacts: data.all_contacts, qualified_leads: data.qualified_leads, customers: data.customers, churned: data.churned },
                person_mapping: data.person.into_iter().map(|r| (r.path, r.attribute.to_uppercase())).collect(),
                deal_stage_mapping: stages,
            };
            let saved = forms::save(&state.pool, &state.secret_key, &state.providers, &state.limits, &member, edit).await?;
            Ok(SavedMapping { version: saved.version, warnings: saved.warnings.iter().map(|p| format!("{}: {}", p.at, p.message)).collect() })
        }
        .await)
    }
}

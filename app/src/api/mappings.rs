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

    use pipebridge::mapping::{FormEdit, Lists, MappingConfig, StageKey, catalog, validate};

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

    const BUILT_IN: &[(&str, &str)] = &[
        ("email", "Email (the contact's key)"),
        ("name", "Name"),
        ("first_name", "First name"),
        ("last_name", "Last name"),
        ("phone", "Phone (as E.164)"),
        ("org_id.name", "Organization name"),
        ("won_deals_count", "Won deals (count)"),
        ("lost_deals_count", "Lost deals (count)"),
        ("open_deals_count", "Open deals (count)"),
        ("closed_deals_count", "Closed deals (count)"),
        ("total_revenue", "Total revenue of won deals"),
    ];

    async fn current_config(state: &s::ServerState, member: &pipebridge::accounts::Member) -> Result<MappingConfig, AppError> {
        let yaml = store::current(&state.pool, member).await?.map(|(_, y)| y).unwrap_or_else(|| store::SEED_YAML.to_owned());
        MappingConfig::from_yaml(&yaml).map_err(|e| AppError::Invalid(e.message))
    }

    pub async fn forms(tenant_id: String) -> Result<MappingFormsView, AppError> {
        respond(async {
            let (state, member) = s::member(&tenant_id).await?;
            let config = current_config(&state, &member).await?;
            let connect = |e: pipebridge::connections::ConnectError| AppError::Unavailable(e.to_string());
            let pd = pipebridge::connections::pipedrive_client(&state.pool, &state.secret_key, &state.providers, &member, &state.limits).await.map_err(connect)?;
            let brevo = pipebridge::connections::brevo_api(&state.pool, &state.secret_key, &member, &state.limits).await.map_err(connect)?;
            let (Some(pd), Some(brevo)) = (pd, brevo) else {
                return Ok(MappingFormsView {
                    unavailable: Some("Connect Pipedrive and Brevo first: the forms list your real fields, stages, attributes and lists. The YAML below works meanwhile.".into()),
                    data: MappingFormData::default(),
                    choices: FormChoices::default(),
                });
            };
            let named = match catalog::load_named(&pd, &brevo).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the catalog for the forms failed");
                    return Ok(MappingFormsView {
                        unavailable: Some(format!("Your accounts could not be read right now ({e}). Try again shortly; the YAML below works meanwhile.")),
                        data: MappingFormData::default(),
                        choices: FormChoices::default(),
                    });
                }
            };
            let cat = validate::Catalog { person_fields: named.fields.clone(), ..Default::default() };
            let mut paths: Vec<(String, String)> = BUILT_IN.iter().map(|(p, l)| ((*p).to_owned(), (*l).to_owned())).collect();
            paths.extend(named.fields.iter().map(|f| (format!("custom_fields.{}", f.key), format!("{} (custom, {})", f.label, f.field_type))));
            // Custom fields named by label or slug in the YAML show as the field they resolve to.
            let person = config
                .person_mapping
                .iter()
                .map(|(path, attribute)| {
                    let path = match path.strip_prefix("custom_fields.").and_then(|n| validate::custom_field(&cat, n)) {
                        Some(f) => format!("custom_fields.{}", f.key),
                        None => path.clone(),
                    };
                    PersonRow { path, attribute: attribute.clone() }
                })
                .collect();
            let mut stages: Vec<StageRow> = named
                .stages
                .iter()
                .map(|(id, label)| StageRow { key: id.to_string(), label: label.clone(), list: config.deal_stage_mapping.get(&StageKey::Stage(*id)).copied() })
                .collect();
            stages.push(StageRow { key: "won".into(), label: "Won (any pipeline)".into(), list: config.deal_stage_mapping.get(&StageKey::Won).copied() });
            stages.push(StageRow { key: "lost".into(), label: "Lost (any pipeline)".into(), list: config.deal_stage_mapping.get(&StageKey::Lost).copied() });
            let lists = &config.connectors.pipedrive.lists;
            Ok(MappingFormsView {
                unavailable: None,
                data: MappingFormData {
                    all_contacts: lists.all_contacts,
                    qualified_leads: lists.qualified_leads,
                    customers: lists.customers,
                    churned: lists.churned,
                    person,
                    stages,
                },
                choices: FormChoices {
                    paths,
                    attributes: named.attributes.into_iter().map(|a| (a.name, a.kind)).collect(),
                    lists: named.lists,
                },
            })
        }
        .await)
    }

    pub async fn save_forms(tenant_id: String, data: MappingFormData) -> Result<SavedMapping, AppError> {
        respond(async {
            let (state, member) = s::member(&tenant_id).await?;
            member.require_manage()?;
            let config = current_config(&state, &member).await?;
            let mut stages = Vec::new();
            for row in &data.stages {
                let key = StageKey::parse(&row.key).ok_or_else(|| AppError::Invalid(format!("{:?} is not a stage.", row.key)))?;
                if let Some(list) = row.list {
                    stages.push((key, list));
                }
            }
            let edit = FormEdit {
                lists: Lists { all_contacts: data.all_contacts, qualified_leads: data.qualified_leads, customers: data.customers, churned: data.churned },
                person_mapping: data.person.into_iter().map(|r| (r.path, r.attribute.to_uppercase())).collect(),
                deal_stage_mapping: stages,
            };
            let yaml = config.with_form(edit).to_yaml();
            let saved = store::save_checked(&state.pool, &state.secret_key, &state.providers, &state.limits, &member, &yaml).await?;
            Ok(SavedMapping { version: saved.version, warnings: saved.warnings.iter().map(|p| format!("{}: {}", p.at, p.message)).collect() })
        }
        .await)
    }
}

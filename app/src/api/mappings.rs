//! The Mappings page: the mapping in force as forms and as YAML, its versions, saving a new one,
//! and Brevo lists made from the forms.

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

/// One row of the person mapping form (the email row is not one: it is always mapped).
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

/// What the forms edit: exactly what their inputs and selects hold.
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
    /// The version the forms show; `None`: a first mapping, nothing saved yet.
    pub version: Option<i32>,
}

/// Where a mistake of the forms is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FormPlace {
    /// A list select: `all_contacts`, `qualified_leads`, `customers`, `churned`.
    List(String),
    /// The person row at this index.
    Person(usize),
    /// The stage row of this key.
    Stage(String),
    /// The mapping as a whole.
    Mapping,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormProblem {
    pub place: FormPlace,
    pub message: String,
}

/// What a save of the forms came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FormsSaveOutcome {
    Saved(SavedMapping),
    /// Nothing saved: each mistake beside its row.
    Refused(Vec<FormProblem>),
}

/// A Brevo list made (or found by its name) from the forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeListView {
    pub id: i64,
    pub name: String,
    pub existed: bool,
}

/// The suggested lists, one per role of the mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuggestedListsView {
    pub all_contacts: MadeListView,
    pub qualified_leads: MadeListView,
    pub customers: MadeListView,
    pub churned: MadeListView,
    /// (stage key, list) for each stage row the forms sent.
    pub stages: Vec<(String, i64)>,
}

#[server(endpoint = "mapping_forms")]
pub async fn mapping_forms(tenant_id: String) -> Result<MappingFormsView, AppError> {
    server::forms(tenant_id).await
}

#[server(endpoint = "save_mapping_forms", input = leptos::server_fn::codec::Json)]
pub async fn save_mapping_forms(
    tenant_id: String,
    data: MappingFormData,
) -> Result<FormsSaveOutcome, AppError> {
    server::save_forms(tenant_id, data).await
}

/// Makes a list of this name in the tenant's Brevo account (or takes the one of that name).
#[server(endpoint = "create_brevo_list")]
pub async fn create_brevo_list(tenant_id: String, name: String) -> Result<MadeListView, AppError> {
    server::create_list(tenant_id, name).await
}

/// Makes the suggested lists (one per role) in the tenant's Brevo account, and gives each of the
/// forms' stage rows its default list.
#[server(endpoint = "suggested_lists", input = leptos::server_fn::codec::Json)]
pub async fn suggested_lists(
    tenant_id: String,
    stage_keys: Vec<String>,
) -> Result<SuggestedListsView, AppError> {
    server::suggested_lists(tenant_id, stage_keys).await
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

    use pipebridge::mapping::lists::{self, ListError};
    use pipebridge::mapping::{Lists, forms};

    use super::{
        FormChoices, FormPlace, FormProblem, FormsSaveOutcome, MadeListView, MappingFormData,
        MappingFormsView, MappingVersionView, MappingView, PersonRow, SavedMapping, StageRow,
        SuggestedListsView,
    };
    use crate::api::server::{self as s, respond};
    use crate::error::AppError;

    impl From<SaveError> for AppError {
        fn from(e: SaveError) -> Self {
            match e {
                SaveError::Access(a) => a.into(),
                SaveError::Unreadable(m) => AppError::Invalid(m),
                SaveError::Invalid(problems) => AppError::Invalid(
                    problems
                        .iter()
                        .map(|p| format!("{}: {}", p.at, p.message))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                SaveError::Catalog(m) => {
                    tracing::warn!(message = %m, "reading the catalog failed");
                    AppError::Unavailable(format!(
                        "The mapping could not be checked against your accounts ({m}). Try again shortly."
                    ))
                }
                SaveError::Database(e) => e.into(),
            }
        }
    }

    pub async fn load(tenant_id: String) -> Result<MappingView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let current = store::current(&state.pool, &member).await?;
                let versions = store::versions(&state.pool, &member)
                    .await?
                    .into_iter()
                    .map(|v| MappingVersionView {
                        version: v.version,
                        saved_at: v.created_at.format(&Rfc3339).unwrap_or_default(),
                        author: v.author,
                    })
                    .collect();
                Ok(match current {
                    Some((version, yaml)) => MappingView { yaml, version: Some(version), versions },
                    None => {
                        MappingView { yaml: store::SEED_YAML.to_owned(), version: None, versions }
                    }
                })
            }
            .await,
        )
    }

    pub async fn save(tenant_id: String, yaml: String) -> Result<SavedMapping, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let saved = store::save_checked(
                    &state.pool,
                    &state.secret_key,
                    &state.providers,
                    &state.limits,
                    &member,
                    &yaml,
                )
                .await?;
                Ok(SavedMapping {
                    version: saved.version,
                    warnings: saved
                        .warnings
                        .iter()
                        .map(|p| format!("{}: {}", p.at, p.message))
                        .collect(),
                })
            }
            .await,
        )
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
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let shown = forms::load(
                    &state.pool,
                    &state.secret_key,
                    &state.providers,
                    &state.limits,
                    &member,
                )
                .await?;
                Ok(view(shown))
            }
            .await,
        )
    }

    fn view(shown: forms::Shown) -> MappingFormsView {
        let f = match shown {
            forms::Shown::Ready(f) => f,
            forms::Shown::Unavailable(why) => {
                return MappingFormsView {
                    unavailable: Some(why),
                    data: MappingFormData::default(),
                    choices: FormChoices::default(),
                    version: None,
                };
            }
        };
        MappingFormsView {
            unavailable: None,
            data: MappingFormData {
                all_contacts: f.lists.all_contacts,
                qualified_leads: f.lists.qualified_leads,
                customers: f.lists.customers,
                churned: f.lists.churned,
                person: f
                    .person
                    .into_iter()
                    .map(|(path, attribute)| PersonRow { path, attribute })
                    .collect(),
                stages: f
                    .stages
                    .into_iter()
                    .map(|r| StageRow { key: r.key, label: r.label, list: r.list })
                    .collect(),
            },
            choices: FormChoices {
                paths: f.choices.paths,
                attributes: f.choices.attributes,
                lists: f.choices.lists,
            },
            version: f.version,
        }
    }

    fn problem(p: forms::Placed) -> FormProblem {
        let place = match p.place {
            forms::Place::List(role) => FormPlace::List(role.key().to_owned()),
            forms::Place::Person(i) => FormPlace::Person(i),
            forms::Place::Stage(key) => FormPlace::Stage(key),
            forms::Place::Mapping => FormPlace::Mapping,
        };
        FormProblem { place, message: p.message }
    }

    pub async fn save_forms(
        tenant_id: String,
        data: MappingFormData,
    ) -> Result<FormsSaveOutcome, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let submitted = forms::Submitted {
                    lists: Lists {
                        all_contacts: data.all_contacts,
                        qualified_leads: data.qualified_leads,
                        customers: data.customers,
                        churned: data.churned,
                    },
                    person: data.person.into_iter().map(|r| (r.path, r.attribute)).collect(),
                    stages: data.stages.into_iter().map(|r| (r.key, r.list)).collect(),
                };
                match forms::save(
                    &state.pool,
                    &state.secret_key,
                    &state.providers,
                    &state.limits,
                    &member,
                    submitted,
                )
                .await
                {
                    Ok(saved) => Ok(FormsSaveOutcome::Saved(SavedMapping {
                        version: saved.version,
                        warnings: saved.warnings.into_iter().map(|w| w.message).collect(),
                    })),
                    Err(forms::FormSaveError::Refused(problems)) => {
                        Ok(FormsSaveOutcome::Refused(problems.into_iter().map(problem).collect()))
                    }
                    Err(forms::FormSaveError::Save(e)) => Err(e.into()),
                }
            }
            .await,
        )
    }

    impl From<ListError> for AppError {
        fn from(e: ListError) -> Self {
            match e {
                ListError::Access(a) => a.into(),
                ListError::Connect(c) => c.into(),
                ListError::Brevo(m) => {
                    tracing::warn!(message = %m, "making a Brevo list failed");
                    AppError::Unavailable(m)
                }
                other => AppError::Invalid(other.to_string()),
            }
        }
    }

    fn made(m: lists::MadeList) -> MadeListView {
        MadeListView { id: m.id, name: m.name, existed: m.existed }
    }

    pub async fn create_list(tenant_id: String, name: String) -> Result<MadeListView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                Ok(made(
                    lists::create(&state.pool, &state.secret_key, &state.limits, &member, &name)
                        .await?,
                ))
            }
            .await,
        )
    }

    pub async fn suggested_lists(
        tenant_id: String,
        stage_keys: Vec<String>,
    ) -> Result<SuggestedListsView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let s = lists::suggested(
                    &state.pool,
                    &state.secret_key,
                    &state.limits,
                    &member,
                    &stage_keys,
                )
                .await?;
                Ok(SuggestedListsView {
                    all_contacts: made(s.all_contacts),
                    qualified_leads: made(s.qualified_leads),
                    customers: made(s.customers),
                    churned: made(s.churned),
                    stages: s.stages,
                })
            }
            .await,
        )
    }
}

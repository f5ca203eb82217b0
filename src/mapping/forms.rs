//! The mapping as its forms show it: what it maps, in the terms of the tenant's real Pipedrive
//! fields and stages and Brevo attributes and lists, with those to choose from; and what a person
//! submits, read into an edit and saved as a new version, each mistake placed on its row.
//!
//! The forms save exactly what they show: the email row is not a row of the form (it is the
//! contact's key, always `email: email`), and a tenant without a mapping starts with no lists
//! rather than the seed's example ids (the page's selects show a list Brevo lacks as such:
//! `app/src/pages/mapping_forms.rs`).

use sqlx::PgPool;

use super::lists::ListRole;
use super::store::{self, SaveError, Saved};
use super::validate::{Problem, Severity};
use super::{FormEdit, Lists, MappingConfig, StageKey, catalog, validate};
use crate::accounts::Member;
use crate::connections::{self, ConnectError, Providers};
use crate::pipedrive::limits::Registry;
use crate::secrets::SecretKey;

/// The path of the contact's key: mapped once, to Brevo's `email`, by every mapping.
pub const KEY_PATH: &str = "email";

/// The paths the person mapping offers besides the custom fields, with their labels (the key,
/// `email`, is not offered: it is always mapped).
pub const BUILT_IN: &[(&str, &str)] = &[
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

/// The forms of the mapping in force (or of a first mapping).
#[derive(Debug, Clone, PartialEq)]
pub struct Forms {
    pub lists: Lists,
    /// (Pipedrive path, Brevo attribute), in the mapping's order, without the key row; custom
    /// fields by their key, whatever label or slug the YAML named them by.
    pub person: Vec<(String, String)>,
    /// Every stage of every pipeline, then won and lost, each with its list if it has one.
    pub stages: Vec<StageRow>,
    pub choices: Choices,
    /// The version these forms show; `None`: no mapping is saved, this is a first one.
    pub version: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageRow {
    /// A stage id, `won` or `lost` (what `StageKey::parse` reads).
    pub key: String,
    pub label: String,
    pub list: Option<i64>,
}

/// What the forms' dropdowns offer, from the tenant's real accounts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Choices {
    /// (path, label): the built-in paths, then the custom fields by label.
    pub paths: Vec<(String, String)>,
    /// (name, type)
    pub attributes: Vec<(String, String)>,
    /// (id, name)
    pub lists: Vec<(i64, String)>,
}

/// The forms, or why they cannot be shown (the YAML editor still works then).
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Ready(Forms),
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FormsError {
    /// The mapping in force does not read (it was saved by an older version?).
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The tenant's mapping in force and its version, if one is saved.
async fn saved_config(
    pool: &PgPool,
    member: &Member,
) -> Result<Option<(i32, MappingConfig)>, FormsError> {
    match store::current(pool, member).await? {
        Some((version, yaml)) => MappingConfig::from_yaml(&yaml)
            .map(|c| Some((version, c)))
            .map_err(|e| FormsError::Unreadable(e.message)),
        None => Ok(None),
    }
}

fn seed() -> MappingConfig {
    MappingConfig::from_yaml(store::SEED_YAML).expect("the seed file reads (tested)")
}

/// The forms of the tenant's mapping, read against its connected accounts.
pub async fn load(
    pool: &PgPool,
    key: &SecretKey,
    providers: &Providers,
    limits: &Registry,
    member: &Member,
) -> Result<Shown, FormsError> {
    let saved = saved_config(pool, member).await?;
    let pd = connections::pipedrive_client(pool, key, providers, member, limits).await?;
    let brevo = connections::brevo_api(pool, key, member, limits).await?;
    let (Some(pd), Some(brevo)) = (pd, brevo) else {
        return Ok(Shown::Unavailable(
            "Connect Pipedrive and Brevo first: the forms list your real fields, stages, attributes and lists. The YAML below works meanwhile.".into(),
        ));
    };
    let named = match catalog::load_named(&pd, &brevo).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "reading the catalog for the forms failed");
            return Ok(Shown::Unavailable(format!(
                "Your accounts could not be read right now ({e}). Try again shortly; the YAML below works meanwhile."
            )));
        }
    };
    Ok(Shown::Ready(match saved {
        Some((version, config)) => Forms { version: Some(version), ..forms(&config, named) },
        None => first_forms(named),
    }))
}

/// The forms of a tenant that has saved no mapping: the seed's person mapping in the terms of its
/// real fields (a custom field it lacks is left out), and no lists: the seed's ids are examples.
pub fn first_forms(named: catalog::Named) -> Forms {
    let mut forms = forms(&seed(), named);
    let known: Vec<String> = forms.choices.paths.iter().map(|(p, _)| p.clone()).collect();
    forms.person.retain(|(path, _)| known.contains(path));
    forms.lists = Lists::default();
    forms.stages.iter_mut().for_each(|s| s.list = None);
    forms
}

/// The forms of `config` in the terms of the tenant's accounts (pure).
pub fn forms(config: &MappingConfig, named: catalog::Named) -> Forms {
    let cat = validate::Catalog { person_fields: named.fields.clone(), ..Default::default() };
    let mut paths: Vec<(String, String)> =
        BUILT_IN.iter().map(|(p, l)| ((*p).to_owned(), (*l).to_owned())).collect();
    paths.extend(named.fields.iter().map(|f| {
        (format!("custom_fields.{}", f.key), format!("{} (custom, {})", f.label, f.field_type))
    }));
    let person = config
        .person_mapping
        .iter()
        .filter(|(path, _)| path.as_str() != KEY_PATH)
        .map(|(path, attribute)| {
            let path = match path
                .strip_prefix("custom_fields.")
                .and_then(|n| validate::custom_field(&cat, n))
            {
                Some(f) => format!("custom_fields.{}", f.key),
                None => path.clone(),
            };
            (path, attribute.clone())
        })
        .collect();
    let list_of = |key: &StageKey| config.deal_stage_mapping.get(key).copied();
    let mut stages: Vec<StageRow> = named
        .stages
        .iter()
        .map(|(id, label)| StageRow {
            key: id.to_string(),
            label: label.clone(),
            list: list_of(&StageKey::Stage(*id)),
        })
        .collect();
    stages.push(StageRow {
        key: "won".into(),
        label: "Won (any pipeline)".into(),
        list: list_of(&StageKey::Won),
    });
    stages.push(StageRow {
        key: "lost".into(),
        label: "Lost (any pipeline)".into(),
        list: list_of(&StageKey::Lost),
    });
    Forms {
        lists: config.connectors.pipedrive.lists,
        person,
        stages,
        choices: Choices {
            paths,
            attributes: named.attributes.into_iter().map(|a| (a.name, a.kind)).collect(),
            lists: named.lists,
        },
        version: None,
    }
}

/// What the forms submit: exactly what their inputs and selects hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Submitted {
    pub lists: Lists,
    /// (path, attribute) per row, in the form's order, without the key row.
    pub person: Vec<(String, String)>,
    /// (stage key, list) per stage row.
    pub stages: Vec<(String, Option<i64>)>,
}

/// Where in the forms a mistake is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    List(ListRole),
    /// The person row at this index (of [`Submitted::person`]).
    Person(usize),
    /// The stage row of this key.
    Stage(String),
    /// The mapping as a whole (parts only the YAML edits: event rules, options).
    Mapping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub place: Place,
    pub message: String,
}

fn placed(place: Place, message: impl Into<String>) -> Placed {
    Placed { place, message: message.into() }
}

/// Reads what the forms submitted into an edit, or says what is wrong on which row. Brevo's
/// attribute names are upper case: a row's attribute is read so.
pub fn edit(submitted: &Submitted) -> Result<FormEdit, Vec<Placed>> {
    let mut problems = Vec::new();
    let mut person = Vec::new();
    for (i, (path, attribute)) in submitted.person.iter().enumerate() {
        let (path, attribute) = (path.trim(), attribute.trim().to_uppercase());
        if path == KEY_PATH {
            problems.push(placed(
                Place::Person(i),
                "The email is the contact's key: it is mapped once, in the first row.",
            ));
        } else if attribute.is_empty() {
            problems.push(placed(
                Place::Person(i),
                "Choose a Brevo attribute for this field, or remove the row.",
            ));
        } else if attribute == "EMAIL" {
            problems.push(placed(
                Place::Person(i),
                "EMAIL is the contact's key: choose another attribute.",
            ));
        } else if submitted.person[..i].iter().any(|(p, _)| p.trim() == path) {
            problems.push(placed(
                Place::Person(i),
                "This field is mapped in a row above already: keep one of them.",
            ));
        } else {
            person.push((path.to_owned(), attribute));
        }
    }
    let mut stages = Vec::new();
    for (key, list) in &submitted.stages {
        match StageKey::parse(key) {
            Some(stage) => stages.extend(list.map(|l| (stage, l))),
            None => {
                problems.push(placed(Place::Stage(key.clone()), format!("{key:?} is not a stage.")))
            }
        }
    }
    if problems.is_empty() {
        Ok(FormEdit { lists: submitted.lists, person_mapping: person, deal_stage_mapping: stages })
    } else {
        Err(problems)
    }
}

/// Places a problem of the whole mapping's check (its `at` is a YAML path) on the form's row.
fn place(problem: &Problem, submitted: &Submitted) -> Placed {
    let at = problem.at.as_str();
    let place = if let Some(key) = at.strip_prefix("connectors.pipedrive.lists.") {
        ListRole::parse(key).map(Place::List)
    } else if let Some(path) = at.strip_prefix("person_mapping.") {
        submitted.person.iter().position(|(p, _)| p.trim() == path).map(Place::Person)
    } else {
        at.strip_prefix("deal_stage_mapping.").map(|key| Place::Stage(key.to_owned()))
    };
    match place {
        Some(place) => placed(place, problem.message.clone()),
        None => placed(Place::Mapping, format!("{at}: {}", problem.message)),
    }
}

/// A forms save that succeeded: the version, and what the person should know (per row).
#[derive(Debug, Clone)]
pub struct FormSaved {
    pub version: i32,
    pub warnings: Vec<Placed>,
}

#[derive(Debug, thiserror::Error)]
pub enum FormSaveError {
    /// Nothing was saved: each mistake on its row.
    #[error("the forms have {} mistake(s)", .0.len())]
    Refused(Vec<Placed>),
    #[error(transparent)]
    Save(SaveError),
}

/// Saves the mapping in force (or the seed's rest, for a first mapping) with what the forms
/// submitted, as a new version, checked as a YAML save is.
pub async fn save(
    pool: &PgPool,
    key: &SecretKey,
    providers: &Providers,
    limits: &Registry,
    member: &Member,
    submitted: Submitted,
) -> Result<FormSaved, FormSaveError> {
    member.require_manage().map_err(|e| FormSaveError::Save(e.into()))?;
    let edit = edit(&submitted).map_err(FormSaveError::Refused)?;
    let config = match saved_config(pool, member).await {
        Ok(Some((_, config))) => config,
        Ok(None) => seed(),
        Err(FormsError::Database(e)) => return Err(FormSaveError::Save(SaveError::Database(e))),
        Err(other) => return Err(FormSaveError::Save(SaveError::Unreadable(other.to_string()))),
    };
    match store::save_checked(
        pool,
        key,
        providers,
        limits,
        member,
        &config.with_form(edit).to_yaml(),
    )
    .await
    {
        Ok(Saved { version, warnings }) => Ok(FormSaved {
            version,
            warnings: warnings.iter().map(|w| place(w, &submitted)).collect(),
        }),
        Err(SaveError::Invalid(problems)) => Err(FormSaveError::Refused(
            problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .map(|p| place(p, &submitted))
                .collect(),
        )),
        Err(other) => Err(FormSaveError::Save(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::validate::{AttributeInfo, Catalog, FieldInfo, check};

    fn named() -> catalog::Named {
        catalog::Named {
            fields: vec![FieldInfo {
                key: "9f1c2a".into(),
                label: "Lead source".into(),
                field_type: "enum".into(),
            }],
            stages: vec![(1, "Sales → Qualified".into()), (7, "Sales → Demo".into())],
            attributes: vec![AttributeInfo { name: "LEAD_SOURCE".into(), kind: "text".into() }],
            lists: vec![(61, "Qualified leads".into())],
        }
    }

    /// The seed names its custom field by slug: the form shows the field's key, and every stage
    /// of the accounts with its list (none for a stage the mapping leaves out), then won and lost.
    #[test]
    fn the_seed_in_the_terms_of_the_accounts() {
        let config = seed();
        let f = forms(&config, named());
        assert_eq!(f.lists, config.connectors.pipedrive.lists);
        assert!(
            f.person.contains(&("custom_fields.9f1c2a".to_owned(), "LEAD_SOURCE".to_owned())),
            "{:?}",
            f.person
        );
        assert_eq!(f.person.len(), config.person_mapping.len() - 1, "all but the key row");
        assert!(f.person.iter().all(|(p, _)| p != KEY_PATH));
        let stages: Vec<(&str, Option<i64>)> =
            f.stages.iter().map(|s| (s.key.as_str(), s.list)).collect();
        assert_eq!(
            stages,
            vec![("1", Some(61)), ("7", None), ("won", Some(63)), ("lost", Some(64))]
        );
        assert_eq!(f.choices.paths.len(), BUILT_IN.len() + 1);
        assert_eq!(
            f.choices.paths.last().unwrap(),
            &("custom_fields.9f1c2a".to_owned(), "Lead source (custom, enum)".to_owned())
        );
        assert_eq!(f.choices.attributes, vec![("LEAD_SOURCE".to_owned(), "text".to_owned())]);
    }

    /// A first mapping has the seed's person rows that the accounts can fill, and no list at all.
    #[test]
    fn a_first_mapping_starts_without_lists() {
        let f = first_forms(named());
        assert_eq!(f.lists, Lists::default());
        assert!(f.stages.iter().all(|s| s.list.is_none()), "{:?}", f.stages);
        assert_eq!(f.stages.len(), 4);
        assert!(f.person.contains(&("custom_fields.9f1c2a".to_owned(), "LEAD_SOURCE".to_owned())));
        let without_field = first_forms(catalog::Named { fields: vec![], ..named() });
        assert!(
            without_field.person.iter().all(|(p, _)| !p.starts_with("custom_fields.")),
            "a field the account lacks is left out"
        );
        assert_eq!(without_field.person.len(), 10);
    }

    /// The defect of the first release: the forms' save upper-cased every attribute, the key's
    /// `email` too, and the check refused `email: EMAIL`. The forms as they are first shown, saved
    /// unchanged, pass the check.
    #[test]
    fn the_forms_as_shown_save() {
        let f = first_forms(named());
        let submitted = Submitted {
            lists: f.lists,
            person: f.person.clone(),
            stages: f.stages.iter().map(|s| (s.key.clone(), s.list)).collect(),
        };
        let config = seed().with_form(edit(&submitted).unwrap());
        assert_eq!(
            config.person_mapping.get_index(0),
            Some((&"email".to_owned(), &"email".to_owned())),
            "the key row comes first"
        );
        let catalog = Catalog {
            person_fields: named().fields,
            stage_ids: vec![1, 7],
            attributes: vec![AttributeInfo { name: "LEAD_SOURCE".into(), kind: "text".into() }],
            list_ids: vec![61],
        };
        let errors: Vec<Problem> = check(&config, Some(&catalog))
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        assert_eq!(errors, vec![]);
        assert!(config.deal_stage_mapping.is_empty(), "stages left at none save as none");
        assert_eq!(
            config.connectors.pipedrive.lists,
            Lists::default(),
            "lists left at none save as none"
        );
    }

    #[test]
    fn each_mistake_is_placed_on_its_row() {
        let submitted = Submitted {
            lists: Lists::default(),
            person: vec![
                ("name".into(), "fullname".into()),
                ("phone".into(), " ".into()),
                ("name".into(), "NAME2".into()),
                ("first_name".into(), "email".into()),
                ("email".into(), "EMAIL".into()),
            ],
            stages: vec![("1".into(), Some(61)), ("later".into(), None)],
        };
        let problems = edit(&submitted).unwrap_err();
        let places: Vec<&Place> = problems.iter().map(|p| &p.place).collect();
        assert_eq!(
            places,
            vec![
                &Place::Person(1),
                &Place::Person(2),
                &Place::Person(3),
                &Place::Person(4),
                &Place::Stage("later".into())
            ]
        );
        let ok = Submitted {
            person: vec![("name".into(), " fullname ".into())],
            stages: vec![("won".into(), Some(3))],
            ..submitted
        };
        let e = edit(&ok).unwrap();
        assert_eq!(e.person_mapping, vec![("name".to_owned(), "FULLNAME".to_owned())]);
        assert_eq!(e.deal_stage_mapping, vec![(StageKey::Won, 3)]);

        let check_problem =
            |at: &str| Problem { severity: Severity::Error, at: at.into(), message: "m".into() };
        assert_eq!(
            place(&check_problem("connectors.pipedrive.lists.customers"), &ok).place,
            Place::List(ListRole::Customers)
        );
        assert_eq!(place(&check_problem("person_mapping.name"), &ok).place, Place::Person(0));
        assert_eq!(
            place(&check_problem("deal_stage_mapping.won"), &ok).place,
            Place::Stage("won".into())
        );
        let other = place(&check_problem("webhooks[0]"), &ok);
        assert_eq!((other.place, other.message.as_str()), (Place::Mapping, "webhooks[0]: m"));
    }
}

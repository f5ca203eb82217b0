//! The mapping as its forms show it: what it maps, in the terms of the tenant's real Pipedrive
//! fields and stages and Brevo attributes and lists, with those to choose from; and a form's
//! edit saved as a new version of the mapping.

use sqlx::PgPool;

use super::store::{self, Saved, SaveError};
use super::{FormEdit, Lists, MappingConfig, StageKey, catalog, validate};
use crate::accounts::Member;
use crate::connections::{self, ConnectError, Providers};
use crate::pipedrive::limits::Registry;
use crate::secrets::SecretKey;

/// The paths the person mapping offers besides the custom fields, with their labels.
pub const BUILT_IN: &[(&str, &str)] = &[
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

/// The forms of the mapping in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Forms {
    pub lists: Lists,
    /// (Pipedrive path, Brevo attribute), in the mapping's order; custom fields by their key,
    /// whatever label or slug the YAML named them by.
    pub person: Vec<(String, String)>,
    /// Every stage of every pipeline, then won and lost, each with its list if it has one.
    pub stages: Vec<StageRow>,
    pub choices: Choices,
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

/// The mapping in force, or the seed when the tenant has saved none.
async fn current_config(pool: &PgPool, member: &Member) -> Result<MappingConfig, FormsError> {
    let yaml = store::current(pool, member).await?.map(|(_, y)| y).unwrap_or_else(|| store::SEED_YAML.to_owned());
    MappingConfig::from_yaml(&yaml).map_err(|e| FormsError::Unreadable(e.message))
}

/// The forms of the tenant's mapping, read against its connected accounts.
pub async fn load(pool: &PgPool, key: &SecretKey, providers: &Providers, limits: &Registry, member: &Member) -> Result<Shown, FormsError> {
    let config = current_config(pool, member).await?;
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
            return Ok(Shown::Unavailable(format!("Your accounts could not be read right now ({e}). Try again shortly; the YAML below works meanwhile.")));
        }
    };
    Ok(Shown::Ready(forms(&config, named)))
}

/// The forms of `config` in the terms of the tenant's accounts (pure).
pub fn forms(config: &MappingConfig, named: catalog::Named) -> Forms {
    let cat = validate::Catalog { person_fields: named.fields.clone(), ..Default::default() };
    let mut paths: Vec<(String, String)> = BUILT_IN.iter().map(|(p, l)| ((*p).to_owned(), (*l).to_owned())).collect();
    paths.extend(named.fields.iter().map(|f| (format!("custom_fields.{}", f.key), format!("{} (custom, {})", f.label, f.field_type))));
    let person = config
        .person_mapping
        .iter()
        .map(|(path, attribute)| {
            let path = match path.strip_prefix("custom_fields.").and_then(|n| validate::custom_field(&cat, n)) {
                Some(f) => format!("custom_fields.{}", f.key),
                None => path.clone(),
            };
            (path, attribute.clone())
        })
        .collect();
    let list_of = |key: &StageKey| config.deal_stage_mapping.get(key).copied();
    let mut stages: Vec<StageRow> =
        named.stages.iter().map(|(id, label)| StageRow { key: id.to_string(), label: label.clone(), list: list_of(&StageKey::Stage(*id)) }).collect();
    stages.push(StageRow { key: "won".into(), label: "Won (any pipeline)".into(), list: list_of(&StageKey::Won) });
    stages.push(StageRow { key: "lost".into(), label: "Lost (any pipeline)".into(), list: list_of(&StageKey::Lost) });
    Forms {
        lists: config.connectors.pipedrive.lists,
        person,
        stages,
        choices: Choices { paths, attributes: named.attributes.into_iter().map(|a| (a.name, a.kind)).collect(), lists: named.lists },
    }
}

/// Saves the mapping in force with a form's edit as a new version, checked as a YAML save is.
pub async fn save(pool: &PgPool, key: &SecretKey, providers: &Providers, limits: &Registry, member: &Member, edit: FormEdit) -> Result<Saved, SaveError> {
    member.require_manage()?;
    let config = current_config(pool, member).await.map_err(|e| match e {
        FormsError::Database(e) => SaveError::Database(e),
        other => SaveError::Unreadable(other.to_string()),
    })?;
    store::save_checked(pool, key, providers, limits, member, &config.with_form(edit).to_yaml()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::validate::{AttributeInfo, FieldInfo};

    fn named() -> catalog::Named {
        catalog::Named {
            fields: vec![FieldInfo { key: "9f1c2a".into(), label: "Lead source".into(), field_type: "enum".into() }],
            stages: vec![(1, "Sales → Qualified".into()), (7, "Sales → Demo".into())],
            attributes: vec![AttributeInfo { name: "LEAD_SOURCE".into(), kind: "text".into() }],
            lists: vec![(61, "Qualified leads".into())],
        }
    }

    /// The seed names its custom field by slug: the form shows the field's key, and every stage
    /// of the accounts with its list (none for a stage the mapping leaves out), then won and lost.
    #[test]
    fn the_seed_in_the_terms_of_the_accounts() {
        let config = MappingConfig::from_yaml(store::SEED_YAML).unwrap();
        let f = forms(&config, named());
        assert_eq!(f.lists, config.connectors.pipedrive.lists);
        assert!(f.person.contains(&("custom_fields.9f1c2a".to_owned(), "LEAD_SOURCE".to_owned())), "{:?}", f.person);
        assert_eq!(f.person.len(), config.person_mapping.len());
        let stages: Vec<(&str, Option<i64>)> = f.stages.iter().map(|s| (s.key.as_str(), s.list)).collect();
        assert_eq!(stages, vec![("1", Some(61)), ("7", None), ("won", Some(63)), ("lost", Some(64))]);
        assert_eq!(f.choices.paths.len(), BUILT_IN.len() + 1);
        assert_eq!(f.choices.paths.last().unwrap(), &("custom_fields.9f1c2a".to_owned(), "Lead source (custom, enum)".to_owned()));
        assert_eq!(f.choices.attributes, vec![("LEAD_SOURCE".to_owned(), "text".to_owned())]);
    }
}

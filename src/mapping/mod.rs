//! The tenant's mapping configuration: the YAML format of PRODUCT.md, parsed into typed values
//! (import), checked (structure here, against the tenant's real fields, stages, attributes and
//! lists in `validate`), and written back (export, never with secrets). `transform` turns a
//! Pipedrive person into Brevo attributes with it.

pub mod catalog;
pub mod forms;
pub mod lists;
pub mod store;
pub mod transform;
pub mod validate;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The whole configuration, as the YAML has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    pub connectors: Connectors,
    /// Pipedrive path → Brevo attribute, in the order written.
    #[serde(default)]
    pub person_mapping: IndexMap<String, String>,
    /// Stage id, `won` or `lost` → Brevo list id.
    #[serde(default, with = "stage_keys")]
    pub deal_stage_mapping: IndexMap<StageKey, i64>,
    #[serde(default)]
    pub webhooks: Vec<EventRule>,
    /// How the sync behaves (not in the connector spec's file; left out of an export while it
    /// holds the defaults).
    #[serde(default, skip_serializing_if = "SyncOptions::is_default")]
    pub options: SyncOptions,
}

/// The tenant's sync settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncOptions {
    /// ISO country code used to read phone numbers written without `+` (e.g. `EE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_country: Option<String>,
    /// What a person deleted in Pipedrive becomes in Brevo: taken out of the synced lists
    /// (`unlink`), or deleted (`delete`).
    #[serde(default)]
    pub deleted_persons: DeletedPersons,
    /// A backfill sends no events for the past, except activities and stage changes of this many
    /// last days.
    #[serde(default)]
    pub backfill_event_days: u32,
    /// Create the Brevo attributes the mapping needs and Brevo lacks (else they are reported).
    #[serde(default = "yes")]
    pub create_missing_attributes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletedPersons {
    #[default]
    Unlink,
    Delete,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            default_country: None,
            deleted_persons: DeletedPersons::Unlink,
            backfill_event_days: 0,
            create_missing_attributes: true,
        }
    }
}

impl SyncOptions {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The default country, if set and known.
    pub fn country(&self) -> Option<phonenumber::country::Id> {
        self.default_country.as_deref().and_then(|c| c.trim().to_uppercase().parse().ok())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connectors {
    pub pipedrive: PipedriveSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipedriveSection {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Accepted on import (the seed file has one) but never kept nor exported: credentials live
    /// in Connections, encrypted.
    #[serde(default, skip_serializing)]
    pub api_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_domain: Option<String>,
    #[serde(default)]
    pub sync: SyncSwitches,
    #[serde(default)]
    pub lists: Lists,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSwitches {
    #[serde(default = "yes")]
    pub persons: bool,
    #[serde(default = "yes")]
    pub deals: bool,
    #[serde(default = "yes")]
    pub organizations: bool,
    #[serde(default = "yes")]
    pub activities: bool,
    #[serde(default = "yes")]
    pub leads: bool,
}

impl Default for SyncSwitches {
    fn default() -> Self {
        Self { persons: true, deals: true, organizations: true, activities: true, leads: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lists {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_contacts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualified_leads: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churned: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageKey {
    Stage(u64),
    Won,
    Lost,
}

/// A Pipedrive event (in the file's v1 words) → a Brevo event name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    pub event_action: String,
    pub event_object: String,
    pub brevo_event: String,
}

/// YAML keys of the stage mapping are integers or the words `won` / `lost`.
mod stage_keys {
    use indexmap::IndexMap;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_yaml::Value;

    use super::StageKey;

    pub fn serialize<S: Serializer>(
        map: &IndexMap<StageKey, i64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            match k {
                StageKey::Stage(id) => m.serialize_entry(id, v)?,
                StageKey::Won => m.serialize_entry("won", v)?,
                StageKey::Lost => m.serialize_entry("lost", v)?,
            }
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<IndexMap<StageKey, i64>, D::Error> {
        let raw: IndexMap<Value, i64> = IndexMap::deserialize(d)?;
        let mut out = IndexMap::new();
        for (k, v) in raw {
            let key = match &k {
                Value::Number(n) => n.as_u64().map(StageKey::Stage),
                Value::String(s) if s.eq_ignore_ascii_case("won") => Some(StageKey::Won),
                Value::String(s) if s.eq_ignore_ascii_case("lost") => Some(StageKey::Lost),
                Value::String(s) => s.trim().parse().ok().map(StageKey::Stage),
                _ => None,
            };
            let key = key.ok_or_else(|| {
                D::Error::custom(format!(
                    "deal_stage_mapping: {k:?} is not a stage id, \"won\" or \"lost\""
                ))
            })?;
            if out.insert(key, v).is_some() {
                return Err(D::Error::custom(format!("deal_stage_mapping: {k:?} is mapped twice")));
            }
        }
        Ok(out)
    }
}

/// What the mapping forms edit; the rest of the configuration (switches, event rules, options)
/// stays as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormEdit {
    pub lists: Lists,
    /// Pipedrive path → Brevo attribute, in order; rows with an empty side are dropped.
    pub person_mapping: Vec<(String, String)>,
    /// Stage (id, `won`, `lost`) → list; stages without a list are left out.
    pub deal_stage_mapping: Vec<(StageKey, i64)>,
}

impl MappingConfig {
    /// This configuration with the forms' edit. The key row, `email: email`, comes first
    /// whatever the edit holds: the forms do not edit it.
    pub fn with_form(mut self, edit: FormEdit) -> Self {
        self.connectors.pipedrive.lists = edit.lists;
        let key = (forms::KEY_PATH.to_owned(), forms::KEY_PATH.to_owned());
        let rows = edit
            .person_mapping
            .into_iter()
            .map(|(p, a)| (p.trim().to_owned(), a.trim().to_owned()))
            .filter(|(p, a)| !p.is_empty() && !a.is_empty() && p != forms::KEY_PATH);
        self.person_mapping = std::iter::once(key).chain(rows).collect();
        self.deal_stage_mapping = edit.deal_stage_mapping.into_iter().collect();
        self
    }
}

impl StageKey {
    /// `12`, `won` or `lost`, as the YAML writes it.
    pub fn as_text(&self) -> String {
        match self {
            StageKey::Stage(id) => id.to_string(),
            StageKey::Won => "won".into(),
            StageKey::Lost => "lost".into(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            t if t.eq_ignore_ascii_case("won") => Some(StageKey::Won),
            t if t.eq_ignore_ascii_case("lost") => Some(StageKey::Lost),
            t => t.parse().ok().map(StageKey::Stage),
        }
    }
}

/// Why a YAML file was refused, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ImportError {
    pub line: Option<usize>,
    pub message: String,
}

impl MappingConfig {
    /// Parses the YAML format; a mistake of shape or type says where it is.
    pub fn from_yaml(text: &str) -> Result<Self, ImportError> {
        serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            let message = match line {
                Some(l) => format!("line {l}: {e}"),
                None => e.to_string(),
            };
            ImportError { line, message }
        })
    }

    /// The YAML format again, without secrets.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a mapping serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SEED: &str = include_str!("seed.yaml");

    #[test]
    fn the_seed_file_is_accepted_as_it_is() {
        let c = MappingConfig::from_yaml(SEED).unwrap();
        assert_eq!(c.connectors.pipedrive.lists.customers, Some(62));
        assert_eq!(c.person_mapping.get("org_id.name").map(String::as_str), Some("COMPANY"));
        assert_eq!(c.person_mapping.get_index(0).unwrap().0, "email", "order kept");
        assert_eq!(c.deal_stage_mapping[&StageKey::Stage(3)], 62);
        assert_eq!(c.deal_stage_mapping[&StageKey::Won], 63);
        assert_eq!(c.deal_stage_mapping[&StageKey::Lost], 64);
        assert_eq!(c.webhooks.len(), 6);
        assert_eq!(c.connectors.pipedrive.api_token.as_deref(), Some("..."));
    }

    #[test]
    fn export_gives_it_back_without_secrets() {
        let c = MappingConfig::from_yaml(SEED).unwrap();
        let out = c.to_yaml();
        assert!(!out.contains("api_token"));
        let again = MappingConfig::from_yaml(&out).unwrap();
        assert_eq!(again.person_mapping, c.person_mapping);
        assert_eq!(again.deal_stage_mapping, c.deal_stage_mapping);
        assert_eq!(again.webhooks, c.webhooks);
        assert_eq!(again.connectors.pipedrive.lists, c.connectors.pipedrive.lists);
    }

    #[test]
    fn forms_replace_lists_person_and_stage_mappings_and_keep_the_rest() {
        let c = MappingConfig::from_yaml(SEED).unwrap();
        let edit = FormEdit {
            lists: Lists { all_contacts: Some(2), ..Default::default() },
            person_mapping: vec![
                ("email".into(), "email".into()),
                ("name".into(), " FULLNAME ".into()),
                ("phone".into(), "".into()),
            ],
            deal_stage_mapping: vec![
                (StageKey::parse("7").unwrap(), 3),
                (StageKey::parse("Won").unwrap(), 4),
            ],
        };
        let out = c.clone().with_form(edit);
        assert_eq!(out.connectors.pipedrive.lists.all_contacts, Some(2));
        assert_eq!(out.connectors.pipedrive.lists.customers, None);
        assert_eq!(out.person_mapping.len(), 2, "the empty row is dropped");
        let upper = c.clone().with_form(FormEdit {
            person_mapping: vec![
                ("email".into(), "EMAIL".into()),
                ("name".into(), "FULLNAME".into()),
            ],
            ..Default::default()
        });
        assert_eq!(
            upper.person_mapping.get_index(0),
            Some((&"email".to_owned(), &"email".to_owned())),
            "the key row is never re-encoded"
        );
        assert_eq!(out.person_mapping["name"], "FULLNAME");
        assert_eq!(out.deal_stage_mapping[&StageKey::Stage(7)], 3);
        assert_eq!(out.deal_stage_mapping[&StageKey::Won], 4);
        assert_eq!(out.webhooks, c.webhooks, "kept");
        assert_eq!(StageKey::Won.as_text(), "won");
    }

    #[test]
    fn mistakes_say_where() {
        let e =
            MappingConfig::from_yaml("connectors:\n  pipedrive:\n    lists: { customers: many }\n")
                .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.starts_with("line 3:"), "{}", e.message);
        let e = MappingConfig::from_yaml("connectors: { pipedrive: {} }\npersn_mapping: {}\n")
            .unwrap_err();
        assert!(e.message.contains("persn_mapping"), "unknown keys are named: {}", e.message);
        let e = MappingConfig::from_yaml(
            "connectors: { pipedrive: {} }\ndeal_stage_mapping: { later: 3 }\n",
        )
        .unwrap_err();
        assert!(e.message.contains("not a stage id"), "{}", e.message);
    }
}

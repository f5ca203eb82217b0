//! Checks of a mapping: its own consistency, and (given a [`Catalog`] of the tenant's real
//! Pipedrive fields and stages and Brevo attributes and lists) its references. One message per
//! mistake, saying where and what to do.

use std::collections::HashMap;

use super::{MappingConfig, StageKey};

/// Paths of a Pipedrive person that map without a custom field.
pub const PERSON_PATHS: &[&str] = &[
    "email",
    "name",
    "first_name",
    "last_name",
    "phone",
    "org_id.name",
    "won_deals_count",
    "lost_deals_count",
    "open_deals_count",
    "closed_deals_count",
    "total_revenue",
];

const NUMERIC_PATHS: &[&str] = &[
    "won_deals_count",
    "lost_deals_count",
    "open_deals_count",
    "closed_deals_count",
    "total_revenue",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    pub key: String,
    pub label: String,
    pub field_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeInfo {
    pub name: String,
    /// Brevo's type: text, float, date, boolean, category, ...
    pub kind: String,
}

/// What the tenant really has, read from Pipedrive and Brevo.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub person_fields: Vec<FieldInfo>,
    pub stage_ids: Vec<u64>,
    pub attributes: Vec<AttributeInfo>,
    pub list_ids: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    /// Works, but something will happen the user should know (an attribute will be created).
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// Where in the file: `person_mapping.phone`, `deal_stage_mapping.won`, ...
    pub at: String,
    pub message: String,
}

fn error(at: String, message: String) -> Problem {
    Problem { severity: Severity::Error, at, message }
}

/// The custom field a `custom_fields.<key or label>` path names.
pub fn custom_field<'a>(catalog: &'a Catalog, name: &str) -> Option<&'a FieldInfo> {
    catalog.person_fields.iter().find(|f| f.key == name).or_else(|| {
        catalog
            .person_fields
            .iter()
            .find(|f| f.label.eq_ignore_ascii_case(name) || slug(&f.label) == slug(name))
    })
}

fn slug(s: &str) -> String {
    s.trim().to_lowercase().chars().map(|c| if c.is_alphanumeric() { c } else { '_' }).collect()
}

/// The Brevo attribute type a Pipedrive value of this path / field type fits.
pub fn expected_kind(path: &str, field: Option<&FieldInfo>) -> Option<&'static str> {
    if NUMERIC_PATHS.contains(&path) {
        return Some("float");
    }
    match field.map(|f| f.field_type.as_str()) {
        Some("double" | "monetary" | "int") => Some("float"),
        Some("date") => Some("date"),
        Some(_) => Some("text"),
        None => None,
    }
}

fn valid_attribute(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

pub fn check(config: &MappingConfig, catalog: Option<&Catalog>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut targets: HashMap<&str, &str> = HashMap::new();

    if config.person_mapping.get("email").map(String::as_str) != Some("email") {
        problems.push(error(
            "person_mapping.email".into(),
            "Map `email: email`: the email is the key of every Brevo contact.".into(),
        ));
    }
    for (path, attribute) in &config.person_mapping {
        let at = format!("person_mapping.{path}");
        let field = match path.strip_prefix("custom_fields.") {
            Some(name) => match catalog {
                Some(c) => match custom_field(c, name) {
                    Some(f) => Some(f),
                    None => {
                        problems.push(error(at.clone(), format!("Pipedrive has no person custom field with the key or label {name:?}.")));
                        continue;
                    }
                },
                None => None,
            },
            None if PERSON_PATHS.contains(&path.as_str()) => None,
            None => {
                problems.push(error(at.clone(), format!("Unknown Pipedrive path {path:?}: use one of {}, or custom_fields.<key or label>.", PERSON_PATHS.join(", "))));
                continue;
            }
        };
        if path == "email" {
            continue;
        }
        if !valid_attribute(attribute) {
            problems.push(error(at.clone(), format!("{attribute:?} is not a Brevo attribute name: upper-case letters, digits and _, starting with a letter.")));
            continue;
        }
        if let Some(first) = targets.insert(attribute.as_str(), path.as_str()) {
            problems.push(error(
                at.clone(),
                format!(
                    "{attribute} is already the target of {first}: each attribute takes one value."
                ),
            ));
            continue;
        }
        if let Some(c) = catalog {
            match c.attributes.iter().find(|a| &a.name == attribute) {
                None => problems.push(Problem {
                    severity: Severity::Warning,
                    at: at.clone(),
                    message: if config.options.create_missing_attributes {
                        format!("Brevo has no attribute {attribute}; it will be created (type {}).", expected_kind(path, field).unwrap_or("text"))
                    } else {
                        format!("Brevo has no attribute {attribute}, and options.create_missing_attributes is off: Brevo will drop its values.")
                    },
                }),
                Some(a) => {
                    if let Some(want) = expected_kind(path, field) {
                        let fits = a.kind == want || (want == "text" && a.kind == "category");
                        if !fits {
                            problems.push(error(at.clone(), format!("{attribute} is a Brevo {} attribute, but {path} gives a {want} value.", a.kind)));
                        }
                    }
                }
            }
        }
    }

    let lists = &config.connectors.pipedrive.lists;
    let mut list_refs: Vec<(String, i64)> = [
        ("all_contacts", lists.all_contacts),
        ("qualified_leads", lists.qualified_leads),
        ("customers", lists.customers),
        ("churned", lists.churned),
    ]
    .into_iter()
    .filter_map(|(name, id)| id.map(|id| (format!("connectors.pipedrive.lists.{name}"), id)))
    .collect();
    for (key, list) in &config.deal_stage_mapping {
        let at = match key {
            StageKey::Stage(id) => format!("deal_stage_mapping.{id}"),
            StageKey::Won => "deal_stage_mapping.won".into(),
            StageKey::Lost => "deal_stage_mapping.lost".into(),
        };
        if let (StageKey::Stage(id), Some(c)) = (key, catalog)
            && !c.stage_ids.contains(id)
        {
            problems.push(error(at.clone(), format!("Pipedrive has no stage {id}.")));
        }
        list_refs.push((at, *list));
    }
    for (at, id) in list_refs {
        if id <= 0 {
            problems.push(error(at, format!("{id} is not a Brevo list id.")));
        } else if let Some(c) = catalog
            && !c.list_ids.contains(&id)
        {
            problems.push(error(at, format!("Brevo has no list {id}.")));
        }
    }

    if let Some(country) = &config.options.default_country
        && config.options.country().is_none()
    {
        problems.push(error(
            "options.default_country".into(),
            format!("{country:?} is not a country code: use two letters such as EE, DE or US."),
        ));
    }

    for (i, rule) in config.webhooks.iter().enumerate() {
        let at = format!("webhooks[{i}]");
        if !["added", "updated", "deleted", "merged"].contains(&rule.event_action.as_str()) {
            problems.push(error(
                at.clone(),
                format!(
                    "event_action {:?} is not one of added, updated, deleted, merged.",
                    rule.event_action
                ),
            ));
        }
        if !["person", "deal", "organization", "activity", "lead"]
            .contains(&rule.event_object.as_str())
        {
            problems.push(error(
                at.clone(),
                format!(
                    "event_object {:?} is not one of person, deal, organization, activity, lead.",
                    rule.event_object
                ),
            ));
        }
        let name_ok = !rule.brevo_event.is_empty()
            && rule.brevo_event.len() <= 255
            && rule.brevo_event.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            problems.push(error(
                at,
                format!("brevo_event {:?}: 1 to 255 letters, digits, _ or -.", rule.brevo_event),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::MappingConfig;

    fn seed() -> MappingConfig {
        MappingConfig::from_yaml(include_str!("seed.yaml")).unwrap()
    }

    fn catalog() -> Catalog {
        Catalog {
            person_fields: vec![FieldInfo {
                key: "a".repeat(40),
                label: "Lead source".into(),
                field_type: "enum".into(),
            }],
            stage_ids: vec![1, 2, 3, 4],
            attributes: ["FIRSTNAME", "LASTNAME", "SMS", "COMPANY", "FULLNAME", "LEAD_SOURCE"]
                .iter()
                .map(|n| AttributeInfo { name: (*n).into(), kind: "text".into() })
                .chain(
                    ["WON_DEALS", "LOST_DEALS", "OPEN_DEALS", "CLOSED_DEALS", "LTV"]
                        .iter()
                        .map(|n| AttributeInfo { name: (*n).into(), kind: "float".into() }),
                )
                .collect(),
            list_ids: vec![60, 61, 62, 63, 64],
        }
    }

    #[test]
    fn the_seed_is_consistent_and_fits_a_matching_account() {
        assert_eq!(check(&seed(), None), vec![]);
        assert_eq!(
            check(&seed(), Some(&catalog())),
            vec![],
            "custom_fields.lead_source finds the label \"Lead source\""
        );
    }

    #[test]
    fn each_mistake_gets_its_own_message() {
        let mut c = seed();
        c.person_mapping.insert("custom_fields.budget".into(), "BUDGET".into());
        c.person_mapping.insert("nickname".into(), "NICK".into());
        c.person_mapping.insert("first_name".into(), "FULLNAME".into());
        c.person_mapping.insert("won_deals_count".into(), "COMPANY".into());
        c.person_mapping.insert("last_name".into(), "last name".into());
        c.deal_stage_mapping.insert(StageKey::Stage(99), 65);
        c.webhooks[0].event_action = "create".into();
        let mut cat = catalog();
        cat.attributes.retain(|a| a.name != "LTV");
        let problems = check(&c, Some(&cat));
        let find = |at: &str| {
            problems
                .iter()
                .find(|p| p.at == at)
                .unwrap_or_else(|| panic!("no problem at {at}: {problems:#?}"))
        };
        assert!(
            find("person_mapping.custom_fields.budget").message.contains("no person custom field")
        );
        assert!(find("person_mapping.nickname").message.starts_with("Unknown Pipedrive path"));
        assert!(find("person_mapping.first_name").message.contains("already the target of name"));
        assert!(find("person_mapping.last_name").message.contains("not a Brevo attribute name"));
        assert!(find("deal_stage_mapping.99").message.contains("no stage 99"));
        assert!(
            problems
                .iter()
                .any(|p| p.at == "deal_stage_mapping.99" && p.message.contains("no list 65"))
        );
        assert!(find("webhooks[0]").message.contains("event_action"));
        let ltv = find("person_mapping.total_revenue");
        assert_eq!(ltv.severity, Severity::Warning);
        assert!(ltv.message.contains("will be created (type float)"));
        // won_deals_count → COMPANY was replaced in place (IndexMap insert), so COMPANY is now a
        // duplicate target of org_id.name, reported once.
        assert!(problems.iter().any(|p| p.message.contains("COMPANY is already the target")));
    }

    #[test]
    fn types_must_fit() {
        let mut c = seed();
        c.person_mapping.insert("total_revenue".into(), "FIRSTNAME".into());
        c.person_mapping.shift_remove("first_name");
        let problems = check(&c, Some(&catalog()));
        assert!(
            problems.iter().any(|p| p.message
                == "FIRSTNAME is a Brevo text attribute, but total_revenue gives a float value."),
            "{problems:#?}"
        );
        let mut c = seed();
        c.person_mapping.insert("email".into(), "EMAIL".into());
        assert!(check(&c, None).iter().any(|p| p.at == "person_mapping.email"));
    }
}

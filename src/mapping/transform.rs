//! A Pipedrive person (with its organization name and deals) → a Brevo contact's attributes,
//! following the mapping. Pure: no I/O, so every rule is unit-tested here. Problems that should
//! not fail the contact (an invalid phone) are reported beside the result.

use serde_json::{Map, Value, json};

use super::MappingConfig;
use super::validate::{Catalog, custom_field};
use crate::domain::Email;
use crate::pipedrive::models::{Labeled, Person};

/// A person left out of Brevo, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NoValidEmail,
}

/// Something the user should see, that did not stop the contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// Not a valid phone number even with the default country: left out of `SMS`.
    InvalidPhone(String),
    /// A custom field value that could not be read as its type: left out.
    UnreadableValue { field: String },
}

/// The deal facts the computed fields need.
#[derive(Debug, Clone, PartialEq)]
pub struct DealFacts {
    pub status: String,
    pub value: f64,
    pub stage_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    pub open: u64,
    pub won: u64,
    pub lost: u64,
    pub closed: u64,
    /// Sum of the values of won deals (lifetime value), in the deals' currency.
    pub total_revenue: f64,
}

pub fn counts(deals: &[DealFacts]) -> Counts {
    let mut c = Counts::default();
    for d in deals {
        match d.status.as_str() {
            "won" => {
                c.won += 1;
                c.total_revenue += d.value;
            }
            "lost" => c.lost += 1,
            _ => c.open += 1,
        }
    }
    c.closed = c.won + c.lost;
    c
}

/// The primary email if it is valid, else the first valid one.
pub fn primary_email(emails: &[Labeled]) -> Option<Email> {
    let valid = |l: &&Labeled| Email::parse(&l.value).ok();
    emails
        .iter()
        .filter(|l| l.primary)
        .find_map(|l| valid(&l))
        .or_else(|| emails.iter().find_map(|l| valid(&l)))
}

/// E.164 (`+3725550100`), reading national numbers with the tenant's default country.
pub fn e164(raw: &str, default_country: Option<phonenumber::country::Id>) -> Option<String> {
    let number = phonenumber::parse(default_country, raw.trim()).ok()?;
    phonenumber::is_valid(&number)
        .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
}

/// A custom field's value as Brevo should hold it: option ids become labels, monetary values
/// their amount, addresses their formatted text, dates stay `YYYY-MM-DD`.
pub fn field_value(field_type: &str, options: &[(String, String)], v: &Value) -> Option<Value> {
    let label = |id: &Value| {
        let id = match id {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            Value::Object(o) => o.get("id").map(|x| x.to_string().trim_matches('"').to_owned())?,
            _ => return None,
        };
        options.iter().find(|(oid, _)| *oid == id).map(|(_, l)| l.clone())
    };
    match (field_type, v) {
        (_, Value::Null) => None,
        ("enum", v) => label(v).map(Value::String),
        ("set", Value::Array(ids)) => {
            let labels: Vec<String> = ids.iter().filter_map(label).collect();
            (!labels.is_empty()).then(|| Value::String(labels.join(", ")))
        }
        ("monetary", Value::Object(o)) => o.get("value").filter(|x| x.is_number()).cloned(),
        ("monetary" | "double", Value::Number(_)) => Some(v.clone()),
        ("double", Value::String(s)) => s.parse::<f64>().ok().map(|n| json!(n)),
        ("address", Value::Object(o)) => {
            o.get("formatted_address").or(o.get("value")).filter(|x| x.is_string()).cloned()
        }
        ("date", Value::String(s)) => {
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
                .map(|_| v.clone())
        }
        (_, Value::String(s)) if !s.is_empty() => Some(v.clone()),
        (_, Value::Number(_) | Value::Bool(_)) => Some(v.clone()),
        _ => None,
    }
}

/// What a person becomes in Brevo.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactOut {
    pub email: Email,
    pub attributes: Map<String, Value>,
    pub issues: Vec<Issue>,
}

/// Options of custom fields by field key: (option id as text, label).
pub type FieldOptions = std::collections::HashMap<String, Vec<(String, String)>>;

pub fn contact(
    person: &Person,
    org_name: Option<&str>,
    deals: &[DealFacts],
    mapping: &MappingConfig,
    catalog: &Catalog,
    options: &FieldOptions,
    default_country: Option<phonenumber::country::Id>,
) -> Result<ContactOut, Skip> {
    let mut out = own_attributes(person, mapping, catalog, options, default_country)?;
    out.attributes.extend(derived(mapping, org_name, &counts(deals)));
    Ok(out)
}

/// Paths whose value comes from other records (the organization, the deals), not the person.
pub fn is_derived(path: &str) -> bool {
    matches!(
        path,
        "org_id.name"
            | "won_deals_count"
            | "lost_deals_count"
            | "open_deals_count"
            | "closed_deals_count"
            | "total_revenue"
    )
}

/// The attributes that come from the person alone: kept by the sync engine so a change of a deal
/// or an organization can be applied without reading the person again.
pub fn own_attributes(
    person: &Person,
    mapping: &MappingConfig,
    catalog: &Catalog,
    options: &FieldOptions,
    default_country: Option<phonenumber::country::Id>,
) -> Result<ContactOut, Skip> {
    let email = primary_email(&person.emails).ok_or(Skip::NoValidEmail)?;
    let mut attributes = Map::new();
    let mut issues = Vec::new();
    for (path, attribute) in &mapping.person_mapping {
        if is_derived(path) {
            continue;
        }
        let value = match path.as_str() {
            "email" => continue,
            "name" => Some(json!(person.name)),
            "first_name" => person.first_name.clone().map(Value::String),
            "last_name" => person.last_name.clone().map(Value::String),
            "phone" => {
                let raw = person
                    .phones
                    .iter()
                    .find(|p| p.primary)
                    .or(person.phones.first())
                    .map(|p| p.value.clone());
                match raw {
                    Some(raw) => match e164(&raw, default_country) {
                        Some(n) => Some(json!(n)),
                        None => {
                            issues.push(Issue::InvalidPhone(raw));
                            None
                        }
                    },
                    None => None,
                }
            }
            other => match other
                .strip_prefix("custom_fields.")
                .and_then(|name| custom_field(catalog, name))
            {
                Some(f) => match person.custom_fields.get(&f.key) {
                    None | Some(Value::Null) => None,
                    Some(raw) => {
                        let opts = options.get(&f.key).map(Vec::as_slice).unwrap_or_default();
                        let v = field_value(&f.field_type, opts, raw);
                        if v.is_none() {
                            issues.push(Issue::UnreadableValue { field: f.label.clone() });
                        }
                        v
                    }
                },
                None => None,
            },
        };
        if let Some(v) = value {
            attributes.insert(attribute.clone(), v);
        }
    }
    Ok(ContactOut { email, attributes, issues })
}

/// The attributes computed from the person's organization and deals.
pub fn derived(mapping: &MappingConfig, org_name: Option<&str>, c: &Counts) -> Map<String, Value> {
    let mut out = Map::new();
    for (path, attribute) in &mapping.person_mapping {
        let value = match path.as_str() {
            "org_id.name" => org_name.map(|n| json!(n)),
            "won_deals_count" => Some(json!(c.won)),
            "lost_deals_count" => Some(json!(c.lost)),
            "open_deals_count" => Some(json!(c.open)),
            "closed_deals_count" => Some(json!(c.closed)),
            "total_revenue" => Some(json!(c.total_revenue)),
            _ => None,
        };
        if let Some(v) = value {
            out.insert(attribute.clone(), v);
        }
    }
    out
}

/// The Brevo lists a synced person belongs in: all contacts; the list of each open deal's stage;
/// the won / lost lists of closed deals; customers (a won deal); churned (lost deals, nothing open
/// or won); qualified leads (a Pipedrive lead, the nurture list).
pub fn lists(
    mapping: &MappingConfig,
    deals: &[DealFacts],
    has_lead: bool,
) -> std::collections::BTreeSet<i64> {
    use super::StageKey;
    let l = &mapping.connectors.pipedrive.lists;
    let stages = &mapping.deal_stage_mapping;
    let mut out = std::collections::BTreeSet::new();
    out.extend(l.all_contacts);
    for d in deals {
        let key = match d.status.as_str() {
            "won" => Some(StageKey::Won),
            "lost" => Some(StageKey::Lost),
            _ => d.stage_id.map(StageKey::Stage),
        };
        if let Some(list) = key.and_then(|k| stages.get(&k)) {
            out.insert(*list);
        }
    }
    let c = counts(deals);
    if c.won > 0 {
        out.extend(l.customers);
    }
    if c.lost > 0 && c.won == 0 && c.open == 0 {
        out.extend(l.churned);
    }
    if has_lead {
        out.extend(l.qualified_leads);
    }
    out
}

/// Every list this mapping manages: a person leaves those it no longer belongs in, and no other.
pub fn managed_lists(mapping: &MappingConfig) -> std::collections::BTreeSet<i64> {
    let l = &mapping.connectors.pipedrive.lists;
    let mut out: std::collections::BTreeSet<i64> =
        [l.all_contacts, l.qualified_leads, l.customers, l.churned].into_iter().flatten().collect();
    out.extend(mapping.deal_stage_mapping.values().copied());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::validate::FieldInfo;

    fn labeled(value: &str, primary: bool) -> Labeled {
        Labeled { value: value.into(), primary, label: None }
    }

    fn person(json: Value) -> Person {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_primary_valid_email_wins() {
        assert_eq!(
            primary_email(&[labeled("a@x.com", false), labeled("b@x.com", true)]).unwrap().as_str(),
            "b@x.com"
        );
        assert_eq!(
            primary_email(&[labeled("broken", true), labeled("C@X.com", false)]).unwrap().as_str(),
            "c@x.com"
        );
        assert!(primary_email(&[labeled("nope", true)]).is_none());
        assert!(primary_email(&[]).is_none());
    }

    #[test]
    fn phones_become_e164_with_the_default_country() {
        let ee: phonenumber::country::Id = "EE".parse().unwrap();
        assert_eq!(e164("+372 5555 0100", None).as_deref(), Some("+37255550100"));
        assert_eq!(e164("5555 0100", Some(ee)).as_deref(), Some("+37255550100"));
        assert_eq!(e164("555-0100", Some(ee)), None, "not a valid Estonian number");
        assert_eq!(e164("5555 0100", None), None, "national without a country");
    }

    #[test]
    fn field_values_by_type() {
        let opts = vec![
            ("101".to_owned(), "Website".to_owned()),
            ("102".to_owned(), "Referral".to_owned()),
        ];
        assert_eq!(field_value("enum", &opts, &json!(102)), Some(json!("Referral")));
        assert_eq!(
            field_value("enum", &opts, &json!("101")),
            Some(json!("Website")),
            "v1 ids are strings"
        );
        assert_eq!(
            field_value("enum", &opts, &json!({"id": 101, "label": "Website"})),
            Some(json!("Website"))
        );
        assert_eq!(field_value("set", &opts, &json!([101, 102])), Some(json!("Website, Referral")));
        assert_eq!(
            field_value("monetary", &[], &json!({"value": 1500, "currency": "EUR"})),
            Some(json!(1500))
        );
        assert_eq!(
            field_value("address", &[], &json!({"value": "Narva mnt 5", "locality": "Tallinn"})),
            Some(json!("Narva mnt 5"))
        );
        assert_eq!(field_value("date", &[], &json!("1980-02-29")), Some(json!("1980-02-29")));
        assert_eq!(field_value("date", &[], &json!("1981-02-29")), None);
        assert_eq!(field_value("enum", &opts, &json!(999)), None);
        assert_eq!(field_value("text", &[], &Value::Null), None);
    }

    #[test]
    fn computed_fields_come_from_the_deals() {
        let deals = [
            DealFacts { status: "won".into(), value: 1000.0, stage_id: Some(1) },
            DealFacts { status: "won".into(), value: 250.5, stage_id: Some(2) },
            DealFacts { status: "lost".into(), value: 99.0, stage_id: Some(3) },
            DealFacts { status: "open".into(), value: 10.0, stage_id: Some(4) },
        ];
        assert_eq!(
            counts(&deals),
            Counts { open: 1, won: 2, lost: 1, closed: 3, total_revenue: 1250.5 }
        );
    }

    #[test]
    fn a_person_becomes_a_contact_following_the_seed_mapping() {
        let mapping = MappingConfig::from_yaml(include_str!("seed.yaml")).unwrap();
        let key = "a".repeat(40);
        let catalog = Catalog {
            person_fields: vec![FieldInfo {
                key: key.clone(),
                label: "Lead source".into(),
                field_type: "enum".into(),
            }],
            ..Default::default()
        };
        let options =
            FieldOptions::from([(key.clone(), vec![("7".to_owned(), "Trade fair".to_owned())])]);
        let p = person(json!({
            "id": 1, "name": "Ann Lee", "first_name": "Ann", "last_name": "Lee",
            "emails": [{"value": "ann@acme.test", "primary": true}],
            "phones": [{"value": "5555 0100", "primary": true}],
            "custom_fields": {key.clone(): 7}, "update_time": null
        }));
        let ee = "EE".parse().ok();
        let deals = [DealFacts { status: "won".into(), value: 500.0, stage_id: Some(3) }];
        let out = contact(&p, Some("Acme"), &deals, &mapping, &catalog, &options, ee).unwrap();
        assert_eq!(out.email.as_str(), "ann@acme.test");
        let a = &out.attributes;
        assert_eq!(
            (a["FULLNAME"].clone(), a["FIRSTNAME"].clone(), a["COMPANY"].clone()),
            (json!("Ann Lee"), json!("Ann"), json!("Acme"))
        );
        assert_eq!(a["SMS"], "+37255550100");
        assert_eq!(
            (a["WON_DEALS"].clone(), a["CLOSED_DEALS"].clone(), a["LTV"].clone()),
            (json!(1), json!(1), json!(500.0))
        );
        assert_eq!(a["LEAD_SOURCE"], "Trade fair");
        assert!(out.issues.is_empty());

        // A bad phone is reported and left out; the contact still goes.
        let bad = person(
            json!({"id": 2, "name": "Bob", "emails": [{"value": "bob@acme.test"}], "phones": [{"value": "555-0100"}], "update_time": null}),
        );
        let out = contact(&bad, None, &[], &mapping, &catalog, &options, ee).unwrap();
        assert!(!out.attributes.contains_key("SMS"));
        assert_eq!(out.issues, vec![Issue::InvalidPhone("555-0100".into())]);
        // No valid email: skipped, with the reason.
        let none = person(json!({"id": 3, "name": "Cid", "emails": [], "update_time": null}));
        assert_eq!(
            contact(&none, None, &[], &mapping, &catalog, &options, ee).unwrap_err(),
            Skip::NoValidEmail
        );
    }

    #[test]
    fn lists_follow_the_deals() {
        let mapping = MappingConfig::from_yaml(include_str!("seed.yaml")).unwrap();
        let deal = |status: &str, stage| DealFacts {
            status: status.into(),
            value: 1.0,
            stage_id: Some(stage),
        };
        let set = |v: &[i64]| v.iter().copied().collect::<std::collections::BTreeSet<i64>>();
        assert_eq!(lists(&mapping, &[], false), set(&[60]));
        assert_eq!(lists(&mapping, &[deal("open", 1)], false), set(&[60, 61]));
        assert_eq!(
            lists(&mapping, &[deal("open", 3)], true),
            set(&[60, 61, 62]),
            "stage 3 → 62, a lead → qualified leads 61"
        );
        assert_eq!(
            lists(&mapping, &[deal("won", 1)], false),
            set(&[60, 62, 63]),
            "won list and customers"
        );
        assert_eq!(
            lists(&mapping, &[deal("lost", 1)], false),
            set(&[60, 63, 64]),
            "lost list and churned"
        );
        assert_eq!(
            lists(&mapping, &[deal("lost", 1), deal("open", 9)], false),
            set(&[60, 64]),
            "an open deal is not churned; stage 9 is unmapped"
        );
        assert_eq!(managed_lists(&mapping), set(&[60, 61, 62, 63, 64]));
    }
}

//! The rules of writing a contact, shared by create/update, batch, import and event
//! `contact_properties`: attribute vetting against the account's catalogue, identifier uniqueness,
//! and applying the change. Reference §2.1–§2.9.

use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::http::{ApiError, ApiResult, is_date, normalize_phone, valid_email};
use super::state::{Account, Contact};

/// Identifier attributes holding phone numbers and the error each gives when malformed
/// (reference §2.7: "Invalid phone number", "Invalid WHATSAPP format").
const PHONES: [(&str, &str); 3] = [
    ("SMS", "Invalid phone number"),
    ("WHATSAPP", "Invalid WHATSAPP format"),
    ("LANDLINE_NUMBER", "Invalid LANDLINE_NUMBER format"),
];

/// Body of `POST /contacts` and `PUT /contacts/{identifier}` (spec `createContact` / `updateContact`;
/// fields of the other one are accepted and ignored, as unknown fields are).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WriteBody {
    pub email: Option<String>,
    pub ext_id: Option<String>,
    pub attributes: Option<Map<String, Value>>,
    #[serde(rename = "emailBlacklisted")]
    pub email_blacklisted: Option<bool>,
    #[serde(rename = "smsBlacklisted")]
    pub sms_blacklisted: Option<bool>,
    #[serde(rename = "listIds", default)]
    pub list_ids: Option<Vec<i64>>,
    #[serde(rename = "unlinkListIds", default)]
    pub unlink_list_ids: Option<Vec<i64>>,
    #[serde(rename = "updateEnabled", default)]
    pub update_enabled: Option<bool>,
}

/// Attribute values that passed vetting. `None` values clear the attribute.
#[derive(Debug, Default)]
pub(crate) struct Vetted {
    pub email: Option<String>,
    /// `SMS`, `WHATSAPP`, `LANDLINE_NUMBER`, `EXT_ID`.
    pub identifiers: Vec<(&'static str, Option<String>)>,
    pub values: Vec<(String, Option<Value>)>,
}

impl Vetted {
    pub fn set_identifier(&mut self, name: &'static str, value: Option<String>) {
        self.identifiers.retain(|(n, _)| *n != name);
        self.identifiers.push((name, value));
    }
}

/// What a write did, for webhooks (`contact_updated`, `list_addition`) and answers.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub contact_id: i64,
    pub created: bool,
    pub attributes: Map<String, Value>,
    pub added_lists: Vec<i64>,
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Checks attribute values against the account's attributes. Unknown names are dropped silently
/// (reference §2.9; names are matched exactly, so lower-case keys are dropped too), values of the
/// wrong type are ignored (spec `createContact.attributes`), except dates not in `YYYY-MM-DD`, which
/// integrators saw refused (reference §10 #9). `strict = false` (import, events) drops bad values
/// instead of failing.
pub(crate) fn vet(
    account: &Account,
    attributes: &Map<String, Value>,
    strict: bool,
) -> ApiResult<Vetted> {
    let mut out = Vetted::default();
    for (name, value) in attributes {
        let blank = value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty());
        if name == "EMAIL" {
            match value.as_str().map(|s| s.trim().to_lowercase()) {
                Some(e) if valid_email(&e) => out.email = Some(e),
                _ if strict => return Err(ApiError::invalid("Invalid email address")),
                _ => {}
            }
            continue;
        }
        if let Some((phone, error)) = PHONES.iter().find(|(n, _)| n == name) {
            if blank {
                out.set_identifier(phone, None);
                continue;
            }
            match scalar_string(value).as_deref().and_then(normalize_phone) {
                Some(number) => out.set_identifier(phone, Some(number)),
                None if strict => return Err(ApiError::invalid(*error)),
                None => {}
            }
            continue;
        }
        if name == "EXT_ID" {
            out.set_identifier("EXT_ID", if blank { None } else { scalar_string(value) });
            continue;
        }
        let Some(def) = account.attribute(name) else {
            continue;
        };
        if matches!(def.category.as_str(), "calculated" | "global") {
            continue;
        }
        if blank {
            out.values.push((name.clone(), None));
            continue;
        }
        let accepted = if def.category == "category" {
            let enumeration = def.enumeration.as_deref().unwrap_or_default();
            match value {
                Value::Number(n) => n
                    .as_i64()
                    .filter(|v| enumeration.iter().any(|e| e.value == *v))
                    .map(Value::from),
                Value::String(label) => {
                    enumeration.iter().find(|e| &e.label == label).map(|e| Value::from(e.value))
                }
                _ => None,
            }
        } else {
            match (def.kind.as_deref().unwrap_or("text"), value) {
                ("text" | "user", Value::String(_)) => Some(value.clone()),
                ("id", Value::String(_) | Value::Number(_)) => Some(value.clone()),
                ("float", Value::Number(_)) => Some(value.clone()),
                ("boolean", Value::Bool(_)) => Some(value.clone()),
                ("date", Value::String(s)) if is_date(s) => Some(value.clone()),
                ("date", Value::String(_)) if strict => {
                    return Err(ApiError::invalid(format!(
                        "Invalid date format for {name}, expected YYYY-MM-DD"
                    )));
                }
                ("multiple-choice", Value::Array(items)) => {
                    let options = def.multi_category_options.as_deref().unwrap_or_default();
                    let kept: Vec<Value> = items
                        .iter()
                        .filter(|i| i.as_str().is_some_and(|s| options.iter().any(|o| o == s)))
                        .cloned()
                        .collect();
                    (!kept.is_empty()).then_some(Value::Array(kept))
                }
                _ => None,
            }
        };
        if let Some(v) = accepted {
            out.values.push((name.clone(), Some(v)));
        }
    }
    Ok(out)
}

/// Identifier names (as Brevo spells them in `duplicate_identifiers`) whose value is already held by
/// a contact other than `target`.
pub(crate) fn held_by_others(
    account: &Account,
    target: Option<i64>,
    email: Option<&str>,
    vetted: &Vetted,
) -> Vec<(&'static str, i64)> {
    held_by_others_in(|e| account.by_email(e), |n, v| account.by_attr(n, v), target, email, vetted)
}

/// [`held_by_others`] with other lookups (an import's [`super::state::Lookup`]).
pub(crate) fn held_by_others_in(
    by_email: impl Fn(&str) -> Option<i64>,
    by_attr: impl Fn(&str, &str) -> Option<i64>,
    target: Option<i64>,
    email: Option<&str>,
    vetted: &Vetted,
) -> Vec<(&'static str, i64)> {
    let mut held = Vec::new();
    if let Some(holder) = email.and_then(&by_email)
        && Some(holder) != target
    {
        held.push(("email", holder));
    }
    for (name, value) in &vetted.identifiers {
        if let Some(holder) = value.as_deref().and_then(|v| by_attr(name, v))
            && Some(holder) != target
        {
            held.push((*name, holder));
        }
    }
    held
}

pub(crate) fn check_lists(account: &Account, ids: &[i64]) -> ApiResult<()> {
    let unknown: Vec<String> =
        ids.iter().filter(|id| !account.lists.contains_key(id)).map(i64::to_string).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("Invalid listIds: {} do not exist", unknown.join(","))))
    }
}

/// Writes vetted values into a contact; returns the attributes that changed (for webhooks).
pub(crate) fn apply(
    contact: &mut Contact,
    email: Option<String>,
    vetted: Vetted,
    now: OffsetDateTime,
) -> Map<String, Value> {
    let mut changed = Map::new();
    if let Some(email) = email
        && contact.email.as_deref() != Some(email.as_str())
    {
        // Changing the address of a blocklisted contact re-subscribes it (reference §2.4).
        if contact.email.is_some() {
            contact.email_blacklisted = false;
        }
        changed.insert("EMAIL".into(), Value::String(email.clone()));
        contact.email = Some(email);
    }
    let identifiers =
        vetted.identifiers.into_iter().map(|(n, v)| (n.to_owned(), v.map(Value::String)));
    for (name, value) in identifiers.chain(vetted.values) {
        match value {
            Some(v) if contact.attributes.get(&name) != Some(&v) => {
                changed.insert(name.clone(), v.clone());
                contact.attributes.insert(name, v);
            }
            None if contact.attributes.contains_key(&name) => {
                contact.attributes.remove(&name);
                changed.insert(name, Value::Null);
            }
            _ => {}
        }
    }
    contact.modified_at = now;
    changed
}

fn primary_identifier(email: Option<&str>, vetted: &Vetted) -> Option<(&'static str, String)> {
    if let Some(e) = email {
        return Some(("email", e.to_owned()));
    }
    ["EXT_ID", "SMS", "WHATSAPP", "LANDLINE_NUMBER"].into_iter().find_map(|name| {
        vetted
            .identifiers
            .iter()
            .find(|(n, v)| *n == name && v.is_some())
            .and_then(|(n, v)| v.clone().map(|v| (*n, v)))
    })
}

/// `POST /contacts`: create, or with `updateEnabled` update the contact holding the primary
/// identifier (email, else EXT_ID, else a phone). Any other identifier held by another contact
/// fails the whole request (reference §2.1, §2.7).
pub(crate) fn create(
    account: &mut Account,
    body: WriteBody,
    now: OffsetDateTime,
) -> ApiResult<Change> {
    let mut vetted = vet(account, &body.attributes.unwrap_or_default(), true)?;
    let email = match body.email.as_deref().map(str::trim) {
        Some(e) if !e.is_empty() => {
            let e = e.to_lowercase();
            if !valid_email(&e) {
                return Err(ApiError::invalid("Invalid email address"));
            }
            Some(e)
        }
        _ => vetted.email.take(),
    };
    if let Some(ext) = body.ext_id.filter(|e| !e.trim().is_empty()) {
        vetted.set_identifier("EXT_ID", Some(ext));
    }
    let Some((primary, value)) = primary_identifier(email.as_deref(), &vetted) else {
        // Wording observed by integrators (reference §2.1).
        return Err(ApiError::missing(
            "Please provide Email or SMS attribute value to create user",
        ));
    };
    let list_ids = body.list_ids.unwrap_or_default();
    check_lists(account, &list_ids)?;
    let target = if primary == "email" {
        account.by_email(&value)
    } else {
        account.by_attr(primary, &value)
    };
    if target.is_some() && !body.update_enabled.unwrap_or(false) {
        let names: Vec<&str> = held_by_others(account, None, email.as_deref(), &vetted)
            .iter()
            .map(|(n, _)| *n)
            .collect();
        return Err(ApiError::duplicate("create", &names));
    }
    let conflicts: Vec<&str> = held_by_others(account, target, email.as_deref(), &vetted)
        .iter()
        .map(|(n, _)| *n)
        .collect();
    if !conflicts.is_empty() {
        return Err(ApiError::duplicate(
            if target.is_some() { "update" } else { "create" },
            &conflicts,
        ));
    }
    let (id, created) = match target {
        Some(id) => (id, false),
        None => {
            let id = account.new_contact_id();
            account.contacts.insert(id, Contact::new(id, now));
            (id, true)
        }
    };
    let mut contact = account.contacts.get_mut(&id).ok_or_else(ApiError::contact_not_found)?;
    let attributes = apply(&mut contact, email, vetted, now);
    let added_lists: Vec<i64> =
        list_ids.into_iter().filter(|l| contact.list_ids.insert(*l)).collect();
    if let Some(b) = body.email_blacklisted {
        contact.email_blacklisted = b;
    }
    if let Some(b) = body.sms_blacklisted {
        contact.sms_blacklisted = b;
    }
    Ok(Change { contact_id: id, created, attributes, added_lists })
}

/// `PUT /contacts/{identifier}` (and one item of `/contacts/batch`): the email changes through
/// `attributes.EMAIL`, lists through `listIds` / `unlinkListIds` (reference §2.4).
pub(crate) fn update(
    account: &mut Account,
    id: i64,
    body: WriteBody,
    now: OffsetDateTime,
) -> ApiResult<Change> {
    let mut vetted = vet(account, &body.attributes.unwrap_or_default(), true)?;
    let email = vetted.email.take();
    if let Some(ext) = body.ext_id {
        let ext = ext.trim().to_owned();
        vetted.set_identifier("EXT_ID", (!ext.is_empty()).then_some(ext));
    }
    let list_ids = body.list_ids.unwrap_or_default();
    let unlink = body.unlink_list_ids.unwrap_or_default();
    check_lists(account, &list_ids)?;
    check_lists(account, &unlink)?;
    let conflicts: Vec<&str> = held_by_others(account, Some(id), email.as_deref(), &vetted)
        .iter()
        .map(|(n, _)| *n)
        .collect();
    if !conflicts.is_empty() {
        return Err(ApiError::duplicate("update", &conflicts));
    }
    let mut contact = account.contacts.get_mut(&id).ok_or_else(ApiError::contact_not_found)?;
    let attributes = apply(&mut contact, email, vetted, now);
    for l in &unlink {
        contact.list_ids.remove(l);
    }
    let added_lists: Vec<i64> =
        list_ids.into_iter().filter(|l| contact.list_ids.insert(*l)).collect();
    if let Some(b) = body.email_blacklisted {
        contact.email_blacklisted = b;
    }
    if let Some(b) = body.sms_blacklisted {
        contact.sms_blacklisted = b;
    }
    Ok(Change { contact_id: id, created: false, attributes, added_lists })
}

//! `/v3/contacts` and `/v3/contacts/{identifier}`: create (upsert), read, update, delete, list.
//! Spec operations `createContact`, `getContactInfo`, `updateContact`, `deleteContact`,
//! `getContacts`; behaviours from reference §2.1–§2.6.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::contact_write::{self, WriteBody};
use super::delivery;
use super::http::{ApiError, ApiResult, Body, Params, normalize_phone, valid_email};
use super::state::{Account, Contact};
use super::{ApiKey, Brevo};

/// Resolves `{identifier}` with `?identifierType=` (spec enum: email_id, phone_id, contact_id, ext_id,
/// whatsapp_id, landline_number_id). Without a type, an `@` means email and digits mean the contact
/// id; only GET also accepts a bare SMS number (spec description of `getContactInfo`). Anything else
/// goes through email validation and fails it, as live Brevo does (reference §2.2).
pub(crate) fn resolve(
    account: &Account,
    identifier: &str,
    kind: Option<&str>,
    allow_phone: bool,
) -> ApiResult<i64> {
    let by_email = |raw: &str| -> ApiResult<i64> {
        let email = raw.trim().to_lowercase();
        if !valid_email(&email) {
            return Err(ApiError::invalid("Invalid email address"));
        }
        account.by_email(&email).ok_or_else(ApiError::contact_not_found)
    };
    let by_phone = |attr: &str, raw: &str| -> ApiResult<i64> {
        let number =
            normalize_phone(raw).ok_or_else(|| ApiError::invalid("Invalid phone number"))?;
        account.by_attr(attr, &number).ok_or_else(ApiError::contact_not_found)
    };
    match kind {
        Some("email_id") => by_email(identifier),
        Some("contact_id") => {
            let id: i64 =
                identifier.parse().map_err(|_| ApiError::invalid("Invalid contact id"))?;
            account.contacts.contains_key(&id).then_some(id).ok_or_else(ApiError::contact_not_found)
        }
        Some("ext_id") => {
            account.by_attr("EXT_ID", identifier).ok_or_else(ApiError::contact_not_found)
        }
        Some("phone_id") => by_phone("SMS", identifier),
        Some("whatsapp_id") => by_phone("WHATSAPP", identifier),
        Some("landline_number_id") => by_phone("LANDLINE_NUMBER", identifier),
        Some(other) => Err(ApiError::invalid(format!("identifierType {other} is not valid"))),
        None if identifier.contains('@') => by_email(identifier),
        None if !identifier.is_empty() && identifier.chars().all(|c| c.is_ascii_digit()) => {
            let id: i64 =
                identifier.parse().map_err(|_| ApiError::invalid("Invalid contact id"))?;
            if account.contacts.contains_key(&id) {
                Ok(id)
            } else if allow_phone && normalize_phone(identifier).is_some() {
                by_phone("SMS", identifier)
            } else {
                Err(ApiError::contact_not_found())
            }
        }
        None if allow_phone && identifier.starts_with('+') => by_phone("SMS", identifier),
        None => by_email(identifier),
    }
}

/// `POST /v3/contacts` → 201 `{id}` when created, 204 when `updateEnabled` updated an existing one.
pub(crate) async fn create(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Body(body): Body<WriteBody>,
) -> ApiResult {
    let now = OffsetDateTime::now_utc();
    let (change, jobs) = brevo.with_account(&key, |account| {
        let change = contact_write::create(account, body, now)?;
        let jobs = delivery::contact_change_jobs(account, &change, true);
        Ok::<_, ApiError>((change, jobs))
    })??;
    brevo.dispatch(&key, jobs);
    Ok(if change.created {
        (StatusCode::CREATED, axum::Json(json!({ "id": change.contact_id }))).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// `GET /v3/contacts/{identifier}`: contact details plus `statistics`.
pub(crate) async fn get(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(identifier): Path<String>,
    params: Params,
) -> ApiResult {
    // startDate and endDate go together (spec parameter descriptions).
    if params.get("startDate").is_some() != params.get("endDate").is_some() {
        return Err(ApiError::invalid("startDate and endDate must be used together"));
    }
    let body = brevo.with_account(&key, |account| {
        let id = resolve(account, &identifier, params.get("identifierType"), true)?;
        let contact = account.contacts.get(&id).ok_or_else(ApiError::contact_not_found)?;
        let mut v = contact.to_json();
        v["statistics"] = contact.statistics();
        Ok::<_, ApiError>(v)
    })??;
    Ok(axum::Json(body).into_response())
}

/// `PUT /v3/contacts/{identifier}` → 204.
pub(crate) async fn update(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(identifier): Path<String>,
    params: Params,
    Body(body): Body<WriteBody>,
) -> ApiResult {
    let now = OffsetDateTime::now_utc();
    let jobs = brevo.with_account(&key, |account| {
        let id = resolve(account, &identifier, params.get("identifierType"), false)?;
        let change = contact_write::update(account, id, body, now)?;
        Ok::<_, ApiError>(delivery::contact_change_jobs(account, &change, true))
    })??;
    brevo.dispatch(&key, jobs);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v3/contacts/{identifier}` → 204.
pub(crate) async fn delete(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(identifier): Path<String>,
    params: Params,
) -> ApiResult {
    let jobs = brevo.with_account(&key, |account| {
        let id = resolve(account, &identifier, params.get("identifierType"), false)?;
        let contact = account.delete_contact(id).ok_or_else(ApiError::contact_not_found)?;
        Ok::<_, ApiError>(delivery::jobs_for(
            account,
            "contactDeleted",
            &contact,
            delivery::Extra::default(),
        ))
    })??;
    brevo.dispatch(&key, jobs);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `filter=equals(NAME,"value")` — the only operator the spec allows on `GET /contacts`.
fn parse_filter(raw: &str) -> ApiResult<(String, String)> {
    let inner =
        raw.trim().strip_prefix("equals(").and_then(|r| r.strip_suffix(')')).ok_or_else(|| {
            ApiError::invalid("filter: only equals(ATTRIBUTE,\"value\") is supported")
        })?;
    let (name, value) = inner
        .split_once(',')
        .ok_or_else(|| ApiError::invalid("filter: expected equals(ATTRIBUTE,\"value\")"))?;
    Ok((name.trim().to_owned(), value.trim().trim_matches('"').to_owned()))
}

fn matches_filter(contact: &Contact, (name, value): &(String, String)) -> bool {
    if name == "EMAIL" {
        return contact.email.as_deref() == Some(value.to_lowercase().as_str());
    }
    match contact.attributes.get(name) {
        Some(Value::String(s)) => s == value,
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
        Some(other) => value.parse::<Value>().is_ok_and(|v| v == *other),
        None => false,
    }
}

/// Filters, orders and pages contacts, answering the spec's `getContacts` shape (`count` is the total).
pub(crate) fn page<'a>(
    contacts: impl Iterator<Item = &'a Contact>,
    params: &Params,
    max_limit: i64,
) -> ApiResult<Value> {
    let (limit, offset) = params.paging(50, max_limit)?;
    let modified_since = params.datetime("modifiedSince")?;
    let created_since = params.datetime("createdSince")?;
    let filter = params.get("filter").map(parse_filter).transpose()?;
    let mut selected: Vec<&Contact> = contacts
        .filter(|c| modified_since.is_none_or(|t| c.modified_at > t))
        .filter(|c| created_since.is_none_or(|t| c.created_at > t))
        .filter(|c| filter.as_ref().is_none_or(|f| matches_filter(c, f)))
        .collect();
    selected.sort_by_key(|c| (c.created_at, c.id));
    if params.descending()? {
        selected.reverse();
    }
    let count = selected.len();
    let contacts: Vec<Value> =
        selected.into_iter().skip(offset).take(limit).map(Contact::to_json).collect();
    Ok(json!({ "contacts": contacts, "count": count }))
}

/// `GET /v3/contacts` (limit default 50, max 1000; reference §2.6).
pub(crate) async fn list(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    params: Params,
) -> ApiResult {
    let list_ids: Vec<i64> = params
        .all("listIds")
        .into_iter()
        .map(|v| v.parse().map_err(|_| ApiError::invalid("listIds must be integers")))
        .collect::<ApiResult<_>>()?;
    let segment = params.int("segmentId")?;
    if segment.is_some() && !list_ids.is_empty() {
        return Err(ApiError::invalid("Either listIds or segmentId can be passed, not both"));
    }
    let body = brevo.with_account(&key, |account| {
        // The sandbox has no segments: a segment id selects nobody.
        let contacts = account.contacts.values().filter(|c| {
            segment.is_none()
                && (list_ids.is_empty() || list_ids.iter().any(|l| c.list_ids.contains(l)))
        });
        page(contacts, &params, 1000)
    })??;
    Ok(axum::Json(body).into_response())
}

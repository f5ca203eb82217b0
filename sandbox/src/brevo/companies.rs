//! CRM companies: `/v3/companies`, `/v3/companies/{id}`, `/v3/companies/link-unlink/{id}`
//! (spec "Companies" tag; reference §5.1). Ids are 24-hex object ids; create answers 200 (not
//! 201), PATCH answers 200 with the company, link-unlink 204.

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::http::{ApiError, ApiResult, Body, Params};
use super::state::{Account, Company};
use super::{ApiKey, Brevo};

/// Default company attributes of a Brevo account (internal names, reference §5.1). Other keys are
/// dropped, like unknown contact attributes (live behaviour for companies is not documented).
const KNOWN: &[&str] =
    &["name", "domain", "industry", "owner", "phone_number", "revenue", "number_of_employees"];

#[derive(Debug, Deserialize)]
pub(crate) struct CompanyBody {
    name: Option<String>,
    attributes: Option<Map<String, Value>>,
    #[serde(rename = "countryCode")]
    country_code: Option<i64>,
    #[serde(rename = "linkedContactsIds")]
    linked_contacts: Option<Vec<i64>>,
    #[serde(rename = "linkedDealsIds")]
    linked_deals: Option<Vec<String>>,
}

fn company_not_found() -> ApiError {
    ApiError::not_found("Company not found")
}

fn new_object_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Links only contacts that exist in the account (unknown ids are ignored).
fn existing(account: &Account, ids: Vec<i64>) -> BTreeSet<i64> {
    ids.into_iter().filter(|id| account.contacts.contains_key(id)).collect()
}

fn merge_attributes(
    company: &mut Company,
    attributes: Option<Map<String, Value>>,
    country_code: Option<i64>,
) {
    for (k, v) in attributes.unwrap_or_default() {
        if KNOWN.contains(&k.as_str()) {
            company.attributes.insert(k, v);
        }
    }
    if let Some(code) = country_code {
        // `countryCode` qualifies `phone_number` (spec `createCompany.countryCode`).
        company.attributes.insert("country_code".into(), json!(code));
    }
}

/// `POST /v3/companies` → 200 `{id}`.
pub(crate) async fn create(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Body(body): Body<CompanyBody>,
) -> ApiResult<Response> {
    let name = body
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::missing("name is required"))?;
    let id = brevo.with_account(&key, |account| {
        let now = OffsetDateTime::now_utc();
        let mut company = Company {
            id: new_object_id(),
            attributes: Map::new(),
            linked_contacts: existing(account, body.linked_contacts.unwrap_or_default()),
            linked_deals: body.linked_deals.unwrap_or_default().into_iter().collect(),
            created_at: now,
            modified_at: now,
        };
        merge_attributes(&mut company, body.attributes, body.country_code);
        company.attributes.insert("name".into(), json!(name));
        let id = company.id.clone();
        account.companies.insert(id.clone(), company);
        id
    })?;
    Ok(axum::Json(json!({ "id": id })).into_response())
}

/// `filters={"attributes.owner":"..."}`: equality on attributes (spec parameter description).
fn parse_filters(raw: Option<&str>) -> ApiResult<Vec<(String, Value)>> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let map: Map<String, Value> = serde_json::from_str(raw)
        .map_err(|_| ApiError::invalid("filters must be a JSON object"))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("attributes.").unwrap_or(&k).to_owned(), v))
        .collect())
}

fn matches(company: &Company, filters: &[(String, Value)]) -> bool {
    filters.iter().all(|(k, v)| match (company.attributes.get(k), v) {
        (Some(Value::String(a)), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Some(a), b) => a == b,
        (None, _) => false,
    })
}

/// `GET /v3/companies` → `{items}`; paging by `page` (1-based) and `limit`.
pub(crate) async fn list(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    params: Params,
) -> ApiResult<Response> {
    let filters = parse_filters(params.get("filters"))?;
    let contact = params.int("linkedContactsIds")?;
    let deal = params.get("linkedDealsIds").map(str::to_owned);
    let modified_since = params.datetime("modifiedSince")?;
    let created_since = params.datetime("createdSince")?;
    let page = params.int("page")?.unwrap_or(1).max(1) as usize;
    let limit = params.int("limit")?.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            "limit should be between 1 and 1000",
        ));
    }
    let descending = params.descending()?;
    let sort_by = params.get("sortBy").unwrap_or("created_at").to_owned();
    let items = brevo.with_account(&key, |account| {
        let mut selected: Vec<&Company> = account
            .companies
            .values()
            .filter(|c| matches(c, &filters))
            .filter(|c| contact.is_none_or(|id| c.linked_contacts.contains(&id)))
            .filter(|c| deal.as_ref().is_none_or(|d| c.linked_deals.contains(d)))
            .filter(|c| modified_since.is_none_or(|t| c.modified_at > t))
            .filter(|c| created_since.is_none_or(|t| c.created_at > t))
            .collect();
        match sort_by.as_str() {
            "name" => selected.sort_by_key(|c| {
                c.attributes.get("name").and_then(Value::as_str).unwrap_or_default().to_lowercase()
            }),
            "last_updated_at" | "updated_at" => selected.sort_by_key(|c| c.modified_at),
            _ => selected.sort_by_key(|c| c.created_at),
        }
        if descending {
            selected.reverse();
        }
        selected
            .into_iter()
            .skip((page - 1) * limit as usize)
            .take(limit as usize)
            .map(Company::to_json)
            .collect::<Vec<_>>()
    })?;
    Ok(axum::Json(json!({ "items": items })).into_response())
}

pub(crate) async fn get(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let company = brevo.with_account(&key, |a| a.companies.get(&id).map(Company::to_json))?;
    Ok(axum::Json(company.ok_or_else(company_not_found)?).into_response())
}

/// `PATCH /v3/companies/{id}` → 200 with the company. Link arrays *replace* the links (reference §5.1).
pub(crate) async fn update(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
    Body(body): Body<CompanyBody>,
) -> ApiResult<Response> {
    let company = brevo.with_account(&key, |account| {
        let contacts = body.linked_contacts.map(|ids| existing(account, ids));
        let company = account.companies.get_mut(&id).ok_or_else(company_not_found)?;
        merge_attributes(company, body.attributes, body.country_code);
        if let Some(name) = body.name.filter(|n| !n.trim().is_empty()) {
            company.attributes.insert("name".into(), json!(name));
        }
        if let Some(contacts) = contacts {
            company.linked_contacts = contacts;
        }
        if let Some(deals) = body.linked_deals {
            company.linked_deals = deals.into_iter().collect();
        }
        company.modified_at = OffsetDateTime::now_utc();
        Ok::<_, ApiError>(company.to_json())
    })??;
    Ok(axum::Json(company).into_response())
}

pub(crate) async fn delete(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let removed = brevo.with_account(&key, |a| a.companies.remove(&id))?;
    removed.ok_or_else(company_not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct LinkBody {
    #[serde(rename = "linkContactIds")]
    link_contacts: Option<Vec<i64>>,
    #[serde(rename = "unlinkContactIds")]
    unlink_contacts: Option<Vec<i64>>,
    #[serde(rename = "linkDealsIds")]
    link_deals: Option<Vec<String>>,
    #[serde(rename = "unlinkDealsIds")]
    unlink_deals: Option<Vec<String>>,
}

/// `PATCH /v3/companies/link-unlink/{id}` → 204; incremental, unlike PATCH's replacing arrays.
pub(crate) async fn link_unlink(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
    Body(body): Body<LinkBody>,
) -> ApiResult<Response> {
    brevo.with_account(&key, |account| {
        let link = existing(account, body.link_contacts.unwrap_or_default());
        let company = account.companies.get_mut(&id).ok_or_else(company_not_found)?;
        company.linked_contacts.extend(link);
        for c in body.unlink_contacts.unwrap_or_default() {
            company.linked_contacts.remove(&c);
        }
        company.linked_deals.extend(body.link_deals.unwrap_or_default());
        for d in body.unlink_deals.unwrap_or_default() {
            company.linked_deals.remove(&d);
        }
        company.modified_at = OffsetDateTime::now_utc();
        Ok::<_, ApiError>(())
    })??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! Custom events: `POST /v3/events` (spec `createEvent`) and `POST /v3/events/batch` (added
//! 2026-03, absent from the stored spec; shapes from the official SDK). Reference §6.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::contact_write::{self, Change, vet};
use super::http::{ApiError, ApiResult, Body, normalize_phone, render_time};
use super::state::{Account, StoredEvent};
use super::{ApiKey, Brevo, delivery};

/// `event_properties` may weigh at most 50 KB (reference §6.1).
const MAX_PROPERTIES_BYTES: usize = 50 * 1024;
const IDENTIFIERS: &[&str] =
    &["contact_id", "email_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id"];

/// Names and property keys: ≤ 255 characters of `[A-Za-z0-9_-]` (spec `event_name` description).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A validated event, not yet stored.
struct Checked {
    event: StoredEvent,
    contact_properties: Map<String, Value>,
}

fn check(raw: &Value) -> Result<Checked, ApiError> {
    let obj = raw.as_object().ok_or_else(|| ApiError::invalid("An event must be a JSON object"))?;
    let name = obj
        .get("event_name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::missing("event_name is required"))?;
    if !valid_name(name) {
        return Err(ApiError::invalid(
            "event_name must be 1 to 255 characters among A-Z, a-z, 0-9, - and _",
        ));
    }
    let identifiers = obj
        .get("identifiers")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::missing("identifiers is required"))?;
    // minProperties: 1 in the spec; only the known identifier keys count.
    if !identifiers.keys().any(|k| IDENTIFIERS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            "identifiers must contain at least one of contact_id, email_id, ext_id, phone_id, whatsapp_id, landline_number_id",
        ));
    }
    let contact_properties = match obj.get("contact_properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            // anyOf string | integer in the spec; newer docs add boolean.
            if let Some((k, _)) = m
                .iter()
                .find(|(_, v)| !(v.is_string() || v.is_i64() || v.is_u64() || v.is_boolean()))
            {
                return Err(ApiError::invalid(format!(
                    "contact_properties.{k} must be a string or an integer"
                )));
            }
            m.clone()
        }
        Some(_) => return Err(ApiError::invalid("contact_properties must be an object")),
    };
    let event_properties = match obj.get("event_properties") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| !valid_name(k)) {
                return Err(ApiError::invalid(format!("event_properties key {k} is not valid")));
            }
            if serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0) > MAX_PROPERTIES_BYTES {
                return Err(ApiError::invalid("event_properties exceeds 50KB"));
            }
            v.clone()
        }
        Some(_) => return Err(ApiError::invalid("event_properties must be an object")),
    };
    let now = OffsetDateTime::now_utc();
    let event_date = match obj.get("event_date") {
        None | Some(Value::Null) => render_time(now),
        Some(Value::String(s)) => {
            OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|_| ApiError::invalid("event_date must be an ISO 8601 date-time"))?;
            s.clone()
        }
        Some(_) => return Err(ApiError::invalid("event_date must be a string")),
    };
    let event = StoredEvent {
        event_name: name.to_owned(),
        event_date,
        identifiers: Value::Object(identifiers.clone()),
        contact_id: None,
        contact_properties: Value::Object(contact_properties.clone()),
        event_properties,
        object: obj.get("object").cloned().unwrap_or(Value::Null),
        received_at: render_time(now),
    };
    Ok(Checked { event, contact_properties })
}

/// The contact an event is about: `contact_id` first, then the other identifiers (reference §6.1).
fn resolve(account: &Account, identifiers: &Value) -> Option<i64> {
    let get = |k: &str| identifiers.get(k);
    if let Some(id) = get("contact_id").and_then(Value::as_i64) {
        return account.contacts.contains_key(&id).then_some(id);
    }
    let s = |k: &str| get(k).and_then(Value::as_str).map(str::to_owned);
    s("email_id")
        .and_then(|e| account.by_email(&e))
        .or_else(|| s("ext_id").and_then(|x| account.by_attr("EXT_ID", &x)))
        .or_else(|| {
            s("phone_id").and_then(|p| normalize_phone(&p)).and_then(|p| account.by_attr("SMS", &p))
        })
        .or_else(|| {
            s("whatsapp_id")
                .and_then(|p| normalize_phone(&p))
                .and_then(|p| account.by_attr("WHATSAPP", &p))
        })
        .or_else(|| {
            s("landline_number_id")
                .and_then(|p| normalize_phone(&p))
                .and_then(|p| account.by_attr("LANDLINE_NUMBER", &p))
        })
}

/// Stores the event; `contact_properties` update the contact when it exists (leniently: values that
/// fail the attribute rules are dropped). The sandbox does not create contacts from events.
fn store(account: &mut Account, checked: Checked) -> Vec<delivery::Job> {
    let Checked { mut event, contact_properties } = checked;
    event.contact_id = resolve(account, &event.identifiers);
    let mut jobs = Vec::new();
    if let Some(id) = event.contact_id
        && let Ok(vetted) = vet(account, &contact_properties, false)
        && let Some(attributes) = account.contacts.get_mut(&id).map(|mut contact| {
            contact_write::apply(&mut contact, None, vetted, OffsetDateTime::now_utc())
        })
    {
        let change = Change { contact_id: id, created: false, attributes, added_lists: Vec::new() };
        jobs = delivery::contact_change_jobs(account, &change, true);
    }
    account.events.push(event);
    jobs
}

/// `POST /v3/events` → 204.
pub(crate) async fn create(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Body(body): Body<Value>,
) -> ApiResult<Response> {
    let checked = check(&body)?;
    let jobs = brevo.with_account(&key, |account| store(account, checked))?;
    brevo.dispatch(&key, jobs);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v3/events/batch`. The body is `{"events": [...]}` (reference page) or a bare array (one
/// SDK release); both are taken. All valid → 202 `{message, count}` (SDK `BatchAcceptedResponse`);
/// some invalid → 207 with per-event errors (changelog 2026-03-03, SDK `BatchEventsResponse`); none
/// valid → 400.
pub(crate) async fn batch(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Body(body): Body<Value>,
) -> ApiResult<Response> {
    let events = match body {
        Value::Array(items) => items,
        Value::Object(mut m) => match m.remove("events") {
            Some(Value::Array(items)) => items,
            _ => return Err(ApiError::missing("events is required")),
        },
        _ => {
            return Err(ApiError::invalid("Body must be an object with an events array"));
        }
    };
    if events.is_empty() {
        return Err(ApiError::missing("events must not be empty"));
    }
    let total = events.len();
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in events.iter().enumerate() {
        match check(raw) {
            Ok(c) => good.push(c),
            Err(e) => errors.push(json!({ "eventIndex": [i], "message": e.message })),
        }
    }
    if good.is_empty() {
        return Err(ApiError::invalid("No valid event in the batch"));
    }
    let accepted = good.len();
    let jobs = brevo.with_account(&key, |account| {
        good.into_iter().flat_map(|c| store(account, c)).collect::<Vec<_>>()
    })?;
    brevo.dispatch(&key, jobs);
    if errors.is_empty() {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "message": "Events accepted for processing", "count": accepted })),
        )
            .into_response());
    }
    let body = json!({
        "status": "partial_success",
        "total_events": total,
        "successful_events": accepted,
        "failed_events": errors.len(),
        "errors": errors,
    });
    Ok((StatusCode::MULTI_STATUS, axum::Json(body)).into_response())
}

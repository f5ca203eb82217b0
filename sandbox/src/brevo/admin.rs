//! The sandbox's own admin API under `/_sandbox/` (no `api-key`): reset, state dump, extra account
//! keys, marketing events triggered "from the Brevo side" with webhook delivery, the request log and
//! fault injection. Not part of Brevo.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::contact_write::{self, vet};
use super::delivery::{self, Extra};
use super::http::Params;
use super::state::Faults;
use super::{Brevo, DEFAULT_API_KEY};

pub(crate) fn router(brevo: Brevo) -> Router {
    Router::new()
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/state", get(state))
        .route("/_sandbox/keys", get(keys).post(add_key))
        .route("/_sandbox/trigger", post(trigger))
        .route("/_sandbox/requests", get(requests).delete(clear_requests))
        .route("/_sandbox/faults", get(faults).post(set_faults))
        .with_state(brevo)
}

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Body parsing for admin calls; errors are plain `{error}`.
fn parse<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T, Box<Response>> {
    let body = if body.trim().is_empty() { "{}" } else { body };
    serde_json::from_str(body)
        .map_err(|e| Box::new(admin_error(StatusCode::BAD_REQUEST, format!("invalid body: {e}"))))
}

#[derive(Deserialize)]
struct ResetBody {
    api_key: Option<String>,
}

/// `POST /_sandbox/reset` — everything, or only `{api_key}`'s account. Registered keys survive.
async fn reset(State(brevo): State<Brevo>, body: String) -> Response {
    let body: ResetBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match body.api_key {
        None => brevo.reset(),
        Some(key) => {
            let mut shared = brevo.lock();
            let Some(account) = shared.accounts.get(&key) else {
                return admin_error(StatusCode::NOT_FOUND, "unknown api_key");
            };
            let fresh = super::state::Account::new(&key, &account.key_name, account.number);
            shared.accounts.insert(key.clone(), fresh);
            shared.windows.retain(|(k, _), _| *k != key);
        }
    }
    Json(json!({ "reset": true })).into_response()
}

/// `GET /_sandbox/state?api_key=` (default: the default key).
async fn state(State(brevo): State<Brevo>, params: Params) -> Response {
    let key = params.get("api_key").unwrap_or(DEFAULT_API_KEY);
    match brevo.state(key) {
        Some(v) => Json(v).into_response(),
        None => admin_error(StatusCode::NOT_FOUND, "unknown api_key"),
    }
}

async fn keys(State(brevo): State<Brevo>) -> Response {
    let keys: Vec<String> = brevo.lock().accounts.keys().cloned().collect();
    Json(json!({ "api_keys": keys })).into_response()
}

#[derive(Deserialize)]
struct KeyBody {
    api_key: String,
    /// Display name of the key, echoed as `api_key_name` in contact webhooks.
    name: Option<String>,
}

/// `POST /_sandbox/keys {api_key, name?}` registers another account.
async fn add_key(State(brevo): State<Brevo>, body: String) -> Response {
    let body: KeyBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if body.api_key.trim().is_empty() {
        return admin_error(StatusCode::BAD_REQUEST, "api_key must not be empty");
    }
    brevo.lock().add_account(&body.api_key, body.name.as_deref().unwrap_or("pipebridge-sandbox"));
    (StatusCode::CREATED, Json(json!({ "api_key": body.api_key }))).into_response()
}

#[derive(Deserialize)]
struct TriggerBody {
    api_key: Option<String>,
    /// A marketing registration name: unsubscribed, hardBounce, softBounce, spam, opened, click,
    /// delivered, listAddition, contactUpdated, contactDeleted.
    event: String,
    email: String,
    attributes: Option<Map<String, Value>>,
    list_ids: Option<Vec<i64>>,
    reason: Option<String>,
}

/// `POST /_sandbox/trigger`: applies a Brevo-side change to the contact (e.g. an unsubscribe
/// blocklists its email) and delivers the payload to the account's marketing webhooks registered
/// for that event, waiting for the deliveries. Answers what was delivered.
async fn trigger(State(brevo): State<Brevo>, body: String) -> Response {
    let body: TriggerBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if delivery::payload_event(&body.event).is_none() {
        return admin_error(StatusCode::BAD_REQUEST, format!("unsupported event {}", body.event));
    }
    let key = body.api_key.clone().unwrap_or_else(|| DEFAULT_API_KEY.to_owned());
    let now = OffsetDateTime::now_utc();
    let prepared = {
        let mut shared = brevo.lock();
        let Some(account) = shared.accounts.get_mut(&key) else {
            return admin_error(StatusCode::NOT_FOUND, "unknown api_key");
        };
        let Some(id) = account.by_email(&body.email) else {
            return admin_error(StatusCode::NOT_FOUND, "no contact with that email");
        };
        let mut extra = Extra { reason: body.reason.clone(), ..Extra::default() };
        match body.event.as_str() {
            "unsubscribed" | "hardBounce" | "spam" => {
                if let Some(mut c) = account.contacts.get_mut(&id) {
                    c.email_blacklisted = true;
                    c.modified_at = now;
                    match body.event.as_str() {
                        "unsubscribed" => c.unsubscriptions.push(now),
                        "hardBounce" => c.hard_bounces.push(now),
                        _ => {}
                    }
                    if body.event == "unsubscribed" {
                        extra.list_ids = c.list_ids.iter().copied().collect();
                    }
                }
            }
            "contactUpdated" => {
                let vetted = vet(account, &body.attributes.clone().unwrap_or_default(), false)
                    .unwrap_or_default();
                if let Some(mut c) = account.contacts.get_mut(&id) {
                    extra.attributes = Some(contact_write::apply(&mut c, None, vetted, now));
                }
                extra.api_key_name = Some(String::new());
            }
            "listAddition" => {
                let lists = body.list_ids.clone().unwrap_or_default();
                if let Err(e) = contact_write::check_lists(account, &lists) {
                    return admin_error(StatusCode::BAD_REQUEST, e.message);
                }
                if let Some(mut c) = account.contacts.get_mut(&id) {
                    extra.list_ids = lists.into_iter().filter(|l| c.list_ids.insert(*l)).collect();
                    c.modified_at = now;
                }
                extra.api_key_name = Some(String::new());
            }
            _ => {}
        }
        let Some(contact) = account.contacts.get(&id).cloned() else {
            return admin_error(StatusCode::NOT_FOUND, "no contact with that email");
        };
        if body.event == "contactDeleted" {
            account.delete_contact(id);
        }
        (id, delivery::jobs_for(account, &body.event, &contact, extra))
    };
    let (contact_id, jobs) = prepared;
    let deliveries = brevo.deliver_all(&key, jobs).await;
    Json(json!({ "event": body.event, "contact_id": contact_id, "deliveries": deliveries }))
        .into_response()
}

/// `GET /_sandbox/requests[?api_key=]` — the `/v3` request log, oldest first.
async fn requests(State(brevo): State<Brevo>, params: Params) -> Response {
    let key = params.get("api_key");
    let log: Vec<Value> = brevo
        .lock()
        .requests
        .iter()
        .filter(|r| key.is_none_or(|k| r.api_key.as_deref() == Some(k)))
        .map(|r| json!(r))
        .collect();
    Json(json!({ "requests": log })).into_response()
}

async fn clear_requests(State(brevo): State<Brevo>) -> Response {
    brevo.lock().requests.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn faults(State(brevo): State<Brevo>) -> Response {
    Json(json!(brevo.lock().faults)).into_response()
}

/// `POST /_sandbox/faults {error_rate, latency_ms, force_429, import_refuse_share, rate_limits?}`;
/// `{}` clears them.
async fn set_faults(State(brevo): State<Brevo>, body: String) -> Response {
    let faults: Faults = match parse(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return admin_error(StatusCode::BAD_REQUEST, "error_rate must be between 0 and 1");
    }
    brevo.lock().faults = faults.clone();
    Json(json!(faults)).into_response()
}

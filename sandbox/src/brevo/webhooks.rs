//! `/v3/webhooks` (spec `createWebhook`, `getWebhooks`, `getWebhook`, `updateWebhook`,
//! `deleteWebhook`; reference §8.1). Deliveries are in [`super::delivery`].

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::http::{ApiError, ApiResult, Body, Params, path_id};
use super::state::Webhook;
use super::{ApiKey, Brevo};

/// Registration event names per webhook type (spec `createWebhook.events` description and enum).
const MARKETING_EMAIL: &[&str] = &[
    "spam",
    "opened",
    "click",
    "hardBounce",
    "softBounce",
    "unsubscribed",
    "listAddition",
    "delivered",
    "contactUpdated",
    "contactDeleted",
];
const MARKETING_SMS: &[&str] =
    &["sent", "delivered", "softBounce", "hardBounce", "unsubscribe", "reply", "subscribe", "skip"];
const TRANSACTIONAL: &[&str] = &[
    "sent",
    "request",
    "delivered",
    "hardBounce",
    "softBounce",
    "blocked",
    "spam",
    "invalid",
    "deferred",
    "click",
    "opened",
    "uniqueOpened",
    "unsubscribed",
];
const INBOUND: &[&str] = &["inboundEmailProcessed"];

#[derive(Debug, Deserialize)]
pub(crate) struct WebhookBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    description: Option<String>,
    channel: Option<String>,
    batched: Option<bool>,
    auth: Option<Value>,
    headers: Option<Vec<Map<String, Value>>>,
    domain: Option<String>,
}

fn validate(kind: &str, channel: &str, url: &str, events: &[String]) -> ApiResult<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::invalid("url is not a valid URL"));
    }
    if events.is_empty() {
        return Err(ApiError::missing("events is missing"));
    }
    let allowed = match (kind, channel) {
        ("marketing", "sms") => MARKETING_SMS,
        ("marketing", _) => MARKETING_EMAIL,
        ("transactional", _) => TRANSACTIONAL,
        ("inbound", _) => INBOUND,
        _ => {
            return Err(ApiError::invalid("type must be one of transactional, marketing, inbound"));
        }
    };
    match events.iter().find(|e| !allowed.contains(&e.as_str())) {
        Some(bad) => Err(ApiError::invalid(format!("events: {bad} is not a valid {kind} event"))),
        None => Ok(()),
    }
}

fn headers_of(raw: Option<Vec<Map<String, Value>>>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .iter()
        .filter_map(|h| {
            Some((h.get("key")?.as_str()?.to_owned(), h.get("value")?.as_str()?.to_owned()))
        })
        .collect()
}

/// `POST /v3/webhooks` → 201 `{id}`. `type` defaults to transactional (reference §8.1).
pub(crate) async fn create(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Body(body): Body<WebhookBody>,
) -> ApiResult {
    let url = body.url.ok_or_else(|| ApiError::missing("url is missing"))?;
    let events = body.events.ok_or_else(|| ApiError::missing("events is missing"))?;
    let kind = body.kind.unwrap_or_else(|| "transactional".into());
    let channel = body.channel.unwrap_or_else(|| "email".into());
    validate(&kind, &channel, &url, &events)?;
    if kind == "inbound" && body.domain.is_none() {
        return Err(ApiError::missing("domain is required for inbound webhooks"));
    }
    let now = OffsetDateTime::now_utc();
    let id = brevo.with_account(&key, |account| {
        let id = account.next_webhook_id;
        account.next_webhook_id += 1;
        let webhook = Webhook {
            id,
            url,
            description: body.description.unwrap_or_default(),
            events,
            kind,
            channel,
            batched: body.batched.unwrap_or(false),
            auth: body.auth,
            headers: headers_of(body.headers),
            domain: body.domain,
            created_at: now,
            modified_at: now,
        };
        account.webhooks.insert(id, webhook);
        id
    })?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": id }))).into_response())
}

/// `GET /v3/webhooks?type=&sort=` — `type` defaults to transactional (reference §8.1).
pub(crate) async fn list(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    params: Params,
) -> ApiResult {
    let kind = params.get("type").unwrap_or("transactional").to_owned();
    if !matches!(kind.as_str(), "marketing" | "transactional" | "inbound") {
        return Err(ApiError::invalid("type must be one of marketing, transactional, inbound"));
    }
    let descending = params.descending()?;
    let hooks = brevo.with_account(&key, |account| {
        let mut hooks: Vec<Value> =
            account.webhooks.values().filter(|w| w.kind == kind).map(Webhook::to_json).collect();
        if descending {
            hooks.reverse();
        }
        hooks
    })?;
    Ok(axum::Json(json!({ "webhooks": hooks })).into_response())
}

fn webhook_not_found() -> ApiError {
    ApiError::not_found("Webhook not found")
}

/// `GET /v3/webhooks/{webhookId}`.
pub(crate) async fn get(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = path_id(&id, "webhookId")?;
    let hook =
        brevo.with_account(&key, |account| account.webhooks.get(&id).map(Webhook::to_json))?;
    Ok(axum::Json(hook.ok_or_else(webhook_not_found)?).into_response())
}

/// `PUT /v3/webhooks/{webhookId}` → 204.
pub(crate) async fn update(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
    Body(body): Body<WebhookBody>,
) -> ApiResult {
    let id = path_id(&id, "webhookId")?;
    brevo.with_account(&key, |account| {
        let hook = account.webhooks.get_mut(&id).ok_or_else(webhook_not_found)?;
        let url = body.url.unwrap_or_else(|| hook.url.clone());
        let events = body.events.unwrap_or_else(|| hook.events.clone());
        validate(&hook.kind, &hook.channel, &url, &events)?;
        hook.url = url;
        hook.events = events;
        if let Some(d) = body.description {
            hook.description = d;
        }
        if let Some(b) = body.batched {
            hook.batched = b;
        }
        if body.auth.is_some() {
            hook.auth = body.auth;
        }
        if body.headers.is_some() {
            hook.headers = headers_of(body.headers);
        }
        if body.domain.is_some() {
            hook.domain = body.domain;
        }
        hook.modified_at = OffsetDateTime::now_utc();
        Ok::<_, ApiError>(())
    })??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v3/webhooks/{webhookId}` → 204.
pub(crate) async fn delete(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, "webhookId")?;
    let removed = brevo.with_account(&key, |account| account.webhooks.remove(&id))?;
    removed.ok_or_else(webhook_not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

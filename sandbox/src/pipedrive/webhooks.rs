//! Webhooks (pipedrive-api.md §10): the v1 management API, and delivery of every change in v2 form
//! (default) or v1 form, with HTTP Basic credentials when given, a 10 s timeout, retries after 3,
//! 30 and 150 s, a 30-minute ban after 10 failed first attempts (events in the ban are lost), and
//! deletion after 3 days without a success. Delays pass at the sandbox's time scale.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::gate::Caller;
use super::model::EntityKind;
use super::render::t1;
use super::state::Pipedrive;

pub const MAX_PER_USER: usize = 40;
const RETRY_DELAYS: [u64; 3] = [3, 30, 150];
const BAN_AFTER: u32 = 10;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Webhook {
    pub id: u64,
    pub user_id: u64,
    /// Stored in v2 words: create, change, delete or `*`.
    pub event_action: String,
    pub event_object: String,
    pub subscription_url: String,
    pub version: String,
    pub name: String,
    pub http_auth_user: Option<String>,
    pub http_auth_password: Option<String>,
    #[serde(skip)]
    pub add_time: OffsetDateTime,
    #[serde(skip)]
    pub failed_first_attempts: u32,
    #[serde(skip)]
    pub banned_until: Option<OffsetDateTime>,
    #[serde(skip)]
    pub last_success: Option<OffsetDateTime>,
    #[serde(skip)]
    pub last_failure: Option<OffsetDateTime>,
    pub last_delivery_time: Option<String>,
    pub last_http_status: Option<u16>,
    pub delivered: u64,
    pub lost: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Change,
    Delete,
}

/// One change to deliver. Both shapes are rendered when the change happens (under the lock).
#[derive(Debug, Clone)]
pub struct Change {
    pub action: Action,
    pub entity: EntityKind,
    pub id: u64,
    pub user_id: u64,
    pub change_source: &'static str,
    pub time: OffsetDateTime,
    pub v2_current: Option<Value>,
    pub v2_previous: Option<Value>,
    pub v1_current: Option<Value>,
    pub v1_previous: Option<Value>,
    pub merged_to_id: Option<u64>,
    pub merged_from_id: Option<u64>,
}

/// v1 vocabulary (added / updated / deleted / merged) accepted on create, stored as v2 words.
fn normalize_action(a: &str) -> Option<&'static str> {
    Some(match a {
        "create" | "added" => "create",
        "change" | "updated" | "merged" => "change",
        "delete" | "deleted" => "delete",
        "*" => "*",
        _ => return None,
    })
}

const OBJECTS: &[&str] = &[
    "activity",
    "deal",
    "lead",
    "note",
    "organization",
    "person",
    "pipeline",
    "product",
    "stage",
    "user",
    "activityType",
    "*",
];

fn invalid(field: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "success": false, "errors": {field: [message]}})),
    )
        .into_response()
}

fn view(w: &Webhook, company_id: u64) -> Value {
    json!({
        "id": w.id, "company_id": company_id, "owner_id": w.user_id, "user_id": w.user_id,
        "event_action": w.event_action, "event_object": w.event_object,
        "subscription_url": w.subscription_url, "version": w.version, "is_active": 1,
        "add_time": t1(w.add_time), "remove_time": null, "type": "general",
        "http_auth_user": w.http_auth_user, "http_auth_password": w.http_auth_password.as_ref().map(|_| "******"),
        "remove_reason": null, "last_delivery_time": w.last_delivery_time, "last_http_status": w.last_http_status,
        "admin_id": w.user_id, "name": w.name,
    })
}

pub async fn create(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let Some(Json(body)) = body else {
        return invalid("subscription_url", "request body must be JSON");
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let Some(url) =
        text("subscription_url").filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    else {
        return invalid("subscription_url", "invalid or non-reachable URL");
    };
    let Some(action) = text("event_action").as_deref().and_then(normalize_action) else {
        return invalid("event_action", "must be one of create, change, delete, *");
    };
    let Some(object) = text("event_object").filter(|o| OBJECTS.contains(&o.as_str())) else {
        return invalid("event_object", "invalid value");
    };
    let version = text("version").unwrap_or_else(|| "2.0".into());
    if version != "1.0" && version != "2.0" {
        return invalid("version", "must be 1.0 or 2.0");
    }
    let name = text("name").unwrap_or_else(|| format!("{action}.{object}"));
    let now = pd.now();
    let mut w = pd.world();
    let user_id = body.get("user_id").and_then(Value::as_u64).unwrap_or(caller.user_id);
    if w.webhooks.iter().filter(|h| h.user_id == user_id).count() >= MAX_PER_USER {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"status": "error", "success": false, "error": "Webhooks limit reached"})),
        )
            .into_response();
    }
    let id = w.next_webhook_id;
    w.next_webhook_id += 1;
    let hook = Webhook {
        id,
        user_id,
        event_action: action.into(),
        event_object: object,
        subscription_url: url,
        version,
        name,
        http_auth_user: text("http_auth_user"),
        http_auth_password: text("http_auth_password"),
        add_time: now,
        failed_first_attempts: 0,
        banned_until: None,
        last_success: None,
        last_failure: None,
        last_delivery_time: None,
        last_http_status: None,
        delivered: 0,
        lost: 0,
    };
    let data = view(&hook, w.company().id);
    w.webhooks.push(hook);
    (StatusCode::CREATED, Json(json!({"status": "ok", "success": true, "data": data})))
        .into_response()
}

pub async fn list(State(pd): State<Pipedrive>, Extension(caller): Extension<Caller>) -> Response {
    let w = pd.world();
    let company = w.company().id;
    let data: Vec<Value> = w
        .webhooks
        .iter()
        .filter(|h| {
            h.user_id == caller.user_id || w.user(caller.user_id).is_some_and(|u| u.is_admin)
        })
        .map(|h| view(h, company))
        .collect();
    Json(json!({"status": "ok", "success": true, "data": data})).into_response()
}

pub async fn delete(State(pd): State<Pipedrive>, Path(id): Path<String>) -> Response {
    let mut w = pd.world();
    let Ok(id) = id.parse::<u64>() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"status": "error", "success": false, "errors": {"id": ["not found"]}})),
        )
            .into_response();
    };
    let before = w.webhooks.len();
    w.webhooks.retain(|h| h.id != id);
    if w.webhooks.len() == before {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"status": "error", "success": false, "errors": {"id": ["not found"]}})),
        )
            .into_response();
    }
    Json(json!({"status": "ok", "success": true})).into_response()
}

fn matches(h: &Webhook, c: &Change) -> bool {
    let action = match c.action {
        Action::Create => "create",
        Action::Change => "change",
        Action::Delete => "delete",
    };
    (h.event_action == "*" || h.event_action == action)
        && (h.event_object == "*" || h.event_object == c.entity.as_str())
}

fn payload(pd: &Pipedrive, h: &Webhook, c: &Change, attempt: u32) -> Value {
    let company_id = pd.world().company().id;
    let host = format!("{}.pipedrive.com", pd.world().company().domain);
    if h.version == "1.0" {
        let action = match (c.action, c.merged_from_id) {
            (Action::Create, _) => "added",
            (Action::Change, Some(_)) => "merged",
            (Action::Change, None) => "updated",
            (Action::Delete, _) => "deleted",
        };
        let micros = c.time.unix_timestamp_nanos() / 1000;
        return json!({
            "v": 1, "event": format!("{action}.{}", c.entity.as_str()), "retry": attempt - 1,
            "meta": {"v": 1, "action": action, "object": c.entity.as_str(), "id": c.id, "company_id": company_id,
                     "user_id": c.user_id, "change_source": c.change_source, "host": host,
                     "timestamp": c.time.unix_timestamp(), "timestamp_micro": micros,
                     "permitted_user_ids": [c.user_id], "trans_pending": false, "is_bulk_update": false,
                     "pipedrive_service_name": false, "matches_filters": {"current": []}, "webhook_id": h.id.to_string()},
            "current": c.v1_current, "previous": c.v1_previous,
        });
    }
    let mut meta = json!({
        "action": match c.action { Action::Create => "create", Action::Change => "change", Action::Delete => "delete" },
        "entity": c.entity.as_str(), "entity_id": c.id.to_string(), "id": uuid::Uuid::new_v4().to_string(),
        "company_id": company_id.to_string(), "user_id": c.user_id.to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(), "is_bulk_edit": false,
        "timestamp": super::render::t2(c.time).replace('Z', ".000Z"), "type": "general", "version": "2.0",
        "webhook_id": h.id.to_string(), "webhook_owner_id": h.user_id.to_string(),
        "change_source": c.change_source, "attempt": attempt, "host": host,
        "permitted_user_ids": [c.user_id.to_string()],
    });
    if let Some(to) = c.merged_to_id {
        meta["merged_to_id"] = json!(to.to_string());
    }
    if let Some(from) = c.merged_from_id {
        meta["merged_from_id"] = json!(from.to_string());
    }
    json!({"meta": meta, "data": c.v2_current, "previous": c.v2_previous})
}

/// Takes changes from the handlers and delivers each to every matching webhook.
pub fn spawn_dispatcher(pd: Pipedrive, mut rx: mpsc::UnboundedReceiver<Change>) {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        while let Some(change) = rx.recv().await {
            let now = pd.now();
            let targets: Vec<Webhook> = {
                let mut w = pd.world();
                // A webhook that keeps failing with no success for 3 days is deleted (§10.4).
                let limit =
                    time::Duration::try_from(pd.clock().scaled(Duration::from_secs(3 * 86_400)))
                        .unwrap_or(time::Duration::DAY);
                w.webhooks.retain(|h| {
                    let since = h.last_success.unwrap_or(h.add_time);
                    !(h.last_failure.is_some_and(|f| f > since) && now - since >= limit)
                });
                let mut out = Vec::new();
                for h in w.webhooks.iter_mut().filter(|h| matches(h, &change)) {
                    if h.banned_until.is_some_and(|until| now < until) {
                        h.lost += 1; // events during a ban are lost
                        continue;
                    }
                    out.push(h.clone());
                }
                out
            };
            for hook in targets {
                let (pd, client, change) = (pd.clone(), client.clone(), change.clone());
                tokio::spawn(async move { deliver(pd, client, hook, change).await });
            }
        }
    });
}

async fn deliver(pd: Pipedrive, client: reqwest::Client, hook: Webhook, change: Change) {
    let timeout = pd.settings().webhook_timeout;
    for attempt in 1..=4u32 {
        if attempt > 1 {
            let real = Duration::from_secs(RETRY_DELAYS[attempt as usize - 2]);
            tokio::time::sleep(pd.clock().scaled(real)).await;
        }
        let body = payload(&pd, &hook, &change, attempt);
        let fail = pd.world().faults.fail_webhooks;
        let status = if fail {
            None
        } else {
            let mut req = client.post(&hook.subscription_url).timeout(timeout).json(&body);
            if let Some(user) = &hook.http_auth_user {
                req = req.basic_auth(user, hook.http_auth_password.as_deref());
            }
            req.send().await.ok().map(|r| r.status().as_u16())
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let now = pd.now();
        let mut w = pd.world();
        let ban = time::Duration::try_from(pd.clock().scaled(Duration::from_secs(30 * 60)))
            .unwrap_or(time::Duration::minutes(30));
        if let Some(h) = w.webhooks.iter_mut().find(|h| h.id == hook.id) {
            h.last_delivery_time = Some(t1(now));
            h.last_http_status = status;
            if !ok {
                h.last_failure = Some(now);
            }
            if ok {
                h.last_success = Some(now);
                h.delivered += 1;
            } else if attempt == 1 {
                h.failed_first_attempts += 1;
                if h.failed_first_attempts >= BAN_AFTER {
                    h.banned_until = Some(now + ban);
                    h.failed_first_attempts = 0;
                }
            }
        } else {
            return; // deleted meanwhile
        }
        if ok {
            return;
        }
    }
    if let Some(h) = pd.world().webhooks.iter_mut().find(|h| h.id == hook.id) {
        h.lost += 1;
    }
}

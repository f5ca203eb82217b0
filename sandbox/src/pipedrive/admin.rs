//! The admin API under `/_sandbox/` (loopback only): reset and seed, changes made "as a Pipedrive
//! user" (they fire webhooks like API changes), the request log with token costs, faults, the
//! clock, OAuth apps and tokens, webhook inspection and bans.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::gate::Caller;
use super::oauth::OAuthApp;
use super::state::{Faults, Pipedrive};
use super::{v1, v2_contacts, v2_deals};

pub fn router(pd: Pipedrive) -> Router {
    Router::new()
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/summary", get(summary))
        .route("/_sandbox/requests", get(requests).delete(clear_requests))
        .route("/_sandbox/faults", get(get_faults).post(set_faults))
        .route("/_sandbox/clock", post(clock))
        .route("/_sandbox/oauth/apps", get(list_apps).post(add_app))
        .route("/_sandbox/oauth/revoke", post(revoke))
        .route("/_sandbox/oauth/expire", post(expire))
        .route("/_sandbox/persons", post(create_person))
        .route("/_sandbox/persons/{id}", patch(update_person).delete(delete_person))
        .route("/_sandbox/persons/{id}/merge", post(merge_person))
        .route("/_sandbox/organizations", post(create_org))
        .route("/_sandbox/deals", post(create_deal))
        .route("/_sandbox/deals/{id}", patch(update_deal))
        .route("/_sandbox/activities", post(create_activity))
        .route("/_sandbox/webhooks", get(webhooks))
        .route("/_sandbox/webhooks/{id}/ban", post(ban_webhook))
        .route("/_sandbox/webhooks/{id}", delete(delete_webhook))
        .layer(axum::middleware::from_fn(loopback_only))
        .with_state(pd)
}

async fn loopback_only(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if addr.ip().is_loopback() {
        next.run(request).await
    } else {
        (StatusCode::FORBIDDEN, "the sandbox admin API answers on loopback only").into_response()
    }
}

/// Changes made through the admin API act as the admin user (id 1).
fn admin() -> Extension<Caller> {
    Extension(Caller { user_id: 1, oauth: false, token: "admin".into() })
}

async fn reset(State(pd): State<Pipedrive>, body: Option<Json<Value>>) -> Response {
    let persons = body
        .and_then(|Json(b)| b.get("persons").and_then(Value::as_u64))
        .map(|n| n as usize)
        .unwrap_or(pd.settings().seed_persons);
    pd.reset(persons);
    Json(json!({"ok": true, "counts": pd.counts()})).into_response()
}

async fn summary(State(pd): State<Pipedrive>) -> Response {
    let now = pd.now();
    let s = pd.limit_settings();
    let w = pd.world();
    Json(json!({
        "company": {"id": w.company().id, "name": w.company().name, "domain": w.company().domain},
        "api_token": w.users.first().map(|u| u.api_token.clone()),
        "counts": {"persons": w.persons.len(), "organizations": w.organizations.len(), "deals": w.deals.len(),
                   "activities": w.activities.len(), "leads": w.leads.len(), "webhooks": w.webhooks.len()},
        "budget": {"daily": s.daily_budget(), "spent_today": w.limiter.spent_today(now)},
        "now": super::render::t2(now),
    }))
    .into_response()
}

async fn requests(State(pd): State<Pipedrive>) -> Response {
    Json(json!(pd.world().log.iter().collect::<Vec<_>>())).into_response()
}

async fn clear_requests(State(pd): State<Pipedrive>) -> Response {
    pd.world().log.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(pd): State<Pipedrive>) -> Response {
    Json(json!(pd.world().faults)).into_response()
}

async fn set_faults(State(pd): State<Pipedrive>, Json(mut faults): Json<Faults>) -> Response {
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return (StatusCode::BAD_REQUEST, "error_rate must be between 0 and 1").into_response();
    }
    let now = pd.now();
    faults.storm_until = (faults.storm_429_seconds > 0)
        .then(|| now + time::Duration::seconds(faults.storm_429_seconds as i64));
    pd.world().faults = faults.clone();
    Json(json!(faults)).into_response()
}

async fn clock(State(pd): State<Pipedrive>, Json(body): Json<Value>) -> Response {
    let secs = body.get("advance_seconds").and_then(Value::as_i64).unwrap_or(0);
    pd.clock().advance(time::Duration::seconds(secs));
    Json(json!({"now": super::render::t2(pd.now())})).into_response()
}

async fn list_apps(State(pd): State<Pipedrive>) -> Response {
    Json(json!(pd.world().oauth.apps)).into_response()
}

async fn add_app(State(pd): State<Pipedrive>, Json(app): Json<OAuthApp>) -> Response {
    let mut w = pd.world();
    w.oauth.apps.retain(|a| a.client_id != app.client_id);
    w.oauth.apps.push(app);
    StatusCode::CREATED.into_response()
}

async fn revoke(State(pd): State<Pipedrive>, Json(body): Json<Value>) -> Response {
    let token = body.get("token").and_then(Value::as_str).unwrap_or_default();
    let found = pd.world().oauth.revoke(token);
    Json(json!({"revoked": found})).into_response()
}

async fn expire(State(pd): State<Pipedrive>) -> Response {
    let now = pd.now();
    pd.world().oauth.expire_access_tokens(now);
    StatusCode::NO_CONTENT.into_response()
}

async fn create_person(State(pd): State<Pipedrive>, body: Option<Json<Value>>) -> Response {
    v2_contacts::create_person(State(pd), admin(), body).await
}

async fn update_person(
    State(pd): State<Pipedrive>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    v2_contacts::update_person(State(pd), admin(), Path(id), body).await
}

async fn delete_person(State(pd): State<Pipedrive>, Path(id): Path<String>) -> Response {
    v2_contacts::delete_person(State(pd), admin(), Path(id)).await
}

async fn merge_person(
    State(pd): State<Pipedrive>,
    Path(id): Path<u64>,
    body: Option<Json<Value>>,
) -> Response {
    v1::merge_persons(State(pd), admin(), Path(id), body).await
}

async fn create_org(State(pd): State<Pipedrive>, body: Option<Json<Value>>) -> Response {
    v2_contacts::create_organization(State(pd), admin(), body).await
}

async fn create_deal(State(pd): State<Pipedrive>, body: Option<Json<Value>>) -> Response {
    v2_deals::create_deal(State(pd), admin(), body).await
}

async fn update_deal(
    State(pd): State<Pipedrive>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    v2_deals::update_deal(State(pd), admin(), Path(id), body).await
}

async fn create_activity(State(pd): State<Pipedrive>, body: Option<Json<Value>>) -> Response {
    v2_deals::create_activity(State(pd), admin(), body).await
}

async fn webhooks(State(pd): State<Pipedrive>) -> Response {
    let now = pd.now();
    let w = pd.world();
    let list: Vec<Value> = w
        .webhooks
        .iter()
        .map(|h| {
            let mut v = json!(h);
            v["banned"] = json!(h.banned_until.is_some_and(|u| now < u));
            v["failed_first_attempts"] = json!(h.failed_first_attempts);
            v
        })
        .collect();
    Json(json!(list)).into_response()
}

async fn ban_webhook(State(pd): State<Pipedrive>, Path(id): Path<u64>) -> Response {
    let now = pd.now();
    let ban = time::Duration::try_from(pd.clock().scaled(std::time::Duration::from_secs(30 * 60)))
        .unwrap_or(time::Duration::minutes(30));
    match pd.world().webhooks.iter_mut().find(|h| h.id == id) {
        Some(h) => {
            h.banned_until = Some(now + ban);
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delete_webhook(State(pd): State<Pipedrive>, Path(id): Path<u64>) -> Response {
    pd.world().webhooks.retain(|h| h.id != id);
    StatusCode::NO_CONTENT.into_response()
}

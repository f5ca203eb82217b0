//! The gate every `/v3` request passes: request log, injected faults, `api-key` authentication and
//! Brevo's rate limits with the `x-sib-ratelimit-*` headers (reference §1.1, §1.3, §7).

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use time::OffsetDateTime;

use super::http::{ApiError, render_time};
use super::state::{LoggedRequest, Window};
use super::{ApiKey, Brevo};

/// Most requests kept in the log; older ones are dropped first.
const LOG_CAP: usize = 10_000;

/// Missing or unknown key (reference §1.3: `unauthorized` / "Key not found").
pub(crate) fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Key not found")
}

/// Route not served by the sandbox (live body unknown; this mirrors the error model).
pub(crate) async fn not_found() -> Response {
    ApiError::not_found("Invalid route").into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed")
        .into_response()
}

/// Which limit bucket a path falls in (reference §7.1): everything under `/v3/contacts` shares a
/// per-second bucket, `/v3/events` has its own, all other endpoints share a per-hour bucket.
fn bucket(brevo: &Brevo, path: &str) -> (&'static str, u32, Duration) {
    let s = brevo.settings();
    if path == "/v3/contacts" || path.starts_with("/v3/contacts/") {
        ("contacts", s.contacts_per_second, Duration::from_secs(1))
    } else if path == "/v3/events" || path.starts_with("/v3/events/") {
        ("events", s.events_per_second, Duration::from_secs(1))
    } else {
        ("others", s.others_per_hour, Duration::from_secs(3600))
    }
}

struct Verdict {
    limit: u32,
    remaining: u32,
    reset_secs: u64,
    allowed: bool,
}

/// Counts the request in its fixed window (per key and bucket).
fn count(brevo: &Brevo, key: &str, path: &str) -> Verdict {
    let (name, limit, window) = bucket(brevo, path);
    let now = Instant::now();
    let mut shared = brevo.lock();
    let w =
        shared.windows.entry((key.to_owned(), name)).or_insert(Window { started: now, count: 0 });
    if now.duration_since(w.started) >= window {
        *w = Window { started: now, count: 0 };
    }
    let allowed = w.count < limit;
    if allowed {
        w.count += 1;
    }
    let left = window.saturating_sub(now.duration_since(w.started));
    // Seconds until the window resets, rounded up so a client waiting that long is safe.
    let reset_secs = left.as_millis().div_ceil(1000) as u64;
    Verdict {
        limit,
        remaining: limit.saturating_sub(w.count),
        reset_secs: reset_secs.max(1),
        allowed,
    }
}

fn put_limit_headers(headers: &mut HeaderMap, v: &Verdict) {
    headers.insert("x-sib-ratelimit-limit", HeaderValue::from(v.limit));
    headers.insert("x-sib-ratelimit-remaining", HeaderValue::from(v.remaining));
    headers.insert("x-sib-ratelimit-reset", HeaderValue::from(v.reset_secs));
}

/// 429 body: the spec gives `errorModel`; the exact live code is unknown (reference §1.3).
fn too_many(v: &Verdict) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "The expected rate limit is exceeded.",
    )
    .into_response();
    put_limit_headers(response.headers_mut(), v);
    response
}

pub(crate) async fn gate(State(brevo): State<Brevo>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let key = req.headers().get("api-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let faults = brevo.lock().faults.clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }

    let known = key.as_deref().is_some_and(|k| brevo.lock().accounts.contains_key(k));
    let response = if !known {
        unauthorized().into_response()
    } else {
        let key = key.clone().unwrap_or_default();
        let limits_on = faults.rate_limits.unwrap_or(brevo.settings().rate_limits);
        if faults.force_429 {
            let (_, limit, window) = bucket(&brevo, &path);
            too_many(&Verdict { limit, remaining: 0, reset_secs: window.as_secs(), allowed: false })
        } else if faults.error_rate > 0.0
            && rand::thread_rng().gen_bool(faults.error_rate.clamp(0.0, 1.0))
        {
            // Injected server failure; Brevo's 5xx body is not documented.
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(serde_json::json!({
                "code": "internal_error", "message": "Internal server error (injected by the sandbox)"
            })))
                .into_response()
        } else if limits_on {
            let verdict = count(&brevo, &key, &path);
            if verdict.allowed {
                req.extensions_mut().insert(ApiKey(key));
                let mut response = next.run(req).await;
                put_limit_headers(response.headers_mut(), &verdict);
                response
            } else {
                too_many(&verdict)
            }
        } else {
            req.extensions_mut().insert(ApiKey(key));
            next.run(req).await
        }
    };

    let entry = LoggedRequest {
        method,
        path,
        query,
        status: response.status().as_u16(),
        time: render_time(OffsetDateTime::now_utc()),
        api_key: key,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let mut shared = brevo.lock();
    if shared.requests.len() >= LOG_CAP {
        shared.requests.remove(0);
    }
    shared.requests.push(entry);
    response
}

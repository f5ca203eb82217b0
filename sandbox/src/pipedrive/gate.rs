//! In front of every API route: authentication (x-api-token header, api_token query, OAuth bearer),
//! injected faults, rate limits and the token budget, and the request log.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;

use super::limits::{Ask, Verdict, token_cost};
use super::reply;
use super::state::{LoggedRequest, Pipedrive};

/// Who is calling: the user, how they authenticated, and the token (the rate-limit key).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: u64,
    pub oauth: bool,
    pub token: String,
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// (API version, path template without the version prefix), e.g. (2, "/persons/{id}").
pub fn split_version(template: &str) -> (u8, &str) {
    if let Some(rest) = template.strip_prefix("/api/v2") {
        (2, rest)
    } else if let Some(rest) = template.strip_prefix("/api/v1") {
        (1, rest)
    } else if let Some(rest) = template.strip_prefix("/v1") {
        (1, rest)
    } else {
        (0, template)
    }
}

pub async fn gate(State(pd): State<Pipedrive>, mut request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let (version, op) = split_version(&template);
    let cost = token_cost(version, &method, op);
    let search = op.ends_with("itemSearch") || op.ends_with("/search");

    let header_token =
        request.headers().get("x-api-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::to_owned);
    let query_token = query_param(request.uri().query(), "api_token");

    let now = pd.now();
    let (caller, verdict, faults) = {
        let mut w = pd.world();
        let caller = if let Some(token) = bearer {
            w.oauth.user_of_access_token(&token, now).map(|user_id| Caller {
                user_id,
                oauth: true,
                token,
            })
        } else {
            header_token.or(query_token).and_then(|token| {
                w.users.iter().find(|u| u.api_token == token).map(|u| Caller {
                    user_id: u.id,
                    oauth: false,
                    token,
                })
            })
        };
        let faults = w.faults.clone();
        let verdict = caller.as_ref().map(|c| {
            if faults.storm_until.is_some_and(|until| now < until) {
                return Verdict::Limited { limit: 0, reset_secs: 2, daily: false };
            }
            let s = pd.limit_settings();
            w.limiter.check(&s, Ask { token: &c.token, oauth: c.oauth, search, cost, now })
        });
        (caller, verdict, faults)
    };

    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let auth = match &caller {
        Some(c) if c.oauth => "oauth",
        Some(_) => "api_token",
        None => "none",
    };
    let (response, charged) = match (caller, verdict) {
        (None, _) => (reply::unauthorized(), 0),
        (Some(_), Some(Verdict::Blocked)) => (reply::blocked(), 0),
        (Some(_), Some(Verdict::Limited { limit, reset_secs, .. })) => {
            let mut r = reply::over_limit();
            set_headers(&mut r, limit, 0, reset_secs);
            (r, 0)
        }
        (Some(caller), Some(Verdict::Allowed { limit, remaining, reset_secs })) => {
            if faults.error_rate > 0.0
                && rand::thread_rng().gen_bool(faults.error_rate.clamp(0.0, 1.0))
            {
                let status = [
                    StatusCode::INTERNAL_SERVER_ERROR,
                    StatusCode::BAD_GATEWAY,
                    StatusCode::SERVICE_UNAVAILABLE,
                ][rand::thread_rng().gen_range(0..3)];
                (reply::error(status, "Injected failure (sandbox fault)"), cost)
            } else {
                let oauth = caller.oauth;
                request.extensions_mut().insert(caller);
                let mut r = next.run(request).await;
                if pd.settings().rate_limits {
                    set_headers(&mut r, limit, remaining, reset_secs);
                    if !oauth {
                        // The legacy POST/PUT fair-use counter, api_token requests only (§11.4).
                        r.headers_mut()
                            .insert("x-daily-requests-left", HeaderValue::from(10_000u32));
                    }
                }
                (r, cost)
            }
        }
        (Some(_), None) => (reply::unauthorized(), 0),
    };
    pd.log_request(LoggedRequest {
        time: super::render::t2(now),
        method,
        path,
        status: response.status().as_u16(),
        auth: auth.into(),
        cost: charged,
    });
    response
}

fn set_headers(r: &mut Response, limit: u32, remaining: u32, reset: u64) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
}

/// Query parameters as a map (the last value of a repeated key wins).
pub type Query = HashMap<String, String>;

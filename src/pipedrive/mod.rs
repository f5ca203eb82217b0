//! The Pipedrive client. This part: OAuth 2.0 (authorize URL, code exchange, refresh,
//! revoke, with `api_domain`) through the `oauth2` crate, and `GET /v1/users/me` to identify the
//! connected company. Requests go to the connection's own API base (`api_domain`).

pub mod client;
pub mod limits;
pub mod models;
pub mod oauth;
pub mod v1;

use std::time::Duration;

use serde::Deserialize;

use crate::secrets::Secret;

#[derive(Debug, thiserror::Error)]
pub enum PipedriveError {
    /// 401: the token is wrong, expired or revoked.
    #[error("Pipedrive refused the credentials")]
    Unauthorized,
    #[error("Pipedrive's rate limit was reached; retry in {reset_secs} s")]
    RateLimited { reset_secs: u64 },
    #[error("Pipedrive could not be reached: {0}")]
    Transient(String),
    #[error("Pipedrive answered {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("Pipedrive's answer could not be read (field {field})")]
    Decode { field: String },
    /// The company's daily token budget is spent (for this priority): wait, do not call.
    #[error("the Pipedrive daily token budget is spent until {renews_at}")]
    BudgetExhausted { renews_at: time::OffsetDateTime },
    /// Pipedrive's abuse block (an HTML 403 after repeated 429s): stop calling.
    #[error("Pipedrive is blocking this token for sending too many requests")]
    Blocked,
}

/// How a request authenticates.
pub enum Auth<'a> {
    ApiToken(&'a Secret),
    Bearer(&'a Secret),
}

/// The connected user and company (`GET /v1/users/me`).
#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub company_id: u64,
    pub company_name: String,
    pub company_domain: String,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Following redirects would forward credentials to wherever they point.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client with a timeout builds")
}

/// `GET {api_base}/api/v1/users/me`.
#[tracing::instrument(skip_all)]
pub async fn users_me(
    http: &reqwest::Client,
    api_base: &str,
    auth: Auth<'_>,
) -> Result<Me, PipedriveError> {
    let req = http.get(format!("{}/api/v1/users/me", api_base.trim_end_matches('/')));
    let req = match auth {
        Auth::ApiToken(t) => req.header("x-api-token", t.expose()),
        Auth::Bearer(t) => req.bearer_auth(t.expose()),
    };
    let res = req.send().await.map_err(|e| PipedriveError::Transient(short(&e)))?;
    let status = res.status().as_u16();
    let reset = res
        .headers()
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let body = res.bytes().await.map_err(|e| PipedriveError::Transient(short(&e)))?;
    match status {
        200 => serde_json::from_slice::<Envelope<Me>>(&body)
            .map(|e| e.data)
            .map_err(|e| PipedriveError::Decode { field: field_of(&e) }),
        401 => Err(PipedriveError::Unauthorized),
        429 => Err(PipedriveError::RateLimited { reset_secs: reset }),
        500..=599 => Err(PipedriveError::Transient(format!("status {status}"))),
        _ => Err(PipedriveError::Rejected {
            status,
            message: serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_default(),
        }),
    }
}

pub(crate) fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        let text = e.to_string();
        text.split(" for url (").next().unwrap_or_default().to_owned()
    }
}

pub(crate) fn field_of(e: &serde_json::Error) -> String {
    e.to_string().split('`').nth(1).unwrap_or("?").to_owned()
}

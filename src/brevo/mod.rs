//! The Brevo API client (v3, `api-key` header): the account check that validates a pasted key
//! (here), and the sync engine's calls (`api`). Errors are decoded into what the caller acts on.

pub mod api;

use std::time::Duration;

use serde::Deserialize;

use crate::secrets::Secret;

#[derive(Debug, thiserror::Error)]
pub enum BrevoError {
    /// 401: the key is wrong, disabled, an SMTP key, or the caller's IP is not allowed.
    #[error("Brevo refused the key: {0}")]
    BadKey(String),
    #[error("Brevo's rate limit was reached; retry in {reset_secs} s")]
    RateLimited { reset_secs: u64 },
    /// 5xx, timeouts, connection failures: worth retrying.
    #[error("Brevo could not be reached: {0}")]
    Transient(String),
    #[error("Brevo answered {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("Brevo's answer could not be read (field {field})")]
    Decode { field: String },
    /// `SMS` is not a valid international number: retry without it.
    #[error("Brevo refused the phone number (SMS must be an international number)")]
    InvalidPhone,
    /// `SMS` belongs to another contact already.
    #[error("this phone number belongs to another Brevo contact")]
    SmsTaken,
    #[error("Brevo has another contact with the same {identifiers:?}")]
    Duplicate { identifiers: Vec<String> },
    #[error("Brevo has no such contact")]
    UnknownContact,
}

/// What `GET /v3/account` tells about the key's account.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub email: String,
    #[serde(rename = "companyName", default)]
    pub company_name: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

#[derive(Clone)]
pub struct BrevoClient {
    http: reqwest::Client,
    base: String,
}

impl BrevoClient {
    /// `base` without `/v3`: `https://api.brevo.com`, or the sandbox's URL.
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with a timeout builds");
        Self { http, base: base.trim_end_matches('/').to_owned() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    #[tracing::instrument(skip_all)]
    pub async fn account(&self, key: &Secret) -> Result<Account, BrevoError> {
        let res = self
            .http
            .get(format!("{}/v3/account", self.base))
            .header("api-key", key.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| BrevoError::Transient(crate::pipedrive::short(&e)))?;
        let status = res.status().as_u16();
        let reset = res
            .headers()
            .get("x-sib-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        let body =
            res.bytes().await.map_err(|e| BrevoError::Transient(crate::pipedrive::short(&e)))?;
        let message =
            || serde_json::from_slice::<ErrorBody>(&body).map(|b| b.message).unwrap_or_default();
        match status {
            200 => serde_json::from_slice(&body)
                .map_err(|e| BrevoError::Decode { field: crate::pipedrive::field_of(&e) }),
            401 => Err(BrevoError::BadKey(message())),
            429 => Err(BrevoError::RateLimited { reset_secs: reset }),
            500..=599 => Err(BrevoError::Transient(format!("status {status}"))),
            _ => Err(BrevoError::Rejected { status, message: message() }),
        }
    }
}

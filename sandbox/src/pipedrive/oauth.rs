//! The OAuth 2.0 server (pipedrive-api.md §2.2): an HTML consent page at `/oauth/authorize`,
//! `POST /oauth/token` (authorization_code and refresh_token grants, client credentials by HTTP
//! Basic, codes live 5 minutes, `api_domain` in the answer), and `POST /oauth/revoke`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::state::Pipedrive;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    #[serde(default = "default_app_name")]
    pub name: String,
}

fn default_app_name() -> String {
    "pipebridge".into()
}

struct Code {
    client_id: String,
    redirect_uri: String,
    user_id: u64,
    expires: OffsetDateTime,
}

struct Access {
    user_id: u64,
    expires: OffsetDateTime,
    refresh: String,
}

struct Refresh {
    client_id: String,
    user_id: u64,
}

#[derive(Default)]
pub struct OAuthState {
    pub apps: Vec<OAuthApp>,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
}

impl OAuthState {
    pub fn user_of_access_token(&self, token: &str, now: OffsetDateTime) -> Option<u64> {
        self.access.get(token).filter(|a| a.expires > now).map(|a| a.user_id)
    }

    /// Admin: revoke a token as if the user uninstalled (refresh) or the token leaked (access).
    pub fn revoke(&mut self, token: &str) -> bool {
        if let Some(a) = self.access.remove(token) {
            let _ = a.refresh;
            return true;
        }
        if self.refresh.remove(token).is_some() {
            self.access.retain(|_, a| a.refresh != token);
            return true;
        }
        false
    }

    /// Admin: make every access token expire now (to test refresh).
    pub fn expire_access_tokens(&mut self, now: OffsetDateTime) {
        for a in self.access.values_mut() {
            a.expires = now;
        }
    }
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}\
         .box{{border:1px solid #ddd;border-radius:10px;padding:1.5rem}}button{{font:inherit;padding:.5rem 1.2rem;margin-right:.5rem;border-radius:6px;border:1px solid #999;cursor:pointer}}\
         .approve{{background:#1a7f37;color:#fff;border-color:#1a7f37}}.note{{color:#666;font-size:.9rem}}</style></head>\
         <body><div class=\"box\">{body}</div><p class=\"note\">Pipedrive sandbox: a local stand-in for oauth.pipedrive.com.</p></body></html>"
    ))
}

fn error_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        page(
            "Authorization error",
            &format!("<h1>Cannot authorize</h1><p>{}</p>", escape(message)),
        ),
    )
        .into_response()
}

pub async fn authorize(
    State(pd): State<Pipedrive>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(client_id), Some(redirect_uri)) = (q.get("client_id"), q.get("redirect_uri")) else {
        return error_page("client_id and redirect_uri are required.");
    };
    let state = q.get("state").cloned().unwrap_or_default();
    let app = pd.world().oauth.apps.iter().find(|a| &a.client_id == client_id).cloned();
    let Some(app) = app else {
        return error_page("Invalid client: client is invalid");
    };
    if !app.redirect_uris.iter().any(|u| u == redirect_uri) {
        return error_page("Invalid request: redirect_uri is invalid");
    }
    let company = pd.world().company().name.clone();
    let hidden = format!(
        "<input type=\"hidden\" name=\"client_id\" value=\"{}\"><input type=\"hidden\" name=\"redirect_uri\" value=\"{}\"><input type=\"hidden\" name=\"state\" value=\"{}\">",
        escape(client_id),
        escape(redirect_uri),
        escape(&state)
    );
    page(
        "Allow access",
        &format!(
            "<h1>Allow {} to access your Pipedrive account?</h1><p>Company: <strong>{}</strong>, as Sandra Admin.</p>\
             <p>It will be able to read and change your contacts, deals, activities and leads, and to manage webhooks.</p>\
             <form method=\"post\" action=\"/oauth/authorize\">{hidden}\
             <button class=\"approve\" name=\"decision\" value=\"approve\" type=\"submit\">Allow and install</button>\
             <button name=\"decision\" value=\"deny\" type=\"submit\">Cancel</button></form>",
            escape(&app.name),
            escape(&company)
        ),
    )
    .into_response()
}

#[derive(serde::Deserialize)]
pub struct Decision {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    state: String,
    decision: String,
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
    format!("{uri}{sep}{}", q.join("&"))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn decide(State(pd): State<Pipedrive>, Form(d): Form<Decision>) -> Response {
    let valid = pd
        .world()
        .oauth
        .apps
        .iter()
        .any(|a| a.client_id == d.client_id && a.redirect_uris.contains(&d.redirect_uri));
    if !valid {
        return error_page("Invalid request: redirect_uri is invalid");
    }
    if d.decision != "approve" {
        let mut pairs = vec![("error", "user_denied")];
        if !d.state.is_empty() {
            pairs.push(("state", d.state.as_str()));
        }
        return Redirect::to(&with_query(&d.redirect_uri, &pairs)).into_response();
    }
    let code = random_token("");
    let now = pd.now();
    pd.world().oauth.codes.insert(
        code.clone(),
        Code {
            client_id: d.client_id,
            redirect_uri: d.redirect_uri.clone(),
            user_id: 1,
            expires: now + Duration::minutes(5),
        },
    );
    let mut pairs = vec![("code", code.as_str())];
    if !d.state.is_empty() {
        pairs.push(("state", d.state.as_str()));
    }
    Redirect::to(&with_query(&d.redirect_uri, &pairs)).into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error, "error_description": description, "success": false, "message": description}))).into_response()
}

/// Client credentials from HTTP Basic, or (tolerated) from the body.
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = STANDARD.decode(basic.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        return Some((id.to_owned(), secret.to_owned()));
    }
    Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone()))
}

pub async fn token(State(pd): State<Pipedrive>, headers: HeaderMap, body: String) -> Response {
    let form_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return oauth_error(
            "invalid_request",
            "Invalid request: content must be application/x-www-form-urlencoded",
        );
    }
    let form: HashMap<String, String> = match serde_urlencoded_parse(&body) {
        Some(f) => f,
        None => return oauth_error("invalid_request", "Invalid request: malformed body"),
    };
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return oauth_error("invalid_client", "Invalid client: cannot retrieve client credentials");
    };
    let now = pd.now();
    let ttl = pd.settings().access_token_ttl;
    let api_domain = pd.base_url().to_owned();
    let mut w = pd.world();
    if !w.oauth.apps.iter().any(|a| a.client_id == client_id && a.client_secret == secret) {
        return oauth_error("invalid_client", "Invalid client: client is invalid");
    }
    let (user_id, refresh) = match form.get("grant_type").map(String::as_str) {
        None => return oauth_error("invalid_request", "Missing parameter: grant_type"),
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(grant) = w.oauth.codes.remove(&code) else {
                return oauth_error(
                    "invalid_grant",
                    "Invalid grant: authorization_code is invalid",
                );
            };
            if grant.client_id != client_id {
                return oauth_error(
                    "invalid_grant",
                    "Invalid grant: authorization_code is invalid",
                );
            }
            if grant.expires <= now {
                return oauth_error(
                    "invalid_grant",
                    "Invalid grant: authorization_code has expired",
                );
            }
            if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                return oauth_error("invalid_request", "Invalid request: redirect_uri is invalid");
            }
            let refresh = random_token("");
            w.oauth.refresh.insert(
                refresh.clone(),
                Refresh { client_id: client_id.clone(), user_id: grant.user_id },
            );
            (grant.user_id, refresh)
        }
        Some("refresh_token") => {
            let refresh = form.get("refresh_token").cloned().unwrap_or_default();
            match w.oauth.refresh.get(&refresh) {
                Some(r) if r.client_id == client_id => (r.user_id, refresh),
                _ => {
                    return oauth_error("invalid_grant", "Invalid grant: refresh_token is invalid");
                }
            }
        }
        Some(_) => return oauth_error("unsupported_grant_type", "Unsupported grant type"),
    };
    let access = random_token("v1u:");
    w.oauth
        .access
        .insert(access.clone(), Access { user_id, expires: now + ttl, refresh: refresh.clone() });
    axum::Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl.whole_seconds().saturating_sub(1).max(1),
        "refresh_token": refresh,
        "scope": "base,deals:full,contacts:full,activities:full,leads:full,search:read,recents:read,admin",
        "api_domain": api_domain,
    }))
    .into_response()
}

pub async fn revoke(State(pd): State<Pipedrive>, headers: HeaderMap, body: String) -> Response {
    let form = serde_urlencoded_parse(&body).unwrap_or_default();
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return oauth_error("invalid_client", "Invalid client: cannot retrieve client credentials");
    };
    let mut w = pd.world();
    if !w.oauth.apps.iter().any(|a| a.client_id == client_id && a.client_secret == secret) {
        return oauth_error("invalid_client", "Invalid client: client is invalid");
    }
    // RFC 7009: 200 also for unknown tokens.
    if let Some(token) = form.get("token") {
        w.oauth.revoke(token);
    }
    StatusCode::OK.into_response()
}

fn serde_urlencoded_parse(body: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(urldecode(k)?, urldecode(v)?);
    }
    Some(out)
}

fn urldecode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

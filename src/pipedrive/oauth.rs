//! Pipedrive OAuth 2.0 with the `oauth2` crate: client credentials by HTTP Basic, the extra
//! `api_domain` field of the token answer, refresh, and revocation (pipedrive-api.md §2.2).

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, RedirectUrl, RefreshToken,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::secrets::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipedriveFields {
    /// The company's own API base URL, e.g. `https://acme.pipedrive.com`.
    pub api_domain: String,
}

impl ExtraTokenFields for PipedriveFields {}

type TokenAnswer = StandardTokenResponse<PipedriveFields, BasicTokenType>;
type OAuthClient = Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Where the OAuth server is and who we are to it.
#[derive(Clone)]
pub struct OAuthSettings {
    /// `https://oauth.pipedrive.com`, or the sandbox.
    pub server: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("the OAuth settings are invalid: {0}")]
    Config(String),
    /// The server refused the code or refresh token (expired, used, revoked): the user must
    /// connect again.
    #[error("Pipedrive refused the grant: {0}")]
    Refused(String),
    #[error("Pipedrive's OAuth server could not be reached: {0}")]
    Transient(String),
}

/// Tokens from a code exchange or a refresh.
pub struct Tokens {
    pub access: Secret,
    pub refresh: Secret,
    pub expires_at: OffsetDateTime,
    pub api_domain: String,
}

pub struct PipedriveOAuth {
    client: OAuthClient,
    http: reqwest::Client,
    revoke_url: String,
    client_id: String,
    client_secret: Secret,
}

impl PipedriveOAuth {
    pub fn new(s: &OAuthSettings) -> Result<Self, OAuthError> {
        let base = s.server.trim_end_matches('/');
        let bad = |e: url::ParseError| OAuthError::Config(e.to_string());
        let client = Client::new(ClientId::new(s.client_id.clone()))
            .set_client_secret(ClientSecret::new(s.client_secret.expose().to_owned()))
            .set_auth_type(AuthType::BasicAuth)
            .set_auth_uri(AuthUrl::new(format!("{base}/oauth/authorize")).map_err(bad)?)
            .set_token_uri(TokenUrl::new(format!("{base}/oauth/token")).map_err(bad)?)
            .set_redirect_uri(RedirectUrl::new(s.redirect_url.clone()).map_err(bad)?);
        Ok(Self {
            client,
            http: super::http_client(),
            revoke_url: format!("{base}/oauth/revoke"),
            client_id: s.client_id.clone(),
            client_secret: s.client_secret.clone(),
        })
    }

    /// The consent page URL and the `state` to bind to the user's session.
    pub fn authorize_url(&self) -> (String, String) {
        let (url, state) = self.client.authorize_url(CsrfToken::new_random).url();
        (url.to_string(), state.secret().clone())
    }

    pub async fn exchange(&self, code: &str) -> Result<Tokens, OAuthError> {
        let answer = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(classify)?;
        tokens(answer, None)
    }

    pub async fn refresh(&self, refresh: &Secret) -> Result<Tokens, OAuthError> {
        let answer = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh.expose().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(classify)?;
        tokens(answer, Some(refresh))
    }

    /// Revoking the refresh token uninstalls the app for the company (RFC 7009). Sent directly
    /// rather than through `oauth2`'s `revoke_token`, which refuses a non-https revocation URL
    /// and so could not talk to the sandbox; the request is the same.
    pub async fn revoke(&self, refresh: &Secret) -> Result<(), OAuthError> {
        let res = self
            .http
            .post(&self.revoke_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .form(&[("token", refresh.expose()), ("token_type_hint", "refresh_token")])
            .send()
            .await
            .map_err(|e| OAuthError::Transient(super::short(&e)))?;
        match res.status().as_u16() {
            200..=299 => Ok(()),
            400..=499 => Err(OAuthError::Refused(format!("revocation answered {}", res.status()))),
            _ => Err(OAuthError::Transient(format!("revocation answered {}", res.status()))),
        }
    }
}

fn tokens(answer: TokenAnswer, previous_refresh: Option<&Secret>) -> Result<Tokens, OAuthError> {
    let refresh = answer
        .refresh_token()
        .map(|r| Secret::new(r.secret().clone()))
        .or_else(|| previous_refresh.cloned())
        .ok_or_else(|| OAuthError::Refused("no refresh token in the answer".into()))?;
    let lifetime = answer.expires_in().unwrap_or(std::time::Duration::from_secs(3600));
    Ok(Tokens {
        access: Secret::new(answer.access_token().secret().clone()),
        refresh,
        expires_at: OffsetDateTime::now_utc() + lifetime,
        api_domain: answer.extra_fields().api_domain.trim_end_matches('/').to_owned(),
    })
}

fn classify<RE: std::error::Error + 'static>(
    e: oauth2::RequestTokenError<RE, BasicErrorResponse>,
) -> OAuthError {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => OAuthError::Refused(
            r.error_description().cloned().unwrap_or_else(|| r.error().to_string()),
        ),
        other => OAuthError::Transient(other.to_string()),
    }
}

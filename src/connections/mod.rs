//! A tenant's connections to Pipedrive and Brevo: connect (OAuth or API token; Brevo API key
//! checked against `GET /v3/account` first), show (never the secret: its last four characters),
//! disconnect (revoking OAuth grants). Every function takes the tenant through a [`Member`].

mod providers;

pub use providers::Providers;

use sqlx::PgPool;
use time::OffsetDateTime;

use crate::accounts::{AccessError, Member};
use crate::brevo::{BrevoClient, BrevoError};
use crate::pipedrive::oauth::{OAuthError, Tokens};
use crate::pipedrive::{self, Auth, PipedriveError};
use crate::secrets::{Secret, SecretKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Pipedrive,
    Brevo,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Pipedrive => "pipedrive",
            Provider::Brevo => "brevo",
        }
    }
}

/// A connection as the UI may see it: no secret, only its last four characters.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionInfo {
    pub provider: String,
    pub auth_kind: String,
    pub status: String,
    pub api_base: String,
    pub account_label: String,
    pub secret_last4: String,
    pub is_sandbox: bool,
    pub last_checked_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    /// Pipedrive only: the company's own daily token budget, if set.
    pub daily_token_budget: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The provider refused what the user gave: the message says what to do.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached or answered oddly: try again later.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The reason a Pipedrive connection that needs reauthorization holds its tenant's jobs.
pub const HOLD_PIPEDRIVE_REAUTH: &str = "pipedrive_needs_reauthorization";

const SEAL_SECRET: &str = "connection.secret";
const SEAL_REFRESH: &str = "connection.refresh";

pub async fn list(pool: &PgPool, member: &Member) -> Result<Vec<ConnectionInfo>, sqlx::Error> {
    sqlx::query_as(
        "select provider, auth_kind, status, api_base, account_label, secret_last4, is_sandbox,
                last_checked_at, last_error, daily_token_budget
         from connections where tenant_id = $1 order by provider",
    )
    .bind(member.tenant_id)
    .fetch_all(pool)
    .await
}

/// Checks a pasted Brevo key with `GET /v3/account`, then stores it sealed.
#[tracing::instrument(skip_all, fields(tenant_id = %member.tenant_id))]
pub async fn connect_brevo(
    pool: &PgPool,
    key: &SecretKey,
    providers: &Providers,
    member: &Member,
    api_key: Secret,
) -> Result<ConnectionInfo, ConnectError> {
    member.require_manage()?;
    let trimmed = Secret::new(api_key.expose().trim());
    if trimmed.expose().is_empty() {
        return Err(ConnectError::Refused(
            "Paste your Brevo API key (it starts with xkeysib-).".into(),
        ));
    }
    let client = BrevoClient::new(&providers.brevo_api);
    let account = client.account(&trimmed).await.map_err(|e| match e {
        BrevoError::BadKey(message) => ConnectError::Refused(format!(
            "Brevo refused this key ({}). Check that you copied a v3 API key (xkeysib-…), not an SMTP key, and that it is active.",
            if message.is_empty() { "unauthorized".into() } else { message }
        )),
        BrevoError::RateLimited { reset_secs } => {
            ConnectError::Unavailable(format!("Brevo is rate limiting this key; try again in {reset_secs} seconds."))
        }
        other => ConnectError::Unavailable(format!("Brevo could not check the key right now: {other}. Try again shortly.")),
    })?;
    let label = match account.company_name.filter(|c| !c.is_empty()) {
        Some(company) => format!("{company} ({})", account.email),
        None => account.email,
    };
    upsert(
        pool,
        key,
        member,
        Provider::Brevo,
        "api_key",
        &providers.brevo_api,
        &label,
        &trimmed,
        None,
        None,
        providers.sandbox,
    )
    .await?;
    tracing::info!("brevo connected");
    one(pool, member, Provider::Brevo).await
}

/// Stores the tokens of a completed OAuth exchange, after asking Pipedrive who they belong to.
#[tracing::instrument(skip_all, fields(tenant_id = %member.tenant_id))]
pub async fn connect_pipedrive_oauth(
    pool: &PgPool,
    key: &SecretKey,
    providers: &Providers,
    member: &Member,
    tokens: Tokens,
) -> Result<ConnectionInfo, ConnectError> {
    member.require_manage()?;
    let me = pipedrive::users_me(
        &pipedrive::http_client(),
        &tokens.api_domain,
        Auth::Bearer(&tokens.access),
    )
    .await
    .map_err(pipedrive_error)?;
    let label = format!("{} ({})", me.company_name, me.company_domain);
    upsert(
        pool,
        key,
        member,
        Provider::Pipedrive,
        "oauth",
        &tokens.api_domain,
        &label,
        &tokens.access,
        Some(&tokens.refresh),
        Some(tokens.expires_at),
        providers.sandbox,
    )
    .await?;
    tracing::info!("pipedrive connected by OAuth");
    one(pool, member, Provider::Pipedrive).await
}

/// Connects with a personal API token and the company domain, checked with `/v1/users/me`.
#[tracing::instrument(skip_all, fields(tenant_id = %member.tenant_id))]
pub async fn connect_pipedrive_token(
    pool: &PgPool,
    key: &SecretKey,
    providers: &Providers,
    member: &Member,
    token: Secret,
    company_domain: &str,
) -> Result<ConnectionInfo, ConnectError> {
    member.require_manage()?;
    let token = Secret::new(token.expose().trim());
    if token.expose().is_empty() {
        return Err(ConnectError::Refused(
            "Paste your Pipedrive API token (Settings → Personal preferences → API).".into(),
        ));
    }
    let base = providers.pipedrive_company_url(company_domain).map_err(ConnectError::Refused)?;
    let me = pipedrive::users_me(&pipedrive::http_client(), &base, Auth::ApiToken(&token))
        .await
        .map_err(pipedrive_error)?;
    let label = format!("{} ({})", me.company_name, me.company_domain);
    upsert(
        pool,
        key,
        member,
        Provider::Pipedrive,
        "api_token",
        &base,
        &label,
        &token,
        None,
        None,
        providers.sandbox,
    )
    .await?;
    tracing::info!("pipedrive connected by API token");
    one(pool, member, Provider::Pipedrive).await
}

/// Removes a connection; an OAuth grant is revoked at Pipedrive first (best effort: a failed
/// revocation is logged, the local tokens are deleted anyway).
#[tracing::instrument(skip_all, fields(tenant_id = %member.tenant_id, provider = provider.as_str()))]
pub async fn disconnect(
    pool: &PgPool,
    key: &SecretKey,
    providers: &Providers,
    member: &Member,
    provider: Provider,
) -> Result<(), ConnectError> {
    member.require_manage()?;
    let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
        "select auth_kind, refresh_secret from connections where tenant_id = $1 and provider = $2",
    )
    .bind(member.tenant_id)
    .bind(provider.as_str())
    .fetch_optional(pool)
    .await?;
    if let Some((kind, Some(sealed))) = &row
        && kind == "oauth"
    {
        match key.open(member.tenant_id, SEAL_REFRESH, sealed) {
            Ok(refresh) => {
                match providers.pipedrive_oauth().map(|o| async move { o.revoke(&refresh).await }) {
                    Ok(fut) => {
                        if let Err(e) = fut.await {
                            tracing::warn!(error = %e, "revoking the Pipedrive grant failed; deleting the tokens anyway");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "no OAuth client to revoke with"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "stored refresh token does not open"),
        }
    }
    sqlx::query("delete from connections where tenant_id = $1 and provider = $2")
        .bind(member.tenant_id)
        .bind(provider.as_str())
        .execute(pool)
        .await?;
    tracing::info!("disconnected");
    Ok(())
}

fn pipedrive_error(e: PipedriveError) -> ConnectError {
    match e {
        PipedriveError::Unauthorized => ConnectError::Refused(
            "Pipedrive refused these credentials. Check the API token and the company domain, or connect with OAuth.".into(),
        ),
        other => ConnectError::Unavailable(format!("Pipedrive could not be reached: {other}. Try again shortly.")),
    }
}

pub fn oauth_error(e: OAuthError) -> ConnectError {
    match e {
        OAuthError::Refused(m) => ConnectError::Refused(format!(
            "Pipedrive did not accept the authorization ({m}). Please connect again."
        )),
        other => ConnectError::Unavailable(format!("{other}. Try again shortly.")),
    }
}

async fn one(
    pool: &PgPool,
    member: &Member,
    provider: Provider,
) -> Result<ConnectionInfo, ConnectError> {
    Ok(sqlx::query_as(
        "select provider, auth_kind, status, api_base, account_label, secret_last4, is_sandbox,
                last_checked_at, last_error, daily_token_budget
         from connections where tenant_id = $1 and provider = $2",
    )
    .bind(member.tenant_id)
    .bind(provider.as_str())
    .fetch_one(pool)
    .await?)
}

#[allow(clippy::too_many_arguments)]
async fn upsert(
    pool: &PgPool,
    key: &SecretKey,
    member: &Member,
    provider: Provider,
    auth_kind: &str,
    api_base: &str,
    label: &str,
    secret: &Secret,
    refresh: Option<&Secret>,
    expires_at: Option<OffsetDateTime>,
    is_sandbox: bool,
) -> Result<(), sqlx::Error> {
    let sealed = key.seal(member.tenant_id, SEAL_SECRET, secret);
    let sealed_refresh = refresh.map(|r| key.seal(member.tenant_id, SEAL_REFRESH, r));
    sqlx::query(
        "insert into connections (tenant_id, provider, auth_kind, status, api_base, account_label, secret,
                                  refresh_secret, access_expires_at, secret_last4, is_sandbox, last_checked_at)
         values ($1, $2, $3, 'connected', $4, $5, $6, $7, $8, $9, $10, now())
         on conflict on constraint connections_pkey do update set
            auth_kind = excluded.auth_kind, status = 'connected', api_base = excluded.api_base,
            account_label = excluded.account_label, secret = excluded.secret,
            refresh_secret = excluded.refresh_secret, access_expires_at = excluded.access_expires_at,
            secret_last4 = excluded.secret_last4, is_sandbox = excluded.is_sandbox,
            last_checked_at = now(), last_error = null, updated_at = now()",
    )
    .bind(member.tenant_id)
    .bind(provider.as_str())
    .bind(auth_kind)
    .bind(api_base)
    .bind(label)
    .bind(sealed)
    .bind(sealed_refresh)
    .bind(expires_at)
    .bind(secret.last4())
    .bind(is_sandbox)
    .execute(pool)
    .await?;
    if provider == Provider::Pipedrive {
        // Connected again: the tenant's held jobs may run.
        crate::queue::release(pool, member.tenant_id, HOLD_PIPEDRIVE_REAUTH).await?;
    }
    Ok(())
}

/// What a connection Pipedrive no longer accepts says to its company.
const REAUTHORIZE: &str =
    "Pipedrive no longer accepts this authorization. Connect Pipedrive again.";

/// Marks the connection and holds the tenant's jobs until the user connects again.
pub async fn mark_needs_reauthorization(
    pool: &PgPool,
    tenant: crate::domain::TenantId,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "update connections set status = 'needs_reauthorization', last_error = $2, updated_at = now()
         where tenant_id = $1 and provider = 'pipedrive'",
    )
    .bind(tenant)
    .bind(REAUTHORIZE)
    .execute(&mut *tx)
    .await?;
    crate::queue::hold(&mut *tx, tenant, HOLD_PIPEDRIVE_REAUTH).await?;
    tx.commit().await
}

/// OAuth credentials of a tenant's Pipedrive connection, for the API client: the access token is
/// refreshed before it expires and after a 401, one refresh at a time; new tokens are stored
/// sealed. A refused refresh marks the connection "needs reauthorization" (its jobs wait for the
/// user to connect again).
pub struct OAuthCredentials {
    pool: PgPool,
    key: SecretKey,
    tenant: crate::domain::TenantId,
    providers: Providers,
    state: tokio::sync::Mutex<(Secret, Secret, OffsetDateTime)>,
}

/// The sealed token, sealed refresh token, expiry and API base of an OAuth connection.
type StoredOAuth = (Vec<u8>, Option<Vec<u8>>, Option<OffsetDateTime>, String);

/// An OAuth connection's row as a refresh reads it.
#[derive(sqlx::FromRow)]
struct RefreshRow {
    secret: Vec<u8>,
    refresh_secret: Option<Vec<u8>>,
    access_expires_at: Option<OffsetDateTime>,
    status: String,
}

/// Refresh this long before the access token expires.
const REFRESH_MARGIN: time::Duration = time::Duration::minutes(5);

impl OAuthCredentials {
    /// Loads the tenant's OAuth connection; `None` if it has none (or an API-token one).
    pub async fn load(
        pool: &PgPool,
        key: &SecretKey,
        providers: &Providers,
        member: &Member,
    ) -> Result<Option<(Self, String)>, ConnectError> {
        let row: Option<StoredOAuth> = sqlx::query_as(
            "select secret, refresh_secret, access_expires_at, api_base from connections
             where tenant_id = $1 and provider = 'pipedrive' and auth_kind = 'oauth'",
        )
        .bind(member.tenant_id)
        .fetch_optional(pool)
        .await?;
        let Some((secret, Some(refresh), expires, base)) = row else { return Ok(None) };
        let open = |b: &[u8], purpose| {
            key.open(member.tenant_id, purpose, b).map_err(|e| ConnectError::Refused(e.to_string()))
        };
        let state = (
            open(&secret, SEAL_SECRET)?,
            open(&refresh, SEAL_REFRESH)?,
            expires.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        );
        let creds = Self {
            pool: pool.clone(),
            key: key.clone(),
            tenant: member.tenant_id,
            providers: providers.clone(),
            state: tokio::sync::Mutex::new(state),
        };
        Ok(Some((creds, base)))
    }

    /// Refreshes the access token, once per connection across every process: under an advisory
    /// lock on the connection, the row is read again; if another holder of the connection (a
    /// web request, another worker process) refreshed or the user reconnected meanwhile, its
    /// tokens are taken as they are. Otherwise Pipedrive is asked, and the answer is stored only
    /// if the row still holds the refresh token it started from, so an old grant's refresh, or
    /// its refusal, never touches a newer connection.
    async fn refresh_locked(
        &self,
        state: &mut (Secret, Secret, OffsetDateTime),
    ) -> Result<(), PipedriveError> {
        let db = |e: sqlx::Error| {
            PipedriveError::Transient(format!("the connection could not be read or stored: {e}"))
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("select pg_advisory_xact_lock(hashtextextended($1::text, 11))")
            .bind(self.tenant)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let row: Option<RefreshRow> = sqlx::query_as(
            "select secret, refresh_secret, access_expires_at, status from connections
             where tenant_id = $1 and provider = 'pipedrive' and auth_kind = 'oauth'",
        )
        .bind(self.tenant)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        // Disconnected, or connected by API token since: this grant is gone.
        let Some(RefreshRow {
            secret: sealed,
            refresh_secret: Some(sealed_refresh),
            access_expires_at: expires,
            status,
        }) = row
        else {
            return Err(PipedriveError::Unauthorized);
        };
        let open = |b: &[u8], purpose| {
            self.key
                .open(self.tenant, purpose, b)
                .map_err(|e| PipedriveError::Transient(e.to_string()))
        };
        let stored_refresh = open(&sealed_refresh, SEAL_REFRESH)?;
        if stored_refresh.expose() != state.1.expose()
            || open(&sealed, SEAL_SECRET)?.expose() != state.0.expose()
        {
            // Refreshed elsewhere, or reconnected: take those tokens.
            *state = (
                open(&sealed, SEAL_SECRET)?,
                stored_refresh,
                expires.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            );
            return if status == "connected" { Ok(()) } else { Err(PipedriveError::Unauthorized) };
        }
        if status != "connected" {
            return Err(PipedriveError::Unauthorized);
        }
        let oauth = self
            .providers
            .pipedrive_oauth()
            .map_err(|e| PipedriveError::Transient(e.to_string()))?;
        match oauth.refresh(&state.1).await {
            Ok(tokens) => {
                let stored = sqlx::query(
                    "update connections set secret = $2, refresh_secret = $3, access_expires_at = $4, secret_last4 = $5,
                            api_base = $6, status = 'connected', last_error = null, last_checked_at = now(), updated_at = now()
                     where tenant_id = $1 and provider = 'pipedrive' and refresh_secret = $7",
                )
                .bind(self.tenant)
                .bind(self.key.seal(self.tenant, SEAL_SECRET, &tokens.access))
                .bind(self.key.seal(self.tenant, SEAL_REFRESH, &tokens.refresh))
                .bind(tokens.expires_at)
                .bind(tokens.access.last4())
                .bind(&tokens.api_domain)
                .bind(&sealed_refresh)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                if stored.rows_affected() == 0 {
                    // The user reconnected while Pipedrive answered: the newer connection wins.
                    tracing::info!(tenant_id = %self.tenant, "Pipedrive was reconnected during a refresh; the new connection is kept");
                    return Err(PipedriveError::Transient(
                        "Pipedrive was reconnected meanwhile; try again".into(),
                    ));
                }
                tracing::info!(tenant_id = %self.tenant, "Pipedrive access token refreshed");
                *state = (tokens.access, tokens.refresh, tokens.expires_at);
                Ok(())
            }
            Err(OAuthError::Refused(reason)) => {
                tracing::warn!(tenant_id = %self.tenant, %reason, "Pipedrive refused the refresh: needs reauthorization");
                let marked = sqlx::query(
                    "update connections set status = 'needs_reauthorization', last_error = $2, updated_at = now()
                     where tenant_id = $1 and provider = 'pipedrive' and refresh_secret = $3",
                )
                .bind(self.tenant)
                .bind(REAUTHORIZE)
                .bind(&sealed_refresh)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if marked.rows_affected() == 1 {
                    crate::queue::hold(&mut *tx, self.tenant, HOLD_PIPEDRIVE_REAUTH)
                        .await
                        .map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                Err(PipedriveError::Unauthorized)
            }
            Err(e) => Err(PipedriveError::Transient(e.to_string())),
        }
    }
}

impl pipedrive::client::Credentials for OAuthCredentials {
    fn current(
        &self,
    ) -> futures_util::future::BoxFuture<'_, Result<pipedrive::client::AuthHeader, PipedriveError>>
    {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            if state.2 - REFRESH_MARGIN <= OffsetDateTime::now_utc() {
                self.refresh_locked(&mut state).await?;
            }
            Ok(pipedrive::client::AuthHeader::Bearer(state.0.clone()))
        })
    }

    fn refresh<'a>(
        &'a self,
        refused: &'a pipedrive::client::AuthHeader,
    ) -> futures_util::future::BoxFuture<'a, Result<pipedrive::client::AuthHeader, PipedriveError>>
    {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            // Another task may have refreshed while this one waited for the lock.
            if *refused == pipedrive::client::AuthHeader::Bearer(state.0.clone()) {
                self.refresh_locked(&mut state).await?;
            }
            Ok(pipedrive::client::AuthHeader::Bearer(state.0.clone()))
        })
    }
}

/// An API client for the tenant's Pipedrive connection, sharing the process's limiter and
/// budget; `None` when Pipedrive is not connected.
pub async fn pipedrive_client(
    pool: &PgPool,
    key: &SecretKey,
    providers: &Providers,
    member: &Member,
    registry: &pipedrive::limits::Registry,
) -> Result<Option<pipedrive::client::PipedriveClient>, ConnectError> {
    use std::sync::Arc;
    let row: Option<(String, Vec<u8>, String, Option<i64>)> = sqlx::query_as(
        "select auth_kind, secret, api_base, daily_token_budget from connections
         where tenant_id = $1 and provider = 'pipedrive' and status = 'connected'",
    )
    .bind(member.tenant_id)
    .fetch_optional(pool)
    .await?;
    let Some((kind, secret, base, daily)) = row else { return Ok(None) };
    let credentials: Arc<dyn pipedrive::client::Credentials> = if kind == "oauth" {
        match OAuthCredentials::load(pool, key, providers, member).await? {
            Some((creds, _)) => Arc::new(creds),
            None => return Ok(None),
        }
    } else {
        let token = key
            .open(member.tenant_id, SEAL_SECRET, &secret)
            .map_err(|e| ConnectError::Refused(e.to_string()))?;
        Arc::new(pipedrive::client::StaticToken(token))
    };
    let limiter = registry.limiter(&member.tenant_id.to_string());
    let budget = registry.budget_with(&base, daily.map(|d| d.max(1) as u64));
    let retry = pipedrive::client::RetrySettings {
        base_delay: registry.retry_base(),
        ..Default::default()
    };
    Ok(Some(
        pipedrive::client::PipedriveClient::new(&base, credentials, limiter, budget)
            .with_retry(retry),
    ))
}

/// Sets (or, with `None`, clears) the company's own daily Pipedrive token budget: 30,000 × plan
/// multiplier × seats.
pub async fn set_daily_budget(
    pool: &PgPool,
    member: &Member,
    budget: Option<u64>,
) -> Result<(), ConnectError> {
    member.require_manage()?;
    if let Some(b) = budget
        && !(1_000..=100_000_000).contains(&b)
    {
        return Err(ConnectError::Refused("A daily token budget is between 1,000 and 100,000,000 tokens (30,000 × plan multiplier × seats).".into()));
    }
    let done = sqlx::query("update connections set daily_token_budget = $2, updated_at = now() where tenant_id = $1 and provider = 'pipedrive'")
        .bind(member.tenant_id)
        .bind(budget.map(|b| b as i64))
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ConnectError::Refused("Connect Pipedrive first.".into()));
    }
    Ok(())
}

/// The Pipedrive API base of the tenant's connection, if any.
pub async fn pipedrive_api_base(
    pool: &PgPool,
    tenant: crate::domain::TenantId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select api_base from connections where tenant_id = $1 and provider = 'pipedrive'",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// An API client for the tenant's Brevo key, sharing the process's limiters for that key with
/// every other caller (sync workers, catalog reads); `None` when Brevo is not connected.
pub async fn brevo_api(
    pool: &PgPool,
    key: &SecretKey,
    member: &Member,
    registry: &pipedrive::limits::Registry,
) -> Result<Option<crate::brevo::api::BrevoApi>, ConnectError> {
    let row: Option<(Vec<u8>, String)> =
        sqlx::query_as("select secret, api_base from connections where tenant_id = $1 and provider = 'brevo' and status = 'connected'")
            .bind(member.tenant_id)
            .fetch_optional(pool)
            .await?;
    let Some((secret, base)) = row else { return Ok(None) };
    let api_key = key
        .open(member.tenant_id, SEAL_SECRET, &secret)
        .map_err(|e| ConnectError::Refused(e.to_string()))?;
    let limits = registry.brevo(&member.tenant_id.to_string());
    Ok(Some(
        crate::brevo::api::BrevoApi::new(&base, api_key, limits)
            .with_backoff_base(registry.retry_base()),
    ))
}

//! Server-side plumbing shared by the server functions: state, session, membership, and the
//! conversion of core errors into [`AppError`] (logged here, once).

use leptos::prelude::*;
use pipebridge::accounts::{self, AccessError, LogInError, Member, SignUpError, TeamError};
use pipebridge::db::Pool;
use pipebridge::domain::{ParseError, TenantId, UserId};
use tower_sessions::Session;
use uuid::Uuid;

use crate::error::AppError;

/// Provided to every server function and page render by the server binary.
#[derive(Clone)]
pub struct ServerState {
    pub pool: Pool,
    /// Behind a reverse proxy, take the client address from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Seals tokens and keys at rest.
    pub secret_key: pipebridge::secrets::SecretKey,
    /// Where Pipedrive and Brevo are.
    pub providers: pipebridge::connections::Providers,
    /// The process's Pipedrive limiters and budgets.
    pub limits: std::sync::Arc<pipebridge::pipedrive::limits::Registry>,
}

const USER_KEY: &str = "user_id";

pub fn state() -> Result<ServerState, AppError> {
    use_context::<ServerState>().ok_or_else(|| {
        tracing::error!("ServerState is missing from the Leptos context");
        AppError::Internal
    })
}

pub async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(|e| {
        tracing::error!(error = %e, "no session layer on this request");
        AppError::Internal
    })
}

pub async fn current_user(session: &Session) -> Result<UserId, AppError> {
    let id: Option<Uuid> = session.get(USER_KEY).await.map_err(session_error)?;
    id.map(UserId).ok_or(AppError::Unauthenticated)
}

/// Starts an authenticated session under a new id (no session fixation).
pub async fn log_user_in(session: &Session, user: UserId) -> Result<(), AppError> {
    session.cycle_id().await.map_err(session_error)?;
    session.insert(USER_KEY, user.0).await.map_err(session_error)
}

pub async fn log_user_out(session: &Session) -> Result<(), AppError> {
    session.flush().await.map_err(session_error)
}

/// The signed-in user's membership of the tenant named in the request, or `NotFound`.
pub async fn member(tenant_id: &str) -> Result<(ServerState, Member), AppError> {
    let state = state()?;
    let user = current_user(&session().await?).await?;
    let tenant: TenantId = tenant_id.trim().parse().map_err(|_| AppError::NotFound)?;
    let member = accounts::authorize(&state.pool, user, tenant).await?;
    Ok((state, member))
}

pub async fn client_ip(trust_forwarded_for: bool) -> Option<String> {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    if trust_forwarded_for {
        let parts = use_context::<axum::http::request::Parts>()?;
        if let Some(first) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
        {
            return Some(first.trim().to_owned());
        }
    }
    let ConnectInfo(addr) = leptos_axum::extract::<ConnectInfo<SocketAddr>>().await.ok()?;
    Some(addr.ip().to_string())
}

/// Sets the HTTP status of an error answer (for server functions and for pages rendered on the
/// server alike), so that every error leaves with its own status and never as a bare 500.
pub fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(e) = &result
        && let Some(options) = use_context::<leptos_axum::ResponseOptions>()
        && let Ok(status) = axum::http::StatusCode::from_u16(e.status())
    {
        options.set_status(status);
    }
    result
}

pub fn redirect(path: &str) {
    leptos_axum::redirect(path);
}

fn session_error(e: tower_sessions::session::Error) -> AppError {
    tracing::error!(error = %e, "session store failed");
    AppError::Internal
}

impl From<ParseError> for AppError {
    fn from(e: ParseError) -> Self {
        AppError::Invalid(e.0)
    }
}

impl From<sqlx_error::Error> for AppError {
    fn from(e: sqlx_error::Error) -> Self {
        tracing::error!(error = %e, "database error");
        AppError::Internal
    }
}

impl From<AccessError> for AppError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotFound => AppError::NotFound,
            AccessError::Forbidden => AppError::Forbidden(e.to_string()),
            AccessError::Database(e) => e.into(),
        }
    }
}

impl From<SignUpError> for AppError {
    fn from(e: SignUpError) -> Self {
        match e {
            SignUpError::EmailTaken => AppError::Invalid(e.to_string()),
            SignUpError::Database(e) => e.into(),
        }
    }
}

impl From<LogInError> for AppError {
    fn from(e: LogInError) -> Self {
        match e {
            LogInError::InvalidCredentials => AppError::Invalid(e.to_string()),
            LogInError::Throttled { .. } => AppError::TooManyRequests(e.to_string()),
            LogInError::Database(e) => e.into(),
        }
    }
}

impl From<TeamError> for AppError {
    fn from(e: TeamError) -> Self {
        match e {
            TeamError::Access(e) => e.into(),
            TeamError::Database(e) => e.into(),
            TeamError::OwnerOnly => AppError::Forbidden(e.to_string()),
            other => AppError::Invalid(other.to_string()),
        }
    }
}

/// sqlx is reached through the core crate, which re-exports it for this purpose.
mod sqlx_error {
    pub use pipebridge::db::SqlxError as Error;
}

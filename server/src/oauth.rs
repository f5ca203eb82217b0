//! "Connect Pipedrive": the start of the OAuth flow (a `state` bound to the user's session) and the
//! callback (state checked once, code exchanged, tokens stored sealed). Wiring only: the exchange
//! is the core's `PipedriveOAuth`, the storage `connections::connect_pipedrive_oauth`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use pipebridge::accounts;
use pipebridge::connections::{self, ConnectError};
use pipebridge::domain::{TenantId, UserId};
use pipebridge_app::api::server::ServerState;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::Session;

const PENDING: &str = "pipedrive_oauth";
/// How long a started connection may take at the consent page.
const MAX_AGE: time::Duration = time::Duration::minutes(15);

#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    tenant_id: TenantId,
    user_id: UserId,
    started: i64,
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub fn router<S: Clone + Send + Sync + 'static>(state: ServerState) -> Router<S> {
    Router::new()
        .route("/t/{tenant}/connections/pipedrive/connect", get(start))
        .route("/oauth/pipedrive/callback", get(callback))
        .with_state(state)
}

fn page(status: StatusCode, title: &str, message: &str, back: &str) -> Response {
    (
        status,
        Html(format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · pipebridge</title>\
             <link rel=\"stylesheet\" href=\"/pkg/pipebridge.css\"></head><body><main class=\"centered\">\
             <section class=\"card narrow\"><h1>{title}</h1><p>{message}</p><p><a href=\"{back}\">Back to Connections</a></p>\
             </section></main></body></html>"
        )),
    )
        .into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing here, or it is not yours to see.",
        "/",
    )
}

async fn user(session: &Session) -> Option<UserId> {
    session.get::<uuid::Uuid>("user_id").await.ok().flatten().map(UserId)
}

async fn start(
    State(s): State<ServerState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Response {
    let Some(user_id) = user(&session).await else {
        return Redirect::to("/login").into_response();
    };
    let Ok(tenant_id) = tenant.parse::<TenantId>() else { return not_found() };
    let member = match accounts::authorize(&s.pool, user_id, tenant_id).await {
        Ok(m) => m,
        Err(accounts::AccessError::NotFound) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "membership check failed");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Please try again.",
                &format!("/t/{tenant}/connections"),
            );
        }
    };
    let back = format!("/t/{tenant_id}/connections");
    if member.require_manage().is_err() {
        return page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only owners and admins can connect Pipedrive.",
            &back,
        );
    }
    let oauth = match s.providers.pipedrive_oauth() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "Pipedrive OAuth is misconfigured");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Pipedrive is not configured",
                "The OAuth settings of this server are invalid; the operator has to fix them.",
                &back,
            );
        }
    };
    let (url, state) = oauth.authorize_url();
    let pending =
        Pending { state, tenant_id, user_id, started: OffsetDateTime::now_utc().unix_timestamp() };
    if let Err(e) = session.insert(PENDING, pending).await {
        tracing::error!(error = %e, "storing the OAuth state failed");
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again.",
            &back,
        );
    }
    Redirect::to(&url).into_response()
}

async fn callback(
    State(s): State<ServerState>,
    session: Session,
    Query(q): Query<Callback>,
) -> Response {
    // The state is single-use: taken out of the session whatever happens next.
    let pending: Option<Pending> = session.remove(PENDING).await.ok().flatten();
    let fresh = pending.filter(|p| {
        OffsetDateTime::now_utc().unix_timestamp() - p.started <= MAX_AGE.whole_seconds()
    });
    let valid = match (&fresh, &q.state) {
        (Some(p), Some(state)) => constant_time_eq(p.state.as_bytes(), state.as_bytes()),
        _ => false,
    };
    let Some(p) = fresh.filter(|_| valid) else {
        tracing::warn!("OAuth callback with a missing, expired or forged state refused");
        return page(
            StatusCode::BAD_REQUEST,
            "This connection attempt is not valid",
            "It has expired, was already used, or did not start here. Nothing was changed. Go back to Connections and click “Connect Pipedrive” again.",
            "/",
        );
    };
    let back = format!("/t/{}/connections", p.tenant_id);
    if session.get::<uuid::Uuid>("user_id").await.ok().flatten() != Some(p.user_id.0) {
        return page(
            StatusCode::BAD_REQUEST,
            "This connection attempt is not valid",
            "It was started by another user. Nothing was changed.",
            "/",
        );
    }
    // The outcome travels in the URL (`pipedrive=…&reason=…`), which the Connections page turns
    // into a message: nothing to store, and a reload shows the same thing.
    if let Some(error) = q.error {
        tracing::info!(%error, "Pipedrive consent not given");
        return Redirect::to(&format!("{back}?pipedrive=denied")).into_response();
    }
    let Some(code) = q.code else {
        return Redirect::to(&format!("{back}?pipedrive=failed&reason=refused")).into_response();
    };
    let result = async {
        let member = accounts::authorize(&s.pool, p.user_id, p.tenant_id).await?;
        let oauth = s.providers.pipedrive_oauth().map_err(connections::oauth_error)?;
        let tokens = oauth.exchange(&code).await.map_err(connections::oauth_error)?;
        connections::connect_pipedrive_oauth(&s.pool, &s.secret_key, &s.providers, &member, tokens)
            .await
    }
    .await;
    match result {
        Ok(_) => Redirect::to(&format!("{back}?pipedrive=connected")).into_response(),
        Err(ConnectError::Access(_)) => not_found(),
        Err(e) => {
            if let ConnectError::Database(db) = &e {
                tracing::error!(error = %db, "storing the Pipedrive connection failed");
            } else {
                tracing::warn!(error = %e, "connecting Pipedrive failed");
            }
            let reason = match &e {
                ConnectError::Database(_) => "internal",
                ConnectError::Refused(_) => "refused",
                _ => "unavailable",
            };
            Redirect::to(&format!("{back}?pipedrive=failed&reason={reason}")).into_response()
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

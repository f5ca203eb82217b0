//! Downloads that are plain files rather than pages: the mapping as YAML.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use pipebridge::accounts;
use pipebridge::domain::{TenantId, UserId};
use pipebridge::mapping::store;
use pipebridge_app::api::server::ServerState;
use tower_sessions::Session;

pub fn router<S: Clone + Send + Sync + 'static>(state: ServerState) -> Router<S> {
    Router::new().route("/t/{tenant}/mappings/export.yaml", get(mapping)).with_state(state)
}

async fn mapping(
    State(s): State<ServerState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Response {
    let Some(user) = session.get::<uuid::Uuid>("user_id").await.ok().flatten().map(UserId) else {
        return Redirect::to("/login").into_response();
    };
    let not_found = || (StatusCode::NOT_FOUND, "Not found.").into_response();
    let Ok(tenant) = tenant.parse::<TenantId>() else { return not_found() };
    let Ok(member) = accounts::authorize(&s.pool, user, tenant).await else { return not_found() };
    match store::current(&s.pool, &member).await {
        Ok(Some((version, yaml))) => (
            [
                (header::CONTENT_TYPE, "application/yaml; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"pipebridge-mapping-v{version}.yaml\""),
                ),
            ],
            yaml,
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "No mapping has been saved yet.").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading the mapping failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side and it has been logged.",
            )
                .into_response()
        }
    }
}

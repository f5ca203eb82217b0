//! `/healthz` (the process answers) and `/readyz` (the database answers too).

use axum::extract::State;
use axum::http::StatusCode;
use pipebridge::db::{self, Pool};

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(pool): State<Pool>) -> (StatusCode, &'static str) {
    if db::is_ready(&pool).await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

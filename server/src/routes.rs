//! The HTTP surface: the Leptos pages and server functions, health checks, and the middleware
//! around them (request span, sessions, CSRF).

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::http::Request;
use axum::routing::get;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use pipebridge::db::Pool;
use pipebridge_app::api::server::ServerState;
use pipebridge_app::{App, shell};
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnEos, DefaultOnResponse, TraceLayer};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;
use tracing::Level;

use crate::config::Config;
use crate::csrf::{self, CsrfConfig};
use crate::health;

/// The router's state: what handlers and the Leptos integration take from it.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub pool: Pool,
}

pub const SESSION_COOKIE: &str = "pipebridge_session";

pub fn router(
    config: &Config,
    state: AppState,
    store: PostgresStore,
    limits: std::sync::Arc<pipebridge::pipedrive::limits::Registry>,
) -> Router {
    let server_state = ServerState {
        pool: state.pool.clone(),
        trust_forwarded_for: config.trust_forwarded_for,
        secret_key: config.secret_key.clone(),
        providers: config.providers.clone(),
        limits,
    };
    let oauth = crate::oauth::router(server_state.clone());
    let exports = crate::exports::router(server_state.clone());
    let context = move || provide_context(server_state.clone());
    let routes = route_list();

    let sessions = SessionManagerLayer::new(store)
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.secure_cookies())
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(config.session_idle_minutes)));
    let csrf = CsrfConfig { public_origin: config.public_url.clone() };

    let app = Router::new()
        .merge(oauth)
        .merge(exports)
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(context, shell))
        .layer(axum::middleware::from_fn_with_state(csrf, csrf::protect))
        .layer(sessions);

    let traced = app
        .with_state(state.clone())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // The path only: query strings may carry OAuth codes and states.
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        })
        // Each response once when its head goes out, with its status and latency; a streamed
        // body (a page sends its HTML as its data comes) once more when it has ended, so that a
        // page whose body never ends shows as a response without its end of stream.
        .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Millis))
        .on_eos(DefaultOnEos::new().level(Level::INFO).latency_unit(LatencyUnit::Millis)))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    // The health checks stay out of the request log: probes call them every few seconds.
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state.pool.clone())
        .merge(traced)
}

/// The app's routes, generated once per process.
///
/// Leptos generates them by rendering the app with resource loading suppressed through a flag
/// that is global to the process (leptos_server's `SuppressResourceLoad`), and a resource first
/// polled while the flag is up never loads (it awaits a future that never wakes), whichever app
/// it belongs to. Two apps in one process (the integration tests start one per test, in parallel)
/// then left a page's body hanging once in a while, its head sent: the CI flake of two earlier
/// sessions. Generated once, before any app serves, the flag is never up while a page renders.
fn route_list() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: OnceLock<Vec<leptos_axum::AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// Removes expired sessions every few minutes, for as long as the server runs.
pub fn spawn_session_cleanup(store: PostgresStore) {
    use tower_sessions::ExpiredDeletion;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(300));
        loop {
            every.tick().await;
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "could not delete expired sessions");
            }
        }
    });
}

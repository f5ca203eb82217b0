//! The fake Pipedrive: API v1 and v2 (paths as the specs give them, plus the older `/v1/...`
//! form), the OAuth server, rate limits and token budget, webhooks, and the admin API.
//! Written from ../shared/specs/pipedrive-v{1,2}.yaml and ../shared/reference/pipedrive-api.md.

// Helpers return the finished error answer as `Err(Response)`: it is built once per failing
// request, so its size does not matter, and handlers stay one `match` away from answering.
#![allow(clippy::result_large_err)]

mod admin;
mod custom;
mod gate;
pub mod limits;
mod listing;
pub mod model;
mod oauth;
mod render;
mod reply;
mod seed;
pub mod state;
pub mod table;
mod v1;
mod v2_contacts;
mod v2_deals;
mod v2_misc;
mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};

pub use limits::Plan;
pub use oauth::OAuthApp;
pub use state::Pipedrive;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Persons in the seeded company (organizations, deals, activities, leads scale with it).
    pub seed_persons: usize,
    /// Deals in the seeded company (default: one per person).
    pub seed_deals: Option<usize>,
    /// Activities in the seeded company (default: two per person).
    pub seed_activities: Option<usize>,
    /// The random seed: the same seed and size give the same company.
    pub rng_seed: u64,
    /// The admin user's API token (others derive from it).
    pub api_token: String,
    pub oauth_apps: Vec<OAuthApp>,
    pub access_token_ttl: time::Duration,
    pub plan: Plan,
    pub seats: u32,
    pub rate_limits: bool,
    /// Replaces the plan's burst limit (requests per 2 s), for tests and benchmarks.
    pub burst_limit: Option<u32>,
    /// Replaces the daily token budget (30,000 × plan multiplier × seats).
    pub daily_budget: Option<u64>,
    /// 429s within a minute after which a token is blocked (HTML 403).
    pub block_after_429s: u32,
    pub block_for: Duration,
    /// >1 makes documented delays (webhook retries, bans) pass faster.
    pub time_scale: f64,
    pub webhook_timeout: Duration,
}

pub const DEFAULT_API_TOKEN: &str = "sandbox-pipedrive-api-token-0000000000";
pub const DEFAULT_CLIENT_ID: &str = "pipebridge-local";
pub const DEFAULT_CLIENT_SECRET: &str = "pipebridge-local-secret";

impl Default for Settings {
    fn default() -> Self {
        Self {
            seed_persons: 50,
            seed_deals: None,
            seed_activities: None,
            rng_seed: 42,
            api_token: DEFAULT_API_TOKEN.into(),
            oauth_apps: vec![OAuthApp {
                client_id: DEFAULT_CLIENT_ID.into(),
                client_secret: DEFAULT_CLIENT_SECRET.into(),
                redirect_uris: vec!["http://127.0.0.1:3000/oauth/pipedrive/callback".into()],
                name: "pipebridge (local)".into(),
            }],
            access_token_ttl: time::Duration::hours(1),
            plan: Plan::Growth,
            seats: 5,
            rate_limits: true,
            burst_limit: None,
            daily_budget: None,
            block_after_429s: 20,
            block_for: Duration::from_secs(600),
            time_scale: 1.0,
            webhook_timeout: Duration::from_secs(10),
        }
    }
}

impl Pipedrive {
    pub fn limit_settings(&self) -> limits::LimitSettings {
        let s = self.settings();
        limits::LimitSettings {
            enabled: s.rate_limits,
            plan: s.plan,
            seats: s.seats,
            burst_override: s.burst_limit,
            budget_override: s.daily_budget,
            block_after_429s: s.block_after_429s,
            block_for: s.block_for,
        }
    }
}

pub fn router(pd: Pipedrive) -> Router {
    use v2_contacts as c;
    use v2_deals as d;
    use v2_misc as m;

    let v2 = Router::new()
        .route("/api/v2/persons", get(c::list_persons).post(c::create_person))
        .route(
            "/api/v2/persons/{id}",
            get(c::get_person).patch(c::update_person).delete(c::delete_person),
        )
        .route("/api/v2/organizations", get(c::list_organizations).post(c::create_organization))
        .route("/api/v2/organizations/{id}", get(c::get_organization).patch(c::update_organization))
        .route("/api/v2/deals", get(d::list_deals).post(d::create_deal))
        .route("/api/v2/deals/{id}", get(d::get_deal).patch(d::update_deal).delete(d::delete_deal))
        .route("/api/v2/activities", get(d::list_activities).post(d::create_activity))
        .route("/api/v2/activities/{id}", get(d::get_activity))
        .route("/api/v2/pipelines", get(m::list_pipelines))
        .route("/api/v2/pipelines/{id}", get(m::get_pipeline))
        .route("/api/v2/stages", get(m::list_stages))
        .route("/api/v2/stages/{id}", get(m::get_stage))
        .route("/api/v2/personFields", get(m::person_fields))
        .route("/api/v2/organizationFields", get(m::organization_fields))
        .route("/api/v2/dealFields", get(m::deal_fields))
        .route("/api/v2/itemSearch", get(m::item_search));

    // v1 answers under /api/v1 and the older /v1 (§1).
    let mut v1_routes = Router::new();
    for prefix in ["/api/v1", "/v1"] {
        let p = |path: &str| format!("{prefix}{path}");
        v1_routes = v1_routes
            .route(&p("/users/me"), get(v1::users_me))
            .route(&p("/persons"), get(v1::list_persons).post(v1::create_person))
            .route(
                &p("/persons/{id}"),
                get(v1::get_person).put(v1::update_person).delete(v1::delete_person),
            )
            .route(&p("/persons/{id}/merge"), put(v1::merge_persons))
            .route(&p("/deals"), get(v1::list_deals).post(v1::create_deal))
            .route(&p("/deals/{id}"), put(v1::update_deal))
            .route(&p("/organizations"), get(v1::list_organizations).post(v1::create_organization))
            .route(&p("/activities"), get(v1::list_activities).post(v1::create_activity))
            .route(&p("/pipelines"), get(v1::list_pipelines))
            .route(&p("/stages"), get(v1::list_stages))
            .route(&p("/itemSearch"), get(v1::item_search))
            .route(&p("/leads"), get(v1::list_leads).post(v1::create_lead))
            .route(&p("/recents"), get(v1::recents))
            .route(&p("/personFields"), get(v1::person_fields))
            .route(&p("/dealFields"), get(v1::deal_fields))
            .route(&p("/organizationFields"), get(v1::organization_fields))
            .route(&p("/webhooks"), get(webhooks::list).post(webhooks::create))
            .route(&p("/webhooks/{id}"), axum::routing::delete(webhooks::delete));
    }

    let api = v2
        .merge(v1_routes)
        .route_layer(axum::middleware::from_fn_with_state(pd.clone(), gate::gate))
        .with_state(pd.clone());

    let oauth = Router::new()
        .route("/oauth/authorize", get(oauth::authorize).post(oauth::decide))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/token/", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .with_state(pd.clone());

    api.merge(oauth).merge(admin::router(pd)).fallback(|| async { reply::not_found("Path") })
}

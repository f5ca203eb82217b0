//! The fake Brevo (`/v3/...`, `api-key` header). Written from ../shared/specs/brevo-v3.yaml and
//! ../shared/reference/brevo-api.md; it shares no code with the project's Brevo client.
//!
//! Each API key is its own account with its own contacts, lists, companies, events and webhooks.
//! The admin API lives under `/_sandbox/` (see [`admin`]).

mod account;
mod admin;
mod attributes;
mod auth_limits;
mod batch;
mod companies;
mod contact_write;
mod contacts;
mod delivery;
mod events;
mod folders;
mod http;
mod import;
mod lists;
mod model;
mod processes;
mod state;
mod webhooks;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, patch, post};
use serde_json::Value;
use time::OffsetDateTime;

use http::ApiError;
use state::{Account, Delivery, Shared};

#[derive(Debug, Clone)]
pub struct Settings {
    /// API keys the fake accepts (`api-key` header). Each key is its own Brevo account.
    pub api_keys: Vec<String>,
    /// Enforce Brevo's rate limits (contacts endpoints per second, others per hour).
    pub rate_limits: bool,
    pub contacts_per_second: u32,
    pub others_per_hour: u32,
    /// `POST /v3/events` has its own 10 requests/s bucket (reference §7.1).
    pub events_per_second: u32,
    /// How long an import stays `queued`, then `processing`, before it completes.
    pub process_step_ms: u64,
    /// Whether writes made through the API fire `contact_updated` / `list_addition` webhooks (with
    /// `api_key_name` set), as live Brevo does; off, only `/_sandbox/trigger` delivers.
    pub webhooks_on_api_writes: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            rate_limits: true,
            contacts_per_second: 10,
            others_per_hour: 100,
            events_per_second: 10,
            process_step_ms: 100,
            webhooks_on_api_writes: true,
        }
    }
}

/// The key registered out of the box (for the demo and the tests).
pub const DEFAULT_API_KEY: &str =
    "xkeysib-sandbox-0000000000000000000000000000000000000000000000000000000000000000-sandbox";

/// The authenticated account's key, put in the request extensions by [`auth_limits::gate`].
#[derive(Debug, Clone)]
pub(crate) struct ApiKey(pub String);

struct Inner {
    settings: Settings,
    state: Mutex<Shared>,
    http: reqwest::Client,
}

#[derive(Clone)]
pub struct Brevo {
    inner: Arc<Inner>,
}

impl Brevo {
    pub fn new(settings: Settings) -> Self {
        let mut shared = Shared::default();
        for key in &settings.api_keys {
            shared.add_account(key, "pipebridge-sandbox");
        }
        // Webhook receivers get Brevo's ~10 s patience; a client without a timeout would hang tests.
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Self { inner: Arc::new(Inner { settings, state: Mutex::new(shared), http }) }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Registers another account key (as `POST /_sandbox/keys` does).
    pub fn add_api_key(&self, key: &str) {
        self.lock().add_account(key, "pipebridge-sandbox");
    }

    /// The whole state of one account, as `GET /_sandbox/state?api_key=` answers it.
    pub fn state(&self, api_key: &str) -> Option<Value> {
        self.lock().accounts.get(api_key).map(Account::dump)
    }

    /// Clears every account's data, the request log, faults and rate-limit windows; keys stay.
    pub fn reset(&self) {
        let mut shared = self.lock();
        let keys: Vec<(String, String)> =
            shared.accounts.values().map(|a| (a.key.clone(), a.key_name.clone())).collect();
        *shared = Shared::default();
        for (key, name) in keys {
            shared.add_account(&key, &name);
        }
    }

    /// The state lock. A panic while it was held leaves data that is still usable for a fake.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the caller's account; never held across an `.await`.
    pub(crate) fn with_account<R>(
        &self,
        key: &ApiKey,
        f: impl FnOnce(&mut Account) -> R,
    ) -> Result<R, ApiError> {
        let mut shared = self.lock();
        let account = shared.accounts.get_mut(&key.0).ok_or_else(auth_limits::unauthorized)?;
        Ok(f(account))
    }

    /// Delivers webhook jobs in the background and records each attempt on the account.
    /// Only for writes made through the API: off when `webhooks_on_api_writes` is false.
    pub(crate) fn dispatch(&self, key: &ApiKey, jobs: Vec<delivery::Job>) {
        if jobs.is_empty() || !self.settings().webhooks_on_api_writes {
            return;
        }
        let brevo = self.clone();
        let key = key.0.clone();
        tokio::spawn(async move {
            brevo.deliver_all(&key, jobs).await;
        });
    }

    /// Delivers jobs one after another and records them; returns the records.
    pub(crate) async fn deliver_all(&self, key: &str, jobs: Vec<delivery::Job>) -> Vec<Delivery> {
        let mut records = Vec::new();
        for job in jobs {
            let outcome = delivery::deliver(&self.inner.http, &job).await;
            let record = Delivery {
                webhook_id: job.webhook_id,
                url: job.url.clone(),
                event: job.event.clone(),
                payload: job.payload.clone(),
                status: outcome.as_ref().ok().copied(),
                error: outcome.err(),
                time: http::render_time(OffsetDateTime::now_utc()),
            };
            if let Some(account) = self.lock().accounts.get_mut(key) {
                account.deliveries.push(record.clone());
            }
            records.push(record);
        }
        records
    }
}

/// The Brevo API under `/v3` and the admin API under `/_sandbox`.
pub fn router(brevo: Brevo) -> Router {
    let api = Router::new()
        .route("/v3/account", get(account::get_account))
        .route("/v3/contacts", get(contacts::list).post(contacts::create))
        .route("/v3/contacts/batch", post(batch::batch))
        // The body may carry 10 MB of contacts (axum's default limit is 2 MB): a larger one gets
        // Brevo's own answer from the handler.
        .route(
            "/v3/contacts/import",
            post(import::import).layer(axum::extract::DefaultBodyLimit::max(
                import::MAX_INLINE_BYTES + 1024 * 1024,
            )),
        )
        .route("/v3/contacts/attributes", get(attributes::list))
        .route(
            "/v3/contacts/attributes/{category}/{name}",
            post(attributes::create).put(attributes::update).delete(attributes::delete),
        )
        .route("/v3/contacts/lists", get(lists::list).post(lists::create))
        .route("/v3/contacts/lists/{id}", get(lists::get).put(lists::update).delete(lists::delete))
        .route("/v3/contacts/lists/{id}/contacts", get(lists::contacts))
        .route("/v3/contacts/lists/{id}/contacts/add", post(lists::add))
        .route("/v3/contacts/lists/{id}/contacts/remove", post(lists::remove))
        .route("/v3/contacts/folders", get(folders::folders).post(folders::create_folder))
        .route("/v3/contacts/folders/{id}", get(folders::folder))
        .route("/v3/contacts/folders/{id}/lists", get(folders::folder_lists))
        .route(
            "/v3/contacts/{identifier}",
            get(contacts::get).put(contacts::update).delete(contacts::delete),
        )
        .route("/v3/processes", get(processes::processes))
        .route("/v3/processes/{id}", get(processes::process))
        .route("/v3/companies", get(companies::list).post(companies::create))
        .route("/v3/companies/link-unlink/{id}", patch(companies::link_unlink))
        .route(
            "/v3/companies/{id}",
            get(companies::get).patch(companies::update).delete(companies::delete),
        )
        .route("/v3/events", post(events::create))
        .route("/v3/events/batch", post(events::batch))
        .route("/v3/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v3/webhooks/{id}",
            get(webhooks::get).put(webhooks::update).delete(webhooks::delete),
        )
        .fallback(auth_limits::not_found)
        .method_not_allowed_fallback(auth_limits::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(brevo.clone(), auth_limits::gate))
        .with_state(brevo.clone());
    admin::router(brevo).merge(api)
}

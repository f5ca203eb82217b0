//! The fake company's whole state, the sandbox clock, and the handle shared by the handlers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::Settings;
use super::limits::Limiter;
use super::model::*;
use super::oauth::OAuthState;
use super::table::Table;
use super::webhooks::{Change, Webhook};

#[derive(Default)]
pub struct World {
    pub company: Option<Company>,
    pub users: Vec<User>,
    pub persons: Table<Person>,
    pub organizations: Table<Organization>,
    pub deals: Table<Deal>,
    pub activities: Table<Activity>,
    /// Leads have UUID ids; kept in creation order.
    pub leads: Vec<Lead>,
    pub pipelines: Table<Pipeline>,
    pub stages: Table<Stage>,
    pub person_fields: Vec<Field>,
    pub organization_fields: Vec<Field>,
    pub deal_fields: Vec<Field>,
    pub webhooks: Vec<Webhook>,
    pub next_webhook_id: u64,
    pub oauth: OAuthState,
    pub limiter: Limiter,
    pub faults: Faults,
    pub log: VecDeque<LoggedRequest>,
    /// Changes made while the lock was held, delivered as webhooks once it is released.
    pub pending: Vec<Change>,
}

impl World {
    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn company(&self) -> &Company {
        self.company.as_ref().expect("the sandbox is always seeded")
    }
}

/// Injected misbehaviour (admin API `/_sandbox/faults`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share of API requests answered with a 5xx (0.0 – 1.0).
    pub error_rate: f64,
    /// Added to every API answer.
    pub latency_ms: u64,
    /// Until this many (sandbox) seconds from when it was set, every API request gets 429.
    pub storm_429_seconds: u64,
    #[serde(skip)]
    pub storm_until: Option<OffsetDateTime>,
    /// Webhook deliveries are treated as failed without being sent.
    pub fail_webhooks: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoggedRequest {
    pub time: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub auth: String,
    pub cost: u32,
}

/// The sandbox clock: real time, shifted by an offset the admin API moves (to reach the next day
/// of the token budget without waiting). The time scale shortens webhook retry delays.
#[derive(Debug)]
pub struct Clock {
    offset: Mutex<time::Duration>,
    pub time_scale: f64,
}

impl Clock {
    pub fn new(time_scale: f64) -> Self {
        Self { offset: Mutex::new(time::Duration::ZERO), time_scale }
    }

    pub fn now(&self) -> OffsetDateTime {
        let offset = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        // Whole microseconds: every time the API reports round-trips through its formats.
        let now = OffsetDateTime::now_utc() + offset;
        now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
    }

    pub fn advance(&self, by: time::Duration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    /// A documented delay (webhook retries, bans) as it passes in this sandbox.
    pub fn scaled(&self, real: Duration) -> Duration {
        real.div_f64(self.time_scale.max(0.000_001))
    }
}

struct Inner {
    settings: Settings,
    base_url: String,
    world: Mutex<World>,
    clock: Clock,
    deliveries: mpsc::UnboundedSender<Change>,
}

#[derive(Clone)]
pub struct Pipedrive(Arc<Inner>);

impl Pipedrive {
    pub fn new(settings: Settings, base_url: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let clock = Clock::new(settings.time_scale);
        let inner = Arc::new(Inner {
            world: Mutex::new(World::default()),
            clock,
            deliveries: tx,
            base_url,
            settings,
        });
        let pd = Self(inner);
        pd.reset(pd.settings().seed_persons);
        super::webhooks::spawn_dispatcher(pd.clone(), rx);
        pd
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// The API base URL, also returned as `api_domain` by the OAuth token endpoint.
    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    pub fn now(&self) -> OffsetDateTime {
        self.0.clock.now()
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.0.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the changes made under the lock to the webhook dispatcher.
    pub fn flush(&self, changes: Vec<Change>) {
        for c in changes {
            let _ = self.0.deliveries.send(c);
        }
    }

    /// Runs `f` on the world, then delivers the webhooks for what it changed.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut World, OffsetDateTime) -> R) -> R {
        let now = self.now();
        let (r, changes) = {
            let mut w = self.world();
            let r = f(&mut w, now);
            (r, std::mem::take(&mut w.pending))
        };
        self.flush(changes);
        r
    }

    /// Replaces the world with a freshly seeded company of `persons` persons.
    pub fn reset(&self, persons: usize) {
        let now = self.now();
        let mut fresh = super::seed::generate(self.settings(), persons, now);
        let mut w = self.world();
        // Registered OAuth apps survive a reset; grants and tokens do not.
        fresh.oauth.apps = std::mem::take(&mut w.oauth.apps);
        if fresh.oauth.apps.is_empty() {
            fresh.oauth.apps = self.settings().oauth_apps.clone();
        }
        *w = fresh;
    }

    pub fn log_request(&self, entry: LoggedRequest) {
        let mut w = self.world();
        if w.log.len() >= 10_000 {
            w.log.pop_front();
        }
        w.log.push_back(entry);
    }

    pub fn counts(&self) -> HashMap<&'static str, usize> {
        let w = self.world();
        HashMap::from([
            ("persons", w.persons.len()),
            ("organizations", w.organizations.len()),
            ("deals", w.deals.len()),
            ("activities", w.activities.len()),
            ("leads", w.leads.len()),
            ("pipelines", w.pipelines.len()),
            ("stages", w.stages.len()),
            ("webhooks", w.webhooks.len()),
        ])
    }
}

impl World {
    /// Records a change for webhook delivery once the lock is released.
    #[allow(clippy::too_many_arguments)]
    pub fn emit(
        &mut self,
        action: super::webhooks::Action,
        entity: EntityKind,
        id: u64,
        user_id: u64,
        time: OffsetDateTime,
        v2: (Option<serde_json::Value>, Option<serde_json::Value>),
        v1: (Option<serde_json::Value>, Option<serde_json::Value>),
    ) {
        use super::webhooks::Action;
        let v2_previous = match (action, &v2.0, &v2.1) {
            (Action::Change, Some(before), Some(after)) => {
                Some(super::listing::changed_fields(before, after))
            }
            _ => v2.0,
        };
        self.pending.push(Change {
            action,
            entity,
            id,
            user_id,
            change_source: "api",
            time,
            v2_current: v2.1,
            v2_previous,
            v1_current: v1.1,
            v1_previous: v1.0,
            merged_to_id: None,
            merged_from_id: None,
        });
    }
}

//! Pipedrive's rate limits (pipedrive-api.md §11): a burst limit per token over a rolling 2 s window
//! by plan and auth kind, 10 / 2 s for search, a daily token budget per company spent by each
//! operation's `x-token-cost`, and the block (an HTML 403) for a client that keeps hammering after
//! 429s. The token costs come from the `x-token-cost` of each operation in the official specs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Plan {
    Lite,
    Growth,
    Premium,
    Ultimate,
}

impl Plan {
    /// Burst limit per 2 s: (API token, OAuth access token) (§11.3).
    pub fn burst(self, oauth: bool) -> u32 {
        match (self, oauth) {
            (Plan::Lite, false) => 20,
            (Plan::Growth, false) => 40,
            (Plan::Premium, false) => 100,
            (Plan::Ultimate, false) => 120,
            (Plan::Lite, true) => 80,
            (Plan::Growth, true) => 160,
            (Plan::Premium, true) => 400,
            (Plan::Ultimate, true) => 480,
        }
    }

    /// Daily budget multiplier (§11.1): 30,000 × multiplier × seats.
    pub fn multiplier(self) -> u64 {
        match self {
            Plan::Lite => 1,
            Plan::Growth => 2,
            Plan::Premium => 5,
            Plan::Ultimate => 7,
        }
    }
}

pub const WINDOW: Duration = Duration::from_secs(2);
pub const SEARCH_BURST: u32 = 10;

/// What a request is checked against.
pub struct Ask<'a> {
    pub token: &'a str,
    pub oauth: bool,
    pub search: bool,
    pub cost: u32,
    pub now: OffsetDateTime,
}

#[derive(Debug)]
pub enum Verdict {
    Allowed {
        limit: u32,
        remaining: u32,
        reset_secs: u64,
    },
    /// 429: the burst window is full (`reset_secs` until a slot frees) or the day's budget is spent.
    Limited {
        limit: u32,
        reset_secs: u64,
        daily: bool,
    },
    /// 403 HTML: blocked for hammering after 429s.
    Blocked,
}

#[derive(Default)]
pub struct Limiter {
    windows: HashMap<String, VecDeque<Instant>>,
    search_windows: HashMap<String, VecDeque<Instant>>,
    recent_429s: HashMap<String, VecDeque<Instant>>,
    blocked_until: HashMap<String, Instant>,
    /// (day, tokens spent that day) for the company.
    spent: (i64, u64),
}

pub struct LimitSettings {
    pub enabled: bool,
    pub plan: Plan,
    pub seats: u32,
    pub burst_override: Option<u32>,
    pub budget_override: Option<u64>,
    pub block_after_429s: u32,
    pub block_for: Duration,
}

impl LimitSettings {
    pub fn daily_budget(&self) -> u64 {
        self.budget_override
            .unwrap_or(30_000 * self.plan.multiplier() * u64::from(self.seats.max(1)))
    }
}

fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

impl Limiter {
    pub fn spent_today(&self, now: OffsetDateTime) -> u64 {
        if self.spent.0 == day(now) { self.spent.1 } else { 0 }
    }

    pub fn check(&mut self, s: &LimitSettings, ask: Ask<'_>) -> Verdict {
        let instant = Instant::now();
        if !s.enabled {
            return Verdict::Allowed { limit: 0, remaining: 0, reset_secs: 0 };
        }
        if let Some(until) = self.blocked_until.get(ask.token) {
            if instant < *until {
                return Verdict::Blocked;
            }
            self.blocked_until.remove(ask.token);
        }
        let limit = if ask.search {
            SEARCH_BURST
        } else {
            s.burst_override.unwrap_or_else(|| s.plan.burst(ask.oauth))
        };
        let windows = if ask.search { &mut self.search_windows } else { &mut self.windows };
        let q = windows.entry(ask.token.to_owned()).or_default();
        prune(q, instant, WINDOW);

        let today = day(ask.now);
        if self.spent.0 != today {
            self.spent = (today, 0);
        }
        let over_budget = self.spent.1 + u64::from(ask.cost) > s.daily_budget();
        let burst_full = q.len() as u32 >= limit;
        if over_budget || burst_full {
            let reset_secs = if burst_full {
                let oldest = *q.front().expect("a full window has entries");
                (WINDOW - instant.duration_since(oldest)).as_secs_f64().ceil().max(1.0) as u64
            } else {
                seconds_to_midnight(ask.now)
            };
            let hammering = self.recent_429s.entry(ask.token.to_owned()).or_default();
            prune(hammering, instant, Duration::from_secs(60));
            hammering.push_back(instant);
            if hammering.len() as u32 > s.block_after_429s {
                hammering.clear();
                self.blocked_until.insert(ask.token.to_owned(), instant + s.block_for);
                return Verdict::Blocked;
            }
            return Verdict::Limited { limit, reset_secs, daily: over_budget && !burst_full };
        }
        q.push_back(instant);
        self.spent.1 += u64::from(ask.cost);
        let oldest = *q.front().expect("just pushed");
        let reset_secs =
            (WINDOW - instant.duration_since(oldest)).as_secs_f64().ceil().max(1.0) as u64;
        Verdict::Allowed { limit, remaining: limit - q.len() as u32, reset_secs }
    }
}

fn day(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

fn seconds_to_midnight(t: OffsetDateTime) -> u64 {
    (86_400 - t.unix_timestamp().rem_euclid(86_400)) as u64
}

/// `x-token-cost` of an operation, by API version, method and path template (from the specs'
/// `x-token-cost`; OAuth endpoints cost nothing).
pub fn token_cost(version: u8, method: &str, template: &str) -> u32 {
    match (version, method, template) {
        (2, "GET", "/persons" | "/organizations" | "/deals" | "/activities") => 10,
        (2, "GET", "/personFields" | "/organizationFields" | "/dealFields") => 10,
        (2, "GET", "/pipelines" | "/stages") => 5,
        (2, "GET", "/itemSearch" | "/persons/search") => 20,
        (2, "GET", _) => 1,
        (2, "POST" | "PATCH", _) => 5,
        (2, "DELETE", _) => 3,
        (1, "GET", "/persons" | "/organizations" | "/deals" | "/activities") => 20,
        (1, "GET", "/pipelines" | "/stages") => 10,
        (1, "GET", "/itemSearch") => 40,
        (
            1,
            "GET",
            "/recents" | "/leads" | "/personFields" | "/dealFields" | "/organizationFields",
        ) => 20,
        (1, "GET", "/leadLabels" | "/webhooks") => 10,
        (1, "GET", "/activityTypes" | "/users") => 20,
        (1, "GET", _) => 2,
        (1, "POST", "/webhooks") => 10,
        (1, "POST", _) => 10,
        (1, "PUT", "/persons/{id}/merge") => 40,
        (1, "PUT" | "PATCH", _) => 10,
        (1, "DELETE", _) => 6,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(burst: u32, budget: u64) -> LimitSettings {
        LimitSettings {
            enabled: true,
            plan: Plan::Growth,
            seats: 1,
            burst_override: Some(burst),
            budget_override: Some(budget),
            block_after_429s: 3,
            block_for: Duration::from_secs(60),
        }
    }

    fn ask(cost: u32) -> Ask<'static> {
        Ask { token: "t", oauth: true, search: false, cost, now: OffsetDateTime::now_utc() }
    }

    #[test]
    fn burst_window_counts_down_then_limits() {
        let mut l = Limiter::default();
        let s = settings(3, 1_000);
        for left in [2, 1, 0] {
            match l.check(&s, ask(1)) {
                Verdict::Allowed { remaining, limit: 3, .. } => assert_eq!(remaining, left),
                v => panic!("{v:?}"),
            }
        }
        assert!(matches!(
            l.check(&s, ask(1)),
            Verdict::Limited { daily: false, reset_secs: 1..=2, .. }
        ));
    }

    #[test]
    fn budget_is_spent_by_cost_and_hammering_blocks() {
        let mut l = Limiter::default();
        let s = settings(100, 25);
        assert!(matches!(l.check(&s, ask(10)), Verdict::Allowed { .. }));
        assert!(matches!(l.check(&s, ask(10)), Verdict::Allowed { .. }));
        assert!(matches!(l.check(&s, ask(10)), Verdict::Limited { daily: true, .. }));
        assert_eq!(l.spent_today(OffsetDateTime::now_utc()), 20);
        // A cheaper call still fits.
        assert!(matches!(l.check(&s, ask(5)), Verdict::Allowed { .. }));
        for _ in 0..2 {
            assert!(matches!(l.check(&s, ask(10)), Verdict::Limited { .. }));
        }
        assert!(matches!(l.check(&s, ask(10)), Verdict::Blocked));
        assert!(matches!(l.check(&s, ask(0)), Verdict::Blocked));
    }

    #[test]
    fn plans_and_costs_follow_the_docs() {
        assert_eq!(Plan::Lite.burst(true), 80);
        assert_eq!(Plan::Ultimate.burst(false), 120);
        let s = LimitSettings {
            budget_override: None,
            plan: Plan::Premium,
            seats: 3,
            ..settings(1, 1)
        };
        assert_eq!(s.daily_budget(), 450_000);
        assert_eq!(token_cost(2, "GET", "/persons"), 10);
        assert_eq!(token_cost(2, "GET", "/persons/{id}"), 1);
        assert_eq!(token_cost(1, "PUT", "/persons/{id}/merge"), 40);
        assert_eq!(token_cost(1, "GET", "/users/me"), 2);
    }
}

//! Staying inside Pipedrive's limits (pipedrive-api.md §11) instead of discovering them by 429s:
//! a sliding-window limiter per token under the burst limit, adapted
//! when `x-ratelimit-limit` says otherwise; and a daily token budget per company, charged each
//! call's token cost, with a reserve that background syncs may not spend (kept for webhook work).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use crate::rate::{SlidingWindow, Slot};

pub const WINDOW: Duration = Duration::from_secs(2);
/// itemSearch and the other search endpoints: 10 per 2 s on every plan.
pub const SEARCH_PER_WINDOW: u32 = 10;

/// A limiter for `per_window` requests per rolling 2 s: a sliding window of the last calls,
/// two under the limit, each call holding its slot from its start until 2 s after its answer.
///
/// Pipedrive counts the requests that reached it in the last 2 s (§11.3), so after a pause the
/// whole window is free: a backfill's first two seconds can read its organizations, deals and
/// leads at once (about 80 pages) where evenly spaced calls (governor's GCRA, which this
/// replaced) gave them 77 and spent the other two seconds at the end. A request reaches Pipedrive
/// between its start and its answer, so a slot counted from the answer can never be counted
/// short however slow the request's way there (a new TLS connection, a loaded machine), as a
/// slot counted from the start could after a burst. Bursts do not come back by themselves: when
/// the readers are ahead of what the sync can record, they wait on their queues and the calls
/// spread out.
fn usable(per_window: u32) -> usize {
    (if per_window > 4 { per_window - 2 } else { per_window.saturating_sub(1).max(1) }) as usize
}

/// Added to the 2 s a window spans, for the timers' granularity.
const MARGIN: Duration = Duration::from_millis(10);

/// The burst limiter of one token, and its search limiter.
pub struct TokenLimiter {
    per_window: AtomicU32,
    window: SlidingWindow,
    search: SlidingWindow,
}

/// The slots a request holds until its answer has come (`TokenLimiter::acquire`).
pub struct Slots<'l> {
    _search: Option<Slot<'l>>,
    _window: Slot<'l>,
}

impl TokenLimiter {
    pub fn new(per_window: u32) -> Self {
        Self {
            per_window: AtomicU32::new(per_window),
            window: SlidingWindow::new(usable(per_window), WINDOW + MARGIN),
            search: SlidingWindow::new(usable(SEARCH_PER_WINDOW), WINDOW + MARGIN),
        }
    }

    pub fn per_window(&self) -> u32 {
        self.per_window.load(Ordering::Relaxed)
    }

    /// Waits for a slot (and a search slot for a search), held until the returned slots are
    /// dropped: when the request's answer has come, or it failed.
    pub async fn acquire(&self, search: bool) -> Slots<'_> {
        let search = if search { Some(self.search.hold().await) } else { None };
        Slots { _search: search, _window: self.window.hold().await }
    }

    /// Follows the limit the server reports (`x-ratelimit-limit` of a request that is not a
    /// search), which is the truth for this token whatever the plan table says. The calls the
    /// window counts stay counted under the new limit.
    pub fn adapt(&self, reported: u32) {
        if reported == 0 {
            return;
        }
        let before = self.per_window.swap(reported, Ordering::Relaxed);
        if reported != before {
            tracing::info!(
                from = before,
                to = reported,
                "adapting to Pipedrive's reported burst limit"
            );
            self.window.set_max(usable(reported));
        }
    }
}

/// Why a call may not be made today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExhausted {
    /// When the budget renews (server midnight, UTC here).
    pub renews_at: OffsetDateTime,
}

/// Who is asking: background syncs may not spend the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Background,
    Realtime,
}

/// The daily token budget of one Pipedrive company, as this process has spent it.
pub struct Budget {
    daily: std::sync::atomic::AtomicU64,
    reserve_share: f64,
    state: Mutex<(i64, u64)>,
}

impl Budget {
    /// `reserve_share` of the budget (e.g. 0.1) is kept for real-time (webhook-driven) work.
    pub fn new(daily: u64, reserve_share: f64) -> Self {
        Self {
            daily: daily.into(),
            reserve_share: reserve_share.clamp(0.0, 0.9),
            state: Mutex::new((0, 0)),
        }
    }

    pub fn daily(&self) -> u64 {
        self.daily.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The company's own budget (its plan and seats), when it has one.
    pub fn set_daily(&self, daily: u64) {
        self.daily.store(daily, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn spent_today(&self, now: OffsetDateTime) -> u64 {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == day(now) { state.1 } else { 0 }
    }

    /// Starts today's count from `spent` (what earlier processes recorded), unless this process
    /// already counted more.
    pub fn preload(&self, spent: u64, now: OffsetDateTime) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 != day(now) {
            *state = (day(now), 0);
        }
        state.1 = state.1.max(spent);
    }

    /// Charges `cost` tokens, or says when the budget renews.
    pub fn charge(
        &self,
        cost: u32,
        priority: Priority,
        now: OffsetDateTime,
    ) -> Result<(), BudgetExhausted> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 != day(now) {
            *state = (day(now), 0);
        }
        let daily = self.daily();
        let limit = match priority {
            Priority::Background => daily - (daily as f64 * self.reserve_share) as u64,
            Priority::Realtime => daily,
        };
        if state.1 + u64::from(cost) > limit {
            let renews_at =
                OffsetDateTime::from_unix_timestamp((day(now) + 1) * 86_400).unwrap_or(now);
            return Err(BudgetExhausted { renews_at });
        }
        state.1 += u64::from(cost);
        Ok(())
    }
}

fn day(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_a_reserve_for_realtime_work_and_renews_daily() {
        let b = Budget::new(100, 0.2);
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        for _ in 0..8 {
            b.charge(10, Priority::Background, now).unwrap();
        }
        let e = b.charge(10, Priority::Background, now).unwrap_err();
        assert_eq!(e.renews_at.unix_timestamp() % 86_400, 0, "at midnight");
        assert!(e.renews_at > now);
        b.charge(10, Priority::Realtime, now).unwrap();
        b.charge(10, Priority::Realtime, now).unwrap();
        assert!(b.charge(1, Priority::Realtime, now).is_err());
        assert_eq!(b.spent_today(now), 100);
        let tomorrow = now + time::Duration::days(1);
        b.charge(10, Priority::Background, tomorrow).unwrap();
        assert_eq!(b.spent_today(tomorrow), 10);
    }

    #[tokio::test]
    async fn requests_are_spread_under_the_window_limit() {
        let l = TokenLimiter::new(12);
        let start = std::time::Instant::now();
        for _ in 0..11 {
            drop(l.acquire(false).await);
        }
        // 10 of the window's 12 at once, the 11th when the first has left the window (2.02 s).
        assert!(start.elapsed() >= Duration::from_millis(2000), "{:?}", start.elapsed());
        l.adapt(80);
        assert_eq!(l.per_window(), 80);
    }
}

/// The limiters and budgets of this process, shared by every client and worker: one limiter per
/// connection (its token), one budget per Pipedrive company (its API base). A tenant's sync runs
/// in one process at a time (the queue's concurrency key), so per-process accounting holds.
pub struct Registry {
    default_burst: u32,
    daily_budget: u64,
    reserve_share: f64,
    tokens: Mutex<std::collections::HashMap<String, Arc<TokenLimiter>>>,
    budgets: Mutex<std::collections::HashMap<String, Arc<Budget>>>,
    brevo: Mutex<std::collections::HashMap<String, Arc<crate::brevo::api::BrevoLimits>>>,
    /// Brevo's rates: contacts (and events) per second, other endpoints per hour.
    brevo_rates: (u32, u32),
    /// The first backoff after a 5xx or a network failure (doubling, with jitter).
    retry_base: std::time::Duration,
}

impl Registry {
    /// `default_burst`: the limit to start from until Pipedrive's headers say otherwise;
    /// `daily_budget`: the company's daily token budget (30,000 × plan multiplier × seats).
    pub fn new(default_burst: u32, daily_budget: u64, reserve_share: f64) -> Self {
        Self {
            default_burst,
            daily_budget,
            reserve_share,
            tokens: Mutex::new(Default::default()),
            budgets: Mutex::new(Default::default()),
            brevo: Mutex::new(Default::default()),
            brevo_rates: (10, 100),
            retry_base: std::time::Duration::from_millis(250),
        }
    }

    /// Another first backoff for retried calls (tests shorten it).
    pub fn with_retry_base(mut self, base: std::time::Duration) -> Self {
        self.retry_base = base;
        self
    }

    pub fn retry_base(&self) -> std::time::Duration {
        self.retry_base
    }

    /// Other Brevo rates than the documented general tier (an Enterprise account; tests).
    pub fn with_brevo_rates(mut self, contacts_per_second: u32, others_per_hour: u32) -> Self {
        self.brevo_rates = (contacts_per_second, others_per_hour);
        self
    }

    pub fn limiter(&self, connection: &str) -> Arc<TokenLimiter> {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(connection.to_owned())
            .or_insert_with(|| Arc::new(TokenLimiter::new(self.default_burst)))
            .clone()
    }

    /// Brevo's limits for one key (at the documented rates unless set), shared by every worker.
    pub fn brevo(&self, connection: &str) -> Arc<crate::brevo::api::BrevoLimits> {
        let (per_second, per_hour) = self.brevo_rates;
        let mut map = self.brevo.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(connection.to_owned())
            .or_insert_with(|| Arc::new(crate::brevo::api::BrevoLimits::new(per_second, per_hour)))
            .clone()
    }

    /// The company's budget, at its own daily amount when it has one.
    pub fn budget_with(&self, company: &str, daily: Option<u64>) -> Arc<Budget> {
        let budget = self.budget(company);
        budget.set_daily(daily.unwrap_or(self.daily_budget));
        budget
    }

    pub fn budget(&self, company: &str) -> Arc<Budget> {
        let mut map = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(company.to_owned())
            .or_insert_with(|| Arc::new(Budget::new(self.daily_budget, self.reserve_share)))
            .clone()
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn clients_of_one_connection_and_company_share_their_limits() {
        let r = Registry::new(20, 1_000, 0.1);
        assert!(Arc::ptr_eq(&r.limiter("tenant-a"), &r.limiter("tenant-a")));
        assert!(!Arc::ptr_eq(&r.limiter("tenant-a"), &r.limiter("tenant-b")));
        let now = OffsetDateTime::now_utc();
        r.budget("https://acme.pipedrive.com").charge(500, Priority::Background, now).unwrap();
        assert_eq!(
            r.budget("https://acme.pipedrive.com").spent_today(now),
            500,
            "one budget per company"
        );
        assert_eq!(r.budget("https://other.pipedrive.com").spent_today(now), 0);
    }
}

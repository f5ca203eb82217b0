//! What a run tells of itself as it goes: its steps and which one runs, its counts, the tokens
//! and calls it spent, its notes for the person, and where its time went. The progress is
//! recorded in `sync_runs` by a task beside the loop (the loop does not wait for the database),
//! so the Sync pages follow the run live.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tracing::Instrument;

use super::Step;
use crate::sync::store;
use crate::sync::{Counts, Entity, EntityCounts};
use crate::task::AbortOnDrop;

/// How often a run records its progress (the Sync page shows it as it changes).
const REPORT_EVERY: Duration = Duration::from_millis(250);

pub(super) struct Report {
    pool: PgPool,
    run: i64,
    pub(super) steps: Vec<Step>,
    /// The step running (an index of `steps`; their number once the run is through).
    pub(super) step: usize,
    pub(super) counts: Counts,
    /// Tokens and calls that earlier attempts of this run spent.
    pub(super) base_tokens: u64,
    pub(super) base_calls: u64,
    /// What the person should know of the run (its message when it succeeds).
    pub(super) notes: Vec<String>,
    pub(super) spent: Spent,
    last: Option<Instant>,
    recording: Option<AbortOnDrop<()>>,
}

impl Report {
    pub(super) fn new(pool: PgPool, run: i64, steps: Vec<Step>) -> Self {
        Self {
            pool,
            run,
            steps,
            step: 0,
            counts: Counts::new(),
            base_tokens: 0,
            base_calls: 0,
            notes: Vec::new(),
            spent: Spent::default(),
            last: None,
            recording: None,
        }
    }

    pub(super) fn count(&mut self, entity: Entity) -> &mut EntityCounts {
        self.counts.entry(entity.to_string()).or_default()
    }

    /// Records the progress, at most every `REPORT_EVERY`, by a task beside the loop. `tokens`
    /// and `calls` are what this attempt spent so far.
    pub(super) fn record_soon(&mut self, tokens: u64, calls: u64) {
        let idle = self.recording.as_ref().is_none_or(|task| task.is_finished());
        if idle && self.last.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            self.last = Some(Instant::now());
            let (pool, run, p) = (self.pool.clone(), self.run, self.progress(tokens, calls));
            self.recording = Some(AbortOnDrop::spawn(
                async move { record_progress(&pool, run, p).await }.in_current_span(),
            ));
        }
    }

    /// Records the progress now, after any record still on its way (which must not land after
    /// this one).
    pub(super) async fn record_now(&mut self, tokens: u64, calls: u64) {
        if let Some(task) = self.recording.take() {
            let _ = task.await;
        }
        self.last = Some(Instant::now());
        record_progress(&self.pool, self.run, self.progress(tokens, calls)).await;
    }

    fn progress(&self, tokens: u64, calls: u64) -> store::Progress {
        store::Progress {
            phase: self.steps.get(self.step).map_or("finishing", |s| s.as_str()),
            steps_done: self.step as i32,
            steps_total: self.steps.len() as i32,
            counts: self.counts.clone(),
            pipedrive_tokens: self.base_tokens + tokens,
            brevo_calls: self.base_calls + calls,
        }
    }

    pub(super) fn summary(&self) -> Option<String> {
        (!self.notes.is_empty()).then(|| self.notes.join(" "))
    }
}

/// A progress record that fails is logged and left: the next one carries the same counts.
async fn record_progress(pool: &PgPool, run: i64, p: store::Progress) {
    if let Err(e) = store::progress(pool, run, &p).await {
        tracing::warn!(error = %e, "could not record the run's progress");
    }
}

/// Seconds per kind of work, for the log line that tells where a run's time went.
#[derive(Default)]
pub(super) struct Spent(BTreeMap<&'static str, Duration>);

impl Spent {
    pub(super) fn add(&mut self, what: &'static str, since: Instant) {
        *self.0.entry(what).or_default() += since.elapsed();
    }
}

impl std::fmt::Display for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> =
            self.0.iter().map(|(k, d)| format!("{k} {:.1} s", d.as_secs_f64())).collect();
        f.write_str(&parts.join(", "))
    }
}

//! Keeping the tables bounded: finished jobs, schedule periods, finished sync runs, resolved
//! record errors and sent events older than the retention are deleted by a job queued hourly.

use std::time::Duration;

use sqlx::PgPool;

use crate::queue::{self, Handler, HandlerFuture, Job, JobError, NewJob};

pub const JOB_PRUNE: &str = "maintenance.prune";
/// The name of the hourly schedule that queues [`JOB_PRUNE`].
pub const SCHEDULE: &str = "maintenance.prune";

/// The pruning job, once per period (a queued or running one is not doubled).
pub fn prune_jobs() -> Vec<NewJob> {
    vec![NewJob::new(JOB_PRUNE, serde_json::json!({})).dedupe(JOB_PRUNE).attempts(3)]
}

/// What one pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub schedule_ticks: u64,
    pub sync_runs: u64,
    pub record_errors: u64,
    pub events: u64,
}

/// Deletes what is older than `retention` and finished.
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<Pruned, sqlx::Error> {
    let (jobs, schedule_ticks) = queue::prune(pool, retention).await?;
    let (sync_runs, record_errors) = crate::sync::history::prune(pool, retention).await?;
    let events = crate::sync::outbox::prune(pool, retention).await?;
    Ok(Pruned { jobs, schedule_ticks, sync_runs, record_errors, events })
}

pub struct PruneHandler {
    pool: PgPool,
    retention: Duration,
}

impl PruneHandler {
    pub fn new(pool: PgPool, retention: Duration) -> Self {
        Self { pool, retention }
    }
}

impl Handler for PruneHandler {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let pruned = prune(&self.pool, self.retention)
                .await
                .map_err(|e| JobError::Retryable(e.to_string()))?;
            tracing::info!(?pruned, "old rows pruned");
            Ok(())
        })
    }
}

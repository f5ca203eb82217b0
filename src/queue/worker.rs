//! Workers: N tasks per process that claim jobs, run their handler while a heartbeat renews the
//! lease, and record the outcome. `run_next_job` runs one job and returns, for tests. On shutdown
//! no new job is claimed; jobs still running after the grace period are released to the queue.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::PgPool;
use std::panic::AssertUnwindSafe;
use tokio::sync::watch;
use tracing::Instrument;

use super::{Job, claim, complete, fail, heartbeat, snooze};
// The heartbeat stops when the job's future is dropped (cancelled), so a lease is never renewed
// for work nobody does.
use crate::task::AbortOnDrop;

/// What a handler's failure means for the job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt after a backoff (5xx, timeouts, connection trouble).
    #[error("{0}")]
    Retryable(String),
    /// Another attempt would fail the same way (bad configuration, validation): dead now.
    #[error("{0}")]
    Fatal(String),
    /// Not now: try again after this long, without spending an attempt (rate limits, budget).
    #[error("snoozed for {0:?}")]
    Snooze(Duration),
}

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>>;

/// The code that runs one kind of job. Jobs must be safe to run again: a job whose worker died
/// is run again once its lease expires.
pub trait Handler: Send + Sync + 'static {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a>;
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Worker tasks in this process.
    pub concurrency: usize,
    /// How long a claim holds without a heartbeat; heartbeats come every third of it.
    pub lease: Duration,
    /// Pause between claims when the queue is empty.
    pub poll_interval: Duration,
    /// On shutdown, how long running jobs may take to finish before they are released.
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Retrying,
    Dead,
    Snoozed,
    /// Another worker holds it now (our lease expired); our result was discarded.
    LeaseLost,
    /// Shutdown came before the job finished: back in the queue.
    Released,
}

#[derive(Clone)]
pub struct Worker {
    pool: PgPool,
    owner: String,
    handlers: Arc<HashMap<String, Arc<dyn Handler>>>,
    settings: WorkerSettings,
}

impl Worker {
    pub fn new(pool: PgPool, settings: WorkerSettings) -> Self {
        let owner = format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().to_string()[..8]);
        Self { pool, owner, handlers: Arc::new(HashMap::new()), settings }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn register(mut self, kind: &str, handler: impl Handler) -> Self {
        Arc::make_mut(&mut self.handlers).insert(kind.to_owned(), Arc::new(handler));
        self
    }

    /// Claims and runs one job; `None` when nothing is runnable.
    pub async fn run_next_job(&self) -> Result<Option<(Job, Outcome)>, sqlx::Error> {
        let (_tx, rx) = watch::channel(false);
        self.run_one(rx).await
    }

    async fn run_one(
        &self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Option<(Job, Outcome)>, sqlx::Error> {
        let Some(job) = claim(&self.pool, &self.owner, self.settings.lease).await? else {
            return Ok(None);
        };
        let span =
            tracing::info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempts);
        self.execute(job, &mut shutdown).instrument(span).await.map(Some)
    }

    async fn execute(
        &self,
        job: Job,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(Job, Outcome), sqlx::Error> {
        let Some(handler) = self.handlers.get(&job.kind).cloned() else {
            tracing::error!("no handler for this kind of job");
            fail(
                &self.pool,
                &job,
                &self.owner,
                &format!("no handler for jobs of kind {:?}", job.kind),
                false,
            )
            .await?;
            return Ok((job, Outcome::Dead));
        };

        // The heartbeat renews the lease; if it finds the lease gone, the job is abandoned. When
        // it cannot renew for two thirds of the lease, the job is abandoned too: before the lease
        // runs out and another worker may take the job, this one has stopped (and every task of
        // the job with it).
        let (lost_tx, mut lost_rx) = watch::channel(false);
        let beat = {
            let (pool, owner, lease, id) =
                (self.pool.clone(), self.owner.clone(), self.settings.lease, job.id);
            AbortOnDrop(tokio::spawn(async move {
                let mut every = tokio::time::interval(lease / 3);
                every.tick().await;
                let mut renewed = tokio::time::Instant::now();
                loop {
                    every.tick().await;
                    match heartbeat(&pool, id, &owner, lease).await {
                        Ok(true) => renewed = tokio::time::Instant::now(),
                        Ok(false) => {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) if renewed.elapsed() >= lease * 2 / 3 => {
                            tracing::warn!(error = %e, "the lease could not be renewed in time: the job is given up");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying"),
                    }
                }
            }))
        };
        let grace = self.settings.shutdown_grace;
        // A panic fails the attempt with its message, like an error; the worker goes on.
        let run = AssertUnwindSafe(async { handler.run(&job).await }).catch_unwind().map(|r| {
            r.unwrap_or_else(|panic| {
                Err(JobError::Retryable(format!("the job panicked: {}", panic_message(&*panic))))
            })
        });
        let result = tokio::select! {
            r = run => Some(r),
            _ = async { lost_rx.wait_for(|lost| *lost).await.map(|_| ()) } => None,
            _ = async {
                // `map` drops the watch guard before the sleep (it must not live across an await).
                let _ = shutdown.wait_for(|s| *s).await.map(|_| ());
                tokio::time::sleep(grace).await
            } => {
                beat.0.abort();
                snooze(&self.pool, job.id, &self.owner, Duration::ZERO).await?;
                tracing::warn!("released at shutdown");
                return Ok((job, Outcome::Released));
            }
        };
        beat.0.abort();
        let outcome = match result {
            None => {
                tracing::warn!("lease lost: another worker runs this job now");
                Outcome::LeaseLost
            }
            Some(Ok(())) => {
                if complete(&self.pool, job.id, &self.owner).await? {
                    Outcome::Succeeded
                } else {
                    Outcome::LeaseLost
                }
            }
            Some(Err(JobError::Snooze(delay))) => {
                if snooze(&self.pool, job.id, &self.owner, delay).await? {
                    Outcome::Snoozed
                } else {
                    Outcome::LeaseLost
                }
            }
            Some(Err(e)) => {
                let retryable = matches!(e, JobError::Retryable(_));
                let dead = !retryable || job.attempts >= job.max_attempts;
                tracing::warn!(error = %e, dead, "job failed");
                if !fail(&self.pool, &job, &self.owner, &e.to_string(), retryable).await? {
                    Outcome::LeaseLost
                } else if dead {
                    Outcome::Dead
                } else {
                    Outcome::Retrying
                }
            }
        };
        Ok((job, outcome))
    }

    /// Runs `concurrency` worker tasks until `shutdown` turns true, then waits for them.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for _ in 0..self.settings.concurrency.max(1) {
            let (worker, mut stop) = (self.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                while !*stop.borrow() {
                    // A panic outside a handler (the queue's own code) must not end this worker.
                    let next = AssertUnwindSafe(worker.run_one(stop.clone()))
                        .catch_unwind()
                        .await
                        .map(|r| r.map(|ran| ran.is_some()));
                    match next.unwrap_or_else(|panic| {
                        tracing::error!(
                            panic = panic_message(&*panic),
                            "a worker panicked outside a job; it goes on"
                        );
                        Ok(true)
                    }) {
                        Ok(true) => {}
                        Ok(false) => {
                            tokio::select! {
                                _ = tokio::time::sleep(worker.settings.poll_interval) => {}
                                _ = stop.changed() => {}
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the job queue is unreachable; retrying");
                            tokio::time::sleep(worker.settings.poll_interval * 4).await;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!("workers stopped");
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

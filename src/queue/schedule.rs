//! Periodic jobs: every `every`, one process (whichever claims the period first) enqueues the
//! period's jobs, each with a dedupe key so a job still queued or running is not doubled.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{NewJob, enqueue};

/// Claims period `now / every` of schedule `name`; true for exactly one caller per period.
pub async fn claim_tick(
    pool: &PgPool,
    name: &str,
    every: Duration,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let tick = (now.unix_timestamp_nanos() / (every.as_nanos().max(1) as i128)) as i64;
    let done = sqlx::query(
        "insert into schedule_ticks (name, tick) values ($1, $2) on conflict do nothing",
    )
    .bind(name)
    .bind(tick)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Runs schedule `name` until `shutdown`: each period, if this process claims it, enqueues what
/// `jobs` returns.
pub async fn run<F, Fut>(
    pool: PgPool,
    name: &'static str,
    every: Duration,
    jobs: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(PgPool) -> Fut + Send,
    Fut: Future<Output = Result<Vec<NewJob>, sqlx::Error>> + Send,
{
    let check = (every / 4).max(Duration::from_millis(50));
    while !*shutdown.borrow() {
        match claim_tick(&pool, name, every, OffsetDateTime::now_utc()).await {
            Ok(true) => match jobs(pool.clone()).await {
                Ok(list) => {
                    let mut queued = 0;
                    for job in &list {
                        match enqueue(&pool, job).await {
                            Ok(Some(_)) => queued += 1,
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, schedule = name, "enqueueing a scheduled job failed")
                            }
                        }
                    }
                    tracing::debug!(
                        schedule = name,
                        queued,
                        of = list.len(),
                        "scheduled jobs enqueued"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, schedule = name, "listing the scheduled jobs failed")
                }
            },
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, schedule = name, "the schedule could not be checked")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(check) => {}
            _ = shutdown.changed() => {}
        }
    }
}

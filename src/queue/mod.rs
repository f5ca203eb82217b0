//! The PostgreSQL job queue: enqueue (in the caller's transaction if it likes, deduplicated by
//! key), claim with `FOR UPDATE SKIP LOCKED` under a lease, renew the lease by heartbeat, finish,
//! retry with exponential backoff and jitter, snooze without spending an attempt, and a dead
//! state kept for inspection. It knows nothing of what its jobs do.
//!
//! Its guarantees, each tested in `tests/queue.rs`:
//! - A concurrency key lets at most one job of that key run at a time, across every worker of
//!   every process; claims skip busy keys in the query, so one busy key never stalls the others.
//! - A job runs again when its worker dies (its lease expires); each expired lease spends an
//!   attempt, so a job that kills its process every time ends `dead`.
//! - A handler that panics fails its attempt with the panic's message; the worker goes on.
//! - Finished jobs and schedule periods are deleted after a retention ([`prune`]).
//!
//! Written here rather than taken from a crate: underway runs each job inside a database
//! transaction held for the whole job (our syncs make thousands of API calls) and has no dedupe
//! key; apalis's Postgres backend and graphile_worker have no heartbeat-renewed leases.

pub mod schedule;
mod worker;

pub use worker::{Handler, HandlerFuture, JobError, Outcome, Worker, WorkerSettings};

use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;

use crate::domain::TenantId;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub tenant_id: Option<TenantId>,
    pub payload: Value,
    /// While a job with this key is queued or running, enqueuing another is a no-op.
    pub dedupe_key: Option<String>,
    /// At most one running job per key.
    pub concurrency_key: Option<String>,
    pub run_at: Option<OffsetDateTime>,
    pub max_attempts: i32,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            tenant_id: None,
            payload,
            dedupe_key: None,
            concurrency_key: None,
            run_at: None,
            max_attempts: 10,
        }
    }

    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant_id = Some(tenant);
        self
    }

    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    pub fn concurrency(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    pub fn at(mut self, when: OffsetDateTime) -> Self {
        self.run_at = Some(when);
        self
    }

    pub fn attempts(mut self, max: i32) -> Self {
        self.max_attempts = max.max(1);
        self
    }
}

/// A claimed job, as its handler sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub tenant_id: Option<TenantId>,
    pub payload: Value,
    pub attempts: i32,
    pub max_attempts: i32,
    pub concurrency_key: Option<String>,
    /// The lease holder that claimed it: what the job's commits check they still are.
    #[sqlx(skip)]
    pub owner: String,
}

/// Enqueues a job; `None` when a queued or running job has the same dedupe key. Takes any
/// executor, so a job can be enqueued in the transaction of the change that causes it.
pub async fn enqueue<'e>(
    db: impl PgExecutor<'e>,
    job: &NewJob,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "insert into jobs (kind, tenant_id, payload, dedupe_key, concurrency_key, run_at, max_attempts)
         values ($1, $2, $3, $4, $5, coalesce($6, now()), $7)
         on conflict (dedupe_key) where dedupe_key is not null and state in ('queued', 'running') do nothing
         returning id",
    )
    .bind(&job.kind)
    .bind(job.tenant_id)
    .bind(&job.payload)
    .bind(&job.dedupe_key)
    .bind(&job.concurrency_key)
    .bind(job.run_at)
    .bind(job.max_attempts)
    .fetch_optional(db)
    .await
}

/// Claims the next runnable job for `owner`: queued and due, or running with an expired lease
/// (its worker died). A job whose lease expired on its last attempt is dead instead: a job that
/// kills its process must not loop forever. Jobs whose concurrency key is held by a running job
/// are skipped in the query itself, so a busy key never hides the jobs of other keys.
pub async fn claim(
    pool: &PgPool,
    owner: &str,
    lease: Duration,
) -> Result<Option<Job>, sqlx::Error> {
    bury_abandoned(pool).await?;
    // A few rounds, in case another claimer takes a key between our query and our lock.
    for _ in 0..3 {
        let mut tx = pool.begin().await?;
        let candidates: Vec<(i64, Option<String>)> = sqlx::query_as(
            "select id, concurrency_key from jobs j
             where ((state = 'queued' and run_at <= now())
                    or (state = 'running' and lease_expires_at < now()))
               and not exists (select 1 from job_holds h where h.tenant_id = j.tenant_id)
               and (j.concurrency_key is null or not exists (
                    select 1 from jobs r
                    where r.concurrency_key = j.concurrency_key and r.state = 'running'
                      and r.lease_expires_at >= now() and r.id <> j.id))
             order by run_at, id
             limit 8
             for update of j skip locked",
        )
        .fetch_all(&mut *tx)
        .await?;
        if candidates.is_empty() {
            return Ok(None);
        }
        for (id, key) in candidates {
            if let Some(key) = &key {
                // Serialises claimers of one key until commit, so the check below sees any
                // running job another claimer just committed.
                let locked: bool =
                    sqlx::query_scalar("select pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                if !locked {
                    continue;
                }
                let busy: bool = sqlx::query_scalar(
                    "select exists (select 1 from jobs
                     where concurrency_key = $1 and state = 'running' and lease_expires_at >= now() and id <> $2)",
                )
                .bind(key)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                if busy {
                    continue;
                }
            }
            let mut job: Job = sqlx::query_as(
                "update jobs set state = 'running', attempts = attempts + 1, lease_owner = $2,
                        lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
                 where id = $1
                 returning id, kind, tenant_id, payload, attempts, max_attempts, concurrency_key",
            )
            .bind(id)
            .bind(owner)
            .bind(lease.as_secs_f64())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            job.owner = owner.to_owned();
            return Ok(Some(job));
        }
        tx.rollback().await?;
    }
    Ok(None)
}

/// Jobs whose worker stopped (lease expired) during their last attempt become dead: each
/// expired lease spent an attempt, like a failure.
async fn bury_abandoned(pool: &PgPool) -> Result<(), sqlx::Error> {
    let buried: Vec<i64> = sqlx::query_scalar(
        "update jobs set state = 'dead', finished_at = now(), updated_at = now(), lease_owner = null, lease_expires_at = null,
                last_error = 'its worker stopped during the last attempt (the lease expired)'
         where state = 'running' and lease_expires_at < now() and attempts >= max_attempts
         returning id",
    )
    .fetch_all(pool)
    .await?;
    for id in buried {
        tracing::warn!(job_id = id, "job dead: its worker stopped during the last attempt");
    }
    Ok(())
}

/// Whether `owner` still holds the job's lease, checked inside a transaction that is about to
/// commit the job's work: the row is locked until that commit, so no other worker can take the
/// job over between the check and the commit (a lease fence).
pub async fn holds_lease(
    tx: &mut sqlx::PgConnection,
    id: i64,
    owner: &str,
) -> Result<bool, sqlx::Error> {
    let held: Option<i64> = sqlx::query_scalar(
        "select id from jobs where id = $1 and lease_owner = $2 and state = 'running' for share",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(tx)
    .await?;
    Ok(held.is_some())
}

/// Renews the lease; `false` when the job is no longer this owner's (lease lost).
pub async fn heartbeat(
    pool: &PgPool,
    id: i64,
    owner: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update jobs set lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
         where id = $1 and lease_owner = $2 and state = 'running'",
    )
    .bind(id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn complete(pool: &PgPool, id: i64, owner: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update jobs set state = 'succeeded', finished_at = now(), updated_at = now(), lease_owner = null,
                lease_expires_at = null, last_error = null
         where id = $1 and lease_owner = $2 and state = 'running'",
    )
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Exponential backoff with full jitter: up to 2^attempt seconds, at most an hour.
pub fn backoff(attempt: i32) -> Duration {
    let cap = 2f64.powi(attempt.clamp(0, 12)).min(3600.0);
    Duration::from_secs_f64(rand::thread_rng().gen_range(cap / 2.0..=cap))
}

/// A failed attempt: retried after a backoff while attempts remain, else dead.
pub async fn fail(
    pool: &PgPool,
    job: &Job,
    owner: &str,
    error: &str,
    retryable: bool,
) -> Result<bool, sqlx::Error> {
    let dead = !retryable || job.attempts >= job.max_attempts;
    let delay = backoff(job.attempts);
    let done = sqlx::query(
        "update jobs set state = case when $4 then 'dead' else 'queued' end,
                run_at = case when $4 then run_at else now() + make_interval(secs => $5) end,
                finished_at = case when $4 then now() else null end,
                last_error = $3, lease_owner = null, lease_expires_at = null, updated_at = now()
         where id = $1 and lease_owner = $2 and state = 'running'",
    )
    .bind(job.id)
    .bind(owner)
    .bind(error)
    .bind(dead)
    .bind(delay.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts the job back for later without spending an attempt (rate limits, budget waits).
pub async fn snooze(
    pool: &PgPool,
    id: i64,
    owner: &str,
    delay: Duration,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update jobs set state = 'queued', attempts = greatest(attempts - 1, 0),
                run_at = now() + make_interval(secs => $3), lease_owner = null, lease_expires_at = null, updated_at = now()
         where id = $1 and lease_owner = $2 and state = 'running'",
    )
    .bind(id)
    .bind(owner)
    .bind(delay.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes finished jobs (succeeded or dead) and schedule periods older than `age`; returns how
/// many of each.
pub async fn prune(pool: &PgPool, age: Duration) -> Result<(u64, u64), sqlx::Error> {
    let jobs = sqlx::query("delete from jobs where state in ('succeeded', 'dead') and finished_at < now() - make_interval(secs => $1)")
        .bind(age.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected();
    let ticks = sqlx::query(
        "delete from schedule_ticks where created_at < now() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected();
    Ok((jobs, ticks))
}

/// Holds a tenant's jobs (they stay queued, unclaimed) until [`release`] with the same reason.
pub async fn hold<'e>(
    db: impl PgExecutor<'e>,
    tenant: TenantId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into job_holds (tenant_id, reason) values ($1, $2) on conflict do nothing")
        .bind(tenant)
        .bind(reason)
        .execute(db)
        .await
        .map(|_| ())
}

pub async fn release<'e>(
    db: impl PgExecutor<'e>,
    tenant: TenantId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("delete from job_holds where tenant_id = $1 and reason = $2")
        .bind(tenant)
        .bind(reason)
        .execute(db)
        .await
        .map(|_| ())
}

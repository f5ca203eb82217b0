//! What the Sync history page shows: runs with their counts, the running one's progress, and the
//! record errors. Every query is scoped by the member's tenant.

use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::Counts;
use crate::accounts::Member;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunInfo {
    pub id: i64,
    pub mode: String,
    pub trigger: String,
    pub status: String,
    pub phase: Option<String>,
    pub steps_done: i32,
    pub steps_total: i32,
    pub counts: Value,
    pub pipedrive_tokens: i64,
    pub brevo_calls: i64,
    pub message: Option<String>,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    pub open_errors: i64,
}

impl RunInfo {
    pub fn counts(&self) -> Counts {
        serde_json::from_value(self.counts.clone()).unwrap_or_default()
    }
}

const RUN_COLUMNS: &str = "r.id, r.mode, r.trigger, r.status, r.phase, r.steps_done, r.steps_total, r.counts, r.pipedrive_tokens,
     r.brevo_calls, r.message, r.started_at, r.finished_at,
     (select count(*) from record_errors e where e.run_id = r.id and e.status <> 'resolved') as open_errors";

/// The latest runs, newest first.
pub async fn runs(pool: &PgPool, member: &Member, limit: i64) -> Result<Vec<RunInfo>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {RUN_COLUMNS} from sync_runs r where r.tenant_id = $1 order by r.id desc limit $2"
    ))
    .bind(member.tenant_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn run(pool: &PgPool, member: &Member, id: i64) -> Result<Option<RunInfo>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {RUN_COLUMNS} from sync_runs r where r.tenant_id = $1 and r.id = $2"
    ))
    .bind(member.tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Whether a sync job is queued or running for the tenant (the buttons say so).
pub async fn sync_pending(pool: &PgPool, member: &Member) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from jobs where tenant_id = $1 and kind like 'sync.%' and state in ('queued', 'running'))")
        .bind(member.tenant_id)
        .fetch_one(pool)
        .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordError {
    pub id: i64,
    pub run_id: Option<i64>,
    pub entity: String,
    pub pipedrive_id: String,
    pub reason: String,
    pub payload: Option<Value>,
    pub status: String,
    pub created_at: OffsetDateTime,
}

/// Unresolved record errors (of one run, or all), newest first.
pub async fn errors(
    pool: &PgPool,
    member: &Member,
    run: Option<i64>,
    limit: i64,
) -> Result<Vec<RecordError>, sqlx::Error> {
    sqlx::query_as(
        "select id, run_id, entity, pipedrive_id, reason, payload, status, created_at from record_errors
         where tenant_id = $1 and status <> 'resolved' and ($2::bigint is null or run_id = $2)
         order by id desc limit $3",
    )
    .bind(member.tenant_id)
    .bind(run)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Deletes finished runs and resolved record errors older than `age` (every tenant's: this is
/// upkeep, not a tenant's request); returns how many of each. Open errors stay whatever their
/// age: they still ask for a retry.
pub async fn prune(pool: &PgPool, age: std::time::Duration) -> Result<(u64, u64), sqlx::Error> {
    let secs = age.as_secs_f64();
    let errors = sqlx::query("delete from record_errors where status = 'resolved' and created_at < now() - make_interval(secs => $1)")
        .bind(secs)
        .execute(pool)
        .await?
        .rows_affected();
    let runs = sqlx::query(
        "delete from sync_runs where status in ('succeeded', 'failed') and finished_at < now() - make_interval(secs => $1)",
    )
    .bind(secs)
    .execute(pool)
    .await?
    .rows_affected();
    Ok((runs, errors))
}

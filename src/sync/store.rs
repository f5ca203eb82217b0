//! The sync engine's tables: runs, checkpoints, record links, record errors and pending imports.
//! Every statement is scoped by tenant. Links are written a page at a time (one statement).

use crate::sync::Entity;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;

use super::{Counts, Mode};
use crate::domain::TenantId;

/// A record link as the engine reads and writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, sqlx::FromRow)]
pub struct Link {
    pub entity: String,
    pub pipedrive_id: String,
    pub brevo_ref: Option<String>,
    pub brevo_id: Option<i64>,
    pub person_id: Option<i64>,
    pub org_id: Option<i64>,
    /// Hex of the hash of what Brevo was last given.
    pub content_hash: Option<String>,
    pub facts: Value,
}

/// Lets this transaction's commit return before its WAL reaches the disk (`synchronous_commit =
/// off` for it alone): a bulk load commits a page at a time, and waiting for each flush left the
/// loop waiting on the disk. Safe for what a sync records: should the *database server* crash, at
/// most the last few hundred milliseconds of such commits are lost, whole (a page's links with
/// its checkpoint), and never a commit that a later, flushed one follows (the log is flushed in
/// order) — a lost page is read again and its contacts written again, which Brevo's upsert by
/// email makes harmless.
pub async fn relaxed_commit(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("set local synchronous_commit = off").execute(tx).await.map(|_| ())
}

pub async fn upsert_links<'e>(
    db: impl PgExecutor<'e>,
    tenant: TenantId,
    links: &[Link],
) -> Result<(), sqlx::Error> {
    upsert_link_columns(db, tenant, &LinkColumns::from(links)).await
}

/// Links as the database takes them in: an array per column, each record's facts a JSON text of
/// its own (one JSON array of whole links, taken apart by `jsonb_to_recordset`, cost the
/// database more: docs/benchmarks.md, ninth session).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LinkColumns {
    pub entity: Vec<String>,
    pub pipedrive_id: Vec<String>,
    pub brevo_ref: Vec<Option<String>>,
    pub brevo_id: Vec<Option<i64>>,
    pub person_id: Vec<Option<i64>>,
    pub org_id: Vec<Option<i64>>,
    pub content_hash: Vec<Option<String>>,
    pub facts: Vec<String>,
}

impl LinkColumns {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entity: Vec::with_capacity(n),
            pipedrive_id: Vec::with_capacity(n),
            brevo_ref: Vec::with_capacity(n),
            brevo_id: Vec::with_capacity(n),
            person_id: Vec::with_capacity(n),
            org_id: Vec::with_capacity(n),
            content_hash: Vec::with_capacity(n),
            facts: Vec::with_capacity(n),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pipedrive_id.is_empty()
    }
}

impl From<&[Link]> for LinkColumns {
    fn from(links: &[Link]) -> Self {
        let mut c = Self::with_capacity(links.len());
        for l in links {
            c.entity.push(l.entity.clone());
            c.pipedrive_id.push(l.pipedrive_id.clone());
            c.brevo_ref.push(l.brevo_ref.clone());
            c.brevo_id.push(l.brevo_id);
            c.person_id.push(l.person_id);
            c.org_id.push(l.org_id);
            c.content_hash.push(l.content_hash.clone());
            // (A JSON value always serializes.)
            c.facts.push(if l.facts.is_null() { "{}".into() } else { l.facts.to_string() });
        }
        c
    }
}

/// [`upsert_links`] of links already in columns (a backfill writes its persons' links straight
/// from their rows' texts).
pub async fn upsert_link_columns<'e>(
    db: impl PgExecutor<'e>,
    tenant: TenantId,
    c: &LinkColumns,
) -> Result<(), sqlx::Error> {
    if c.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into record_links (tenant_id, entity, pipedrive_id, brevo_ref, brevo_id, person_id, org_id, content_hash, facts, updated_at)
         select $1, r.entity, r.pipedrive_id, r.brevo_ref, r.brevo_id, r.person_id, r.org_id, decode(r.content_hash, 'hex'), r.facts::jsonb, now()
         from unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::text[])
              as r(entity, pipedrive_id, brevo_ref, brevo_id, person_id, org_id, content_hash, facts)
         on conflict (tenant_id, entity, pipedrive_id) do update set
             brevo_ref = excluded.brevo_ref, brevo_id = coalesce(excluded.brevo_id, record_links.brevo_id),
             person_id = excluded.person_id, org_id = excluded.org_id, content_hash = excluded.content_hash,
             facts = excluded.facts, updated_at = now()",
    )
    .bind(tenant)
    .bind(&c.entity)
    .bind(&c.pipedrive_id)
    .bind(&c.brevo_ref)
    .bind(&c.brevo_id)
    .bind(&c.person_id)
    .bind(&c.org_id)
    .bind(&c.content_hash)
    .bind(&c.facts)
    .execute(db)
    .await
    .map(|_| ())
}

/// The lookups below probe the index once per key (`lateral … limit 1`, which the planner does
/// not turn into a join). Over links loaded moments ago, before any statistics, `= any($n)` was
/// planned as a scan comparing every row with every key, and a plain join of the unnested keys
/// as a hash join over every link of the entity. The
/// lookup by person cannot be limited: it relies on the statistics a backfill refreshes as the
/// table grows ([`analyze_links`]).
const LINK_COLUMNS: &str = "l.entity, l.pipedrive_id, l.brevo_ref, l.brevo_id, l.person_id, l.org_id, encode(l.content_hash, 'hex') as content_hash, l.facts";

/// The links of these records, by Pipedrive id.
pub async fn links(
    pool: &PgPool,
    tenant: TenantId,
    entity: Entity,
    ids: &[String],
) -> Result<HashMap<String, Link>, sqlx::Error> {
    let rows: Vec<Link> = sqlx::query_as(&format!(
        "select {LINK_COLUMNS} from unnest($3::text[]) as i(id)
         cross join lateral (select * from record_links r where r.tenant_id = $1 and r.entity = $2 and r.pipedrive_id = i.id limit 1) as l"
    ))
        .bind(tenant)
        .bind(entity.as_str())
        .bind(ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|l| (l.pipedrive_id.clone(), l)).collect())
}

/// Links of `entity` whose person is one of `persons` (deals and leads of those persons).
pub async fn links_of_persons(
    pool: &PgPool,
    tenant: TenantId,
    entity: Entity,
    persons: &[i64],
) -> Result<Vec<Link>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {LINK_COLUMNS} from unnest($3::bigint[]) as i(id) join record_links l on l.tenant_id = $1 and l.entity = $2 and l.person_id = i.id"
    ))
        .bind(tenant)
        .bind(entity.as_str())
        .bind(persons)
        .fetch_all(pool)
        .await
}

/// The persons linked to these contact emails.
pub async fn persons_by_email(
    pool: &PgPool,
    tenant: TenantId,
    emails: &[String],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select l.brevo_ref, l.pipedrive_id from unnest($2::text[]) as i(email)
         cross join lateral (select r.brevo_ref, r.pipedrive_id from record_links r
                             where r.tenant_id = $1 and r.entity = 'person' and r.brevo_ref = i.email limit 1) as l",
    )
    .bind(tenant)
    .bind(emails)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Refreshes the planner's statistics of the links and the record errors after a bulk load:
/// autovacuum's analyze lags behind a backfill, and without statistics the planner expects one
/// row and compares every row with every key (resolving 2,000 errors among 15,000 took seconds).
pub async fn analyze_links(pool: &PgPool) -> Result<(), sqlx::Error> {
    // Only the columns the lookups filter on: the statistics of `facts` (JSON) cost most of an
    // analyze and no plan uses them.
    sqlx::query("analyze record_links (tenant_id, entity, pipedrive_id, person_id, org_id, brevo_ref), record_errors").execute(pool).await.map(|_| ())
}

/// Whether the tenant has any link of this entity.
pub async fn has_links(
    pool: &PgPool,
    tenant: TenantId,
    entity: Entity,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from record_links where tenant_id = $1 and entity = $2)",
    )
    .bind(tenant)
    .bind(entity.as_str())
    .fetch_one(pool)
    .await
}

/// Person ids of an organization's synced persons.
pub async fn persons_of_org(
    pool: &PgPool,
    tenant: TenantId,
    org: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("select pipedrive_id::bigint from record_links where tenant_id = $1 and entity = 'person' and org_id = $2")
        .bind(tenant)
        .bind(org)
        .fetch_all(pool)
        .await
}

pub async fn delete_link<'e>(
    db: impl PgExecutor<'e>,
    tenant: TenantId,
    entity: Entity,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "delete from record_links where tenant_id = $1 and entity = $2 and pipedrive_id = $3",
    )
    .bind(tenant)
    .bind(entity.as_str())
    .bind(id)
    .execute(db)
    .await
    .map(|_| ())
}

/// Organizations whose Brevo company is missing or out of date.
const STALE_COMPANIES: &str = "l.tenant_id = $1 and l.entity = 'organization'
     and (l.content_hash is null or l.facts->>'written' is distinct from encode(l.content_hash, 'hex'))";

/// The organizations [`companies_to_write`] will take next, should they have synced contacts by
/// then (a backfill creates their contacts early, to learn their ids).
pub async fn next_companies(
    pool: &PgPool,
    tenant: TenantId,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(&format!("select l.pipedrive_id::bigint from record_links l where {STALE_COMPANIES} order by l.pipedrive_id::bigint limit $2"))
        .bind(tenant)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// The first `limit` organizations with synced contacts whose Brevo company is missing or out of
/// date, and how many such organizations there are (both look at every organization: asked for
/// at once, on two connections).
pub async fn companies_to_write(
    pool: &PgPool,
    tenant: TenantId,
    limit: i64,
) -> Result<(Vec<Link>, i64), sqlx::Error> {
    let stale = format!(
        "{STALE_COMPANIES}
         and exists (select 1 from record_links p where p.tenant_id = $1 and p.entity = 'person' and p.org_id = l.pipedrive_id::bigint)"
    );
    let list = format!(
        "select l.entity, l.pipedrive_id, l.brevo_ref, l.brevo_id, l.person_id, l.org_id, encode(l.content_hash, 'hex') as content_hash, l.facts
         from record_links l where {stale} order by l.pipedrive_id::bigint limit $2"
    );
    let count = format!("select count(*) from record_links l where {stale}");
    let links = sqlx::query_as(&list).bind(tenant).bind(limit).fetch_all(pool);
    let total = sqlx::query_scalar(&count).bind(tenant).fetch_one(pool);
    futures_util::future::try_join(links, total).await
}

// --- checkpoints -------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct Checkpoint {
    pub backfill_cursor: Option<String>,
    pub backfill_done: bool,
    pub since: Option<OffsetDateTime>,
}

pub async fn checkpoints(
    pool: &PgPool,
    tenant: TenantId,
) -> Result<HashMap<String, Checkpoint>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, bool, Option<OffsetDateTime>)> =
        sqlx::query_as("select entity, backfill_cursor, backfill_done, since from sync_checkpoints where tenant_id = $1")
            .bind(tenant)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(e, backfill_cursor, backfill_done, since)| {
            (e, Checkpoint { backfill_cursor, backfill_done, since })
        })
        .collect())
}

/// The job lease a run holds: its commits of links, events and checkpoints check it.
#[derive(Debug, Clone, Default)]
pub struct Lease {
    pub job: i64,
    pub owner: String,
}

/// A transaction for the run's work, or `None` when the run no longer holds its lease (another
/// worker took the job over): then nothing of this run may be committed.
pub async fn fenced(
    pool: &PgPool,
    lease: &Lease,
) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if crate::queue::holds_lease(&mut tx, lease.job, &lease.owner).await? {
        Ok(Some(tx))
    } else {
        tx.rollback().await?;
        Ok(None)
    }
}

pub async fn save_checkpoint<'e>(
    db: impl PgExecutor<'e>,
    tenant: TenantId,
    entity: &str,
    c: &Checkpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into sync_checkpoints (tenant_id, entity, backfill_cursor, backfill_done, since, updated_at)
         values ($1, $2, $3, $4, $5, now())
         on conflict (tenant_id, entity) do update set backfill_cursor = excluded.backfill_cursor,
             backfill_done = excluded.backfill_done, since = excluded.since, updated_at = now()",
    )
    .bind(tenant)
    .bind(entity)
    .bind(&c.backfill_cursor)
    .bind(c.backfill_done)
    .bind(c.since)
    .execute(db)
    .await
    .map(|_| ())
}

/// A full resync: every checkpoint forgotten and every hash cleared, so everything is read and
/// written again.
pub async fn reset_for_full_resync(pool: &PgPool, tenant: TenantId) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("delete from sync_checkpoints where tenant_id = $1")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    sqlx::query("update record_links set content_hash = null where tenant_id = $1 and entity in ('person', 'organization')")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

// --- runs ----------------------------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub mode: String,
    pub counts: Value,
    pub pipedrive_tokens: i64,
    pub brevo_calls: i64,
}

/// Whether this job already has a run it continues (it waited, or its worker died).
pub async fn has_open_run(
    pool: &PgPool,
    tenant: TenantId,
    job_id: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from sync_runs where tenant_id = $1 and job_id = $2 and status in ('running', 'waiting'))")
        .bind(tenant)
        .bind(job_id)
        .fetch_one(pool)
        .await
}

/// The run a job continues (its worker died, or it waited), or a new one.
pub async fn start_or_resume(
    pool: &PgPool,
    tenant: TenantId,
    job_id: i64,
    mode: Mode,
    trigger: &str,
    requested_by: Option<crate::domain::UserId>,
) -> Result<(RunRow, bool), sqlx::Error> {
    let existing: Option<RunRow> = sqlx::query_as(
        "update sync_runs set status = 'running', updated_at = now()
         where tenant_id = $1 and job_id = $2 and status in ('running', 'waiting')
         returning id, mode, counts, pipedrive_tokens, brevo_calls",
    )
    .bind(tenant)
    .bind(job_id)
    .fetch_optional(pool)
    .await?;
    if let Some(run) = existing {
        return Ok((run, true));
    }
    let run = sqlx::query_as(
        "insert into sync_runs (tenant_id, job_id, mode, trigger, requested_by) values ($1, $2, $3, $4, $5)
         returning id, mode, counts, pipedrive_tokens, brevo_calls",
    )
    .bind(tenant)
    .bind(job_id)
    .bind(mode.as_str())
    .bind(trigger)
    .bind(requested_by.filter(|u| !u.0.is_nil()))
    .fetch_one(pool)
    .await?;
    Ok((run, false))
}

pub struct Progress {
    pub phase: &'static str,
    pub steps_done: i32,
    pub steps_total: i32,
    pub counts: Counts,
    pub pipedrive_tokens: u64,
    pub brevo_calls: u64,
}

pub async fn progress(pool: &PgPool, run: i64, p: &Progress) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update sync_runs set phase = $2, steps_done = $3, steps_total = $4, counts = $5, pipedrive_tokens = $6,
                brevo_calls = $7, updated_at = now()
         where id = $1",
    )
    .bind(run)
    .bind(p.phase)
    .bind(p.steps_done)
    .bind(p.steps_total)
    .bind(serde_json::to_value(&p.counts).unwrap_or_default())
    .bind(p.pipedrive_tokens as i64)
    .bind(p.brevo_calls as i64)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Where a run stands (`sync_runs.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    /// Stopped for now (a rate limit, the daily budget, a retry): it continues later.
    Waiting,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

/// Ends a run (succeeded, failed), or marks it waiting (it continues later).
pub async fn set_status(
    pool: &PgPool,
    run: i64,
    status: RunStatus,
    message: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update sync_runs set status = $2, message = $3, updated_at = now(),
                finished_at = case when $2 in ('succeeded', 'failed') then now() else null end,
                phase = case when $2 in ('succeeded', 'failed') then null else phase end
         where id = $1",
    )
    .bind(run)
    .bind(status.as_str())
    .bind(message)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Tokens the tenants of one Pipedrive company spent today (UTC), as runs recorded them: a
/// restarted process starts its daily budget from here.
pub async fn tokens_spent_today(pool: &PgPool, api_base: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select coalesce(sum(r.pipedrive_tokens), 0)::bigint from sync_runs r
         join connections c on c.tenant_id = r.tenant_id and c.provider = 'pipedrive' and c.api_base = $1
         where r.started_at >= date_trunc('day', now() at time zone 'utc') at time zone 'utc'",
    )
    .bind(api_base)
    .fetch_one(pool)
    .await
}

// --- record errors -----------------------------------------------------------------------------

pub async fn record_error(
    pool: &PgPool,
    tenant: TenantId,
    run: i64,
    entity: Entity,
    id: &str,
    reason: &str,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    record_errors(
        pool,
        tenant,
        run,
        entity,
        &[RecordError { id: id.to_owned(), reason: reason.to_owned(), payload: payload.clone() }],
    )
    .await
}

/// A record that could not be synced, as written to `record_errors`.
#[derive(Debug, Clone)]
pub struct RecordError {
    pub id: String,
    pub reason: String,
    pub payload: Value,
}

/// Records errors in one statement (a backfill page can have hundreds). A record named twice
/// keeps its last error.
pub async fn record_errors(
    pool: &PgPool,
    tenant: TenantId,
    run: i64,
    entity: Entity,
    errors: &[RecordError],
) -> Result<(), sqlx::Error> {
    let mut last: HashMap<&str, &RecordError> = HashMap::new();
    for e in errors {
        last.insert(&e.id, e);
    }
    if last.is_empty() {
        return Ok(());
    }
    let (ids, (reasons, payloads)): (Vec<&str>, (Vec<&str>, Vec<&Value>)) =
        last.values().map(|e| (e.id.as_str(), (e.reason.as_str(), &e.payload))).unzip();
    sqlx::query(
        "insert into record_errors (tenant_id, run_id, entity, pipedrive_id, reason, payload)
         select $1, $2, $3, e.id, e.reason, e.payload from unnest($4::text[], $5::text[], $6::jsonb[]) as e(id, reason, payload)
         on conflict (tenant_id, entity, pipedrive_id) where status <> 'resolved'
         do update set run_id = excluded.run_id, reason = excluded.reason, payload = excluded.payload, status = 'open',
                       created_at = now()",
    )
    .bind(tenant)
    .bind(run)
    .bind(entity.as_str())
    .bind(ids)
    .bind(reasons)
    .bind(payloads)
    .execute(pool)
    .await
    .map(|_| ())
}

/// The records went through: their open errors are resolved.
pub async fn resolve_errors(
    pool: &PgPool,
    tenant: TenantId,
    entity: Entity,
    ids: &[String],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        // One index probe per id: a record has at most one open error, and the `limit` keeps the
        // planner from turning the probes into a join it may misjudge on fresh tables.
        "update record_errors set status = 'resolved', resolved_at = now()
         where id in (select open.id from unnest($3::text[]) as i(id)
                      cross join lateral (select e.id from record_errors e
                                          where e.tenant_id = $1 and e.entity = $2 and e.pipedrive_id = i.id and e.status <> 'resolved'
                                          limit 1) as open)",
    )
    .bind(tenant)
    .bind(entity.as_str())
    .bind(ids)
    .execute(pool)
    .await
    .map(|_| ())
}

//! The sync engine: Pipedrive → Brevo, as jobs of the queue. A tenant's first run is a backfill
//! (everything, in bulk, checkpointed per page); later runs are incremental (what changed since the
//! last checkpoint). Each run is recorded with its counts, the tokens and calls it spent, and the
//! records that failed, which can be retried.

pub mod engine;
pub mod history;
pub mod outbox;
pub mod schedule;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;

use crate::accounts::{AccessError, Member};
use crate::queue::{self, Handler, HandlerFuture, Job};

pub use engine::{Bulk, Services};

pub use schedule::{JOB_FULL_RESYNC, JOB_SYNC, concurrency_key};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Backfill,
    Incremental,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Backfill => "backfill",
            Mode::Incremental => "incremental",
        }
    }
}

/// What happened to one entity's records in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityCounts {
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    #[serde(default)]
    pub deleted: u64,
}

/// What a sync reads, writes and counts: the Pipedrive records, and the Brevo events and
/// companies they become. Its name is the text of `record_links.entity`, `record_errors.entity`,
/// the checkpoints and the run's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Organization,
    Deal,
    Lead,
    Person,
    Activity,
    Event,
    Company,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Organization => "organization",
            Entity::Deal => "deal",
            Entity::Lead => "lead",
            Entity::Person => "person",
            Entity::Activity => "activity",
            Entity::Event => "event",
            Entity::Company => "company",
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts per entity (`person`, `organization`, `deal`, `activity`, `lead`, `event`).
pub type Counts = BTreeMap<String, EntityCounts>;

/// Queues a sync for the member's tenant; `false` when one is already queued.
pub async fn request(
    pool: &PgPool,
    member: &Member,
    full_resync: bool,
) -> Result<bool, AccessError> {
    member.require_manage()?;
    let t = member.tenant_id;
    let kind = if full_resync { JOB_FULL_RESYNC } else { JOB_SYNC };
    let job = schedule::job(kind, t, json!({"trigger": "manual", "requested_by": member.user_id}))
        .dedupe(format!("{kind}:{t}"))
        .attempts(20);
    Ok(queue::enqueue(pool, &job).await?.is_some())
}

/// The job handler for both kinds of sync job.
#[derive(Clone)]
pub struct SyncHandler {
    services: Arc<Services>,
}

impl SyncHandler {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }
}

impl Handler for SyncHandler {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(engine::run_job(&self.services, job))
    }
}

/// Retries failed records: one (`error_id`), or every open one of the tenant; `false` if none.
/// A person is written again; an event Brevo refused goes back to the outbox.
pub async fn retry(
    pool: &PgPool,
    member: &Member,
    error_id: Option<i64>,
) -> Result<bool, AccessError> {
    member.require_manage()?;
    let t = member.tenant_id;
    let mut tx = pool.begin().await?;
    let retried: Vec<(String, String)> = sqlx::query_as(
        "update record_errors set status = case when entity = 'event' then 'resolved' else 'retrying' end,
                resolved_at = case when entity = 'event' then now() else resolved_at end
         where tenant_id = $1 and status = 'open' and entity in ('person', 'event') and ($2::bigint is null or id = $2)
         returning entity, pipedrive_id",
    )
    .bind(t)
    .bind(error_id)
    .fetch_all(&mut *tx)
    .await?;
    if retried.is_empty() {
        return Ok(false);
    }
    let (events, persons): (Vec<_>, Vec<_>) =
        retried.into_iter().partition(|(entity, _)| entity == Entity::Event.as_str());
    let persons: Vec<String> = persons.into_iter().map(|(_, id)| id).collect();
    let events: Vec<String> = events.into_iter().map(|(_, id)| id).collect();
    outbox::requeue(&mut *tx, t, &events).await?;
    // Forget what was written, so the records are written again.
    sqlx::query(
        "update record_links l set content_hash = null from unnest($2::text[]) as i(id)
         where l.tenant_id = $1 and l.entity = 'person' and l.pipedrive_id = i.id",
    )
    .bind(t)
    .bind(&persons)
    .execute(&mut *tx)
    .await?;
    let job = schedule::job(
        JOB_SYNC,
        t,
        json!({"trigger": "retry", "requested_by": member.user_id, "persons": persons}),
    )
    .attempts(20);
    queue::enqueue(&mut *tx, &job).await?;
    tx.commit().await?;
    Ok(true)
}

//! One sync run. Steps, in the order their data depends on each other: organizations (names for
//! COMPANY), deals (counts, stage lists, stage events), leads (the nurture list), persons (the
//! contacts), then — incremental only — deletions and merges, persons touched by the earlier
//! steps, activities (events); finally events are sent and Brevo companies written.
//!
//! Reads stream page by page from Pipedrive (the next page is fetched while this one is written);
//! each page ends with its checkpoint, so a run that stops continues where it was. Brevo is
//! written only for records whose content hash changed. A backfill writes contacts through
//! `/contacts/import`, grouped by the lists they go to (the import's target sets them), and
//! confirms each import before recording it; incremental runs upsert.
//!
//! Here: the run (`run_job`), the engine's state, its steps in order and their checkpoints. The
//! steps are in `records` (organizations, deals, leads), `persons`, `changes` (what incremental
//! runs add) and `companies`; writing contacts in `writes`, Brevo's imports in `imports`, what a
//! run knows of both sides in `catalogue`.

use crate::sync::Entity;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::outbox::{self, Event};
use super::store::{self, Checkpoint, Link, RunStatus};
use super::{EntityCounts, JOB_FULL_RESYNC, Mode};
use crate::accounts::Member;
use crate::brevo::BrevoError;
use crate::brevo::api::BrevoApi;
use crate::connections::{self, ConnectError, Providers};
use crate::domain::TenantId;
use crate::mapping::MappingConfig;
use crate::mapping::transform::FieldOptions;
use crate::mapping::validate::{self, Catalog, Severity};
use crate::pipedrive::PipedriveError;
use crate::pipedrive::client::{ListQuery, PipedriveClient};
use crate::pipedrive::limits::Registry;
use crate::pipedrive::models::{Deal, Person};
use crate::queue::{Job, JobError};
use crate::secrets::SecretKey;
use crate::task::AbortOnDrop;

mod catalogue;
mod changes;
mod companies;
mod gate;
mod imports;
mod persons;
mod records;
mod report;
mod writes;

use self::catalogue::load_catalogue;
use self::gate::CheckpointGate;
use self::report::Report;
use self::writes::{Written, person_links};

/// Pipedrive timestamps have whole seconds: each incremental read starts this much earlier, and
/// the content hashes drop what was already written.
const OVERLAP: time::Duration = time::Duration::seconds(5);
/// Bytes of contacts an import carries at most: Brevo takes 10 MB in `jsonBody`.
const IMPORT_BYTES: usize = 8 * 1024 * 1024;
/// Fewer contacts than this are written one by one: an import costs a call and its share of a
/// process poll, and tells which row failed only by writing them again.
const BULK_MIN: usize = 10;
/// Rows of unconfirmed imports, in full imports (`Bulk::import_rows`), that make a backfill ask
/// Brevo how its imports went: the confirmed ones are recorded as the persons are read, not all
/// at the end, and their rows leave memory. Polls share Brevo's 100-calls-an-hour bucket: a run's
/// first `EAGER_POLLS` come at most every `POLL_SOON`, the next ones every `POLL_EVERY` (what
/// the eager polls buy: docs/benchmarks.md, eighth session).
const POLL_AT_IMPORTS: usize = 1;
const POLL_SOON: Duration = Duration::from_millis(500);
const POLL_EVERY: Duration = Duration::from_secs(2);
const EAGER_POLLS: usize = 12;
/// Rows of unconfirmed imports, in full imports, at which the run waits for Brevo to finish them.
const WAIT_AT_IMPORTS: usize = 8;
/// Brevo company calls per run: companies share Brevo's 100-calls-an-hour bucket.
const COMPANIES_PER_RUN: i64 = 10;
/// Contacts a backfill creates ahead for its companies, at most (`start_company_contacts`):
/// about what Brevo can take while deals and leads are read.
const COMPANY_CONTACTS_AHEAD: usize = 40;
/// The catalog (fields, stages, attributes, lists) is read again after this long.
const CATALOG_TTL: Duration = Duration::from_secs(15 * 60);
/// The checkpoint of the scan for deleted and merged persons (beside the entities' own).
const DELETIONS: &str = "deletions";
/// Deleted and merged persons are looked for this often (see `deletions`).
const DELETIONS_EVERY: time::Duration = time::Duration::minutes(15);
/// Leads have no `updated_since` (v1): an incremental run reads them at most this often.
const LEADS_EVERY: time::Duration = time::Duration::hours(1);
const PAGE: u32 = 500;
/// Persons pages read ahead of the one being written (each about 500 persons, 1 MB decoded and
/// more while it is prepared). Pipedrive's limiter keeps the slots a waiting reader leaves (a
/// sliding window), so a few pages cover a pause of the persons loop; more only hold memory.
const PERSON_PAGES_AHEAD: usize = 4;
/// Pages of organizations, deals and activities read ahead of the one being recorded.
const PAGES_AHEAD: usize = 8;
/// PRODUCT.md's `deal.stage_changed`, in the characters Brevo allows in an event name (letters,
/// digits, `-`, `_`).
pub const STAGE_CHANGED: &str = "deal_stage_changed";

/// A run's steps, in the order their data depends on each other (see the module's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Prepare,
    Organizations,
    Deals,
    Leads,
    Persons,
    Deletions,
    RelatedPersons,
    Activities,
    Events,
    Companies,
}

impl Step {
    /// The steps of a run: those of the entities the mapping syncs, in order.
    fn plan(sync: crate::mapping::SyncSwitches, mode: Mode) -> Vec<Step> {
        let incremental = mode == Mode::Incremental;
        [
            (Step::Prepare, true),
            (Step::Organizations, sync.organizations),
            (Step::Deals, sync.deals),
            (Step::Leads, sync.leads),
            (Step::Persons, sync.persons),
            (Step::Deletions, incremental && sync.persons),
            (Step::RelatedPersons, incremental && sync.persons),
            (Step::Activities, sync.activities),
            (Step::Events, true),
            (Step::Companies, sync.organizations),
        ]
        .into_iter()
        .filter_map(|(step, on)| on.then_some(step))
        .collect()
    }

    /// Its name, as the run's `phase` shows it on the Sync pages.
    fn as_str(self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::Organizations => "organizations",
            Step::Deals => "deals",
            Step::Leads => "leads",
            Step::Persons => "persons",
            Step::Deletions => "deletions",
            Step::RelatedPersons => "related persons",
            Step::Activities => "activities",
            Step::Events => "events",
            Step::Companies => "companies",
        }
    }
}

/// What the sync jobs need from the application.
pub struct Services {
    pub pool: PgPool,
    pub key: SecretKey,
    pub providers: Providers,
    pub limits: Arc<Registry>,
    pub bulk: Bulk,
    catalogs: Mutex<HashMap<TenantId, CachedCatalogue>>,
}

/// A tenant's catalogue, with when it was read and the mapping version it was read for.
type CachedCatalogue = (Instant, i32, Arc<Catalogue>);

/// How a backfill groups contacts into `/contacts/import` calls. An import sets the same lists
/// for all its rows, so rows wait, grouped by the lists they go to, until their group is full:
/// list memberships then cost no call of their own.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    /// Rows an import carries at most (Brevo takes 10 MB of JSON, and an import stops at 8 MB
    /// whatever its rows; larger imports held more memory for no time saved).
    pub import_rows: usize,
    /// Pages a row waits for its group to fill, at most: after a restart, the pages since the
    /// oldest waiting row are read again.
    pub hold_pages: u64,
    /// Rows waiting in all groups together, at most: beyond it the largest group is imported.
    /// What waits when the last page is read is imported, processed by Brevo and recorded after
    /// it — the part of a backfill that no longer overlaps Pipedrive's reading.
    pub held_rows: usize,
    /// Contacts that an incremental run (or a retry) must have to write in imports rather than
    /// one by one (then every group of at least `BULK_MIN` with the same lists is one import).
    /// Fewer are cheaper one by one: imports must be confirmed by polls of `/v3/processes`,
    /// which share Brevo's 100-calls-an-hour bucket with companies (a drained bucket makes a
    /// poll wait up to 36 s).
    pub write_now_rows: usize,
}

impl Default for Bulk {
    fn default() -> Self {
        Self { import_rows: 5_000, hold_pages: 100, held_rows: 10_000, write_now_rows: 100 }
    }
}

impl Services {
    pub fn new(pool: PgPool, key: SecretKey, providers: Providers, limits: Arc<Registry>) -> Self {
        Self { pool, key, providers, limits, bulk: Bulk::default(), catalogs: Mutex::default() }
    }

    pub fn with_bulk(self, bulk: Bulk) -> Self {
        Self { bulk, ..self }
    }
}

/// The tenant's real fields, options, stages, attributes and lists.
pub struct Catalogue {
    pub catalog: Catalog,
    pub options: FieldOptions,
    pub stage_names: HashMap<u64, String>,
}

/// Why a run stopped before its end.
#[derive(Debug)]
pub enum Stop {
    /// Not now (rate limit, daily budget): the job is snoozed without spending an attempt.
    Wait(Duration, String),
    /// Worth another attempt (network, 5xx).
    Retry(String),
    /// The user must act (no mapping, a refused key).
    Fatal(String),
}

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Self {
        Stop::Retry(format!("database: {e}"))
    }
}

impl From<PipedriveError> for Stop {
    fn from(e: PipedriveError) -> Self {
        match e {
            PipedriveError::BudgetExhausted { renews_at } => {
                let wait = (renews_at - OffsetDateTime::now_utc()).max(time::Duration::MINUTE);
                Stop::Wait(Duration::from_secs(wait.whole_seconds() as u64), format!("Pipedrive's daily token budget is spent; the sync continues after {renews_at} (UTC)."))
            }
            PipedriveError::RateLimited { reset_secs } => Stop::Wait(Duration::from_secs(reset_secs.max(5)), "Pipedrive's rate limit: waiting for it to reset.".into()),
            PipedriveError::Blocked => Stop::Wait(Duration::from_secs(600), "Pipedrive blocked this token for sending too many requests; waiting 10 minutes.".into()),
            PipedriveError::Unauthorized => Stop::Retry("Pipedrive refused the credentials: connect Pipedrive again on the Connections page.".into()),
            other => Stop::Retry(other.to_string()),
        }
    }
}

impl From<BrevoError> for Stop {
    fn from(e: BrevoError) -> Self {
        match e {
            BrevoError::BadKey(_) => {
                Stop::Fatal("Brevo refused the API key: replace it on the Connections page.".into())
            }
            BrevoError::RateLimited { reset_secs } => Stop::Wait(
                Duration::from_secs(reset_secs.max(5)),
                "Brevo's rate limit: waiting for it to reset.".into(),
            ),
            other => Stop::Retry(other.to_string()),
        }
    }
}

impl From<ConnectError> for Stop {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Database(e) => e.into(),
            other => Stop::Retry(other.to_string()),
        }
    }
}

#[derive(Deserialize, Default)]
struct Payload {
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    requested_by: Option<crate::domain::UserId>,
    #[serde(default)]
    persons: Vec<String>,
}

/// Runs one sync job, records the run and what became of it.
pub async fn run_job(services: &Services, job: &Job) -> Result<(), JobError> {
    let tenant =
        job.tenant_id.ok_or_else(|| JobError::Fatal("a sync job without a tenant".into()))?;
    let payload: Payload = serde_json::from_value(job.payload.clone()).unwrap_or_default();
    let pool = &services.pool;
    let db = |e: sqlx::Error| JobError::Retryable(format!("database: {e}"));

    let mut checkpoints = store::checkpoints(pool, tenant).await.map_err(db)?;
    // A full resync starts over once; when its job comes back (a retry, a wait), it continues.
    let continuing = store::has_open_run(pool, tenant, job.id).await.map_err(db)?;
    if job.kind == JOB_FULL_RESYNC && !continuing {
        store::reset_for_full_resync(pool, tenant).await.map_err(db)?;
        checkpoints.clear();
    }
    let backfilled = [Entity::Organization, Entity::Deal, Entity::Lead, Entity::Person]
        .iter()
        .all(|e| checkpoints.get(e.as_str()).is_some_and(|c| c.backfill_done));
    let mode = if backfilled { Mode::Incremental } else { Mode::Backfill };
    let trigger = payload.trigger.clone().unwrap_or_else(|| "schedule".into());
    let trigger = if ["manual", "schedule", "webhook", "retry"].contains(&trigger.as_str()) {
        trigger
    } else {
        "schedule".into()
    };
    let (run, resumed) =
        store::start_or_resume(pool, tenant, job.id, mode, &trigger, payload.requested_by)
            .await
            .map_err(db)?;
    let span = tracing::info_span!("sync", run = run.id, tenant_id = %tenant, mode = mode.as_str(), resumed);

    let started = OffsetDateTime::now_utc();
    let result = async {
        let mut engine =
            Engine::prepare(services, tenant, run.id, mode, checkpoints, started).await?;
        engine.lease = store::Lease { job: job.id, owner: job.owner.clone() };
        engine.report.counts = serde_json::from_value(run.counts.clone()).unwrap_or_default();
        engine.report.base_tokens = run.pipedrive_tokens as u64;
        engine.report.base_calls = run.brevo_calls as u64;
        engine.retry_persons = payload.persons.iter().filter_map(|p| p.parse().ok()).collect();
        engine.force_deletions = trigger == "manual";
        let outcome = engine.execute().await;
        engine.report_now().await;
        tracing::info!(time = %engine.report.spent, "where the run's time went");
        outcome.map(|()| engine.report.summary())
    }
    .instrument(span)
    .await;

    match result {
        Ok(message) => {
            store::set_status(pool, run.id, RunStatus::Succeeded, message.as_deref())
                .await
                .map_err(db)?;
            tracing::info!(run = run.id, "sync run succeeded");
            Ok(())
        }
        Err(Stop::Wait(delay, why)) => {
            store::set_status(pool, run.id, RunStatus::Waiting, Some(&why)).await.map_err(db)?;
            tracing::info!(run = run.id, ?delay, %why, "sync run waits");
            Err(JobError::Snooze(delay))
        }
        Err(Stop::Retry(why)) => {
            let last = job.attempts >= job.max_attempts;
            let status = if last { RunStatus::Failed } else { RunStatus::Waiting };
            let message = if last { why.clone() } else { format!("{why} — retrying shortly.") };
            store::set_status(pool, run.id, status, Some(&message)).await.map_err(db)?;
            tracing::warn!(run = run.id, %why, "sync run interrupted");
            Err(JobError::Retryable(why))
        }
        Err(Stop::Fatal(why)) => {
            store::set_status(pool, run.id, RunStatus::Failed, Some(&why)).await.map_err(db)?;
            tracing::warn!(run = run.id, %why, "sync run failed");
            Err(JobError::Fatal(why))
        }
    }
}

/// A contact to write, and what Brevo had before. A backfill holds tens of thousands while
/// their groups fill, so the attributes are kept as JSON text (a quarter of the memory of maps).
#[derive(Debug, Clone)]
struct Row {
    person_id: i64,
    email: String,
    /// The attributes from the person alone (kept in the link, to compute the others again).
    own: Box<str>,
    /// The attributes computed from its organization and deals.
    derived: Box<str>,
    lists: Vec<i64>,
    prev_lists: Vec<i64>,
    existed: bool,
    hash: String,
    org_id: Option<i64>,
    has_issues: bool,
}

impl Row {
    /// Every attribute Brevo is given.
    fn attributes(&self) -> Map<String, Value> {
        let mut all = object(&self.own);
        all.extend(object(&self.derived));
        all
    }
}

/// A JSON object as text.
fn object_text(map: &Map<String, Value>) -> Box<str> {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into()).into_boxed_str()
}

/// A JSON object from its text (the engine wrote it: an empty one should it not read).
fn object(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Backfill rows waiting for their import, all going to the same lists.
struct Bucket {
    rows: Vec<Row>,
    /// About the size of the rows in the import's JSON.
    bytes: usize,
    /// The page of the oldest row.
    since: u64,
}

pub struct Engine<'s> {
    s: &'s Services,
    pool: &'s PgPool,
    tenant: TenantId,
    run: i64,
    /// The job's lease: links, events and checkpoints commit only while it is held.
    lease: store::Lease,
    mode: Mode,
    pd: PipedriveClient,
    brevo: BrevoApi,
    mapping: MappingConfig,
    cat: Arc<Catalogue>,
    checkpoints: HashMap<String, Checkpoint>,
    started: OffsetDateTime,
    /// Persons whose deals, leads or organization changed.
    dirty: BTreeSet<i64>,
    /// Persons written or checked in this run.
    done: HashSet<i64>,
    /// Every email of the persons read in this run → the person (to recognise merges).
    seen_emails: HashMap<String, i64>,
    /// Contact emails given to a person in this run, or in imports not yet confirmed (their
    /// links are written later): one Pipedrive person per Brevo contact.
    claimed: HashMap<String, i64>,
    /// Events decided and not yet in the outbox: they go there in the transaction that records
    /// the change they come from (`save_page`), or just before it (`flush_events`).
    events: Vec<Event>,
    retry_persons: Vec<i64>,
    /// A manual sync checks for deletions whatever the time since the last check.
    force_deletions: bool,
    /// Backfill rows waiting for an import, by the lists they go to.
    bulk: BTreeMap<Vec<i64>, Bucket>,
    /// When a persons page's checkpoint may be saved (the rule, in `gate`).
    gate: CheckpointGate,
    /// Pages a backfill has read, every entity together (see `page_read`).
    backfill_pages: u64,
    /// Writes on their way: each import (or batch of contacts written one at a time) is sent by
    /// a task of its own, so the persons go on being read and prepared meanwhile.
    inflight: VecDeque<AbortOnDrop<Result<Sent, Stop>>>,
    /// Imports Brevo accepted and has not confirmed.
    pending: Vec<PendingImport>,
    /// Links of confirmed imports, and record errors of a backfill's pages, being written by tasks
    /// beside the persons loop, one at a time (`recorder`); each with the first checkpoint it
    /// holds back (numbered by the writes sent before it: see `gate`).
    recording: VecDeque<(u64, AbortOnDrop<Result<(), Stop>>)>,
    /// One turn at a time: more slowed the loop's lookups and held more links in memory.
    recorder: Arc<tokio::sync::Semaphore>,
    /// Whether persons had links when this step started (see `sync_persons`).
    persons_linked: bool,
    /// Whether the persons step has read its last page.
    persons_read: bool,
    /// What the run tells of itself: steps, counts, notes, where its time went.
    report: Report,
    /// When Brevo's processes were last polled (polls share Brevo's 100-calls-an-hour bucket).
    last_poll: Option<Instant>,
    polls: usize,
    /// A backfill's poll of Brevo's processes on its way, beside the persons loop, with the
    /// imports it answers for (those pending when it was sent; see `confirm_imports`).
    polling: Option<Poll>,
    /// A backfill's head start on its companies' contact ids (`start_company_contacts`): the
    /// task, then what it found (email → Brevo contact id).
    company_contacts_task: Option<AbortOnDrop<HashMap<String, i64>>>,
    company_contacts: HashMap<String, i64>,
    /// A backfill's deals and persons, read while the step before them runs (see `read_ahead`).
    deals_ahead: Option<Pages<Deal>>,
    persons_ahead: Option<Pages<Person>>,
    /// The page being recorded (see `save_page`).
    saving: Option<AbortOnDrop<Result<(), Stop>>>,
    /// The links' statistics being refreshed (see `page_read`).
    analyzing: Option<AbortOnDrop<()>>,
    /// The statistics the persons need, taken during the leads (see `execute`).
    statistics: Option<AbortOnDrop<Result<(), sqlx::Error>>>,
    /// An incremental run's changed contacts, held across pages so that those going to the same
    /// lists make one import; the checkpoint of the last page they came from.
    later: Vec<Row>,
    later_checkpoint: Option<Checkpoint>,
}

/// What a write task did: an import sent (Brevo's process, the lists it targets, its rows), or
/// contacts written one at a time (and the failure that stopped them, if one did).
enum Sent {
    /// The imports (the first, then its companions), the lists they target together, the rows.
    Import(i64, Vec<i64>, Vec<i64>, Vec<Row>),
    OneByOne(Vec<Written>, Option<BrevoError>),
}

/// An import Brevo accepted and has not confirmed. It lives in memory: the checkpoints of the
/// pages it came from wait until it is recorded, so a run that stops reads those pages again and
/// imports their rows again (Brevo updates a contact it already has: no duplicate).
struct PendingImport {
    process_id: i64,
    /// The other imports of the same rows, when each of the rows' lists had an import of its
    /// own (`flush_all`): the rows are written once all of them completed.
    companions: Vec<i64>,
    lists: Vec<i64>,
    rows: Vec<Row>,
    /// The write it came from, numbered as the gate counts them.
    write: u64,
}

/// Writes on their way to Brevo, at most (an import holds up to `Bulk::import_rows` rows, about
/// 2 MB): the persons loop goes on while Brevo's limiter spaces them out. More measured no
/// faster (docs/benchmarks.md).
const MAX_INFLIGHT: usize = 4;

fn hash(v: &Value) -> String {
    format!("{:x}", Sha256::digest(serde_json::to_vec(v).unwrap_or_default()))
}

fn parse_time(t: Option<&str>) -> Option<OffsetDateTime> {
    let t = t?;
    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok().or_else(|| {
        time::PrimitiveDateTime::parse(
            t,
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        )
        .ok()
        .map(|p| p.assume_utc())
    })
}

/// What a run that lost its job's lease stops with: another worker runs the job now, and this
/// one commits nothing more.
fn lease_lost() -> Stop {
    Stop::Retry("another worker took this sync over (the lease was lost); this one stopped".into())
}

/// Pages read ahead of the loop that works on them.
type Pages<T> = Prefetched<Result<crate::pipedrive::client::Page<T>, PipedriveError>>;
/// A poll of Brevo's processes on its way, with the imports (process ids) it answers for.
type Poll = (HashSet<i64>, AbortOnDrop<Result<Vec<crate::brevo::api::Process>, BrevoError>>);

/// Items read ahead by a task of their own, which ends with the reader.
pub(super) struct Prefetched<T> {
    rx: mpsc::Receiver<T>,
    _task: AbortOnDrop<()>,
}

impl<T> Prefetched<T> {
    pub(super) async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }
}

/// A stream of pages, fetched `ahead` pages ahead by its own task while the caller writes the
/// last one.
fn prefetch<T: Send + 'static, E: Send + 'static>(
    stream: impl Stream<Item = Result<T, E>> + Send + 'static,
    ahead: usize,
) -> Prefetched<Result<T, E>> {
    let (tx, rx) = mpsc::channel(ahead);
    let task = AbortOnDrop::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(page) = stream.next().await {
            let stop = page.is_err();
            if tx.send(page).await.is_err() || stop {
                return;
            }
        }
    });
    Prefetched { rx, _task: task }
}

impl<'s> Engine<'s> {
    async fn prepare(
        s: &'s Services,
        tenant: TenantId,
        run: i64,
        mode: Mode,
        checkpoints: HashMap<String, Checkpoint>,
        started: OffsetDateTime,
    ) -> Result<Engine<'s>, Stop> {
        let member = Member::worker(tenant);
        let pool = &s.pool;
        let Some((version, yaml)) = crate::mapping::store::current(pool, &member).await? else {
            return Err(Stop::Fatal(
                "No mapping is saved yet: save one on the Mappings page, then sync.".into(),
            ));
        };
        let mapping = MappingConfig::from_yaml(&yaml)
            .map_err(|e| Stop::Fatal(format!("The saved mapping does not read: {}", e.message)))?;
        let pd = connections::pipedrive_client(pool, &s.key, &s.providers, &member, &s.limits)
            .await?
            .ok_or_else(|| {
                Stop::Fatal(
                    "Pipedrive is not connected: connect it on the Connections page.".into(),
                )
            })?;
        let brevo =
            connections::brevo_api(pool, &s.key, &member, &s.limits).await?.ok_or_else(|| {
                Stop::Fatal(
                    "Brevo is not connected: add its API key on the Connections page.".into(),
                )
            })?;
        // A restarted process starts the company's daily budget from what runs recorded today.
        if let Some(base) = connections::pipedrive_api_base(pool, tenant).await? {
            let budget = s.limits.budget(&base);
            if budget.spent_today(OffsetDateTime::now_utc()) == 0 {
                let spent = store::tokens_spent_today(pool, &base).await?;
                budget.preload(spent.max(0) as u64, OffsetDateTime::now_utc());
            }
        }
        let cached = s
            .catalogs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
            .filter(|(at, v, _)| at.elapsed() < CATALOG_TTL && *v == version)
            .map(|(_, _, c)| c.clone());
        let cat = match cached {
            Some(c) => c,
            None => {
                let c = Arc::new(load_catalogue(&pd, &brevo).await?);
                s.catalogs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tenant, (Instant::now(), version, c.clone()));
                c
            }
        };
        let problems: Vec<String> = validate::check(&mapping, Some(&cat.catalog))
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| format!("{}: {}", p.at, p.message))
            .collect();
        if !problems.is_empty() {
            // The tenant's accounts changed since the mapping was saved: next time, read them again.
            s.catalogs.lock().unwrap_or_else(|e| e.into_inner()).remove(&tenant);
            return Err(Stop::Fatal(format!(
                "The mapping no longer fits the connected accounts: {}",
                problems.join(" ")
            )));
        }
        let steps = Step::plan(mapping.connectors.pipedrive.sync, mode);
        Ok(Engine {
            s,
            pool,
            tenant,
            run,
            lease: store::Lease::default(),
            report: Report::new(pool.clone(), run, steps),
            mode,
            pd,
            brevo,
            mapping,
            cat,
            checkpoints,
            started,
            dirty: BTreeSet::new(),
            done: HashSet::new(),
            seen_emails: HashMap::new(),
            claimed: HashMap::new(),
            events: Vec::new(),
            retry_persons: Vec::new(),
            force_deletions: false,
            bulk: BTreeMap::new(),
            gate: CheckpointGate::default(),
            backfill_pages: 0,
            inflight: VecDeque::new(),
            pending: Vec::new(),
            recording: VecDeque::new(),
            recorder: Arc::new(tokio::sync::Semaphore::new(1)),
            last_poll: None,
            polls: 0,
            polling: None,
            persons_linked: true,
            persons_read: false,
            company_contacts_task: None,
            company_contacts: HashMap::new(),
            deals_ahead: None,
            persons_ahead: None,
            analyzing: None,
            statistics: None,
            saving: None,
            later: Vec::new(),
            later_checkpoint: None,
        })
    }

    fn count(&mut self, entity: Entity) -> &mut EntityCounts {
        self.report.count(entity)
    }

    /// Records the run's progress soon (see `Report::record_soon`).
    fn report_soon(&mut self) {
        let (tokens, calls) = (self.pd.tokens_spent(), self.brevo.calls());
        self.report.record_soon(tokens, calls);
    }

    /// Records the run's progress now.
    async fn report_now(&mut self) {
        let (tokens, calls) = (self.pd.tokens_spent(), self.brevo.calls());
        self.report.record_now(tokens, calls).await;
    }

    async fn execute(&mut self) -> Result<(), Stop> {
        // Attributes the mapping needs and Brevo lacks: created while organizations, deals and
        // leads are read, ready before the first contact is written.
        let mut attributes = self.start_attributes();
        if self.mode == Mode::Backfill {
            // What changes while the backfill runs is for the first incremental run to see.
            for entity in [DELETIONS, Entity::Activity.as_str()] {
                if !self.checkpoints.contains_key(entity) {
                    let cp = self.checkpoint(entity);
                    self.save_checkpoint(entity, &cp).await?;
                }
            }
        }
        if !self.retry_persons.is_empty() {
            self.finish_attributes(attributes.take()).await?;
            let ids = std::mem::take(&mut self.retry_persons);
            self.persons_by_id(&ids).await?;
        }
        for i in 1..self.report.steps.len() {
            self.report.step = i;
            self.report_now().await;
            let step = self.report.steps[i];
            if !matches!(step, Step::Organizations | Step::Deals | Step::Leads) {
                self.finish_attributes(attributes.take()).await?;
            }
            // The persons' lookups by person need statistics that count the deals' links: taken
            // beside the leads (whose links are looked up by id), waited for when the persons
            // begin. (Taken then, they left Pipedrive's reader idle for a tenth of a second.)
            if self.mode == Mode::Backfill && step == Step::Leads {
                let pool = self.pool.clone();
                self.statistics = Some(AbortOnDrop(tokio::spawn(
                    async move { store::analyze_links(&pool).await }.in_current_span(),
                )));
            }
            if self.mode == Mode::Backfill && step == Step::Persons {
                let t = Instant::now();
                match self.statistics.take() {
                    Some(mut task) => (&mut task.0).await.map_err(|e| {
                        Stop::Retry(format!(
                            "refreshing the links' statistics was interrupted: {e}"
                        ))
                    })??,
                    None => store::analyze_links(self.pool).await?,
                }
                self.report.spent.add("database: statistics", t);
            }
            if step == Step::Deals {
                self.company_contacts_task = self.start_company_contacts();
            }
            self.read_ahead(i);
            match step {
                Step::Prepare => {}
                Step::Organizations => self.organizations().await?,
                Step::Deals => self.deals().await?,
                Step::Leads => self.leads().await?,
                Step::Persons => self.persons().await?,
                Step::Deletions => self.deletions().await?,
                Step::RelatedPersons => self.related_persons().await?,
                Step::Activities => self.activities().await?,
                Step::Events => self.send_events().await?,
                Step::Companies => self.companies().await?,
            }
            self.saved().await?;
        }
        self.finish_attributes(attributes.take()).await?;
        self.report.step = self.report.steps.len();
        Ok(())
    }

    /// A backfill starts reading the deals with the organizations and the persons with the deals.
    /// A cursor list is read one page after the other, so one list alone leaves Pipedrive's
    /// limiter idle whenever a round trip takes longer than its spacing (often, on a loaded
    /// machine); two lists at once keep it busy, and the step that follows starts with pages
    /// waiting. Only the reading starts early: the pages are worked on in order, each step after
    /// the links it needs are recorded.
    fn read_ahead(&mut self, step: usize) {
        if self.mode != Mode::Backfill {
            return;
        }
        let next = self.report.steps.get(step + 1..).unwrap_or_default();
        match self.report.steps[step] {
            Step::Organizations if next.contains(&Step::Deals) && self.deals_ahead.is_none() => {
                self.deals_ahead = self.query(Entity::Deal).map(|(q, c)| {
                    prefetch(self.pd.list_from::<Deal>("/api/v2/deals", q, c), PAGES_AHEAD)
                });
            }
            Step::Deals if next.contains(&Step::Persons) && self.persons_ahead.is_none() => {
                self.persons_ahead = self.query(Entity::Person).map(|(q, c)| {
                    prefetch(
                        self.pd.list_from::<Person>("/api/v2/persons", q, c),
                        PERSON_PAGES_AHEAD,
                    )
                });
            }
            _ => {}
        }
    }

    /// The checkpoint of an entity; a backfill that starts records its start as where the
    /// incremental runs after it begin.
    fn checkpoint(&mut self, entity: &str) -> Checkpoint {
        let started = self.started;
        self.checkpoints
            .entry(entity.to_owned())
            .or_insert_with(|| Checkpoint { since: Some(started), ..Default::default() })
            .clone()
    }

    /// The list query and start cursor for an entity, or `None` when its backfill is done and this
    /// run is still a backfill (of the other entities).
    fn query(&mut self, entity: Entity) -> Option<(ListQuery, Option<String>)> {
        let cp = self.checkpoint(entity.as_str());
        match self.mode {
            Mode::Backfill if cp.backfill_done => None,
            Mode::Backfill => {
                Some((ListQuery { limit: Some(PAGE), ..Default::default() }, cp.backfill_cursor))
            }
            Mode::Incremental => Some((
                ListQuery {
                    limit: Some(PAGE),
                    updated_since: cp.since.map(|s| s - OVERLAP),
                    sort_by_update_time: true,
                    ..Default::default()
                },
                None,
            )),
        }
    }

    /// The checkpoint after a page: the next cursor (backfill) or the latest update time seen.
    fn advance(
        &mut self,
        entity: Entity,
        next_cursor: Option<String>,
        latest: Option<OffsetDateTime>,
    ) -> Checkpoint {
        let mode = self.mode;
        let cp = self.checkpoints.entry(entity.to_string()).or_default();
        match mode {
            Mode::Backfill => {
                cp.backfill_done = next_cursor.is_none();
                cp.backfill_cursor = next_cursor;
            }
            Mode::Incremental => {
                if let Some(t) = latest {
                    cp.since = Some(cp.since.map_or(t, |s| s.max(t)));
                }
            }
        }
        cp.clone()
    }

    /// Writes the events decided so far to the outbox, before the writes that consume their
    /// changes (links recorded apart from a page's transaction).
    async fn flush_events(&mut self) -> Result<(), Stop> {
        let events = std::mem::take(&mut self.events);
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = store::fenced(self.pool, &self.lease).await?.ok_or_else(lease_lost)?;
        outbox::insert(&mut *tx, self.tenant, self.run, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves a checkpoint, if the run still holds its lease.
    async fn save_checkpoint(&self, entity: &str, cp: &Checkpoint) -> Result<(), Stop> {
        let mut tx = store::fenced(self.pool, &self.lease).await?.ok_or_else(lease_lost)?;
        store::save_checkpoint(&mut *tx, self.tenant, entity, cp).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a page's links, events and checkpoint together, by a task beside the loop (one at a
    /// time, in order), so that the next page is worked on while the database writes this one.
    async fn save_page(
        &mut self,
        entity: Entity,
        links: Vec<Link>,
        cp: Checkpoint,
    ) -> Result<(), Stop> {
        self.page_read().await?;
        self.saved().await?;
        let (pool, tenant, run, lease) =
            (self.pool.clone(), self.tenant, self.run, self.lease.clone());
        // The page's events are consumed with its links and checkpoint: in one transaction.
        let events = std::mem::take(&mut self.events);
        self.saving = Some(AbortOnDrop(tokio::spawn(
            async move {
                let mut tx = store::fenced(&pool, &lease).await?.ok_or_else(lease_lost)?;
                store::relaxed_commit(&mut tx).await?;
                outbox::insert(&mut *tx, tenant, run, &events).await?;
                store::upsert_links(&mut *tx, tenant, &links).await?;
                store::save_checkpoint(&mut *tx, tenant, entity.as_str(), &cp).await?;
                tx.commit().await?;
                Ok(())
            }
            .in_current_span(),
        )));
        self.report_soon();
        Ok(())
    }

    /// Waits for the page `save_page` is recording (every step that saves pages ends with it).
    async fn saved(&mut self) -> Result<(), Stop> {
        if let Some(mut task) = self.saving.take() {
            let t = Instant::now();
            (&mut task.0)
                .await
                .map_err(|e| Stop::Retry(format!("recording a page was interrupted: {e}")))??;
            self.report.spent.add("database: pages", t);
        }
        Ok(())
    }

    /// Whether a step must look up what the links know of its records: not in a backfill that
    /// found none of them linked (every record then is new).
    async fn linked(&self, entity: Entity) -> Result<bool, Stop> {
        Ok(self.mode == Mode::Incremental
            || store::has_links(self.pool, self.tenant, entity).await?)
    }

    /// Counts a backfill's pages and refreshes the links' statistics as the table doubles (4, 8,
    /// 16, … pages): autovacuum's analyze lags behind a bulk load, and the lookups by person and
    /// by email need the planner to know the table's size. The analyze runs beside the loop (it
    /// takes a tenth of a second on a large table, four pages of Pipedrive's rate), one at a time.
    async fn page_read(&mut self) -> Result<(), Stop> {
        if self.mode == Mode::Backfill {
            self.backfill_pages += 1;
            let idle = self.analyzing.as_ref().is_none_or(|task| task.0.is_finished());
            if self.backfill_pages >= 4 && self.backfill_pages.is_power_of_two() && idle {
                let pool = self.pool.clone();
                self.analyzing = Some(AbortOnDrop(tokio::spawn(
                    async move {
                        // Only the planner's estimates are at stake: a failure is logged, not fatal.
                        if let Err(e) = store::analyze_links(&pool).await {
                            tracing::warn!(error = %e, "could not refresh the links' statistics");
                        }
                    }
                    .in_current_span(),
                )));
            }
        }
        Ok(())
    }

    fn rule(&self, action: &str, object: Entity) -> Option<String> {
        self.mapping
            .webhooks
            .iter()
            .find(|r| r.event_action == action && r.event_object == object.as_str())
            .map(|r| r.brevo_event.clone())
    }

    /// Events are sent for changes seen by incremental runs, and by a backfill only for what
    /// happened in the last `backfill_event_days` days.
    fn events_for(&self, when: Option<OffsetDateTime>) -> bool {
        match self.mode {
            Mode::Incremental => true,
            Mode::Backfill => {
                let days = self.mapping.options.backfill_event_days;
                days > 0
                    && when
                        .is_some_and(|t| t >= self.started - time::Duration::days(i64::from(days)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::imports::dropped_rows;
    use super::writes::{by_list, person_link, takes};
    use super::*;

    /// Content hashes are stored in the links: the text must stay the lowercase hex SHA-256 of
    /// the compact JSON, or every record would look changed after an upgrade.
    #[test]
    fn content_hash_is_the_hex_sha256_of_the_json() {
        assert_eq!(
            hash(&json!(["a", 1])),
            "135f17a475a61afdeeaf3759ad2e45ad1c7abb192395abe47e41fc8e395dc1a9"
        );
    }

    #[test]
    fn the_last_groups_by_list_write_each_row_to_exactly_its_lists() {
        let cases: [&[&[i64]]; 4] = [
            &[
                &[2],
                &[2, 3],
                &[2, 3, 4],
                &[2, 3, 4, 6],
                &[2, 3, 5, 6],
                &[2, 3, 6],
                &[2, 4],
                &[2, 4, 6],
                &[2, 5, 6],
                &[2, 6],
            ],
            &[&[3], &[4], &[3, 4]],
            &[&[2, 3], &[2, 4], &[2, 3, 4]],
            &[&[7]],
        ];
        for groups in cases {
            let groups: Vec<Vec<i64>> = groups.iter().map(|g| g.to_vec()).collect();
            let plan = by_list(&groups);
            for g in &groups {
                let taking: Vec<&Vec<i64>> = plan
                    .iter()
                    .filter(|(target, extra)| takes(target, *extra, g))
                    .map(|(target, _)| target)
                    .collect();
                assert!(!taking.is_empty(), "{g:?} is imported");
                assert!(
                    taking.iter().all(|t| t.iter().all(|l| g.contains(l))),
                    "{g:?} joins no other list: {taking:?}"
                );
                let joined: BTreeSet<i64> = taking.iter().flat_map(|t| t.iter().copied()).collect();
                assert_eq!(joined, g.iter().copied().collect(), "{g:?} joins all its lists");
            }
        }
        // The seed mapping's ten groups: five imports, the all-contacts list in each.
        let seed: Vec<Vec<i64>> = cases[0].iter().map(|g| g.to_vec()).collect();
        let targets: Vec<Vec<i64>> = by_list(&seed).into_iter().map(|(t, _)| t).collect();
        assert_eq!(targets, vec![vec![2], vec![2, 3], vec![2, 4], vec![2, 5], vec![2, 6]]);
        // Groups with no list in common: one import per list.
        let targets: Vec<Vec<i64>> =
            by_list(&[vec![3], vec![4], vec![3, 4]]).into_iter().map(|(t, _)| t).collect();
        assert_eq!(targets, vec![vec![3], vec![4]]);
    }

    #[test]
    fn the_steps_follow_the_switches_and_the_mode() {
        let all = crate::mapping::SyncSwitches::default();
        let names =
            |sync, mode| Step::plan(sync, mode).into_iter().map(Step::as_str).collect::<Vec<_>>();
        assert_eq!(
            names(all, Mode::Incremental),
            [
                "prepare",
                "organizations",
                "deals",
                "leads",
                "persons",
                "deletions",
                "related persons",
                "activities",
                "events",
                "companies"
            ]
        );
        assert_eq!(
            names(all, Mode::Backfill),
            [
                "prepare",
                "organizations",
                "deals",
                "leads",
                "persons",
                "activities",
                "events",
                "companies"
            ]
        );
        let few = crate::mapping::SyncSwitches { persons: false, organizations: false, ..all };
        assert_eq!(
            names(few, Mode::Incremental),
            ["prepare", "deals", "leads", "activities", "events"]
        );
    }

    #[test]
    fn import_counters_that_mean_dropped_rows() {
        assert!(!dropped_rows(None));
        assert!(!dropped_rows(Some(
            &json!({"import": {"created": 5, "updated": 2, "invalid_emails": 0}})
        )));
        assert!(dropped_rows(Some(&json!({"import": {"duplicate_phone_id": 1}}))));
        assert!(dropped_rows(Some(&json!({"import": {"invalid_emails": 3}}))));
    }

    #[test]
    fn person_links_written_from_texts_equal_the_links() {
        let row = |person_id,
                   email: &str,
                   own: Value,
                   derived: Value,
                   lists: Vec<i64>,
                   prev_lists: Vec<i64>| Row {
            person_id,
            email: email.to_owned(),
            own: object_text(own.as_object().unwrap()),
            derived: object_text(derived.as_object().unwrap()),
            lists,
            prev_lists,
            existed: person_id == 8,
            hash: format!("h{person_id}"),
            org_id: (person_id == 7).then_some(3),
            has_issues: person_id == 8,
        };
        let rows = vec![
            row(
                7,
                "ann@x.test",
                json!({"FIRSTNAME": "Ann \"A\"", "SMS": "+33600000001"}),
                json!({"COMPANY": "Acme"}),
                vec![60, 61],
                vec![],
            ),
            row(8, "bo\\b@x.test", json!({}), json!({}), vec![], vec![60]),
        ];
        let mut written = person_links(&rows);
        let links: Vec<Link> = rows.iter().map(|r| person_link(r, None)).collect();
        let mut expected = store::LinkColumns::from(links.as_slice());
        // The facts' texts differ in spacing and order at most: the same JSON.
        let parse = |texts: &[String]| {
            texts.iter().map(|t| serde_json::from_str::<Value>(t).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(parse(&written.facts), parse(&expected.facts));
        assert_eq!(
            parse(&written.facts)[0],
            json!({"own": {"FIRSTNAME": "Ann \"A\"", "SMS": "+33600000001"}, "lists": [60, 61]})
        );
        (written.facts, expected.facts) = (Vec::new(), Vec::new());
        assert_eq!(written, expected);
        assert!(person_links(&[]).is_empty());
    }

    #[test]
    fn hashes_are_stable_and_tell_content_apart() {
        let a = hash(&json!(["a@x.test", {"FIRSTNAME": "Ann"}, [60]]));
        assert_eq!(a, hash(&json!(["a@x.test", {"FIRSTNAME": "Ann"}, [60]])));
        assert_ne!(a, hash(&json!(["a@x.test", {"FIRSTNAME": "Ann"}, [60, 61]])));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn v1_and_v2_times_read() {
        assert_eq!(
            parse_time(Some("2026-01-02T03:04:05Z")).unwrap().unix_timestamp(),
            1_767_323_045
        );
        assert_eq!(
            parse_time(Some("2026-01-02 03:04:05")).unwrap().unix_timestamp(),
            1_767_323_045
        );
        assert!(parse_time(Some("yesterday")).is_none());
    }
}

#[cfg(test)]
mod prefetch_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A reader that stops reading (its run ended or was dropped) takes the task that reads
    /// ahead for it along: no page is fetched after that.
    #[tokio::test]
    async fn pages_read_ahead_stop_with_their_reader() {
        let fetched = Arc::new(AtomicUsize::new(0));
        let pages = futures_util::stream::unfold(fetched.clone(), |fetched| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fetched.fetch_add(1, Ordering::SeqCst);
            Some((Ok::<_, ()>(()), fetched))
        });
        let mut ahead = prefetch(pages, 1);
        ahead.recv().await.unwrap().unwrap();
        drop(ahead);
        let at_drop = fetched.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fetched.load(Ordering::SeqCst), at_drop);
    }
}

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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::store::{self, Checkpoint, Link, RecordError};
use super::{Counts, EntityCounts, JOB_FULL_RESYNC, Mode};
use crate::accounts::Member;
use crate::brevo::BrevoError;
use crate::brevo::api::{BrevoApi, ImportContact, Upserted};
use crate::connections::{self, ConnectError, Providers};
use crate::domain::TenantId;
use crate::mapping::transform::{self, DealFacts, FieldOptions, Issue, Skip};
use crate::mapping::validate::{self, AttributeInfo, Catalog, Severity};
use crate::mapping::{DeletedPersons, MappingConfig};
use crate::pipedrive::PipedriveError;
use crate::pipedrive::client::{ListQuery, PipedriveClient};
use crate::pipedrive::limits::Registry;
use crate::pipedrive::models::{Activity, Deal, Field, Organization, Person, Stage};
use crate::queue::{Job, JobError};
use crate::secrets::SecretKey;
use crate::task::AbortOnDrop;

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
/// first `EAGER_POLLS` come at most every `POLL_SOON`, the next ones every `POLL_EVERY`. (Polled
/// every 2 s, a backfill of 100,000 persons still had 1.3 s of links to record after its last
/// page; every 0.5 s, 0.4 s, for 6 more calls.)
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
/// Deleted and merged persons are looked for this often (see `deletions`).
const DELETIONS_EVERY: time::Duration = time::Duration::minutes(15);
/// Leads have no `updated_since` (v1): an incremental run reads them at most this often.
const LEADS_EVERY: time::Duration = time::Duration::hours(1);
const PAGE: u32 = 500;
/// How often a run records its progress (the Sync page shows it as it changes).
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// Persons pages read ahead of the one being written (each about 500 persons, 1 MB decoded and
/// more while it is prepared). Pipedrive's limiter keeps the slots a waiting reader leaves (a
/// sliding window), so a few pages cover a pause of the persons loop; with 12, the reader, ahead
/// of a loop that cannot follow it, held 30 MiB more at the peak for no gain.
const PERSON_PAGES_AHEAD: usize = 4;
/// Pages of organizations, deals and activities read ahead of the one being recorded.
const PAGES_AHEAD: usize = 8;
/// PRODUCT.md's `deal.stage_changed`, in the characters Brevo allows in an event name (letters,
/// digits, `-`, `_`).
pub const STAGE_CHANGED: &str = "deal_stage_changed";

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
    /// Rows an import carries at most (5,000 rows of the seed mapping are about 2 MB of JSON;
    /// Brevo takes 10 MB, and an import stops at 8 MB whatever its rows). 10,000 saved 7
    /// imports of 31 but not time, and held 200 MB at the peak.
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
    /// poll wait up to 36 s, the time of about 330 single writes).
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
            BrevoError::BadKey(_) => Stop::Fatal("Brevo refused the API key: replace it on the Connections page.".into()),
            BrevoError::RateLimited { reset_secs } => Stop::Wait(Duration::from_secs(reset_secs.max(5)), "Brevo's rate limit: waiting for it to reset.".into()),
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
    let tenant = job.tenant_id.ok_or_else(|| JobError::Fatal("a sync job without a tenant".into()))?;
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
    let backfilled = ["organization", "deal", "lead", "person"].iter().all(|e| checkpoints.get(*e).is_some_and(|c| c.backfill_done));
    let mode = if backfilled { Mode::Incremental } else { Mode::Backfill };
    let trigger = payload.trigger.clone().unwrap_or_else(|| "schedule".into());
    let trigger = if ["manual", "schedule", "webhook", "retry"].contains(&trigger.as_str()) { trigger } else { "schedule".into() };
    let (run, resumed) = store::start_or_resume(pool, tenant, job.id, mode, &trigger, payload.requested_by).await.map_err(db)?;
    let span = tracing::info_span!("sync", run = run.id, tenant_id = %tenant, mode = mode.as_str(), resumed);

    let started = OffsetDateTime::now_utc();
    let result = async {
        let mut engine = Engine::prepare(services, tenant, run.id, mode, checkpoints, started).await?;
        engine.counts = serde_json::from_value(run.counts.clone()).unwrap_or_default();
        engine.base_tokens = run.pipedrive_tokens as u64;
        engine.base_calls = run.brevo_calls as u64;
        engine.retry_persons = payload.persons.iter().filter_map(|p| p.parse().ok()).collect();
        engine.force_deletions = trigger == "manual";
        let outcome = engine.execute().await;
        engine.report_now().await;
        tracing::info!(time = %engine.spent, "where the run's time went");
        outcome.map(|()| engine.summary())
    }
    .instrument(span)
    .await;

    match result {
        Ok(message) => {
            store::set_status(pool, run.id, "succeeded", message.as_deref()).await.map_err(db)?;
            tracing::info!(run = run.id, "sync run succeeded");
            Ok(())
        }
        Err(Stop::Wait(delay, why)) => {
            store::set_status(pool, run.id, "waiting", Some(&why)).await.map_err(db)?;
            tracing::info!(run = run.id, ?delay, %why, "sync run waits");
            Err(JobError::Snooze(delay))
        }
        Err(Stop::Retry(why)) => {
            let last = job.attempts >= job.max_attempts;
            let status = if last { "failed" } else { "waiting" };
            let message = if last { why.clone() } else { format!("{why} — retrying shortly.") };
            store::set_status(pool, run.id, status, Some(&message)).await.map_err(db)?;
            tracing::warn!(run = run.id, %why, "sync run interrupted");
            Err(JobError::Retryable(why))
        }
        Err(Stop::Fatal(why)) => {
            store::set_status(pool, run.id, "failed", Some(&why)).await.map_err(db)?;
            tracing::warn!(run = run.id, %why, "sync run failed");
            Err(JobError::Fatal(why))
        }
    }
}

/// The deals (their facts) and the leads (the persons with one) of some persons, from the links.
type Related = (HashMap<i64, Vec<DealFacts>>, HashSet<i64>);

async fn related(pool: &PgPool, tenant: TenantId, persons: &[i64]) -> Result<Related, sqlx::Error> {
    let (deal_links, lead_links) = tokio::try_join!(store::links_of_persons(pool, tenant, "deal", persons), store::links_of_persons(pool, tenant, "lead", persons))?;
    let mut deals: HashMap<i64, Vec<DealFacts>> = HashMap::new();
    for l in deal_links {
        let Some(p) = l.person_id else { continue };
        deals.entry(p).or_default().push(DealFacts {
            status: l.facts["status"].as_str().unwrap_or("open").to_owned(),
            value: l.facts["value"].as_f64().unwrap_or(0.0),
            stage_id: l.facts["stage_id"].as_u64(),
        });
    }
    let leads = lead_links.into_iter().filter(|l| !l.facts["archived"].as_bool().unwrap_or(false)).filter_map(|l| l.person_id).collect();
    Ok((deals, leads))
}

/// What the links know of a page of persons: their deals and leads, and their organizations.
/// These links are written by the steps before the persons, so the task reading the pages looks
/// them up ahead of the loop.
struct Known {
    related: Related,
    orgs: HashMap<String, Link>,
}

async fn known(pool: &PgPool, tenant: TenantId, persons: &[Person]) -> Result<Known, sqlx::Error> {
    let ids: Vec<i64> = persons.iter().map(|p| p.id as i64).collect();
    let org_ids: Vec<String> = persons.iter().filter_map(|p| p.org_id).map(|o| o.to_string()).collect();
    let (related, orgs) = tokio::try_join!(related(pool, tenant, &ids), store::links(pool, tenant, "organization", &org_ids))?;
    Ok(Known { related, orgs })
}

/// What a person's own fields give: `None` for a deleted person.
type Prepared = Option<Result<transform::ContactOut, Skip>>;

/// Each person's own attributes (pure: the task that reads the pages computes them).
fn prepare(persons: &[Person], mapping: &MappingConfig, cat: &Catalogue) -> Vec<Prepared> {
    let country = mapping.options.country();
    persons.iter().map(|p| (!p.is_deleted).then(|| transform::own_attributes(p, mapping, &cat.catalog, &cat.options, country))).collect()
}

/// What a person becomes in Brevo, computed beside the loop from its own attributes and what
/// the links know (`Known`): the loop only compares it with the person's link.
struct Draft {
    own: Box<str>,
    derived: Box<str>,
    lists: Vec<i64>,
    hash: String,
}

/// What a person with these own attributes becomes, given what the links know (pure).
fn draft(mapping: &MappingConfig, pid: i64, email: &str, own: Map<String, Value>, org_id: Option<i64>, known: &Known) -> Draft {
    let (deals_of, leads) = &known.related;
    let deals = deals_of.get(&pid).map(Vec::as_slice).unwrap_or_default();
    let org_name = org_id.and_then(|o| known.orgs.get(&o.to_string())).and_then(|l| l.facts["name"].as_str());
    let derived = transform::derived(mapping, org_name, &transform::counts(deals));
    let lists: Vec<i64> = transform::lists(mapping, deals, leads.contains(&pid)).into_iter().collect();
    // What the derived attributes override is left out of the own ones, so that the two never
    // share a key and an import joins their texts as they are.
    let mut attributes = own;
    for key in derived.keys() {
        attributes.remove(key);
    }
    let (own_text, derived_text) = (object_text(&attributes), object_text(&derived));
    attributes.extend(derived);
    let hash = hash(&json!([email, attributes, lists]));
    Draft { own: own_text, derived: derived_text, lists, hash }
}

/// The draft of every person of a page with a valid email (their own attributes move into it).
fn drafts(persons: &[Person], prepared: &mut [Prepared], known: &Known, mapping: &MappingConfig) -> Vec<Option<Draft>> {
    persons
        .iter()
        .zip(prepared)
        .map(|(p, out)| match out {
            Some(Ok(out)) => Some(draft(mapping, p.id as i64, out.email.as_str(), std::mem::take(&mut out.attributes), p.org_id.map(|o| o as i64), known)),
            _ => None,
        })
        .collect()
}

/// A contact to write, or `None` when Brevo already has exactly this.
fn row(pid: i64, email: String, draft: Draft, org_id: Option<i64>, prev: Option<&Link>, has_issues: bool) -> Option<Row> {
    if prev.and_then(|p| p.content_hash.as_deref()) == Some(draft.hash.as_str()) {
        return None;
    }
    // A changed email is a new contact: the old one leaves the synced lists.
    let same_contact = prev.is_some_and(|p| p.brevo_ref.as_deref() == Some(email.as_str()));
    let prev_lists = prev.filter(|_| same_contact).map(|p| lists_of(&p.facts)).unwrap_or_default();
    let Draft { own, derived, lists, hash } = draft;
    Some(Row { person_id: pid, email, own, derived, lists, prev_lists, existed: same_contact, hash, org_id, has_issues })
}

/// Persons pages worked on at once beside the loop (their attributes, lookups and drafts).
const PREPARING: usize = 2;

/// A contact to write, and what Brevo had before. A backfill holds tens of thousands while
/// their groups fill, so the attributes are kept as JSON text (a quarter of the memory of maps).
#[derive(Debug, Clone, Deserialize)]
struct Row {
    person_id: i64,
    email: String,
    /// The attributes from the person alone (kept in the link, to compute the others again).
    #[serde(deserialize_with = "json_text")]
    own: Box<str>,
    /// The attributes computed from its organization and deals. (Rows an older version saved
    /// held every attribute under `attributes`.)
    #[serde(default = "empty_object", alias = "attributes", deserialize_with = "json_text")]
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

fn json_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<str>, D::Error> {
    let map = Map::<String, Value>::deserialize(d)?;
    Ok(object_text(&map))
}

fn empty_object() -> Box<str> {
    "{}".into()
}

/// Backfill rows waiting for their import, all going to the same lists.
struct Bucket {
    rows: Vec<Row>,
    /// About the size of the rows in the import's JSON.
    bytes: usize,
    /// The page of the oldest row.
    since: u64,
}

struct PendingEvent {
    name: String,
    person_id: i64,
    properties: Map<String, Value>,
}

pub struct Engine<'s> {
    s: &'s Services,
    pool: &'s PgPool,
    tenant: TenantId,
    run: i64,
    mode: Mode,
    pd: PipedriveClient,
    brevo: BrevoApi,
    mapping: MappingConfig,
    cat: Arc<Catalogue>,
    checkpoints: HashMap<String, Checkpoint>,
    started: OffsetDateTime,
    counts: Counts,
    base_tokens: u64,
    base_calls: u64,
    steps: Vec<&'static str>,
    step: usize,
    /// Persons whose deals, leads or organization changed.
    dirty: BTreeSet<i64>,
    /// Persons written or checked in this run.
    done: HashSet<i64>,
    /// Every email of the persons read in this run → the person (to recognise merges).
    seen_emails: HashMap<String, i64>,
    /// Contact emails given to a person in this run, or in imports not yet confirmed (their
    /// links are written later): one Pipedrive person per Brevo contact.
    claimed: HashMap<String, i64>,
    events: Vec<PendingEvent>,
    retry_persons: Vec<i64>,
    /// A manual sync checks for deletions whatever the time since the last check.
    force_deletions: bool,
    notes: Vec<String>,
    /// Backfill rows waiting for an import, by the lists they go to.
    bulk: BTreeMap<Vec<i64>, Bucket>,
    /// Checkpoints of the persons pages read (numbered by `backfill_pages`), oldest first, until
    /// none of their rows waits in `bulk` any more: only then may the checkpoint be saved.
    held: VecDeque<(u64, Checkpoint)>,
    /// Pages a backfill has read, every entity together (see `page_read`).
    backfill_pages: u64,
    /// Where the run's time goes (logged when it ends).
    spent: Spent,
    /// Writes on their way: each import (or batch of contacts written one at a time) is sent by
    /// a task of its own, so the persons go on being read and prepared meanwhile.
    inflight: VecDeque<tokio::task::JoinHandle<Result<Sent, Stop>>>,
    /// Persons checkpoints no waiting row depends on, oldest first, each with the number of
    /// writes sent before it: saved once those are settled and their imports recorded.
    unsaved_checkpoints: VecDeque<(u64, Checkpoint)>,
    /// Writes sent, and writes settled, in this run (settled in the order they start).
    writes_sent: u64,
    writes_settled: u64,
    /// Imports Brevo accepted and has not confirmed.
    pending: Vec<PendingImport>,
    /// Links of confirmed imports, and record errors of a backfill's pages, being written by tasks
    /// beside the persons loop, one at a time (`recorder`); each with the first checkpoint it
    /// holds back (numbered by the writes sent before it, as `unsaved_checkpoints`).
    recording: VecDeque<(u64, tokio::task::JoinHandle<Result<(), Stop>>)>,
    /// One turn at a time: more slowed the loop's lookups, and two at a time after the last
    /// page held twice the links in memory (a backfill peaked at 198 MiB against 180).
    recorder: Arc<tokio::sync::Semaphore>,
    /// Whether persons had links when this step started (see `sync_persons`).
    persons_linked: bool,
    /// Whether the persons step has read its last page.
    persons_read: bool,
    /// Whether imports have their links recorded while Brevo processes them, not once it
    /// confirmed them: in a backfill that found no person linked (see `record_links_ahead`).
    links_ahead: bool,
    /// When the progress was last recorded, and the report on its way (see `report`).
    last_report: Option<Instant>,
    reporting: Option<tokio::task::JoinHandle<()>>,
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
    /// The write it came from, numbered as `writes_sent` counts them.
    write: u64,
    /// Its row in `sync_imports`: imports an earlier version of the engine saved there.
    saved: Option<i64>,
    /// Its links being recorded ahead of Brevo's answer (`Engine::links_ahead`): the task, which
    /// gives the note that tells whose links they are.
    ahead: Option<AbortOnDrop<Result<i64, Stop>>>,
}

/// Writes on their way to Brevo, at most (an import holds up to `Bulk::import_rows` rows, about
/// 2 MB). Groups come due together (they wait at most `Bulk::hold_pages`), so this is about as many as
/// a backfill has groups: the persons loop goes on while Brevo's limiter spaces them out.
const MAX_INFLIGHT: usize = 12;

/// Seconds per kind of work, for the log line that tells where a run's time went.
#[derive(Default)]
struct Spent(BTreeMap<&'static str, Duration>);

impl Spent {
    fn add(&mut self, what: &'static str, since: Instant) {
        *self.0.entry(what).or_default() += since.elapsed();
    }
}

impl std::fmt::Display for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, d)| format!("{k} {:.1} s", d.as_secs_f64())).collect();
        f.write_str(&parts.join(", "))
    }
}

fn hash(v: &Value) -> String {
    format!("{:x}", Sha256::digest(serde_json::to_vec(v).unwrap_or_default()))
}

fn parse_time(t: Option<&str>) -> Option<OffsetDateTime> {
    let t = t?;
    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .or_else(|| time::PrimitiveDateTime::parse(t, time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).ok().map(|p| p.assume_utc()))
}

/// A progress report that fails is logged and left: the next one carries the same counts.
async fn record_progress(pool: &PgPool, run: i64, p: store::Progress) {
    if let Err(e) = store::progress(pool, run, &p).await {
        tracing::warn!(error = %e, "could not record the run's progress");
    }
}

/// Pages read ahead of the loop that works on them.
type Pages<T> = mpsc::Receiver<Result<crate::pipedrive::client::Page<T>, PipedriveError>>;
/// A poll of Brevo's processes on its way, with the imports (process ids) it answers for.
type Poll = (HashSet<i64>, AbortOnDrop<Result<Vec<crate::brevo::api::Process>, BrevoError>>);

/// A stream of pages, fetched `ahead` pages ahead by its own task while the caller writes the
/// last one.
fn prefetch<T: Send + 'static, E: Send + 'static>(stream: impl Stream<Item = Result<T, E>> + Send + 'static, ahead: usize) -> mpsc::Receiver<Result<T, E>> {
    let (tx, rx) = mpsc::channel(ahead);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(page) = stream.next().await {
            let stop = page.is_err();
            if tx.send(page).await.is_err() || stop {
                return;
            }
        }
    });
    rx
}

impl<'s> Engine<'s> {
    async fn prepare(s: &'s Services, tenant: TenantId, run: i64, mode: Mode, checkpoints: HashMap<String, Checkpoint>, started: OffsetDateTime) -> Result<Engine<'s>, Stop> {
        let member = Member::worker(tenant);
        let pool = &s.pool;
        let Some((version, yaml)) = crate::mapping::store::current(pool, &member).await? else {
            return Err(Stop::Fatal("No mapping is saved yet: save one on the Mappings page, then sync.".into()));
        };
        let mapping = MappingConfig::from_yaml(&yaml).map_err(|e| Stop::Fatal(format!("The saved mapping does not read: {}", e.message)))?;
        let pd = connections::pipedrive_client(pool, &s.key, &s.providers, &member, &s.limits)
            .await?
            .ok_or_else(|| Stop::Fatal("Pipedrive is not connected: connect it on the Connections page.".into()))?;
        let brevo = connections::brevo_api(pool, &s.key, &member, &s.limits)
            .await?
            .ok_or_else(|| Stop::Fatal("Brevo is not connected: add its API key on the Connections page.".into()))?;
        // A restarted process starts the company's daily budget from what runs recorded today.
        if let Some(base) = connections::pipedrive_api_base(pool, tenant).await? {
            let budget = s.limits.budget(&base);
            if budget.spent_today(OffsetDateTime::now_utc()) == 0 {
                let spent = store::tokens_spent_today(pool, &base).await?;
                budget.preload(spent.max(0) as u64, OffsetDateTime::now_utc());
            }
        }
        let cached = s.catalogs.lock().unwrap_or_else(|e| e.into_inner()).get(&tenant).filter(|(at, v, _)| at.elapsed() < CATALOG_TTL && *v == version).map(|(_, _, c)| c.clone());
        let cat = match cached {
            Some(c) => c,
            None => {
                let c = Arc::new(load_catalogue(&pd, &brevo).await?);
                s.catalogs.lock().unwrap_or_else(|e| e.into_inner()).insert(tenant, (Instant::now(), version, c.clone()));
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
            return Err(Stop::Fatal(format!("The mapping no longer fits the connected accounts: {}", problems.join(" "))));
        }
        let sw = mapping.connectors.pipedrive.sync;
        let mut steps = vec!["prepare"];
        if sw.organizations {
            steps.push("organizations");
        }
        if sw.deals {
            steps.push("deals");
        }
        if sw.leads {
            steps.push("leads");
        }
        if sw.persons {
            steps.push("persons");
        }
        if mode == Mode::Incremental && sw.persons {
            steps.extend(["deletions", "related persons"]);
        }
        if sw.activities {
            steps.push("activities");
        }
        steps.push("events");
        if sw.organizations {
            steps.push("companies");
        }
        Ok(Engine {
            s,
            pool,
            tenant,
            run,
            mode,
            pd,
            brevo,
            mapping,
            cat,
            checkpoints,
            started,
            counts: Counts::new(),
            base_tokens: 0,
            base_calls: 0,
            steps,
            step: 0,
            dirty: BTreeSet::new(),
            done: HashSet::new(),
            seen_emails: HashMap::new(),
            claimed: HashMap::new(),
            events: Vec::new(),
            retry_persons: Vec::new(),
            force_deletions: false,
            notes: Vec::new(),
            bulk: BTreeMap::new(),
            held: VecDeque::new(),
            backfill_pages: 0,
            spent: Spent::default(),
            inflight: VecDeque::new(),
            unsaved_checkpoints: VecDeque::new(),
            writes_sent: 0,
            writes_settled: 0,
            pending: Vec::new(),
            recording: VecDeque::new(),
            recorder: Arc::new(tokio::sync::Semaphore::new(1)),
            last_poll: None,
            polls: 0,
            polling: None,
            last_report: None,
            reporting: None,
            persons_linked: true,
            persons_read: false,
            links_ahead: false,
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

    fn count(&mut self, entity: &str) -> &mut EntityCounts {
        self.counts.entry(entity.to_owned()).or_default()
    }

    /// Records the run's progress, at most every `REPORT_EVERY` (a page takes a few milliseconds),
    /// by a task beside the loop: the loop does not wait for the database.
    async fn report(&mut self) {
        let idle = self.reporting.as_ref().is_none_or(|task| task.is_finished());
        if idle && self.last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            self.last_report = Some(Instant::now());
            let (pool, run, p) = (self.pool.clone(), self.run, self.progress());
            self.reporting = Some(tokio::spawn(async move { record_progress(&pool, run, p).await }.in_current_span()));
        }
    }

    /// Records the run's progress now, after any report still on its way (which must not land
    /// after this one).
    async fn report_now(&mut self) {
        if let Some(task) = self.reporting.take() {
            let _ = task.await;
        }
        self.last_report = Some(Instant::now());
        record_progress(self.pool, self.run, self.progress()).await;
    }

    fn progress(&self) -> store::Progress {
        store::Progress {
            phase: self.steps.get(self.step).copied().unwrap_or("finishing"),
            steps_done: self.step as i32,
            steps_total: self.steps.len() as i32,
            counts: self.counts.clone(),
            pipedrive_tokens: self.base_tokens + self.pd.tokens_spent(),
            brevo_calls: self.base_calls + self.brevo.calls(),
        }
    }

    fn summary(&self) -> Option<String> {
        (!self.notes.is_empty()).then(|| self.notes.join(" "))
    }

    async fn execute(&mut self) -> Result<(), Stop> {
        // Attributes the mapping needs and Brevo lacks: created while organizations, deals and
        // leads are read, ready before the first contact is written.
        let mut attributes = self.start_attributes();
        if self.mode == Mode::Backfill {
            // What changes while the backfill runs is for the first incremental run to see.
            for entity in ["deletions", "activity"] {
                if !self.checkpoints.contains_key(entity) {
                    let cp = self.checkpoint(entity);
                    store::save_checkpoint(self.pool, self.tenant, entity, &cp).await?;
                }
            }
        }
        // Links an attempt that stopped recorded ahead of imports Brevo had not confirmed: their
        // persons are written again (the pages they came from are read again: their checkpoint
        // waited for the imports).
        let undone = store::undo_links_ahead(self.pool, self.tenant, None).await?;
        if undone > 0 {
            tracing::info!(links = undone, "deleted the links an earlier attempt recorded ahead of unconfirmed imports");
        }
        // Imports an earlier version of the engine saved, and nobody confirmed yet.
        for (id, process_id, lists, rows) in store::pending_imports(self.pool, self.tenant).await? {
            let rows = serde_json::from_value::<Vec<Row>>(rows).unwrap_or_default();
            for row in &rows {
                self.claimed.entry(row.email.clone()).or_insert(row.person_id);
            }
            // Saved before imports recorded their lists: they targeted the all-contacts list.
            let lists = lists.unwrap_or_else(|| self.mapping.connectors.pipedrive.lists.all_contacts.into_iter().collect());
            self.pending.push(PendingImport { process_id, companions: Vec::new(), lists, rows, write: 0, saved: Some(id), ahead: None });
        }
        if !self.retry_persons.is_empty() {
            self.finish_attributes(attributes.take()).await?;
            let ids = std::mem::take(&mut self.retry_persons);
            self.persons_by_id(&ids).await?;
        }
        for i in 1..self.steps.len() {
            self.step = i;
            self.report_now().await;
            if !matches!(self.steps[i], "organizations" | "deals" | "leads") {
                self.finish_attributes(attributes.take()).await?;
            }
            // The persons' lookups by person need statistics that count the deals' links: taken
            // beside the leads (whose links are looked up by id), waited for when the persons
            // begin. (Taken then, they left Pipedrive's reader idle for a tenth of a second.)
            if self.mode == Mode::Backfill && self.steps[i] == "leads" {
                let pool = self.pool.clone();
                self.statistics = Some(AbortOnDrop(tokio::spawn(async move { store::analyze_links(&pool).await }.in_current_span())));
            }
            if self.mode == Mode::Backfill && self.steps[i] == "persons" {
                let t = Instant::now();
                match self.statistics.take() {
                    Some(mut task) => (&mut task.0).await.map_err(|e| Stop::Retry(format!("refreshing the links' statistics was interrupted: {e}")))??,
                    None => store::analyze_links(self.pool).await?,
                }
                self.spent.add("database: statistics", t);
            }
            if self.steps[i] == "deals" {
                self.company_contacts_task = self.start_company_contacts();
            }
            self.read_ahead(i);
            match self.steps[i] {
                "organizations" => self.organizations().await?,
                "deals" => self.deals().await?,
                "leads" => self.leads().await?,
                "persons" => self.persons().await?,
                "deletions" => self.deletions().await?,
                "related persons" => self.related_persons().await?,
                "activities" => self.activities().await?,
                "events" => self.send_events().await?,
                "companies" => self.companies().await?,
                _ => {}
            }
            self.saved().await?;
        }
        self.finish_attributes(attributes.take()).await?;
        self.step = self.steps.len();
        Ok(())
    }

    /// Starts creating the attributes the mapping needs and Brevo lacks, in a task of its own
    /// (or, when `options.create_missing_attributes` is off, notes them in the run's message).
    fn start_attributes(&mut self) -> Option<tokio::task::JoinHandle<Result<Vec<AttributeInfo>, Stop>>> {
        let missing: Vec<(String, &'static str)> = self
            .mapping
            .person_mapping
            .iter()
            .filter(|(path, attribute)| *path != "email" && !self.cat.catalog.attributes.iter().any(|a| &a.name == *attribute))
            .map(|(path, attribute)| {
                let field = path.strip_prefix("custom_fields.").and_then(|n| validate::custom_field(&self.cat.catalog, n));
                (attribute.clone(), validate::expected_kind(path, field).unwrap_or("text"))
            })
            .collect();
        if missing.is_empty() {
            return None;
        }
        if !self.mapping.options.create_missing_attributes {
            self.notes.push(format!(
                "Brevo has no attribute {}: Brevo drops their values (create them in Brevo, or turn options.create_missing_attributes on).",
                missing.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ")
            ));
            return None;
        }
        let brevo = self.brevo.clone();
        Some(tokio::spawn(
            async move {
                let mut created = Vec::new();
                for (name, kind) in missing {
                    match brevo.create_attribute(&name, kind).await {
                        Ok(()) => {}
                        // Created meanwhile (by someone else, or by an earlier attempt of this
                        // run that stopped before the catalog learnt it): Brevo answers 400
                        // `duplicate_parameter`.
                        Err(BrevoError::Duplicate { .. }) => {}
                        Err(BrevoError::Rejected { status: 400, message }) if message.to_lowercase().contains("already") => {}
                        Err(e) => return Err(e.into()),
                    }
                    created.push(AttributeInfo { name, kind: kind.into() });
                }
                Ok(created)
            }
            .in_current_span(),
        ))
    }

    /// Waits for the attributes `start_attributes` creates, and has the catalog learn them.
    async fn finish_attributes(&mut self, task: Option<tokio::task::JoinHandle<Result<Vec<AttributeInfo>, Stop>>>) -> Result<(), Stop> {
        let Some(task) = task else { return Ok(()) };
        let t = Instant::now();
        let created = task.await.map_err(|e| Stop::Retry(format!("creating the Brevo attributes was interrupted: {e}")))??;
        self.spent.add("waiting for attributes", t);
        if !created.is_empty() {
            tracing::info!(count = created.len(), "created the Brevo attributes the mapping needs");
            self.notes.push(format!("Created Brevo attributes: {}.", created.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")));
            let mut cat = Catalogue { catalog: self.cat.catalog.clone(), options: self.cat.options.clone(), stage_names: self.cat.stage_names.clone() };
            cat.catalog.attributes.extend(created);
            self.cat = Arc::new(cat);
            // The cached catalog learns the new attributes (no need to read it all again).
            if let Some(entry) = self.s.catalogs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&self.tenant) {
                entry.2 = self.cat.clone();
            }
        }
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
        let next = self.steps.get(step + 1..).unwrap_or_default();
        match self.steps[step] {
            "organizations" if next.contains(&"deals") && self.deals_ahead.is_none() => {
                self.deals_ahead = self.query("deal").map(|(q, c)| prefetch(self.pd.list_from::<Deal>("/api/v2/deals", q, c), PAGES_AHEAD));
            }
            "deals" if next.contains(&"persons") && self.persons_ahead.is_none() => {
                self.persons_ahead = self.query("person").map(|(q, c)| prefetch(self.pd.list_from::<Person>("/api/v2/persons", q, c), PERSON_PAGES_AHEAD));
            }
            _ => {}
        }
    }

    /// The checkpoint of an entity; a backfill that starts records its start as where the
    /// incremental runs after it begin.
    fn checkpoint(&mut self, entity: &str) -> Checkpoint {
        let started = self.started;
        self.checkpoints.entry(entity.to_owned()).or_insert_with(|| Checkpoint { since: Some(started), ..Default::default() }).clone()
    }

    /// The list query and start cursor for an entity, or `None` when its backfill is done and this
    /// run is still a backfill (of the other entities).
    fn query(&mut self, entity: &str) -> Option<(ListQuery, Option<String>)> {
        let cp = self.checkpoint(entity);
        match self.mode {
            Mode::Backfill if cp.backfill_done => None,
            Mode::Backfill => Some((ListQuery { limit: Some(PAGE), ..Default::default() }, cp.backfill_cursor)),
            Mode::Incremental => Some((
                ListQuery { limit: Some(PAGE), updated_since: cp.since.map(|s| s - OVERLAP), sort_by_update_time: true, ..Default::default() },
                None,
            )),
        }
    }

    /// The checkpoint after a page: the next cursor (backfill) or the latest update time seen.
    fn advance(&mut self, entity: &str, next_cursor: Option<String>, latest: Option<OffsetDateTime>) -> Checkpoint {
        let mode = self.mode;
        let cp = self.checkpoints.entry(entity.to_owned()).or_default();
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

    /// Records a page's links and its checkpoint together, by a task beside the loop (one at a
    /// time, in order), so that the next page is worked on while the database writes this one.
    async fn save_page(&mut self, entity: &'static str, links: Vec<Link>, cp: Checkpoint) -> Result<(), Stop> {
        self.page_read().await?;
        self.saved().await?;
        let (pool, tenant) = (self.pool.clone(), self.tenant);
        self.saving = Some(AbortOnDrop(tokio::spawn(
            async move {
                let mut tx = pool.begin().await?;
                store::relaxed_commit(&mut tx).await?;
                store::upsert_links(&mut *tx, tenant, &links).await?;
                store::save_checkpoint(&mut *tx, tenant, entity, &cp).await?;
                tx.commit().await?;
                Ok(())
            }
            .in_current_span(),
        )));
        self.report().await;
        Ok(())
    }

    /// Waits for the page `save_page` is recording (every step that saves pages ends with it).
    async fn saved(&mut self) -> Result<(), Stop> {
        if let Some(mut task) = self.saving.take() {
            let t = Instant::now();
            (&mut task.0).await.map_err(|e| Stop::Retry(format!("recording a page was interrupted: {e}")))??;
            self.spent.add("database: pages", t);
        }
        Ok(())
    }

    /// Whether a step must look up what the links know of its records: not in a backfill that
    /// found none of them linked (every record then is new).
    async fn linked(&self, entity: &str) -> Result<bool, Stop> {
        Ok(self.mode == Mode::Incremental || store::has_links(self.pool, self.tenant, entity).await?)
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

    fn rule(&self, action: &str, object: &str) -> Option<String> {
        self.mapping.webhooks.iter().find(|r| r.event_action == action && r.event_object == object).map(|r| r.brevo_event.clone())
    }

    /// Events are sent for changes seen by incremental runs, and by a backfill only for what
    /// happened in the last `backfill_event_days` days.
    fn events_for(&self, when: Option<OffsetDateTime>) -> bool {
        match self.mode {
            Mode::Incremental => true,
            Mode::Backfill => {
                let days = self.mapping.options.backfill_event_days;
                days > 0 && when.is_some_and(|t| t >= self.started - time::Duration::days(i64::from(days)))
            }
        }
    }

    // --- organizations ---------------------------------------------------------------------

    async fn organizations(&mut self) -> Result<(), Stop> {
        let Some((query, cursor)) = self.query("organization") else { return Ok(()) };
        let linked = self.linked("organization").await?;
        let mut pages = prefetch(self.pd.list_from::<Organization>("/api/v2/organizations", query, cursor), PAGES_AHEAD);
        while let Some(page) = pages.recv().await {
            let page = page?;
            let ids: Vec<String> = page.items.iter().map(|o| o.id.to_string()).collect();
            // (A page whose links are still being recorded may hold some of these records.)
            let existing = if linked {
                self.saved().await?;
                store::links(self.pool, self.tenant, "organization", &ids).await?
            } else {
                HashMap::new()
            };
            let mut links = Vec::new();
            let mut latest = None;
            for org in &page.items {
                self.count("organization").read += 1;
                latest = latest.max(parse_time(org.update_time.as_deref()));
                let content = hash(&json!({"name": org.name}));
                let prev = existing.get(&org.id.to_string());
                if prev.and_then(|p| p.content_hash.as_deref()) == Some(content.as_str()) {
                    self.count("organization").unchanged += 1;
                    continue;
                }
                match prev {
                    Some(_) => {
                        self.count("organization").updated += 1;
                        // COMPANY changes on every contact of the organization.
                        self.dirty.extend(store::persons_of_org(self.pool, self.tenant, org.id as i64).await?);
                    }
                    None => self.count("organization").created += 1,
                }
                let mut facts = prev.map(|p| p.facts.clone()).filter(Value::is_object).unwrap_or_else(|| json!({}));
                facts["name"] = json!(org.name);
                links.push(Link {
                    entity: "organization".into(),
                    pipedrive_id: org.id.to_string(),
                    brevo_ref: prev.and_then(|p| p.brevo_ref.clone()),
                    content_hash: Some(content),
                    facts,
                    ..Default::default()
                });
            }
            let cp = self.advance("organization", page.next_cursor, latest);
            self.save_page("organization", links, cp).await?;
        }
        Ok(())
    }

    // --- deals -----------------------------------------------------------------------------

    fn stage_label(&self, status: &str, stage: Option<u64>) -> String {
        match status {
            "won" | "lost" => status.to_owned(),
            _ => stage.and_then(|s| self.cat.stage_names.get(&s).cloned()).unwrap_or_default(),
        }
    }

    async fn deals(&mut self) -> Result<(), Stop> {
        let Some((query, cursor)) = self.query("deal") else { return Ok(()) };
        let linked = self.linked("deal").await?;
        let mut pages = match self.deals_ahead.take() {
            Some(pages) => pages,
            None => prefetch(self.pd.list_from::<Deal>("/api/v2/deals", query, cursor), PAGES_AHEAD),
        };
        while let Some(page) = pages.recv().await {
            let page = page?;
            let ids: Vec<String> = page.items.iter().map(|d| d.id.to_string()).collect();
            // (A page whose links are still being recorded may hold some of these records.)
            let existing = if linked {
                self.saved().await?;
                store::links(self.pool, self.tenant, "deal", &ids).await?
            } else {
                HashMap::new()
            };
            let mut links = Vec::new();
            let mut latest = None;
            for d in &page.items {
                self.count("deal").read += 1;
                let updated = parse_time(d.update_time.as_deref());
                latest = latest.max(updated);
                let facts = json!({
                    "status": d.status, "value": d.value.unwrap_or(0.0), "stage_id": d.stage_id, "pipeline_id": d.pipeline_id,
                    "title": d.title, "currency": d.currency,
                });
                let content = hash(&json!([facts, d.person_id]));
                let prev = existing.get(&d.id.to_string());
                if prev.and_then(|p| p.content_hash.as_deref()) == Some(content.as_str()) {
                    self.count("deal").unchanged += 1;
                    continue;
                }
                if prev.is_some() { self.count("deal").updated += 1 } else { self.count("deal").created += 1 }
                self.dirty.extend(prev.and_then(|p| p.person_id));
                self.dirty.extend(d.person_id.map(|p| p as i64));
                if let Some(person) = d.person_id.filter(|_| self.events_for(updated)) {
                    let stage = self.stage_label(&d.status, d.stage_id);
                    let base = json!({"dealId": d.id, "dealTitle": d.title, "value": d.value, "currency": d.currency, "personId": person,
                                      "stage": stage, "status": d.status});
                    let props = |extra: Value| {
                        let mut m = base.as_object().cloned().unwrap_or_default();
                        m.extend(extra.as_object().cloned().unwrap_or_default());
                        m
                    };
                    let rule = if prev.is_none() { self.rule("added", "deal") } else { self.rule("updated", "deal") };
                    let mut new_events = Vec::new();
                    if let Some(name) = rule {
                        new_events.push(PendingEvent { name, person_id: person as i64, properties: props(json!({})) });
                    }
                    if let Some(p) = prev {
                        let (old_status, old_stage) = (p.facts["status"].as_str().unwrap_or("open").to_owned(), p.facts["stage_id"].as_u64());
                        if old_status != d.status || old_stage != d.stage_id {
                            let extra = json!({"previousStage": self.stage_label(&old_status, old_stage), "newStage": stage});
                            new_events.push(PendingEvent { name: STAGE_CHANGED.into(), person_id: person as i64, properties: props(extra) });
                        }
                    }
                    self.events.extend(new_events);
                }
                links.push(Link {
                    entity: "deal".into(),
                    pipedrive_id: d.id.to_string(),
                    person_id: d.person_id.map(|p| p as i64),
                    org_id: d.org_id.map(|o| o as i64),
                    content_hash: Some(content),
                    facts,
                    ..Default::default()
                });
            }
            let cp = self.advance("deal", page.next_cursor, latest);
            self.save_page("deal", links, cp).await?;
        }
        Ok(())
    }

    // --- leads -----------------------------------------------------------------------------

    /// Leads (v1, offset pages, no `updated_since`): all of them in a backfill, then at most hourly.
    async fn leads(&mut self) -> Result<(), Stop> {
        let cp = self.checkpoint("lead");
        let mut start: u64 = match self.mode {
            Mode::Backfill if cp.backfill_done => return Ok(()),
            Mode::Backfill => cp.backfill_cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0),
            Mode::Incremental if cp.since.is_some_and(|s| s > self.started - LEADS_EVERY) => return Ok(()),
            Mode::Incremental => 0,
        };
        let full_scan = start == 0;
        let linked = self.linked("lead").await?;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let (leads, next) = self.pd.leads(start, u64::from(PAGE)).await?;
            let ids: Vec<String> = leads.iter().map(|l| l.id.clone()).collect();
            // (A page whose links are still being recorded may hold some of these records.)
            let existing = if linked {
                self.saved().await?;
                store::links(self.pool, self.tenant, "lead", &ids).await?
            } else {
                HashMap::new()
            };
            let mut links = Vec::new();
            for lead in &leads {
                self.count("lead").read += 1;
                seen.push(lead.id.clone());
                let content = hash(&json!([lead.person_id, lead.is_archived]));
                let prev = existing.get(&lead.id);
                if prev.and_then(|p| p.content_hash.as_deref()) == Some(content.as_str()) {
                    self.count("lead").unchanged += 1;
                    continue;
                }
                if prev.is_some() { self.count("lead").updated += 1 } else { self.count("lead").created += 1 }
                self.dirty.extend(prev.and_then(|p| p.person_id));
                self.dirty.extend(lead.person_id.map(|p| p as i64));
                links.push(Link {
                    entity: "lead".into(),
                    pipedrive_id: lead.id.clone(),
                    person_id: lead.person_id.map(|p| p as i64),
                    content_hash: Some(content),
                    facts: json!({"archived": lead.is_archived, "title": lead.title}),
                    ..Default::default()
                });
            }
            let mut cp = self.checkpoints.get("lead").cloned().unwrap_or_default();
            match self.mode {
                Mode::Backfill => {
                    cp.backfill_cursor = next.map(|n| n.to_string());
                    cp.backfill_done = next.is_none();
                }
                Mode::Incremental => {
                    if next.is_none() {
                        cp.since = Some(self.started);
                    }
                }
            }
            self.checkpoints.insert("lead".into(), cp.clone());
            self.save_page("lead", links, cp).await?;
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
        if full_scan && self.mode == Mode::Incremental {
            // Leads no longer listed were deleted or converted: their persons leave the nurture list.
            let gone: Vec<(String, Option<i64>)> = sqlx::query_as(
                "delete from record_links l where l.tenant_id = $1 and l.entity = 'lead'
                 and not exists (select 1 from unnest($2::text[]) as s(id) where s.id = l.pipedrive_id)
                 returning l.pipedrive_id, l.person_id",
            )
            .bind(self.tenant)
            .bind(&seen)
            .fetch_all(self.pool)
            .await?;
            for (_, person) in gone {
                self.count("lead").deleted += 1;
                self.dirty.extend(person);
            }
        }
        Ok(())
    }

    // --- persons ---------------------------------------------------------------------------

    async fn persons(&mut self) -> Result<(), Stop> {
        let Some((query, cursor)) = self.query("person") else { return Ok(()) };
        // Beside the loop, one task reads the pages (they queue, so Pipedrive's limiter is never
        // idle; in a backfill it started during the deals), and tasks look up each page's deals,
        // leads and organizations and draft its contacts (`drafts`), two pages at a time.
        let (mapping, cat, pool, tenant) = (Arc::new(self.mapping.clone()), self.cat.clone(), self.pool.clone(), self.tenant);
        let read = match self.persons_ahead.take() {
            Some(pages) => pages,
            None => prefetch(self.pd.list_from::<Person>("/api/v2/persons", query, cursor), PERSON_PAGES_AHEAD),
        };
        let read = futures_util::stream::unfold(read, |mut pages| async move { pages.recv().await.map(|page| (page, pages)) });
        let pages = read
            .map(move |page| {
                let (mapping, cat, pool) = (mapping.clone(), cat.clone(), pool.clone());
                let work = async move {
                    let page = page?;
                    let known = known(&pool, tenant, &page.items).await?;
                    // CPU work (phone numbers, hashes) on a blocking thread: on the runtime's
                    // workers it would hold up the requests on their way, Pipedrive's included.
                    let cpu = move || {
                        let mut prepared = prepare(&page.items, &mapping, &cat);
                        let drafts = drafts(&page.items, &mut prepared, &known, &mapping);
                        (page, (prepared, drafts))
                    };
                    tokio::task::spawn_blocking(cpu).await.map_err(|e| Stop::Retry(format!("preparing a page of persons was interrupted: {e}")))
                };
                // Each page in a task of its own, so that two are worked on at once (the stream
                // keeps their order); dropped, the task stops.
                let mut task = AbortOnDrop(tokio::spawn(work.in_current_span()));
                async move { (&mut task.0).await.map_err(|e| Stop::Retry(format!("preparing a page of persons was interrupted: {e}")))? }
            })
            .buffered(PREPARING);
        let mut stream = prefetch(pages, 2);
        if self.mode == Mode::Backfill {
            self.persons_linked = store::has_links(self.pool, self.tenant, "person").await?;
            self.links_ahead = !self.persons_linked;
        }
        loop {
            let t = Instant::now();
            let Some(page) = stream.recv().await else { break };
            self.spent.add("waiting for Pipedrive", t);
            let (page, prepared) = page?;
            self.page_read().await?;
            let latest = page.items.iter().filter_map(|p| parse_time(p.update_time.as_deref())).max();
            let cp = self.advance("person", page.next_cursor.clone(), latest);
            self.sync_persons(page.items, Some(prepared), Some(cp)).await?;
            if self.mode == Mode::Backfill {
                self.confirm_imports(false).await?;
            }
            let t = Instant::now();
            self.report().await;
            self.spent.add("progress", t);
        }
        self.persons_read = true;
        let t = Instant::now();
        self.write_later().await?;
        self.flush_all().await?;
        let s = Instant::now();
        self.settle_writes(true).await?;
        self.spent.add("(end) sending the last writes", s);
        let s = Instant::now();
        self.confirm_imports(true).await?;
        self.spent.add("(end) Brevo's imports", s);
        let s = Instant::now();
        self.settle_recording(true).await?;
        self.save_ready_checkpoint().await?;
        self.spent.add("(end) recording", s);
        self.spent.add("(after the last persons page)", t);
        self.links_ahead = false;
        Ok(())
    }

    /// Persons named by id (a retry of failed records).
    async fn persons_by_id(&mut self, ids: &[i64]) -> Result<(), Stop> {
        for chunk in ids.chunks(100) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let query = ListQuery { limit: Some(100), extra: vec![("ids".into(), list)], ..Default::default() };
            let mut pages = prefetch(self.pd.list_from::<Person>("/api/v2/persons", query, None), 1);
            let mut found = HashSet::new();
            while let Some(page) = pages.recv().await {
                let page = page?;
                found.extend(page.items.iter().map(|p| p.id as i64));
                self.sync_persons(page.items, None, None).await?;
            }
            // Persons that are gone: nothing to retry.
            let gone: Vec<String> = chunk.iter().filter(|id| !found.contains(id)).map(i64::to_string).collect();
            store::resolve_errors(self.pool, self.tenant, "person", &gone).await?;
        }
        Ok(())
    }

    /// Decides what each person becomes in Brevo and writes what changed; saves `checkpoint` with
    /// the page's links (or its pending import).
    async fn sync_persons(&mut self, persons: Vec<Person>, ahead: Option<(Vec<Prepared>, Vec<Option<Draft>>)>, checkpoint: Option<Checkpoint>) -> Result<(), Stop> {
        let t = Instant::now();
        let (prepared, drafts) = match ahead {
            Some(ahead) => ahead,
            None => {
                let mut prepared = prepare(&persons, &self.mapping, &self.cat);
                let known = known(self.pool, self.tenant, &persons).await?;
                let drafts = drafts(&persons, &mut prepared, &known, &self.mapping);
                (prepared, drafts)
            }
        };
        let mut rows = Vec::new();
        let mut deleted = Vec::new();
        // Who already holds each email in Brevo.
        let mut emails: Vec<String> = Vec::new();
        for (p, out) in persons.iter().zip(&prepared) {
            self.count("person").read += 1;
            self.done.insert(p.id as i64);
            self.dirty.remove(&(p.id as i64));
            for e in p.emails.iter().filter_map(|e| crate::domain::Email::parse(&e.value).ok()) {
                self.seen_emails.entry(e.as_str().to_owned()).or_insert(p.id as i64);
            }
            match out {
                None => deleted.push(p.id as i64),
                Some(Ok(o)) => emails.push(o.email.as_str().to_owned()),
                Some(Err(_)) => {}
            }
        }
        self.spent.add("transform", t);
        // What the links know of these persons, and who holds their emails (their deals, leads and
        // organizations are in `known`).
        let t = Instant::now();
        let id_texts: Vec<String> = persons.iter().map(|p| p.id.to_string()).collect();
        let (pool, tenant) = (self.pool, self.tenant);
        // A backfill that found no person linked when it started has nothing to look up by
        // person or by email: every person comes once, and `claimed` knows this run's emails.
        let (existing, owners) = match self.persons_linked {
            true => tokio::try_join!(store::links(pool, tenant, "person", &id_texts), store::persons_by_email(pool, tenant, &emails))?,
            false => (HashMap::new(), HashMap::new()),
        };
        self.spent.add("database: lookups", t);
        let t = Instant::now();
        let mut errors = Vec::new();
        for ((p, out), draft) in persons.iter().zip(prepared).zip(drafts) {
            let Some(out) = out else { continue };
            let pid = p.id as i64;
            let out = match out {
                Ok(o) => o,
                Err(Skip::NoValidEmail) => {
                    self.count("person").skipped += 1;
                    let payload = json!({"name": p.name, "emails": p.emails.iter().map(|e| &e.value).collect::<Vec<_>>()});
                    errors.push(RecordError {
                        id: pid.to_string(),
                        reason: "No valid email address: the person stays out of Brevo until one is added in Pipedrive.".into(),
                        payload,
                    });
                    continue;
                }
            };
            let email = out.email.as_str().to_owned();
            let owner = owners.get(&email).and_then(|o| o.parse::<i64>().ok()).or_else(|| self.claimed.get(&email).copied());
            if let Some(owner) = owner.filter(|o| *o != pid) {
                self.count("person").skipped += 1;
                errors.push(RecordError {
                    id: pid.to_string(),
                    reason: format!("The email {email} is also on Pipedrive person #{owner}, which is synced to that Brevo contact: give this person its own email, or merge the two in Pipedrive."),
                    payload: json!({"name": p.name, "email": email}),
                });
                continue;
            }
            self.claimed.insert(email.clone(), pid);
            let prev = existing.get(&pid.to_string());
            let mut issues = Vec::new();
            for issue in &out.issues {
                issues.push(match issue {
                    Issue::InvalidPhone(raw) => format!(
                        "The phone {raw:?} is not a valid number{}: the contact was synced without SMS.",
                        self.mapping.options.default_country.as_deref().map(|c| format!(" (default country {c})")).unwrap_or_default()
                    ),
                    Issue::UnreadableValue { field } => format!("The value of {field} could not be read as its type: left out."),
                });
            }
            if !issues.is_empty() {
                errors.push(RecordError { id: pid.to_string(), reason: issues.join(" "), payload: json!({"name": p.name, "email": email}) });
            }
            let Some(draft) = draft else { continue };
            let row = row(pid, email, draft, p.org_id.map(|o| o as i64), prev, !issues.is_empty());
            match row {
                Some(r) => rows.push(r),
                None => self.count("person").unchanged += 1,
            }
        }
        self.spent.add("transform", t);
        let t = Instant::now();
        if self.mode == Mode::Backfill && checkpoint.is_some() && !errors.is_empty() {
            // Written beside the loop; the page's checkpoint waits for them.
            let (pool, tenant, run, recorder) = (self.pool.clone(), self.tenant, self.run, self.recorder.clone());
            let task = async move {
                let _turn = recorder.acquire().await.map_err(|_| Stop::Retry("the run stopped recording".into()))?;
                Ok(store::record_errors(&pool, tenant, run, "person", &errors).await?)
            };
            self.recording.push_back((self.writes_sent, tokio::spawn(task.in_current_span())));
        } else {
            store::record_errors(self.pool, self.tenant, self.run, "person", &errors).await?;
        }
        self.spent.add("database: record errors", t);
        for id in deleted {
            self.person_deleted(id).await?;
        }
        self.write(rows, checkpoint).await
    }

    /// Writes contacts: a backfill page into its import groups, an incremental page held with the
    /// next ones (`write_later`), anything else at once.
    async fn write(&mut self, rows: Vec<Row>, checkpoint: Option<Checkpoint>) -> Result<(), Stop> {
        // Contacts whose email changed: the old contact leaves our lists.
        // (A backfill that started with no person linked has every row new and no old contact.)
        let moved: Vec<i64> = rows.iter().filter(|r| !r.existed).map(|r| r.person_id).collect();
        if !moved.is_empty() && self.persons_linked {
            let old = store::links(self.pool, self.tenant, "person", &moved.iter().map(i64::to_string).collect::<Vec<_>>()).await?;
            for (l, r) in rows.iter().filter_map(|r| old.get(&r.person_id.to_string()).map(|l| (l, r))) {
                if let Some(old_email) = l.brevo_ref.as_deref().filter(|e| *e != r.email) {
                    for list in lists_of(&l.facts) {
                        self.brevo.remove_from_list(list, &[old_email.to_owned()]).await?;
                    }
                }
            }
        }
        match (self.mode, checkpoint) {
            (Mode::Backfill, Some(cp)) => self.stage(rows, cp).await,
            (Mode::Incremental, Some(cp)) => {
                // A person changed again during the run comes on a later page too: the newer row
                // is the one to write.
                let ids: HashSet<i64> = rows.iter().map(|r| r.person_id).collect();
                self.later.retain(|r| !ids.contains(&r.person_id));
                self.later.extend(rows);
                self.later_checkpoint = Some(cp);
                if self.later.len() >= self.s.bulk.import_rows {
                    self.write_later().await?;
                }
                Ok(())
            }
            (_, None) => self.write_now(rows).await,
        }
    }

    /// Writes the contacts an incremental run held, then saves the checkpoint of their last page.
    async fn write_later(&mut self) -> Result<(), Stop> {
        let rows = std::mem::take(&mut self.later);
        self.write_now(rows).await?;
        if let Some(cp) = self.later_checkpoint.take() {
            store::save_checkpoint(self.pool, self.tenant, "person", &cp).await?;
        }
        Ok(())
    }

    /// Puts a backfill page's rows in their groups, imports the groups that are full (or have
    /// waited long enough), and keeps the newest checkpoint no waiting row depends on.
    async fn stage(&mut self, rows: Vec<Row>, checkpoint: Checkpoint) -> Result<(), Stop> {
        // `page_read` numbered this page (a stage follows each page of a backfill's persons).
        let page = self.backfill_pages;
        self.held.push_back((page, checkpoint));
        for row in rows {
            let bucket = self.bulk.entry(row.lists.clone()).or_insert_with(|| Bucket { rows: Vec::new(), bytes: 0, since: page });
            bucket.bytes += row.email.len() + row.own.len() + row.derived.len() + 32;
            bucket.rows.push(row);
        }
        let Bulk { import_rows, hold_pages, held_rows, .. } = self.s.bulk;
        let due: Vec<Vec<i64>> =
            self.bulk.iter().filter(|(_, b)| b.rows.len() >= import_rows || b.bytes >= IMPORT_BYTES || page - b.since >= hold_pages).map(|(lists, _)| lists.clone()).collect();
        for lists in due {
            self.flush(&lists).await?;
        }
        while self.bulk.values().map(|b| b.rows.len()).sum::<usize>() > held_rows {
            let Some(largest) = self.bulk.iter().max_by_key(|(_, b)| b.rows.len()).map(|(lists, _)| lists.clone()) else { break };
            self.flush(&largest).await?;
        }
        self.release_checkpoint().await
    }

    /// Imports every waiting group (the end of the persons).
    ///
    /// Nothing else overlaps these imports: Brevo's limiter spaces them (9 in any 1.1 s), then
    /// they are processed and recorded. When the groups outnumber their lists (the seed mapping:
    /// ten groups over the all-contacts list and four more), each list beyond those every group
    /// has gets one import instead, with those common lists, of every waiting row in it, and the
    /// rows in the common lists only get one more. A row goes into one import per list it has
    /// beyond the common ones, each creating or updating it with all its attributes, so no
    /// import leaves a contact half-written: five imports leave together where ten took 1.1 s.
    async fn flush_all(&mut self) -> Result<(), Stop> {
        let rows: usize = self.bulk.values().map(|b| b.rows.len()).sum();
        tracing::debug!(groups = self.bulk.len(), rows, "importing the groups still waiting");
        let (single, bulk): (Vec<Vec<i64>>, Vec<Vec<i64>>) = self.bulk.keys().cloned().partition(|lists| self.bulk[lists].rows.len() < BULK_MIN || lists.is_empty());
        for lists in single {
            self.flush(&lists).await?;
        }
        let plan = by_list(&bulk);
        let bytes: usize = self.bulk.values().map(|b| b.bytes).sum();
        if plan.len() < bulk.len() && bytes <= IMPORT_BYTES {
            let rows: Vec<Row> = std::mem::take(&mut self.bulk).into_values().flat_map(|b| b.rows).collect();
            let brevo = self.brevo.clone();
            let all: Vec<i64> = bulk.iter().flatten().copied().collect::<BTreeSet<i64>>().into_iter().collect();
            self.spawn_write(async move {
                let imports = plan.iter().map(|(target, extra)| {
                    let members: Vec<&Row> = rows.iter().filter(|r| takes(target, *extra, &r.lists)).collect();
                    let brevo = &brevo;
                    async move { send_import(brevo, target, members).await }
                });
                let ids = futures_util::future::try_join_all(imports).await?;
                let (first, companions) = ids.split_first().map(|(f, c)| (*f, c.to_vec())).ok_or_else(|| Stop::Retry("no list to import the last groups into".into()))?;
                Ok(Sent::Import(first, companions, all, rows))
            })
            .await?;
        } else {
            for lists in bulk {
                self.flush(&lists).await?;
            }
        }
        self.release_checkpoint().await
    }

    /// One group's rows as one import whose target is their lists; a handful, or rows in no list
    /// (an import needs a target), one by one. Either way by a task, beside the persons loop.
    async fn flush(&mut self, lists: &[i64]) -> Result<(), Stop> {
        let Some(bucket) = self.bulk.remove(lists) else { return Ok(()) };
        tracing::debug!(?lists, rows = bucket.rows.len(), page = self.backfill_pages, "importing a group");
        if bucket.rows.len() < BULK_MIN || lists.is_empty() {
            return self.spawn_one_by_one(bucket.rows).await;
        }
        let (brevo, lists) = (self.brevo.clone(), lists.to_vec());
        self.spawn_write(async move {
            let process_id = send_import(&brevo, &lists, &bucket.rows).await?;
            Ok(Sent::Import(process_id, Vec::new(), lists, bucket.rows))
        })
        .await
    }

    /// Writes contacts one at a time in a task of their own (recorded when it is settled).
    async fn spawn_one_by_one(&mut self, rows: Vec<Row>) -> Result<(), Stop> {
        let (managed, sms) = self.one_by_one_rules();
        let brevo = self.brevo.clone();
        self.spawn_write(async move {
            let (written, stopped) = send_one_by_one(&brevo, &managed, sms.as_deref(), rows).await;
            Ok(Sent::OneByOne(written, stopped))
        })
        .await
    }

    /// Waits for the companies' head start (`start_company_contacts`) to end, and keeps what it
    /// found. Before the first contact write of the persons: the companies' contacts are created
    /// before an import reaches them, so that they are the newest contacts when the head start
    /// reads their ids. (In the bench it ends during the deals: one import, a poll and one
    /// listing, 0.3 s in the sandbox; Brevo may take seconds, and the polls stop at 3.75 s.)
    async fn company_contacts_ready(&mut self) {
        if let Some(mut task) = self.company_contacts_task.take() {
            let t = Instant::now();
            self.company_contacts = (&mut task.0).await.unwrap_or_default();
            self.spent.add("waiting for the companies' contacts", t);
        }
    }

    /// Starts a write task, once fewer than `MAX_INFLIGHT` are on their way.
    async fn spawn_write(&mut self, write: impl Future<Output = Result<Sent, Stop>> + Send + 'static) -> Result<(), Stop> {
        self.company_contacts_ready().await;
        while self.inflight.len() >= MAX_INFLIGHT {
            let t = Instant::now();
            self.settle_one().await?;
            self.spent.add("waiting for Brevo to take writes", t);
        }
        self.inflight.push_back(tokio::spawn(write.in_current_span()));
        self.writes_sent += 1;
        Ok(())
    }

    /// Waits for the oldest write on its way, and takes in what it did.
    async fn settle_one(&mut self) -> Result<(), Stop> {
        let Some(task) = self.inflight.pop_front() else { return Ok(()) };
        let sent = task.await.map_err(|e| Stop::Retry(format!("a write to Brevo was interrupted: {e}")))??;
        let write = self.writes_settled;
        self.writes_settled += 1;
        match sent {
            Sent::Import(process_id, companions, lists, rows) => {
                let ahead = self.links_ahead.then(|| self.record_links_ahead(process_id, &rows));
                self.pending.push(PendingImport { process_id, companions, lists, rows, write, saved: None, ahead });
            }
            Sent::OneByOne(written, stopped) => {
                let t = Instant::now();
                self.record_written(written).await?;
                self.spent.add("recording contacts written one by one", t);
                if let Some(e) = stopped {
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Takes in the writes that are done (`wait`: all of them), then saves the newest checkpoint
    /// whose writes all are.
    async fn settle_writes(&mut self, wait: bool) -> Result<(), Stop> {
        let t = Instant::now();
        while self.inflight.front().is_some_and(|task| wait || task.is_finished()) {
            self.settle_one().await?;
        }
        self.spent.add("waiting for Brevo to take writes", t);
        self.save_ready_checkpoint().await
    }

    /// Saves the newest persons checkpoint whose writes are all settled and whose imports are
    /// all recorded.
    async fn save_ready_checkpoint(&mut self) -> Result<(), Stop> {
        self.settle_recording(false).await?;
        // The first checkpoint an unrecorded import (or record error) holds back: those released
        // after the write it came from.
        let held_from = self.pending.iter().map(|p| p.write + 1).chain(self.recording.iter().map(|(from, _)| *from)).min().unwrap_or(u64::MAX);
        let mut ready = None;
        while self.unsaved_checkpoints.front().is_some_and(|(sent, _)| *sent <= self.writes_settled && *sent < held_from) {
            ready = self.unsaved_checkpoints.pop_front().map(|(_, cp)| cp);
        }
        if let Some(cp) = ready {
            let t = Instant::now();
            store::save_checkpoint(self.pool, self.tenant, "person", &cp).await?;
            self.spent.add("database: checkpoints", t);
        }
        Ok(())
    }

    /// Takes in the link writes that are done (`wait`: all of them).
    async fn settle_recording(&mut self, wait: bool) -> Result<(), Stop> {
        let t = Instant::now();
        while self.recording.front().is_some_and(|(_, task)| wait || task.is_finished()) {
            if let Some((_, task)) = self.recording.pop_front() {
                task.await.map_err(|e| Stop::Retry(format!("recording an import was interrupted: {e}")))??;
            }
        }
        self.spent.add("waiting for imports to be recorded", t);
        Ok(())
    }

    /// Keeps the checkpoint of the last page none of whose rows still waits in `bulk`, to be
    /// saved once the imports sent before it are recorded: a restarted run reads again only the
    /// pages it has not written.
    async fn release_checkpoint(&mut self) -> Result<(), Stop> {
        let oldest_waiting = self.bulk.values().map(|b| b.since).min().unwrap_or(u64::MAX);
        let mut safe = None;
        while self.held.front().is_some_and(|(page, _)| *page < oldest_waiting) {
            safe = self.held.pop_front().map(|(_, cp)| cp);
        }
        if let Some(cp) = safe {
            self.unsaved_checkpoints.push_back((self.writes_sent, cp));
        }
        self.settle_writes(false).await
    }

    /// Writes contacts before returning (an incremental run, a retry). When `Bulk::write_now_rows`
    /// of them can go in imports, each group of at least `BULK_MIN` going to the same lists is one
    /// import, which Brevo confirms before this returns; the rest go one by one meanwhile. A burst
    /// of 1,000 changed persons costs a few imports, not 1,000 calls at Brevo's 10 a second.
    async fn write_now(&mut self, rows: Vec<Row>) -> Result<(), Stop> {
        let groups = by_their_lists(rows);
        let importable = |lists: &Vec<i64>, rows: &Vec<Row>| rows.len() >= BULK_MIN && !lists.is_empty();
        let bulk = groups.iter().filter(|(l, r)| importable(l, r)).map(|(_, r)| r.len()).sum::<usize>() >= self.s.bulk.write_now_rows;
        let mut single = Vec::new();
        let mut imported = false;
        for (lists, mut rows) in groups {
            if !bulk || !importable(&lists, &rows) {
                single.append(&mut rows);
                continue;
            }
            while !rows.is_empty() {
                let rest = rows.split_off(rows.len().min(self.s.bulk.import_rows.max(1)));
                let process_id = send_import(&self.brevo, &lists, &rows).await?;
                self.pending.push(PendingImport { process_id, companions: Vec::new(), lists: lists.clone(), rows, write: self.writes_settled, saved: None, ahead: None });
                imported = true;
                rows = rest;
            }
        }
        self.write_one_by_one(single).await?;
        if imported {
            self.confirm_imports(true).await?;
            self.settle_recording(true).await?;
        }
        Ok(())
    }

    /// What a contact written on its own needs from the mapping: the lists it may leave, and the
    /// attribute that holds the phone (written again without it should Brevo refuse it).
    fn one_by_one_rules(&self) -> (BTreeSet<i64>, Option<String>) {
        (transform::managed_lists(&self.mapping), self.mapping.person_mapping.get("phone").cloned())
    }

    /// Writes contacts one at a time (each can join and leave lists) and records what became of
    /// each.
    async fn write_one_by_one(&mut self, rows: Vec<Row>) -> Result<(), Stop> {
        let (managed, sms) = self.one_by_one_rules();
        let (written, stopped) = send_one_by_one(&self.brevo, &managed, sms.as_deref(), rows).await;
        self.record_written(written).await?;
        match stopped {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Records contacts written one at a time: counts, errors, events, links.
    async fn record_written(&mut self, written: Vec<Written>) -> Result<(), Stop> {
        let mut links = Vec::new();
        let mut resolved = Vec::new();
        let mut errors = Vec::new();
        for Written { row, result, phone_refused } in written {
            errors.extend(phone_refused);
            let brevo_id = match result {
                Ok(Upserted::Created(id)) => {
                    self.took(&row, true, true);
                    Some(id)
                }
                Ok(Upserted::Updated) => {
                    self.took(&row, !row.existed, true);
                    None
                }
                Err(e) => {
                    self.count("person").failed += 1;
                    let payload = json!({"email": row.email, "attributes": row.attributes(), "lists": row.lists});
                    errors.push(RecordError { id: row.person_id.to_string(), reason: format!("Brevo refused the contact: {e}"), payload });
                    continue;
                }
            };
            if !row.has_issues {
                resolved.push(row.person_id.to_string());
            }
            links.push(person_link(&row, brevo_id));
        }
        store::record_errors(self.pool, self.tenant, self.run, "person", &errors).await?;
        store::upsert_links(self.pool, self.tenant, &links).await?;
        store::resolve_errors(self.pool, self.tenant, "person", &resolved).await?;
        Ok(())
    }

    /// Counts a contact Brevo took, and queues the event the mapping asks for when a person is
    /// added or updated (not in a backfill, which fires no automations for the past).
    fn took(&mut self, row: &Row, created: bool, events: bool) {
        if created { self.count("person").created += 1 } else { self.count("person").updated += 1 }
        if self.mode == Mode::Incremental && events {
            let rule = if row.existed { self.rule("updated", "person") } else { self.rule("added", "person") };
            if let Some(name) = rule {
                self.events.push(PendingEvent { name, person_id: row.person_id, properties: Map::from_iter([("personId".to_owned(), json!(row.person_id))]) });
            }
        }
    }

    /// Confirms pending imports: a completed one has its list memberships and links recorded; one
    /// that failed, or dropped rows, is imported again in halves, and a few rows are written one
    /// contact at a time (which tells which contact failed and why). `wait`: until none is pending.
    async fn confirm_imports(&mut self, wait: bool) -> Result<(), Stop> {
        // Brevo takes a few tenths of a second for the imports of a backfill's end: the first
        // waits are short, the later ones ever longer (polls share the 100-calls-an-hour bucket).
        let (mut delay, mut waits) = (Duration::from_millis(200), 0);
        let deadline = Instant::now() + Duration::from_secs(15 * 60);
        loop {
            let waiting: usize = self.pending.iter().map(|p| p.rows.len()).sum();
            let (poll_at, wait_at) = (POLL_AT_IMPORTS * self.s.bulk.import_rows, WAIT_AT_IMPORTS * self.s.bulk.import_rows);
            // A poll is answered beside the loop unless the run must wait for its imports: the
            // loop goes on with the pages meanwhile (a poll takes 50-100 ms while Brevo works
            // on an import), and the answer is taken in on a later page.
            let must = wait || waiting >= wait_at;
            let beside = match self.polling.take() {
                Some((ids, mut task)) if must || task.0.is_finished() => {
                    let t = Instant::now();
                    let answer = (&mut task.0).await.map_err(|e| Stop::Retry(format!("polling Brevo's imports was interrupted: {e}")))?;
                    self.spent.add("Brevo: process polls", t);
                    match answer {
                        Ok(processes) => Some((ids, processes)),
                        // The hour's bucket had no call left: a later poll waits for one.
                        Err(BrevoError::RateLimited { .. }) if !must => return self.save_ready_checkpoint().await,
                        Err(BrevoError::RateLimited { .. }) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(on_its_way) => {
                    self.polling = Some(on_its_way);
                    return self.save_ready_checkpoint().await;
                }
                None => {
                    let every = if self.polls < EAGER_POLLS { POLL_SOON } else { POLL_EVERY };
                    let polled_lately = self.last_poll.is_some_and(|at| at.elapsed() < every);
                    if self.pending.is_empty() || (!must && (waiting < poll_at || polled_lately)) {
                        return self.save_ready_checkpoint().await;
                    }
                    if !must {
                        (self.last_poll, self.polls) = (Some(Instant::now()), self.polls + 1);
                        let ids = self.pending.iter().map(|p| p.process_id).collect();
                        // Never waits for the hour's bucket: a drained one fails it at once.
                        let brevo = self.brevo.without_waiting();
                        let task = async move { brevo.recent_processes().await };
                        self.polling = Some((ids, AbortOnDrop(tokio::spawn(task.in_current_span()))));
                        return self.save_ready_checkpoint().await;
                    }
                    None
                }
            };
            let (answers_for, processes) = match beside {
                Some((ids, processes)) => (Some(ids), processes),
                None => {
                    (self.last_poll, self.polls) = (Some(Instant::now()), self.polls + 1);
                    let t = Instant::now();
                    let processes = self.brevo.recent_processes().await?;
                    self.spent.add("Brevo: process polls", t);
                    (None, processes)
                }
            };
            let mut known: HashMap<i64, crate::brevo::api::Process> = processes.into_iter().map(|p| (p.id, p)).collect();
            let mut still = Vec::new();
            for mut import in std::mem::take(&mut self.pending) {
                // Sent after the poll: the next one tells.
                if answers_for.as_ref().is_some_and(|ids| !ids.contains(&import.process_id)) {
                    still.push(import);
                    continue;
                }
                let mut parts = Vec::with_capacity(1 + import.companions.len());
                for id in std::iter::once(import.process_id).chain(import.companions.iter().copied()) {
                    parts.push(match known.remove(&id) {
                        Some(p) => p,
                        None => match self.brevo.process(id).await {
                            Ok(p) => p,
                            // Brevo forgot it: write the rows again.
                            Err(BrevoError::UnknownContact) => crate::brevo::api::Process { id, status: "failed".into(), info: None },
                            Err(e) => return Err(e.into()),
                        },
                    });
                }
                let process = combined(parts);
                match process.status.as_str() {
                    "completed" | "failed" | "cancelled" if !import.companions.is_empty() && (process.status != "completed" || dropped_rows(process.info.as_ref())) => {
                        // One of the lists' imports did not take every row: the rows are imported
                        // again by the lists they go to, as any other group.
                        tracing::info!(process.id, status = %process.status, rows = import.rows.len(), "an import of the last groups did not take every row: importing each group again");
                        self.undo_links_ahead(&mut import).await?;
                        for (lists, rows) in by_their_lists(import.rows) {
                            if rows.len() < BULK_MIN || lists.is_empty() {
                                self.write_one_by_one(rows).await?;
                                continue;
                            }
                            let process_id = send_import(&self.brevo, &lists, &rows).await?;
                            still.push(PendingImport { process_id, companions: Vec::new(), lists, rows, write: import.write, saved: None, ahead: None });
                        }
                    }
                    "completed" if !dropped_rows(process.info.as_ref()) => {
                        let t = Instant::now();
                        self.apply_import(import).await?;
                        self.spent.add("recording imports", t);
                    }
                    "completed" | "failed" | "cancelled" if import.rows.len() >= 2 * BULK_MIN && !import.lists.is_empty() => {
                        // Which rows it dropped Brevo does not say: each half is imported again,
                        // down to a few rows written one by one, which names the failing record.
                        // One bad row among 2,000 costs about 14 imports and 15 single writes,
                        // not 2,000 calls.
                        tracing::info!(process.id, status = %process.status, rows = import.rows.len(), "an import did not take every row: importing each half again");
                        self.undo_links_ahead(&mut import).await?;
                        let (first, second) = import.rows.split_at(import.rows.len() / 2);
                        for half in [first, second] {
                            let process_id = send_import(&self.brevo, &import.lists, half).await?;
                            still.push(PendingImport { process_id, companions: Vec::new(), lists: import.lists.clone(), rows: half.to_vec(), write: import.write, saved: None, ahead: None });
                        }
                        self.forget_import(import.saved).await?;
                    }
                    "completed" | "failed" | "cancelled" => {
                        tracing::info!(process.id, status = %process.status, "an import did not take every row: writing them one by one");
                        self.undo_links_ahead(&mut import).await?;
                        self.write_one_by_one(import.rows).await?;
                        self.forget_import(import.saved).await?;
                    }
                    _ => still.push(import),
                }
            }
            self.pending = still;
            let running: usize = self.pending.iter().map(|p| p.rows.len()).sum();
            if self.pending.is_empty() || !wait && running < wait_at {
                return self.save_ready_checkpoint().await;
            }
            // Imports the poll beside the loop could not answer for are asked about at once.
            if answers_for.is_some_and(|ids| self.pending.iter().any(|p| !ids.contains(&p.process_id))) {
                continue;
            }
            if Instant::now() > deadline {
                return Err(Stop::Retry(format!("Brevo has not finished {} contact import(s) after 15 minutes.", self.pending.len())));
            }
            let t = Instant::now();
            tokio::time::sleep(delay).await;
            self.spent.add("waiting for Brevo's imports", t);
            waits += 1;
            if waits >= 3 {
                delay = delay.mul_f64(1.5).min(Duration::from_secs(30));
            }
        }
    }

    /// Drops an import's saved copy, if an earlier version of the engine saved one.
    async fn forget_import(&self, saved: Option<i64>) -> Result<(), Stop> {
        if let Some(id) = saved {
            store::delete_import(self.pool, self.tenant, id).await?;
        }
        Ok(())
    }

    /// Records the links of an import Brevo accepted while Brevo processes it (a task beside the
    /// loop, in the recorder's turn), with a note in `sync_imports` of whose they are. The pages'
    /// checkpoints still wait for Brevo's answer: should the run stop before it, the next
    /// attempt deletes these links and reads the pages again (`execute`); should the import not
    /// take every row, they go before its rows are written again (`undo_links_ahead`). At a
    /// backfill's end this takes the links' writing (a fifth of a second for 10,000 rows) off
    /// the time after the last page.
    fn record_links_ahead(&self, process_id: i64, rows: &[Row]) -> AbortOnDrop<Result<i64, Stop>> {
        let (pool, tenant, run, recorder) = (self.pool.clone(), self.tenant, self.run, self.recorder.clone());
        let persons: Vec<i64> = rows.iter().map(|r| r.person_id).collect();
        let links = person_links(rows);
        let task = async move {
            let _turn = recorder.acquire().await.map_err(|_| Stop::Retry("the run stopped recording".into()))?;
            Ok(store::record_links_ahead(&pool, tenant, run, process_id, &persons, &links).await?)
        };
        AbortOnDrop(tokio::spawn(task.in_current_span()))
    }

    /// An import whose links went in ahead did not take every row: the links go (once written),
    /// and its rows are written again as any others.
    async fn undo_links_ahead(&mut self, import: &mut PendingImport) -> Result<(), Stop> {
        let Some(task) = import.ahead.take() else { return Ok(()) };
        let note = links_ahead_note(task).await?;
        store::undo_links_ahead(self.pool, self.tenant, Some(note)).await?;
        Ok(())
    }

    /// Records a completed import: the list memberships its target did not cover (none, for the
    /// imports of this version) and the removals, then — by a task, beside the persons loop —
    /// the links.
    async fn apply_import(&mut self, import: PendingImport) -> Result<(), Stop> {
        let managed = transform::managed_lists(&self.mapping);
        let mut adds: HashMap<i64, Vec<String>> = HashMap::new();
        let mut removes: HashMap<i64, Vec<String>> = HashMap::new();
        for r in &import.rows {
            for l in r.lists.iter().filter(|l| !r.prev_lists.contains(l) && !import.lists.contains(l)) {
                adds.entry(*l).or_default().push(r.email.clone());
            }
            for l in r.prev_lists.iter().filter(|l| !r.lists.contains(l) && managed.contains(l)) {
                removes.entry(*l).or_default().push(r.email.clone());
            }
        }
        for (list, emails) in adds {
            self.brevo.add_to_list(list, &emails).await?;
        }
        for (list, emails) in removes {
            self.brevo.remove_from_list(list, &emails).await?;
        }
        for r in &import.rows {
            // Imports an older version saved came from a backfill: no events for them.
            self.took(r, !r.existed, import.saved.is_none());
        }
        let (pool, tenant, recorder) = (self.pool.clone(), self.tenant, self.recorder.clone());
        let held_from = import.write + 1;
        let resolved: Vec<String> = import.rows.iter().filter(|r| !r.has_issues).map(|r| r.person_id.to_string()).collect();
        if let Some(ahead) = import.ahead {
            // The links went in while Brevo worked: they stay, and their note goes.
            let task = async move {
                let note = links_ahead_note(ahead).await?;
                store::delete_import(&pool, tenant, note).await?;
                store::resolve_errors(&pool, tenant, "person", &resolved).await?;
                Ok(())
            };
            self.recording.push_back((held_from, tokio::spawn(task.in_current_span())));
            return Ok(());
        }
        // Once the persons are read, nothing else needs the database: the links go in two halves
        // at once (on two cores).
        let parts = if self.persons_read { 2 } else { 1 };
        let task = async move {
            // The links' text (about the rows' size) is made only in a turn: made before it,
            // every import waiting for one would hold it too.
            let _turn = recorder.acquire().await.map_err(|_| Stop::Retry("the run stopped recording".into()))?;
            let parts: Vec<store::LinkColumns> = import.rows.chunks(import.rows.len().div_ceil(parts).max(1)).map(person_links).collect();
            drop(import.rows);
            futures_util::future::try_join_all(parts.iter().map(|part| record_links(&pool, tenant, part))).await?;
            if let Some(id) = import.saved {
                store::delete_import(&pool, tenant, id).await?;
            }
            store::resolve_errors(&pool, tenant, "person", &resolved).await?;
            Ok(())
        };
        self.recording.push_back((held_from, tokio::spawn(task.in_current_span())));
        Ok(())
    }

    /// Persons whose deals, leads or organization changed, recomputed from what the links hold.
    async fn related_persons(&mut self) -> Result<(), Stop> {
        let ids: Vec<i64> = self.dirty.iter().filter(|p| !self.done.contains(p)).copied().collect();
        let mut rows = Vec::new();
        for chunk in ids.chunks(PAGE as usize) {
            let texts: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let links = store::links(self.pool, self.tenant, "person", &texts).await?;
            let related = related(self.pool, self.tenant, chunk).await?;
            let org_ids: Vec<String> = links.values().filter_map(|l| l.org_id).map(|o| o.to_string()).collect();
            let known = Known { related, orgs: store::links(self.pool, self.tenant, "organization", &org_ids).await? };
            for (id, link) in &links {
                let (Some(email), Ok(pid)) = (link.brevo_ref.clone(), id.parse::<i64>()) else { continue };
                let own = link.facts["own"].as_object().cloned().unwrap_or_default();
                self.count("person").read += 1;
                let draft = draft(&self.mapping, pid, &email, own, link.org_id, &known);
                match row(pid, email, draft, link.org_id, Some(link), false) {
                    Some(r) => rows.push(r),
                    None => self.count("person").unchanged += 1,
                }
            }
            // Written together, so that those going to the same lists make one import.
            if rows.len() >= self.s.bulk.import_rows {
                self.write_now(std::mem::take(&mut rows)).await?;
            }
            self.report().await;
        }
        self.write_now(rows).await
    }

    // --- deletions and merges --------------------------------------------------------------

    /// Deleted persons and deals since the last check (`/v1/recents`: v2 lists leave them out).
    async fn deletions(&mut self) -> Result<(), Stop> {
        let cp = self.checkpoint("deletions");
        // `/v1/recents` lists every change, not only deletions, at 20 tokens a page: it runs every
        // quarter of an hour, not every minute (Pipedrive's webhooks report deletions at once).
        if cp.since.is_some_and(|s| s > self.started - DELETIONS_EVERY) && self.retry_persons.is_empty() && !self.force_deletions {
            return Ok(());
        }
        let since = cp.since.unwrap_or(self.started) - OVERLAP;
        let since = since.max(self.started - time::Duration::days(29));
        let text = format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", since.year(), since.month() as u8, since.day(), since.hour(), since.minute(), since.second());
        let mut start = 0;
        loop {
            let (recents, next) = self.pd.recents(&text, "person,deal", start).await?;
            for r in recents {
                let Some(id) = r.id.as_u64().or_else(|| r.id.as_str().and_then(|s| s.parse().ok())) else { continue };
                let gone = r.data["active_flag"] == json!(false) || r.data["deleted"] == json!(true) || r.data["is_deleted"] == json!(true);
                if !gone {
                    continue;
                }
                match r.item.as_str() {
                    "person" => self.person_deleted(id as i64).await?,
                    "deal" => {
                        let links = store::links(self.pool, self.tenant, "deal", &[id.to_string()]).await?;
                        if let Some(l) = links.get(&id.to_string()) {
                            self.count("deal").deleted += 1;
                            self.dirty.extend(l.person_id);
                            store::delete_link(self.pool, self.tenant, "deal", &id.to_string()).await?;
                        }
                    }
                    _ => {}
                }
            }
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
        let cp = Checkpoint { since: Some(self.started), ..cp };
        self.checkpoints.insert("deletions".into(), cp.clone());
        store::save_checkpoint(self.pool, self.tenant, "deletions", &cp).await?;
        Ok(())
    }

    /// A person deleted in Pipedrive: its contact leaves the synced lists or is deleted (by
    /// setting). When another person read in this run has its email, it was merged into that one.
    async fn person_deleted(&mut self, id: i64) -> Result<(), Stop> {
        // Changed earlier in this run and not written yet: not to be written now.
        self.later.retain(|r| r.person_id != id);
        let links = store::links(self.pool, self.tenant, "person", &[id.to_string()]).await?;
        let Some(link) = links.get(&id.to_string()) else { return Ok(()) };
        let Some(email) = link.brevo_ref.clone() else { return Ok(()) };
        let survivor = self.seen_emails.get(&email).copied().filter(|s| *s != id);
        match self.mapping.options.deleted_persons {
            DeletedPersons::Delete => {
                self.brevo.delete_contact(&email).await?;
            }
            DeletedPersons::Unlink => {
                let managed = transform::managed_lists(&self.mapping);
                for list in lists_of(&link.facts).into_iter().filter(|l| managed.contains(l)) {
                    self.brevo.remove_from_list(list, std::slice::from_ref(&email)).await?;
                }
            }
        }
        store::delete_link(self.pool, self.tenant, "person", &id.to_string()).await?;
        store::resolve_errors(self.pool, self.tenant, "person", &[id.to_string()]).await?;
        self.count("person").deleted += 1;
        if let Some(survivor) = survivor {
            self.dirty.insert(survivor);
            if let Some(name) = self.rule("merged", "person") {
                self.events.push(PendingEvent {
                    name,
                    person_id: survivor,
                    properties: Map::from_iter([("mergedPersonId".to_owned(), json!(id)), ("mergedEmail".to_owned(), json!(email))]),
                });
            }
        }
        Ok(())
    }

    // --- activities and events -------------------------------------------------------------

    async fn activities(&mut self) -> Result<(), Stop> {
        let cp = self.checkpoint("activity");
        let query = match self.mode {
            // No events for the past: only the last `backfill_event_days` days are read at all.
            Mode::Backfill => {
                let days = self.mapping.options.backfill_event_days;
                if days == 0 {
                    return Ok(());
                }
                ListQuery { limit: Some(PAGE), updated_since: Some(self.started - time::Duration::days(i64::from(days))), ..Default::default() }
            }
            Mode::Incremental => ListQuery { limit: Some(PAGE), updated_since: cp.since.map(|s| s - OVERLAP), sort_by_update_time: true, ..Default::default() },
        };
        let added_after = match self.mode {
            Mode::Backfill => self.started - time::Duration::days(i64::from(self.mapping.options.backfill_event_days)),
            Mode::Incremental => cp.since.unwrap_or(self.started) - OVERLAP,
        };
        let mut pages = prefetch(self.pd.list_from::<Activity>("/api/v2/activities", query, None), PAGES_AHEAD);
        while let Some(page) = pages.recv().await {
            let page = page?;
            let ids: Vec<String> = page.items.iter().map(|a| a.id.to_string()).collect();
            self.saved().await?;
            let existing = store::links(self.pool, self.tenant, "activity", &ids).await?;
            let mut links = Vec::new();
            let mut latest = None;
            for a in &page.items {
                self.count("activity").read += 1;
                latest = latest.max(parse_time(a.update_time.as_deref()));
                let facts = json!({"type": a.kind, "subject": a.subject, "done": a.done, "deal_id": a.deal_id, "due_date": a.other.get("due_date")});
                let content = hash(&json!([facts, a.person_id, a.is_deleted]));
                let prev = existing.get(&a.id.to_string());
                if prev.and_then(|p| p.content_hash.as_deref()) == Some(content.as_str()) {
                    self.count("activity").unchanged += 1;
                    continue;
                }
                let added = prev.is_none() && parse_time(a.other.get("add_time").and_then(Value::as_str)).is_none_or(|t| t >= added_after);
                if added { self.count("activity").created += 1 } else { self.count("activity").updated += 1 }
                let rule = if added { self.rule("added", "activity") } else { self.rule("updated", "activity") };
                if let (Some(name), Some(person)) = (rule.filter(|_| !a.is_deleted), a.person_id) {
                    let mut properties = facts.as_object().cloned().unwrap_or_default();
                    properties.insert("activityId".into(), json!(a.id));
                    self.events.push(PendingEvent { name, person_id: person as i64, properties });
                }
                links.push(Link {
                    entity: "activity".into(),
                    pipedrive_id: a.id.to_string(),
                    person_id: a.person_id.map(|p| p as i64),
                    content_hash: Some(content),
                    facts,
                    ..Default::default()
                });
            }
            // Events go out before the checkpoint moves past them.
            self.send_events().await?;
            let cp = match self.mode {
                Mode::Backfill => self.checkpoint("activity"),
                Mode::Incremental => self.advance("activity", None, latest),
            };
            self.save_page("activity", links, cp).await?;
        }
        Ok(())
    }

    /// Sends the collected events to the persons' contacts (persons without one are skipped).
    async fn send_events(&mut self) -> Result<(), Stop> {
        if self.events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.events);
        let ids: Vec<String> = events.iter().map(|e| e.person_id.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
        let persons = store::links(self.pool, self.tenant, "person", &ids).await?;
        let mut batch = Vec::new();
        for e in events {
            match persons.get(&e.person_id.to_string()).and_then(|l| l.brevo_ref.clone()) {
                Some(email) => batch.push((e.name, email, e.properties)),
                None => self.count("event").skipped += 1,
            }
        }
        for chunk in batch.chunks(100) {
            match self.brevo.track_events(chunk).await {
                Ok(refused) => {
                    self.count("event").created += (chunk.len() - refused.len()) as u64;
                    self.count("event").failed += refused.len() as u64;
                    for (i, message) in refused {
                        let Some((name, email, props)) = chunk.get(i) else { continue };
                        let id = format!("{name}:{email}:{}", props.get("dealId").or(props.get("activityId")).map(Value::to_string).unwrap_or_default());
                        store::record_error(self.pool, self.tenant, self.run, "event", &id, &format!("Brevo refused the event {name}: {message}"), &json!({"event": name, "email": email, "properties": props})).await?;
                    }
                }
                Err(e @ (BrevoError::Transient(_) | BrevoError::RateLimited { .. } | BrevoError::BadKey(_))) => return Err(e.into()),
                Err(e) => {
                    self.count("event").failed += chunk.len() as u64;
                    tracing::warn!(error = %e, "Brevo refused a batch of events");
                    store::record_error(self.pool, self.tenant, self.run, "event", &format!("run-{}", self.run), &format!("Brevo refused events: {e}"),
                        &json!(chunk.iter().map(|(n, m, p)| json!({"event": n, "email": m, "properties": p})).collect::<Vec<_>>())).await?;
                }
            }
        }
        Ok(())
    }

    // --- companies ---------------------------------------------------------------------------

    /// A backfill's head start on the contacts of the companies it will write. A company links
    /// contacts by id, and an import gives no ids: looking them up after the last import cost a
    /// call per contact at the end of the run, and writing them one by one cost the same calls
    /// while Brevo was busiest. While deals and leads are read, Brevo has nothing to do: this task
    /// reads the persons of the next organizations to become companies and creates their contacts
    /// with the email alone (`created_contacts`: one import, then their ids from the newest
    /// contacts). Their imports fill them in later. It only saves time: what it misses, the
    /// companies step looks up.
    fn start_company_contacts(&self) -> Option<AbortOnDrop<HashMap<String, i64>>> {
        // Not when the deals were read before (a resumed backfill): the persons come next.
        let deals_read = self.checkpoints.get("deal").is_some_and(|c| c.backfill_done);
        if self.mode != Mode::Backfill || !self.mapping.connectors.pipedrive.sync.organizations || deals_read {
            return None;
        }
        let (pool, tenant, pd, brevo, mapping, cat) = (self.pool.clone(), self.tenant, self.pd.clone(), self.brevo.clone(), self.mapping.clone(), self.cat.clone());
        let all_contacts = self.mapping.connectors.pipedrive.lists.all_contacts;
        let task = async move {
            let mut ids = HashMap::new();
            let mut emails: Vec<String> = Vec::new();
            let result: Result<(), Stop> = async {
                let mut orgs_found = 0;
                for org in store::next_companies(&pool, tenant, 2 * COMPANIES_PER_RUN).await? {
                    if orgs_found >= COMPANIES_PER_RUN || emails.len() >= COMPANY_CONTACTS_AHEAD {
                        break;
                    }
                    let query = ListQuery { limit: Some(PAGE), extra: vec![("org_id".into(), org.to_string())], ..Default::default() };
                    let Some(page) = pin!(pd.list::<Person>("/api/v2/persons", query)).next().await.transpose()? else { continue };
                    let found: BTreeSet<String> = prepare(&page.items, &mapping, &cat).into_iter().flatten().flatten().map(|o| o.email.as_str().to_owned()).collect();
                    orgs_found += i64::from(!found.is_empty());
                    let room = COMPANY_CONTACTS_AHEAD - emails.len();
                    emails.extend(found.into_iter().filter(|e| !emails.contains(e)).take(room).collect::<Vec<_>>());
                }
                // One import creates them all, and one listing of the newest contacts gives
                // their ids; what it does not give (contacts that were there before) is asked
                // for one by one. (One by one, the 35 contacts of a backfill's first companies
                // took a third of Brevo's contact calls, and delayed the persons' imports.)
                if let Some(list) = all_contacts.filter(|_| emails.len() >= BULK_MIN) {
                    match created_contacts(&brevo, list, &emails).await {
                        Ok(created) => ids.extend(created),
                        Err(e) => tracing::info!(error = %e, "creating the companies' contacts in one import did not work: creating them one by one"),
                    }
                }
                let missing: Vec<&String> = emails.iter().filter(|e| !ids.contains_key(*e)).collect();
                for email in missing {
                    let id = match brevo.upsert_contact(email, &Map::new(), &[], &[]).await? {
                        Upserted::Created(id) => Some(id),
                        Upserted::Updated => brevo.get_contact(email).await?.map(|c| c.id),
                    };
                    ids.extend(id.map(|id| (email.clone(), id)));
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::info!(error = ?e, found = ids.len(), "the companies' head start stopped: the companies step looks up the rest");
            }
            ids
        };
        Some(AbortOnDrop(tokio::spawn(task.in_current_span())))
    }

    /// Brevo companies for organizations with synced contacts, a few per run: companies share
    /// Brevo's 100-calls-an-hour bucket. What is left continues in the next runs.
    async fn companies(&mut self) -> Result<(), Stop> {
        self.company_contacts_ready().await;
        let (orgs, total) = store::companies_to_write(self.pool, self.tenant, COMPANIES_PER_RUN).await?;
        // Company calls share Brevo's 100-calls-an-hour bucket: when it has no call left now, the
        // companies wait for a later run rather than hold this one up.
        let brevo_companies = self.brevo.without_waiting();
        let mut written = 0;
        for org in &orgs {
            let Ok(org_id) = org.pipedrive_id.parse::<i64>() else { continue };
            let name = org.facts["name"].as_str().unwrap_or_default().to_owned();
            let persons: Vec<String> = store::persons_of_org(self.pool, self.tenant, org_id).await?.iter().map(i64::to_string).collect();
            let mut contact_ids = Vec::new();
            let mut found = Vec::new();
            for link in store::links(self.pool, self.tenant, "person", &persons).await?.into_values() {
                match (link.brevo_id, link.brevo_ref.as_deref()) {
                    (Some(id), _) => contact_ids.push(id),
                    (None, Some(email)) => {
                        let id = match self.company_contacts.get(email) {
                            Some(id) => Some(*id),
                            None => self.brevo.get_contact(email).await?.map(|c| c.id),
                        };
                        if let Some(id) = id {
                            contact_ids.push(id);
                            found.push(Link { brevo_id: Some(id), ..link.clone() });
                        }
                    }
                    _ => {}
                }
            }
            contact_ids.sort_unstable();
            let linked: Vec<i64> = org.facts["linked"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
            let result = match org.brevo_ref.clone() {
                None => brevo_companies.create_company_linked(&name, &contact_ids).await.map(|id| (id, true)),
                Some(id) => {
                    let add: Vec<i64> = contact_ids.iter().filter(|c| !linked.contains(c)).copied().collect();
                    let remove: Vec<i64> = linked.iter().filter(|c| !contact_ids.contains(c)).copied().collect();
                    async {
                        brevo_companies.rename_company(&id, &name).await?;
                        if !add.is_empty() || !remove.is_empty() {
                            brevo_companies.link_company(&id, &add, &remove).await?;
                        }
                        Ok((id, false))
                    }
                    .await
                }
            };
            let company = match result {
                Ok((id, created)) => {
                    if created { self.count("company").created += 1 } else { self.count("company").updated += 1 }
                    written += 1;
                    id
                }
                Err(BrevoError::RateLimited { .. }) => {
                    // The ids it looked up stay known.
                    store::upsert_links(self.pool, self.tenant, &found).await?;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let mut facts = org.facts.clone();
            facts["written"] = json!(org.content_hash);
            facts["linked"] = json!(contact_ids);
            let done = Link { brevo_ref: Some(company), facts, ..org.clone() };
            let mut tx = self.pool.begin().await?;
            store::upsert_links(&mut *tx, self.tenant, &found).await?;
            store::upsert_links(&mut *tx, self.tenant, std::slice::from_ref(&done)).await?;
            tx.commit().await?;
        }
        let left = total - written;
        if left > 0 {
            self.notes.push(format!(
                "{left} organization(s) wait for their Brevo company: Brevo allows 100 company calls an hour, so they follow in the next runs."
            ));
        }
        Ok(())
    }
}

/// Creates contacts with their email alone in one import into `list` (an import needs a list;
/// every synced person goes to the all-contacts list anyway), and returns the ids of those it
/// created, read from the newest contacts. Contacts that were there before are not among the
/// newest: the caller looks them up. A process that does not complete within four polls, or an
/// hour's bucket without a poll left, is an error (the caller falls back to single writes).
async fn created_contacts(brevo: &BrevoApi, list: i64, emails: &[String]) -> Result<HashMap<String, i64>, BrevoError> {
    let rows: Vec<ImportContact> = emails.iter().map(|email| ImportContact { email, attributes: ["{}", "{}"] }).collect();
    let process = brevo.import_json(&rows, &[list]).await?;
    // Polls share the 100-calls-an-hour bucket: four at most, ever further apart (the sandbox
    // takes 0.2 s, Brevo seconds), and none that would wait for the bucket; the persons' first
    // write waits for this task. Past them the caller goes on one by one.
    let polls = brevo.without_waiting();
    let mut waits = [250, 500, 1_000, 2_000].into_iter();
    loop {
        let Some(wait) = waits.next() else { return Err(BrevoError::Transient(format!("import process {process} not completed after four polls (3.75 s)"))) };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        match polls.process(process).await?.status.as_str() {
            "completed" => break,
            status @ ("failed" | "cancelled") => return Err(BrevoError::Transient(format!("import process {process} {status}"))),
            _ => {}
        }
    }
    // Brevo keeps emails in lower case.
    let wanted: HashMap<String, &String> = emails.iter().map(|e| (e.to_lowercase(), e)).collect();
    let newest = brevo.newest_contacts(emails.len().max(50) * 2).await?;
    Ok(newest.into_iter().filter_map(|c| wanted.get(&c.email?.to_lowercase()).map(|e| ((*e).clone(), c.id))).collect())
}

/// Sends rows as one import targeting `lists`; returns Brevo's process.
async fn send_import<'r>(brevo: &BrevoApi, lists: &[i64], rows: impl IntoIterator<Item = &'r Row>) -> Result<i64, Stop> {
    // A row's own and derived attributes never share a key (`draft`).
    let contacts: Vec<ImportContact> = rows.into_iter().map(|r| ImportContact { email: &r.email, attributes: [&r.own, &r.derived] }).collect();
    Ok(brevo.import_json(&contacts, lists).await?)
}

/// A contact written one at a time: the row, Brevo's answer, and the error to record when Brevo
/// refused the phone (the contact was then written without it).
struct Written {
    row: Row,
    result: Result<Upserted, BrevoError>,
    phone_refused: Option<RecordError>,
}

/// Writes contacts one at a time, until Brevo or the network fails in a way worth another
/// attempt (returned with what was written before it; the rows after it are not sent).
async fn send_one_by_one(brevo: &BrevoApi, managed: &BTreeSet<i64>, sms: Option<&str>, rows: Vec<Row>) -> (Vec<Written>, Option<BrevoError>) {
    let mut written = Vec::new();
    for mut row in rows {
        let add: Vec<i64> = row.lists.iter().filter(|l| !row.prev_lists.contains(l)).copied().collect();
        let unlink: Vec<i64> = row.prev_lists.iter().filter(|l| !row.lists.contains(l) && managed.contains(l)).copied().collect();
        let mut attributes = row.attributes();
        let mut result = put_contact(brevo, &row, &attributes, &add, &unlink).await;
        let mut phone_refused = None;
        if let (Err(e @ (BrevoError::InvalidPhone | BrevoError::SmsTaken)), Some(sms)) = (&result, sms)
            && let Some(number) = attributes.remove(sms)
        {
            let reason = match e {
                BrevoError::SmsTaken => format!("The phone {number} already belongs to another Brevo contact: the contact was synced without SMS."),
                _ => format!("Brevo refused the phone {number}: the contact was synced without SMS."),
            };
            phone_refused = Some(RecordError { id: row.person_id.to_string(), reason, payload: json!({"email": row.email, "phone": number}) });
            row.has_issues = true;
            result = put_contact(brevo, &row, &attributes, &add, &unlink).await;
        }
        if let Err(e @ (BrevoError::Transient(_) | BrevoError::RateLimited { .. } | BrevoError::BadKey(_))) = result {
            return (written, Some(e));
        }
        written.push(Written { row, result, phone_refused });
    }
    (written, None)
}

/// An existing contact is updated (so it can leave lists), a new one created.
async fn put_contact(brevo: &BrevoApi, row: &Row, attributes: &Map<String, Value>, add: &[i64], unlink: &[i64]) -> Result<Upserted, BrevoError> {
    if row.existed {
        match brevo.update_contact(&row.email, attributes, add, unlink).await {
            Ok(()) => return Ok(Upserted::Updated),
            // Deleted in Brevo meanwhile: created again below.
            Err(BrevoError::UnknownContact) => {}
            Err(e) => return Err(e),
        }
    }
    brevo.upsert_contact(&row.email, attributes, add, &[]).await
}

fn lists_of(facts: &Value) -> Vec<i64> {
    facts["lists"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect()
}

fn person_link(r: &Row, brevo_id: Option<i64>) -> Link {
    Link {
        entity: "person".into(),
        pipedrive_id: r.person_id.to_string(),
        brevo_ref: Some(r.email.clone()),
        brevo_id,
        org_id: r.org_id,
        content_hash: Some(r.hash.clone()),
        facts: json!({"own": object(&r.own), "lists": r.lists}),
        ..Default::default()
    }
}

/// The links of written rows ([`person_link`]s without a Brevo id) in the columns
/// [`store::upsert_link_columns`] takes, written straight from the rows' texts: the links of a
/// 5,000-row import as maps were several times its size, and parsed and serialized twice.
fn person_links(rows: &[Row]) -> store::LinkColumns {
    let mut c = store::LinkColumns::with_capacity(rows.len());
    for r in rows {
        let lists = r.lists.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let own = if r.own.trim().is_empty() { "{}" } else { &r.own };
        c.entity.push("person".to_owned());
        c.pipedrive_id.push(r.person_id.to_string());
        c.brevo_ref.push(Some(r.email.clone()));
        c.brevo_id.push(None);
        c.person_id.push(None);
        c.org_id.push(r.org_id);
        c.content_hash.push(Some(r.hash.clone()));
        c.facts.push(format!(r#"{{"own":{own},"lists":[{lists}]}}"#));
    }
    c
}

/// The note of an import's links recorded ahead (`Engine::record_links_ahead`), once written.
async fn links_ahead_note(mut task: AbortOnDrop<Result<i64, Stop>>) -> Result<i64, Stop> {
    (&mut task.0).await.map_err(|e| Stop::Retry(format!("recording an import's links was interrupted: {e}")))?
}

/// Writes links in a transaction of their own, committed without waiting for the disk: should
/// the database stop before the commit reaches it, the checkpoint saved after it is lost too,
/// and the rows are read and written again.
async fn record_links(pool: &PgPool, tenant: TenantId, links: &store::LinkColumns) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    store::relaxed_commit(&mut tx).await?;
    store::upsert_link_columns(&mut *tx, tenant, links).await?;
    tx.commit().await
}

/// Rows by the lists they go to.
fn by_their_lists(rows: Vec<Row>) -> BTreeMap<Vec<i64>, Vec<Row>> {
    let mut groups: BTreeMap<Vec<i64>, Vec<Row>> = BTreeMap::new();
    for row in rows {
        groups.entry(row.lists.clone()).or_default().push(row);
    }
    groups
}

/// Imports that write groups of rows by list rather than by group (see [`Engine::flush_all`]):
/// each target, with the list beyond the ones every group has that it is for (`None`: the common
/// lists alone, for the rows that have no other). [`takes`] tells which rows go in each.
fn by_list(groups: &[Vec<i64>]) -> Vec<(Vec<i64>, Option<i64>)> {
    let Some(first) = groups.first() else { return Vec::new() };
    let common: BTreeSet<i64> = groups.iter().fold(first.iter().copied().collect(), |acc, g| acc.intersection(&g.iter().copied().collect()).copied().collect());
    let extra: BTreeSet<i64> = groups.iter().flatten().copied().filter(|l| !common.contains(l)).collect();
    let only_common = groups.iter().any(|g| g.len() == common.len()).then(|| (common.iter().copied().collect(), None));
    let per_list = extra.into_iter().map(|list| (common.iter().copied().chain([list]).collect::<BTreeSet<i64>>().into_iter().collect(), Some(list)));
    only_common.into_iter().chain(per_list).collect()
}

/// Whether a row going to `lists` (which hold every common list) is in the import of
/// [`by_list`]'s `target`, made for `extra`.
fn takes(target: &[i64], extra: Option<i64>, lists: &[i64]) -> bool {
    match extra {
        Some(list) => lists.contains(&list),
        None => lists.len() == target.len(),
    }
}

/// What the imports of the same rows did together: the first still running, else the first
/// that failed or dropped rows, else the first (all completed).
fn combined(mut parts: Vec<crate::brevo::api::Process>) -> crate::brevo::api::Process {
    let finished = |p: &crate::brevo::api::Process| matches!(p.status.as_str(), "completed" | "failed" | "cancelled");
    let pick = parts
        .iter()
        .position(|p| !finished(p))
        .or_else(|| parts.iter().position(|p| p.status != "completed" || dropped_rows(p.info.as_ref())))
        .unwrap_or(0);
    parts.swap_remove(pick)
}

/// Whether an import's counters say rows were dropped or changed (`info.import`).
fn dropped_rows(info: Option<&Value>) -> bool {
    let Some(counters) = info.and_then(|i| i.get("import")).and_then(Value::as_object) else { return false };
    counters.iter().any(|(k, v)| (k == "invalid_emails" || k.starts_with("duplicate_")) && v.as_u64().unwrap_or(0) > 0)
}

/// Reads the catalog: person fields with their options, stages with their names, Brevo's
/// attributes and lists.
async fn load_catalogue(pd: &PipedriveClient, brevo: &BrevoApi) -> Result<Catalogue, Stop> {
    use crate::mapping::catalog;
    let fields: Vec<Field> = catalog::all(pd, "/api/v2/personFields").await?;
    let stages: Vec<Stage> = catalog::all(pd, "/api/v2/stages").await?;
    let options: FieldOptions = fields
        .iter()
        .filter(|f| f.is_custom_field)
        .map(|f| {
            let opts = f.options.iter().flatten().map(|o| (o.id.to_string().trim_matches('"').to_owned(), o.label.clone())).collect();
            (f.field_code.clone(), opts)
        })
        .collect();
    Ok(Catalogue {
        catalog: Catalog {
            person_fields: catalog::custom_fields(&fields),
            stage_ids: stages.iter().map(|s| s.id).collect(),
            attributes: catalog::attribute_infos(brevo.attributes().await?),
            list_ids: brevo.list_ids().await?,
        },
        options,
        stage_names: stages.into_iter().map(|s| (s.id, s.name)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content hashes are stored in the links: the text must stay the lowercase hex SHA-256 of
    /// the compact JSON, or every record would look changed after an upgrade.
    #[test]
    fn content_hash_is_the_hex_sha256_of_the_json() {
        assert_eq!(hash(&json!(["a", 1])), "135f17a475a61afdeeaf3759ad2e45ad1c7abb192395abe47e41fc8e395dc1a9");
    }

    #[test]
    fn the_last_groups_by_list_write_each_row_to_exactly_its_lists() {
        let cases: [&[&[i64]]; 4] = [
            &[&[2], &[2, 3], &[2, 3, 4], &[2, 3, 4, 6], &[2, 3, 5, 6], &[2, 3, 6], &[2, 4], &[2, 4, 6], &[2, 5, 6], &[2, 6]],
            &[&[3], &[4], &[3, 4]],
            &[&[2, 3], &[2, 4], &[2, 3, 4]],
            &[&[7]],
        ];
        for groups in cases {
            let groups: Vec<Vec<i64>> = groups.iter().map(|g| g.to_vec()).collect();
            let plan = by_list(&groups);
            for g in &groups {
                let taking: Vec<&Vec<i64>> = plan.iter().filter(|(target, extra)| takes(target, *extra, g)).map(|(target, _)| target).collect();
                assert!(!taking.is_empty(), "{g:?} is imported");
                assert!(taking.iter().all(|t| t.iter().all(|l| g.contains(l))), "{g:?} joins no other list: {taking:?}");
                let joined: BTreeSet<i64> = taking.iter().flat_map(|t| t.iter().copied()).collect();
                assert_eq!(joined, g.iter().copied().collect(), "{g:?} joins all its lists");
            }
        }
        // The seed mapping's ten groups: five imports, the all-contacts list in each.
        let seed: Vec<Vec<i64>> = cases[0].iter().map(|g| g.to_vec()).collect();
        let targets: Vec<Vec<i64>> = by_list(&seed).into_iter().map(|(t, _)| t).collect();
        assert_eq!(targets, vec![vec![2], vec![2, 3], vec![2, 4], vec![2, 5], vec![2, 6]]);
        // Groups with no list in common: one import per list.
        let targets: Vec<Vec<i64>> = by_list(&[vec![3], vec![4], vec![3, 4]]).into_iter().map(|(t, _)| t).collect();
        assert_eq!(targets, vec![vec![3], vec![4]]);
    }

    #[test]
    fn import_counters_that_mean_dropped_rows() {
        assert!(!dropped_rows(None));
        assert!(!dropped_rows(Some(&json!({"import": {"created": 5, "updated": 2, "invalid_emails": 0}}))));
        assert!(dropped_rows(Some(&json!({"import": {"duplicate_phone_id": 1}}))));
        assert!(dropped_rows(Some(&json!({"import": {"invalid_emails": 3}}))));
    }

    #[test]
    fn rows_an_older_version_saved_still_read() {
        let saved = json!([{
            "person_id": 7, "email": "ann@x.test", "own": {"FIRSTNAME": "Ann"}, "attributes": {"FIRSTNAME": "Ann", "COMPANY": "Acme"},
            "lists": [60], "prev_lists": [], "existed": false, "hash": "ab", "org_id": 3, "has_issues": false
        }]);
        let rows: Vec<Row> = serde_json::from_value(saved).unwrap();
        assert_eq!(Value::Object(rows[0].attributes()), json!({"FIRSTNAME": "Ann", "COMPANY": "Acme"}));
        assert_eq!(Value::Object(object(&rows[0].own)), json!({"FIRSTNAME": "Ann"}));
        assert_eq!(person_link(&rows[0], None).facts, json!({"own": {"FIRSTNAME": "Ann"}, "lists": [60]}));
    }

    #[test]
    fn person_links_written_from_texts_equal_the_links() {
        let rows: Vec<Row> = serde_json::from_value(json!([
            {"person_id": 7, "email": "ann@x.test", "own": {"FIRSTNAME": "Ann \"A\"", "SMS": "+33600000001"}, "derived": {"COMPANY": "Acme"},
             "lists": [60, 61], "prev_lists": [], "existed": false, "hash": "ab01", "org_id": 3, "has_issues": false},
            {"person_id": 8, "email": "bo\\b@x.test", "own": {}, "lists": [], "prev_lists": [60], "existed": true, "hash": "cd", "org_id": null, "has_issues": true}
        ]))
        .unwrap();
        let mut written = person_links(&rows);
        let links: Vec<Link> = rows.iter().map(|r| person_link(r, None)).collect();
        let mut expected = store::LinkColumns::from(links.as_slice());
        // The facts' texts differ in spacing and order at most: the same JSON.
        let parse = |texts: &[String]| texts.iter().map(|t| serde_json::from_str::<Value>(t).unwrap()).collect::<Vec<_>>();
        assert_eq!(parse(&written.facts), parse(&expected.facts));
        assert_eq!(parse(&written.facts)[0], json!({"own": {"FIRSTNAME": "Ann \"A\"", "SMS": "+33600000001"}, "lists": [60, 61]}));
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
        assert_eq!(parse_time(Some("2026-01-02T03:04:05Z")).unwrap().unix_timestamp(), 1_767_323_045);
        assert_eq!(parse_time(Some("2026-01-02 03:04:05")).unwrap().unix_timestamp(), 1_767_323_045);
        assert!(parse_time(Some("yesterday")).is_none());
    }
}

//! The sync engine at scale: a backfill of 100,000 persons, 20,000 organizations, 50,000 deals
//! and 100,000 activities (and 10,000 leads) from the sandbox under an OAuth-sized burst limit of
//! 80 requests per 2 s and Brevo's documented limits (10 contact calls/s, 100 other calls/h); then
//! an incremental run after 1% of the records changed.
//!
//! Reported: wall time against the rate-limit bound (the calls made, divided by what each API's
//! limit allows per second: the run cannot be faster than the slowest of them); Pipedrive tokens;
//! Brevo calls; this process's peak memory (the sandbox runs in a child process); the incremental
//! run's tokens against the backfill's.
//!
//! Run: `cargo bench -p pipebridge --bench sync_backfill` (needs PostgreSQL: DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres; a database `pipebridge_bench_<pid>` is made and
//! dropped). `PIPEBRIDGE_BENCH_PERSONS` scales the company (default 100000).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pipebridge::accounts;
use pipebridge::connections::{self, Providers};
use pipebridge::domain::{CompanyName, Email, Password};
use pipebridge::pipedrive::limits::Registry;
use pipebridge::queue::{Outcome, Worker, WorkerSettings};
use pipebridge::secrets::{Secret, SecretKey};
use pipebridge::sync::{self, Services, SyncHandler};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};

const TOKEN: &str = "sandbox-pipedrive-api-token-0000000000";
const BREVO_KEY: &str =
    "xkeysib-sandbox-0000000000000000000000000000000000000000000000000000000000000000-sandbox";

fn main() -> anyhow::Result<()> {
    if !common::is_bench_run() {
        return Ok(());
    }
    // The engine logs where each run's time went.
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "pipebridge::sync=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

struct RunFigures {
    wall: Duration,
    tokens: i64,
    brevo_calls: i64,
    counts: Value,
    pd_calls: usize,
    pd_429: usize,
    brevo_contact_calls: usize,
    brevo_event_calls: usize,
    brevo_other_calls: usize,
    brevo_429: usize,
    /// The contact calls by kind: imports, list adds and removals, single contacts, the rest.
    brevo_contact_kinds: String,
    /// Seconds spent in each step of the run, in order (read from the run's `phase` as the UI does).
    steps: Vec<(String, f64)>,
    /// CPU seconds each process spent during the run.
    cpu: String,
}

async fn run() -> anyhow::Result<()> {
    let persons: usize = std::env::var("PIPEBRIDGE_BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let sb = common::sandbox(&[
        "--seed".into(),
        persons.to_string(),
        "--seed-deals".into(),
        (persons / 2).to_string(),
        "--seed-activities".into(),
        persons.to_string(),
        "--burst-limit".into(),
        "80".into(),
        "--daily-budget".into(),
        "10000000".into(),
    ])?;
    let http = reqwest::Client::new();

    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db_name = format!("pipebridge_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("create database {db_name}")).execute(&mut admin).await?;
    let (base, _) = admin_url.rsplit_once('/').unwrap_or((&admin_url, ""));
    let pool = PgPool::connect(&format!("{base}/{db_name}")).await?;
    pipebridge::db::MIGRATOR.run(&pool).await?;
    let result = bench(&pool, &sb, &http, persons).await;
    pool.close().await;
    sqlx::query(&format!("drop database {db_name} with (force)")).execute(&mut admin).await?;
    result
}

async fn bench(
    pool: &PgPool,
    sb: &common::Sandbox,
    http: &reqwest::Client,
    persons: usize,
) -> anyhow::Result<()> {
    let done = accounts::sign_up(
        pool,
        &Email::parse("bench@example.com")?,
        Password::parse_new("correct horse battery")?,
        &CompanyName::parse("Bench")?,
    )
    .await?;
    let member = accounts::authorize(pool, done.user_id, done.tenant_id).await?;
    let key = SecretKey::generate();
    let mut providers = Providers::sandbox("http://127.0.0.1:3000");
    providers.pipedrive_api = sb.pipedrive_url.clone();
    providers.pipedrive_oauth.server = sb.pipedrive_url.clone();
    providers.brevo_api = sb.brevo_url.clone();
    connections::connect_pipedrive_token(
        pool,
        &key,
        &providers,
        &member,
        Secret::new(TOKEN),
        "sandbox",
    )
    .await?;
    connections::connect_brevo(pool, &key, &providers, &member, Secret::new(BREVO_KEY)).await?;
    let mut lists = Vec::new();
    for name in ["All contacts", "Qualified leads", "Customers", "Churned", "Lost"] {
        let res: Value = http
            .post(format!("{}/v3/contacts/lists", sb.brevo_url))
            .header("api-key", BREVO_KEY)
            .json(&json!({"name": name, "folderId": 1}))
            .send()
            .await?
            .json()
            .await?;
        lists.push(res["id"].as_i64().unwrap_or_default());
    }
    let yaml = pipebridge::mapping::store::SEED_YAML
        .replace(
            "all_contacts: 60, qualified_leads: 61, customers: 62, churned: 63",
            &format!(
                "all_contacts: {}, qualified_leads: {}, customers: {}, churned: {}",
                lists[0], lists[1], lists[2], lists[3]
            ),
        )
        .replace(
            "  1: 61\n  2: 61\n  3: 62\n  4: 62\n  \"won\": 63\n  \"lost\": 64",
            &format!(
                "  1: {q}\n  2: {q}\n  3: {c}\n  4: {c}\n  \"won\": {c}\n  \"lost\": {l}",
                q = lists[1],
                c = lists[2],
                l = lists[4]
            ),
        );
    pipebridge::mapping::store::save(pool, &member, &yaml, None).await?;

    let limits = Arc::new(Registry::new(80, 10_000_000, 0.1));
    let services = Arc::new(Services::new(pool.clone(), key, providers, limits));
    let worker = Worker::new(
        pool.clone(),
        WorkerSettings { lease: Duration::from_secs(120), ..WorkerSettings::default() },
    )
    .register(sync::JOB_SYNC, SyncHandler::new(services.clone()));

    // The seed dates its latest changes a second before the sandbox started: let them fall out of
    // the incremental runs' 5-second overlap window, as older data would.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rss_start = common::mem_kib("VmRSS:");
    common::reset_peak();
    let backfill = one_run(pool, &member, &worker, sb, http, "manual").await?;
    let peak = common::mem_kib("VmHWM:");

    // 1% of the records change: persons renamed, deals moved to another stage, activities logged.
    let (n_persons, n_deals) = (persons / 100, persons / 200);
    for id in (1..=persons).step_by(100).take(n_persons) {
        http.patch(format!("{}/_sandbox/persons/{id}", sb.pipedrive_url))
            .json(&json!({"name": format!("Renamed {id}")}))
            .send()
            .await?;
    }
    for id in (1..=persons / 2).step_by(100).take(n_deals) {
        http.patch(format!("{}/_sandbox/deals/{id}", sb.pipedrive_url))
            .json(&json!({"stage_id": 2}))
            .send()
            .await?;
    }
    for i in 0..persons / 100 {
        http.post(format!("{}/_sandbox/activities", sb.pipedrive_url))
            .json(
                &json!({"subject": "Follow-up", "type": "call", "person_id": 1 + i * 97 % persons}),
            )
            .send()
            .await?;
    }
    // As the schedule queues it every minute; then a manual sync, which also looks for deleted
    // and merged persons (`/v1/recents`, which the schedule does every 15 minutes).
    let incremental = one_run(pool, &member, &worker, sb, http, "schedule").await?;
    let with_deletions = one_run(pool, &member, &worker, sb, http, "manual").await?;

    let pd_bound = backfill.pd_calls as f64 / 40.0;
    let brevo_bound = backfill.brevo_contact_calls.max(backfill.brevo_event_calls) as f64 / 10.0;
    let bound = pd_bound.max(brevo_bound);
    // No run can end before the last Pipedrive page is read and its contacts' import processed:
    // Brevo's sandbox keeps an import queued, then processing, a step each.
    let import_secs =
        2.0 * pipebridge_sandbox::Config::default().brevo.process_step_ms as f64 / 1000.0;
    let critical = pd_bound + import_secs;
    let wall = backfill.wall.as_secs_f64();
    let report = format!(
        "sync backfill and incremental — {date}\n\
         company: {persons} persons, {orgs} organizations, {deals} deals, {persons} activities, {leads} leads\n\
         limits: Pipedrive burst 80 / 2 s (client: 78 in any 2.01 s, counted to each answer), Brevo 10 contact calls/s, 10 event calls/s, 100 other calls/h (client 10% under)\n\n\
         backfill\n\
         \x20 wall time           {wall:.1} s\n\
         \x20 rate-limit bound    {bound:.1} s  (Pipedrive {pd_calls} calls / 40 per s = {pd_bound:.1} s; Brevo {bc} contact calls / 10 per s = {brevo_bound:.1} s)\n\
         \x20 wall / bound        {ratio:.1}%\n\
         \x20 critical path       {critical:.1} s  (the Pipedrive bound, then the last page's import: Brevo processes one in {import_secs:.1} s here)\n\
         \x20 wall / critical     {cratio:.1}%\n\
         \x20 Pipedrive tokens    {tokens}  (429s: {pd429})\n\
         \x20 Brevo calls         {calls}  (contacts {bc}, events {be}, other {bo}; 429s: {b429})\n\
         \x20 contact calls       {kinds}\n\
         \x20 peak memory (RSS)   {peak:.1} MiB  (at start {start:.1} MiB)\n\
         \x20 counts              {counts}\n\
         \x20 steps               {steps}\n\
         \x20 CPU time            {cpu}\n\n\
         incremental after 1% changed ({n_persons} persons renamed, {n_deals} deals moved, {n_acts} activities logged)\n\
         \x20 wall time           {iwall:.1} s\n\
         \x20 Pipedrive tokens    {itokens}  = {share:.2}% of the backfill's\n\
         \x20 Brevo calls         {icalls}\n\
         \x20 counts              {icounts}\n\
         \x20 steps               {isteps}\n\n\
         then a manual sync, nothing changed since (it also scans /v1/recents for deleted and merged persons)\n\
         \x20 wall time           {dwall:.1} s\n\
         \x20 Pipedrive tokens    {dtokens}  = {dshare:.2}% of the backfill's\n\
         \x20 Brevo calls         {dcalls}\n",
        date = time::OffsetDateTime::now_utc().date(),
        orgs = persons / 5,
        deals = persons / 2,
        leads = persons / 10,
        pd_calls = backfill.pd_calls,
        bc = backfill.brevo_contact_calls,
        be = backfill.brevo_event_calls,
        bo = backfill.brevo_other_calls,
        ratio = wall / bound * 100.0,
        cratio = wall / critical * 100.0,
        tokens = backfill.tokens,
        pd429 = backfill.pd_429,
        calls = backfill.brevo_calls,
        b429 = backfill.brevo_429,
        kinds = backfill.brevo_contact_kinds,
        peak = peak as f64 / 1024.0,
        start = rss_start as f64 / 1024.0,
        counts = backfill.counts,
        steps = steps_text(&backfill.steps),
        cpu = backfill.cpu,
        n_acts = persons / 100,
        iwall = incremental.wall.as_secs_f64(),
        itokens = incremental.tokens,
        share = incremental.tokens as f64 / backfill.tokens.max(1) as f64 * 100.0,
        icalls = incremental.brevo_calls,
        icounts = incremental.counts,
        isteps = steps_text(&incremental.steps),
        dwall = with_deletions.wall.as_secs_f64(),
        dtokens = with_deletions.tokens,
        dshare = with_deletions.tokens as f64 / backfill.tokens.max(1) as f64 * 100.0,
        dcalls = with_deletions.brevo_calls,
    );
    println!("{report}");
    if persons == 100_000 {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks/sync-backfill.txt"),
            &report,
        )?;
    }
    Ok(())
}

async fn one_run(
    pool: &PgPool,
    member: &accounts::Member,
    worker: &Worker,
    sb: &common::Sandbox,
    http: &reqwest::Client,
    trigger: &str,
) -> anyhow::Result<RunFigures> {
    http.delete(format!("{}/_sandbox/requests", sb.pipedrive_url)).send().await?;
    http.delete(format!("{}/_sandbox/requests", sb.brevo_url)).send().await?;
    let t = member.tenant_id;
    let job = sync::schedule::job(sync::JOB_SYNC, t, json!({"trigger": trigger}));
    pipebridge::queue::enqueue(pool, &job).await?;
    let cpu = || {
        (
            common::cpu_seconds(std::process::id()),
            common::cpu_seconds(sb.pid()),
            common::postgres_cpu_seconds(),
        )
    };
    let cpu_before = cpu();
    let started = Instant::now();
    let watcher = tokio::spawn(watch_steps(pool.clone(), started));
    let (_, outcome) = worker.run_next_job().await?.ok_or_else(|| anyhow::anyhow!("no job"))?;
    let wall = started.elapsed();
    let cpu_after = cpu();
    watcher.abort();
    let mut steps = STEPS.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default();
    if let Some(last) = steps.last_mut() {
        last.1 = wall.as_secs_f64() - last.1;
    }
    let (status, message, tokens, brevo_calls, counts): (String, Option<String>, i64, i64, Value) =
        sqlx::query_as("select status, message, pipedrive_tokens, brevo_calls, counts from sync_runs order by id desc limit 1").fetch_one(pool).await?;
    anyhow::ensure!(outcome == Outcome::Succeeded, "the run ended {status}: {message:?}");
    let pd_log: Vec<Value> =
        http.get(format!("{}/_sandbox/requests", sb.pipedrive_url)).send().await?.json().await?;
    let brevo_log: Value =
        http.get(format!("{}/_sandbox/requests", sb.brevo_url)).send().await?.json().await?;
    let brevo_log = brevo_log
        .as_array()
        .cloned()
        .or_else(|| brevo_log["requests"].as_array().cloned())
        .unwrap_or_default();
    let path = |r: &Value| r["path"].as_str().unwrap_or_default().to_owned();
    Ok(RunFigures {
        wall,
        tokens,
        brevo_calls,
        counts,
        pd_calls: pd_log.iter().filter(|r| path(r).starts_with("/api/")).count(),
        pd_429: pd_log.iter().filter(|r| r["status"] == 429).count(),
        brevo_contact_calls: brevo_log
            .iter()
            .filter(|r| path(r).starts_with("/v3/contacts"))
            .count(),
        brevo_event_calls: brevo_log.iter().filter(|r| path(r).starts_with("/v3/events")).count(),
        brevo_other_calls: brevo_log
            .iter()
            .filter(|r| !path(r).starts_with("/v3/contacts") && !path(r).starts_with("/v3/events"))
            .count(),
        brevo_429: brevo_log.iter().filter(|r| r["status"] == 429).count(),
        brevo_contact_kinds: {
            let contact_paths: Vec<String> =
                brevo_log.iter().map(path).filter(|p| p.starts_with("/v3/contacts")).collect();
            let kind = |p: &str| {
                if p == "/v3/contacts/import" {
                    "imports"
                } else if p.starts_with("/v3/contacts/lists/") && p.contains("/contacts/") {
                    "list adds and removals"
                } else if p.starts_with("/v3/contacts/attributes")
                    || p.starts_with("/v3/contacts/lists")
                    || p.starts_with("/v3/contacts/folders")
                {
                    "attributes and lists"
                } else {
                    "single contacts"
                }
            };
            let mut kinds: std::collections::BTreeMap<&str, usize> =
                std::collections::BTreeMap::new();
            for p in &contact_paths {
                *kinds.entry(kind(p)).or_default() += 1;
            }
            kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
        },
        steps,
        cpu: format!(
            "this process {:.1} s, sandbox {:.1} s, PostgreSQL {:.1} s (the machine has {} cores)",
            cpu_after.0 - cpu_before.0,
            cpu_after.1 - cpu_before.1,
            cpu_after.2 - cpu_before.2,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        ),
    })
}

/// The steps seen so far: (name, seconds in it), the last one holding its start until the run ends.
static STEPS: std::sync::Mutex<Vec<(String, f64)>> = std::sync::Mutex::new(Vec::new());

/// Polls the run's phase every 50 ms and records how long each step lasted.
async fn watch_steps(pool: PgPool, started: Instant) {
    loop {
        let phase: Option<String> =
            sqlx::query_scalar("select phase from sync_runs order by id desc limit 1")
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
                .flatten();
        let now = started.elapsed().as_secs_f64();
        if let (Some(phase), Ok(mut steps)) = (phase, STEPS.lock())
            && steps.last().is_none_or(|(name, _)| *name != phase)
        {
            if let Some(last) = steps.last_mut() {
                last.1 = now - last.1;
            }
            steps.push((phase, now));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn steps_text(steps: &[(String, f64)]) -> String {
    steps.iter().map(|(name, secs)| format!("{name} {secs:.1} s")).collect::<Vec<_>>().join(", ")
}

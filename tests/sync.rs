//! The sync engine end to end: a real PostgreSQL, the sandbox's Pipedrive and Brevo over HTTP,
//! the job queue and its worker. What Brevo should hold is computed here, independently, from the
//! sandbox's own API answers (plain JSON, not the product's models or mapping code).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pipebridge::accounts::{self, Member};
use pipebridge::connections::{self, Providers};
use pipebridge::domain::{CompanyName, Email, Password};
use pipebridge::pipedrive::limits::Registry;
use pipebridge::queue::{Outcome, Worker, WorkerSettings};
use pipebridge::secrets::{Secret, SecretKey};
use pipebridge::sync::{self, Services, SyncHandler};
use pipebridge_sandbox::brevo::DEFAULT_API_KEY;
use pipebridge_sandbox::pipedrive::DEFAULT_API_TOKEN;
use serde_json::{Value, json};
use sqlx::PgPool;

struct Setup {
    sb: pipebridge_sandbox::Running,
    member: Member,
    worker: Worker,
    services: Arc<Services>,
    lists: Lists,
    http: reqwest::Client,
}

#[derive(Clone, Copy)]
struct Lists {
    all: i64,
    qualified: i64,
    customers: i64,
    churned: i64,
    lost: i64,
}

async fn setup(pool: &PgPool, persons: usize, options: &str) -> Setup {
    // The engine's log, for a failing test: `RUST_LOG=pipebridge::sync=debug`.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let mut config = pipebridge_sandbox::Config::default();
    config.pipedrive.seed_persons = persons;
    config.brevo.rate_limits = false;
    let sb = pipebridge_sandbox::start(config).await.unwrap();
    let http = reqwest::Client::new();

    let done = accounts::sign_up(
        pool,
        &Email::parse("owner@example.com").unwrap(),
        Password::parse_new("correct horse battery").unwrap(),
        &CompanyName::parse("Acme").unwrap(),
    )
    .await
    .unwrap();
    let member = accounts::authorize(pool, done.user_id, done.tenant_id).await.unwrap();
    let key = SecretKey::generate();
    let mut providers = Providers::sandbox("http://127.0.0.1:3000");
    providers.pipedrive_oauth.server = sb.pipedrive_url.clone();
    providers.pipedrive_api = sb.pipedrive_url.clone();
    providers.brevo_api = sb.brevo_url.clone();
    connections::connect_pipedrive_token(
        pool,
        &key,
        &providers,
        &member,
        Secret::new(DEFAULT_API_TOKEN),
        "sandbox",
    )
    .await
    .unwrap();
    connections::connect_brevo(pool, &key, &providers, &member, Secret::new(DEFAULT_API_KEY))
        .await
        .unwrap();

    let mut ids = Vec::new();
    for name in ["All contacts", "Qualified leads", "Customers", "Churned", "Lost deals"] {
        let res: Value = http
            .post(format!("{}/v3/contacts/lists", sb.brevo_url))
            .header("api-key", DEFAULT_API_KEY)
            .json(&json!({"name": name, "folderId": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(res["id"].as_i64().unwrap());
    }
    let lists =
        Lists { all: ids[0], qualified: ids[1], customers: ids[2], churned: ids[3], lost: ids[4] };
    let yaml = format!(
        "connectors:
  pipedrive:
    sync: {{ persons: true, deals: true, organizations: true, activities: true, leads: true }}
    lists: {{ all_contacts: {}, qualified_leads: {}, customers: {}, churned: {} }}
person_mapping:
  email: email
  name: FULLNAME
  first_name: FIRSTNAME
  last_name: LASTNAME
  phone: SMS
  org_id.name: COMPANY
  won_deals_count: WON_DEALS
  lost_deals_count: LOST_DEALS
  open_deals_count: OPEN_DEALS
  closed_deals_count: CLOSED_DEALS
  total_revenue: LTV
  custom_fields.lead_source: LEAD_SOURCE
deal_stage_mapping: {{ 1: {q}, 2: {q}, 3: {c}, 4: {c}, won: {c}, lost: {l} }}
webhooks:
  - {{ event_action: added, event_object: person, brevo_event: contact_created }}
  - {{ event_action: merged, event_object: person, brevo_event: contact_merged }}
  - {{ event_action: added, event_object: activity, brevo_event: activity_logged }}
{options}",
        lists.all,
        lists.qualified,
        lists.customers,
        lists.churned,
        q = lists.qualified,
        c = lists.customers,
        l = lists.lost,
    );
    pipebridge::mapping::store::save(pool, &member, &yaml, None).await.unwrap();

    let limits = Arc::new(
        Registry::new(80, 10_000_000, 0.1)
            .with_brevo_rates(1_000, 1_000_000)
            .with_retry_base(std::time::Duration::from_millis(10)),
    );
    let services = Arc::new(Services::new(pool.clone(), key, providers, limits));
    let worker = new_worker(pool, &services);
    Setup { sb, member, worker, services, lists, http }
}

/// A sync worker in a process of its own (src/bin/queue_probe.rs), to be killed with SIGKILL.
fn worker_process(pool: &PgPool, key: &pipebridge::secrets::SecretKey) -> std::process::Child {
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let base = std::env::var("DATABASE_URL").unwrap();
    let url = format!("{}/{db}", base.rsplit_once('/').unwrap().0);
    std::process::Command::new(env!("CARGO_BIN_EXE_pipebridge-queue-probe"))
        .env("DATABASE_URL", url)
        .env("PROBE_SECRET_KEY", key.to_base64())
        .env("PROBE_LEASE_MS", "60000")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the worker process starts")
}

/// A worker, as another process would have.
fn new_worker(pool: &PgPool, services: &Arc<Services>) -> Worker {
    Worker::new(
        pool.clone(),
        WorkerSettings { lease: std::time::Duration::from_secs(60), ..WorkerSettings::default() },
    )
    .register(sync::JOB_SYNC, SyncHandler::new(services.clone()))
    .register(sync::JOB_FULL_RESYNC, SyncHandler::new(services.clone()))
}

impl Setup {
    async fn sync(&self, pool: &PgPool) -> (String, Value) {
        sync::request(pool, &self.member, false).await.unwrap();
        let (_, outcome) = self.worker.run_next_job().await.unwrap().expect("a queued sync");
        let run: (String, Value, Option<String>) =
            sqlx::query_as("select status, counts, message from sync_runs where tenant_id = $1 order by id desc limit 1")
                .bind(self.member.tenant_id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(outcome, Outcome::Succeeded, "run ended {} with {:?}", run.0, run.2);
        (run.0, run.1)
    }

    async fn pd_get(&self, path: &str, query: &[(&str, String)]) -> Value {
        self.http
            .get(format!("{}{path}", self.sb.pipedrive_url))
            .header("x-api-token", DEFAULT_API_TOKEN)
            .query(query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Every item of a v2 list.
    async fn pd_all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![("limit", "500".to_owned())];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self.pd_get(path, &q).await;
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["additional_data"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    async fn pd_admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let res = self
            .http
            .request(method, format!("{}{path}", self.sb.pipedrive_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    async fn get_json(&self, url: &str) -> Value {
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    async fn brevo_state(&self) -> Value {
        self.http
            .get(format!("{}/_sandbox/state", self.sb.brevo_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// What Brevo should hold, by email: attributes and list ids. Computed from the sandbox's
    /// answers with this test's own reading of the rules in PRODUCT.md and the mapping above.
    async fn expected(&self) -> BTreeMap<String, (BTreeMap<String, Value>, BTreeSet<i64>)> {
        let persons = self.pd_all("/api/v2/persons").await;
        let deals = self.pd_all("/api/v2/deals").await;
        let orgs: BTreeMap<u64, String> = self
            .pd_all("/api/v2/organizations")
            .await
            .iter()
            .map(|o| (o["id"].as_u64().unwrap(), o["name"].as_str().unwrap().to_owned()))
            .collect();
        let fields = self.pd_all("/api/v2/personFields").await;
        let lead_source = fields.iter().find(|f| f["field_name"] == "Lead source").unwrap();
        let source_key = lead_source["field_code"].as_str().unwrap().to_owned();
        let source_labels: BTreeMap<String, String> = lead_source["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["id"].to_string(), o["label"].as_str().unwrap().to_owned()))
            .collect();
        let mut lead_persons = BTreeSet::new();
        let mut start = 0;
        loop {
            let page = self
                .pd_get("/api/v1/leads", &[("start", start.to_string()), ("limit", "500".into())])
                .await;
            for l in page["data"].as_array().unwrap() {
                if l["is_archived"] != json!(true)
                    && let Some(p) = l["person_id"].as_u64()
                {
                    lead_persons.insert(p);
                }
            }
            let more = page["additional_data"]["pagination"]["more_items_in_collection"]
                .as_bool()
                .or(page["additional_data"]["more_items_in_collection"].as_bool());
            if more != Some(true) {
                break;
            }
            start += 500;
        }
        let l = self.lists;
        let valid = |e: &str| {
            let e = e.trim();
            let (local, domain) = e.split_once('@').unwrap_or(("", ""));
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.contains(' ')
        };
        let mut out = BTreeMap::new();
        let mut sorted = persons.clone();
        sorted.sort_by_key(|p| p["id"].as_u64());
        for p in sorted {
            let id = p["id"].as_u64().unwrap();
            let emails = p["emails"].as_array().cloned().unwrap_or_default();
            let email = emails
                .iter()
                .filter(|e| e["primary"] == json!(true))
                .chain(emails.iter())
                .filter_map(|e| e["value"].as_str())
                .find(|e| valid(e))
                .map(|e| e.trim().to_lowercase());
            let Some(email) = email else { continue };
            if out.contains_key(&email) {
                continue; // a lower id has it
            }
            let mine: Vec<&Value> =
                deals.iter().filter(|d| d["person_id"].as_u64() == Some(id)).collect();
            let status = |s: &str| mine.iter().filter(|d| d["status"] == s).count() as u64;
            let (won, lost, open) = (status("won"), status("lost"), status("open"));
            let ltv: f64 = mine
                .iter()
                .filter(|d| d["status"] == "won")
                .map(|d| d["value"].as_f64().unwrap())
                .sum();
            let mut attrs = BTreeMap::new();
            attrs.insert("FULLNAME".to_owned(), p["name"].clone());
            attrs.insert("FIRSTNAME".to_owned(), p["first_name"].clone());
            attrs.insert("LASTNAME".to_owned(), p["last_name"].clone());
            attrs.insert("WON_DEALS".to_owned(), json!(won as f64));
            attrs.insert("LOST_DEALS".to_owned(), json!(lost as f64));
            attrs.insert("OPEN_DEALS".to_owned(), json!(open as f64));
            attrs.insert("CLOSED_DEALS".to_owned(), json!((won + lost) as f64));
            attrs.insert("LTV".to_owned(), json!(ltv));
            if let Some(name) = p["org_id"].as_u64().and_then(|o| orgs.get(&o)) {
                attrs.insert("COMPANY".to_owned(), json!(name));
            }
            let phones = p["phones"].as_array().cloned().unwrap_or_default();
            let phone = phones
                .iter()
                .find(|x| x["primary"] == json!(true))
                .or(phones.first())
                .and_then(|x| x["value"].as_str());
            if let Some(ph) = phone.filter(|ph| ph.starts_with('+')) {
                // Brevo answers numbers without the `+`.
                attrs.insert("SMS".to_owned(), json!(ph.trim_start_matches('+').replace(' ', "")));
            }
            if let Some(label) =
                p["custom_fields"].get(&source_key).and_then(|v| source_labels.get(&v.to_string()))
            {
                attrs.insert("LEAD_SOURCE".to_owned(), json!(label));
            }
            let mut lists = BTreeSet::from([l.all]);
            for d in &mine {
                match d["status"].as_str().unwrap() {
                    "won" => {
                        lists.insert(l.customers);
                    }
                    "lost" => {
                        lists.insert(l.lost);
                    }
                    _ => match d["stage_id"].as_u64() {
                        Some(1 | 2) => {
                            lists.insert(l.qualified);
                        }
                        Some(3 | 4) => {
                            lists.insert(l.customers);
                        }
                        _ => {}
                    },
                }
            }
            if lost > 0 && won == 0 && open == 0 {
                lists.insert(l.churned);
            }
            if lead_persons.contains(&id) {
                lists.insert(l.qualified);
            }
            out.insert(email, (attrs, lists));
        }
        out
    }

    /// Brevo's contacts, by email: attributes and list ids.
    async fn actual(&self) -> BTreeMap<String, (BTreeMap<String, Value>, BTreeSet<i64>)> {
        let state = self.brevo_state().await;
        state["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let attrs: BTreeMap<String, Value> = c["attributes"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let lists: BTreeSet<i64> =
                    c["listIds"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
                (c["email"].as_str().unwrap_or_default().to_owned(), (attrs, lists))
            })
            .collect()
    }

    async fn brevo_writes(&self) -> Vec<Value> {
        let log: Value = self
            .http
            .get(format!("{}/_sandbox/requests", self.sb.brevo_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = log
            .as_array()
            .cloned()
            .or_else(|| log["requests"].as_array().cloned())
            .unwrap_or_default();
        entries.into_iter().filter(|r| r["method"] != "GET").collect()
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Every expected contact is in Brevo with the expected attributes and lists.
fn assert_matches(
    expected: &BTreeMap<String, (BTreeMap<String, Value>, BTreeSet<i64>)>,
    actual: &BTreeMap<String, (BTreeMap<String, Value>, BTreeSet<i64>)>,
) {
    for (email, (attrs, lists)) in expected {
        let (got, got_lists) =
            actual.get(email).unwrap_or_else(|| panic!("{email} is missing from Brevo"));
        for (k, v) in attrs {
            let g = got.get(k).unwrap_or(&Value::Null);
            let same = g == v || num(g).zip(num(v)).is_some_and(|(a, b)| (a - b).abs() < 1e-6);
            assert!(same, "{email}: {k} is {g}, expected {v}");
        }
        assert_eq!(got_lists, lists, "{email}: lists ({got:?})");
    }
}

async fn count(pool: &PgPool, sql: &str, tenant: pipebridge::domain::TenantId) -> i64 {
    sqlx::query_scalar(sql).bind(tenant).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn backfill_then_incremental_bring_brevo_to_the_expected_state(pool: PgPool) {
    let s = setup(&pool, 300, "").await;
    let t = s.member.tenant_id;

    // Backfill.
    let (status, counts) = s.sync(&pool).await;
    assert_eq!(status, "succeeded");
    let expected = s.expected().await;
    let actual = s.actual().await;
    assert!(expected.len() > 200, "most of 300 persons have an email: {}", expected.len());
    assert_eq!(actual.len(), expected.len(), "one contact per person with an email, no duplicates");
    assert_matches(&expected, &actual);
    assert_eq!(counts["person"]["created"].as_u64().unwrap() as usize, expected.len());
    // The bulk path was used, and no event was sent for the past.
    let state = s.brevo_state().await;
    assert!(
        !state["processes"].as_array().unwrap().is_empty(),
        "contacts imported through /contacts/import"
    );
    assert!(
        state["events"].as_array().unwrap().is_empty(),
        "a backfill fires no automations for the past"
    );
    // Attributes the mapping needs were created with fitting types.
    let attrs = state["attributes"].to_string();
    assert!(attrs.contains("LEAD_SOURCE") && attrs.contains("LTV"), "{attrs}");
    // Persons without an email are reported, with the reason.
    let no_email = count(&pool, "select count(*) from record_errors where tenant_id = $1 and reason like 'No valid email%' and status = 'open'", t).await;
    assert!(no_email > 0);
    let bad_phone = count(&pool, "select count(*) from record_errors where tenant_id = $1 and reason like '%not a valid number%'", t).await;
    assert!(bad_phone > 0, "555-… phones are reported, their contacts synced without SMS");
    // Companies: a first batch, linked to their contacts.
    let companies = state["companies"].as_array().unwrap();
    assert!(!companies.is_empty());
    assert!(companies.iter().all(|c| !c["linkedContactsIds"].as_array().unwrap().is_empty()));
    // Their contacts' ids came from the head start (up to 40 contacts created in one import while
    // deals were read, their ids read from the newest contacts), not from a lookup per contact.
    let linked: usize =
        companies.iter().map(|c| c["linkedContactsIds"].as_array().unwrap().len()).sum();
    let log: Value = s
        .http
        .get(format!("{}/_sandbox/requests", s.sb.brevo_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lookups: Vec<&Value> = log["requests"]
        .as_array()
        .or(log.as_array())
        .unwrap()
        .iter()
        .filter(|r| {
            r["method"] == "GET"
                && r["query"].as_str().is_some_and(|q| q.contains("identifierType=email_id"))
        })
        .collect();
    assert!(
        lookups.len() <= linked.saturating_sub(40),
        "{} contacts linked, looked up: {lookups:?}",
        linked
    );

    // A second run with nothing changed writes nothing to Brevo.
    s.http.delete(format!("{}/_sandbox/requests", s.sb.brevo_url)).send().await.unwrap();
    let (_, counts) = s.sync(&pool).await;
    let writes: Vec<Value> = s
        .brevo_writes()
        .await
        .into_iter()
        .filter(|r| !r["path"].as_str().unwrap_or("").starts_with("/v3/companies"))
        .collect();
    assert!(writes.is_empty(), "no contact, list or event write: {writes:?}");
    assert_eq!(
        counts["person"]["created"].as_u64().unwrap_or(0)
            + counts["person"]["updated"].as_u64().unwrap_or(0),
        0,
        "{counts}"
    );

    // Changes in Pipedrive.
    let persons = s.pd_all("/api/v2/persons").await;
    let deals = s.pd_all("/api/v2/deals").await;
    let with_email = |p: &&Value| {
        p["emails"].as_array().is_some_and(|e| {
            e.iter().any(|e| e["value"].as_str().is_some_and(|v| v.ends_with("@example.com")))
        })
    };
    let synced: Vec<&Value> = persons.iter().filter(with_email).collect();
    let fields = s.pd_all("/api/v2/personFields").await;
    let source = fields.iter().find(|f| f["field_name"] == "Lead source").unwrap();
    let (source_key, referral) =
        (source["field_code"].as_str().unwrap(), source["options"][1]["id"].clone());
    // New person.
    s.pd_admin(reqwest::Method::POST, "/_sandbox/persons", json!({"name": "Nia New", "emails": [{"value": "nia.new@example.org", "primary": true}], "phones": [{"value": "+37255512345", "primary": true}]})).await;
    // Edited custom field.
    let edited = synced[0]["id"].as_u64().unwrap();
    s.pd_admin(
        reqwest::Method::PATCH,
        &format!("/_sandbox/persons/{edited}"),
        json!({"custom_fields": {source_key: referral}}),
    )
    .await;
    // A deal moves stage, another is won.
    let open: Vec<&Value> = deals
        .iter()
        .filter(|d| {
            d["status"] == "open"
                && d["person_id"]
                    .as_u64()
                    .is_some_and(|p| synced.iter().any(|s| s["id"].as_u64() == Some(p)))
        })
        .collect();
    let moved = open.iter().find(|d| d["stage_id"].as_u64() == Some(1)).unwrap();
    s.pd_admin(
        reqwest::Method::PATCH,
        &format!("/_sandbox/deals/{}", moved["id"]),
        json!({"stage_id": 3}),
    )
    .await;
    let won = open.iter().find(|d| d["id"] != moved["id"]).unwrap();
    s.pd_admin(
        reqwest::Method::PATCH,
        &format!("/_sandbox/deals/{}", won["id"]),
        json!({"status": "won"}),
    )
    .await;
    // Activity logged.
    let active_person = synced[1]["id"].as_u64().unwrap();
    s.pd_admin(
        reqwest::Method::POST,
        "/_sandbox/activities",
        json!({"subject": "Demo call", "type": "call", "person_id": active_person}),
    )
    .await;
    // Person merged, person deleted.
    let (gone, kept) = (synced[2]["id"].as_u64().unwrap(), synced[3]["id"].as_u64().unwrap());
    let gone_email = synced[2]["emails"][0]["value"].as_str().unwrap().to_lowercase();
    s.pd_admin(
        reqwest::Method::POST,
        &format!("/_sandbox/persons/{gone}/merge"),
        json!({"merge_with_id": kept}),
    )
    .await;
    let deleted = synced[4]["id"].as_u64().unwrap();
    let deleted_email = synced[4]["emails"][0]["value"].as_str().unwrap().to_lowercase();
    s.pd_admin(reqwest::Method::DELETE, &format!("/_sandbox/persons/{deleted}"), json!({})).await;

    let (_, counts) = s.sync(&pool).await;
    let expected = s.expected().await;
    let actual = s.actual().await;
    assert_matches(&expected, &actual);
    assert!(actual.contains_key("nia.new@example.org"));
    // Deleted and merged-away persons leave the synced lists (deletion by setting: unlink).
    for email in [&gone_email, &deleted_email] {
        if !expected.contains_key(email) {
            assert_eq!(actual[email].1, BTreeSet::new(), "{email} left every synced list");
        }
    }
    assert!(counts["person"]["deleted"].as_u64().unwrap() >= 2, "{counts}");
    let events = s.brevo_state().await["events"].as_array().unwrap().clone();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event_name"].as_str()).collect();
    assert!(names.contains(&"deal_stage_changed"), "{names:?}");
    assert!(names.contains(&"activity_logged"), "{names:?}");
    assert!(names.contains(&"contact_created"), "{names:?}");
    assert!(names.contains(&"contact_merged"), "{names:?}");
    let stage_event = events
        .iter()
        .find(|e| {
            e["event_name"] == "deal_stage_changed"
                && e["event_properties"]["dealId"] == moved["id"]
        })
        .expect("the moved deal's event");
    assert_eq!(stage_event["event_properties"]["previousStage"], "Qualified");
    assert_eq!(stage_event["event_properties"]["newStage"], "Proposal made");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_burst_of_changes_is_imported_in_groups_and_brevo_ends_as_expected(pool: PgPool) {
    let s = setup(&pool, 300, "").await;
    let t = s.member.tenant_id;
    s.sync(&pool).await;

    // 150 synced persons renamed, one of them given a phone another contact has; 40 deals moved
    // from the qualified stages to a customer stage.
    let persons = s.pd_all("/api/v2/persons").await;
    let synced: Vec<&Value> = persons
        .iter()
        .filter(|p| {
            p["emails"].as_array().is_some_and(|e| {
                e.iter().any(|e| e["value"].as_str().is_some_and(|v| v.ends_with("@example.com")))
            })
        })
        .collect();
    assert!(synced.len() >= 150, "{}", synced.len());
    let before = s.actual().await;
    let taken = before
        .values()
        .find_map(|(a, _)| a.get("SMS").and_then(Value::as_str).map(str::to_owned))
        .unwrap();
    for (i, p) in synced.iter().take(150).enumerate() {
        let mut change = json!({"name": format!("Renamed Person{i}")});
        if i == 7 {
            change["phones"] = json!([{"value": format!("+{taken}"), "primary": true}]);
        }
        s.pd_admin(reqwest::Method::PATCH, &format!("/_sandbox/persons/{}", p["id"]), change).await;
    }
    let taker = synced[7]["id"].as_u64().unwrap().to_string();
    // And 12 new persons: the mapping sends `contact_created` for each, once.
    let new_emails: Vec<String> = (0..12).map(|i| format!("burst.new{i}@example.org")).collect();
    for (i, email) in new_emails.iter().enumerate() {
        s.pd_admin(
            reqwest::Method::POST,
            "/_sandbox/persons",
            json!({"name": format!("Burst New{i}"), "emails": [{"value": email, "primary": true}]}),
        )
        .await;
    }
    let deals = s.pd_all("/api/v2/deals").await;
    let qualified: Vec<&Value> = deals
        .iter()
        .filter(|d| {
            d["status"] == "open"
                && matches!(d["stage_id"].as_u64(), Some(1 | 2))
                && d["person_id"].is_u64()
        })
        .take(40)
        .collect();
    assert!(qualified.len() >= 20, "{}", qualified.len());
    for d in &qualified {
        s.pd_admin(
            reqwest::Method::PATCH,
            &format!("/_sandbox/deals/{}", d["id"]),
            json!({"stage_id": 3}),
        )
        .await;
    }

    s.http.delete(format!("{}/_sandbox/requests", s.sb.brevo_url)).send().await.unwrap();
    let (_, counts) = s.sync(&pool).await;
    let mut expected = s.expected().await;
    let actual = s.actual().await;
    assert_eq!(actual.len(), expected.len(), "one contact per person, no duplicates");
    // Brevo refuses the taken phone: that contact keeps what it had (checked below).
    let taker_email = synced[7]["emails"][0]["value"].as_str().unwrap().to_lowercase();
    expected.get_mut(&taker_email).unwrap().0.remove("SMS");
    assert_ne!(actual[&taker_email].0.get("SMS"), Some(&json!(taken)));
    assert_matches(&expected, &actual);
    assert!(counts["person"]["updated"].as_u64().unwrap() >= 150, "{counts}");
    // Grouped: a few imports, not a call per changed person.
    let writes = s.brevo_writes().await;
    let imports = writes.iter().filter(|r| r["path"] == "/v3/contacts/import").count();
    let single = writes
        .iter()
        .filter(|r| {
            r["path"].as_str().is_some_and(|p| {
                p.starts_with("/v3/contacts")
                    && !p.starts_with("/v3/contacts/import")
                    && !p.starts_with("/v3/contacts/lists")
            })
        })
        .count();
    assert!(imports >= 1, "{writes:?}");
    let written = counts["person"]["updated"].as_u64().unwrap()
        + counts["person"]["created"].as_u64().unwrap();
    assert!(
        imports >= 2 && single + imports < written as usize / 2,
        "{single} contacts written one by one, {imports} imports, {written} written"
    );
    // The taken phone was found among the imported rows: that contact is synced without it and
    // its error says why.
    let reason: String = sqlx::query_scalar("select reason from record_errors where tenant_id = $1 and pipedrive_id = $2 and status = 'open'")
        .bind(t)
        .bind(&taker)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(reason.contains("already belongs to another Brevo contact"), "{reason}");
    let events = s.brevo_state().await["events"].as_array().unwrap().clone();
    for email in &new_emails {
        let sent = events
            .iter()
            .filter(|e| {
                e["event_name"] == "contact_created"
                    && e["email"].as_str().or(e["identifiers"]["email_id"].as_str())
                        == Some(email.as_str())
            })
            .count();
        assert_eq!(sent, 1, "contact_created for {email}: {events:?}");
    }

    // What the imports wrote is recorded: a run with nothing changed writes nothing.
    s.http.delete(format!("{}/_sandbox/requests", s.sb.brevo_url)).send().await.unwrap();
    s.sync(&pool).await;
    let writes: Vec<Value> = s
        .brevo_writes()
        .await
        .into_iter()
        .filter(|r| !r["path"].as_str().unwrap_or("").starts_with("/v3/companies"))
        .collect();
    assert!(writes.is_empty(), "no contact, list or event write: {writes:?}");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn companies_take_only_the_brevo_calls_the_hour_has_left_and_never_hold_the_sync_up(
    pool: PgPool,
) {
    let s = setup(&pool, 300, "").await;
    s.sync(&pool).await;
    let companies = |state: &Value| state["companies"].as_array().map_or(0, Vec::len);
    let after_backfill = companies(&s.brevo_state().await);
    assert_eq!(after_backfill, 10, "a first batch of ten");

    // Brevo's bucket for companies (and processes) with 3 calls left in the hour: a call beyond
    // them would wait 20 minutes for its turn.
    let limits = Arc::new(
        Registry::new(80, 10_000_000, 0.1)
            .with_brevo_rates(1_000, 3)
            .with_retry_base(std::time::Duration::from_millis(10)),
    );
    let services = Arc::new(Services::new(
        pool.clone(),
        s.services.key.clone(),
        s.services.providers.clone(),
        limits,
    ));
    let worker = new_worker(&pool, &services);
    sync::request(&pool, &s.member, false).await.unwrap();
    let run =
        tokio::time::timeout(std::time::Duration::from_secs(120), worker.run_next_job()).await;
    let (_, outcome) = run
        .expect("the run waited for Brevo's hourly bucket instead of leaving companies for later")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        companies(&s.brevo_state().await),
        after_backfill + 3,
        "three more companies, the rest later"
    );
    let message: Option<String> = sqlx::query_scalar(
        "select message from sync_runs where tenant_id = $1 order by id desc limit 1",
    )
    .bind(s.member.tenant_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        message.as_deref().is_some_and(|m| m.contains("wait for their Brevo company")),
        "{message:?}"
    );
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn bad_records_become_errors_while_the_rest_syncs_and_can_be_retried(pool: PgPool) {
    let s = setup(&pool, 60, "").await;
    let t = s.member.tenant_id;
    s.sync(&pool).await;
    // A new person whose phone belongs to another contact already.
    let actual = s.actual().await;
    let taken = actual
        .values()
        .find_map(|(a, _)| a.get("SMS").and_then(Value::as_str).map(str::to_owned))
        .unwrap();
    s.pd_admin(reqwest::Method::POST, "/_sandbox/persons", json!({"name": "Sam Same", "emails": [{"value": "sam.same@example.org", "primary": true}], "phones": [{"value": format!("+{taken}"), "primary": true}]})).await;
    s.pd_admin(
        reqwest::Method::POST,
        "/_sandbox/persons",
        json!({"name": "No Mail", "emails": [{"value": "not-an-email", "primary": true}]}),
    )
    .await;
    s.sync(&pool).await;
    let actual = s.actual().await;
    let (attrs, lists) = &actual["sam.same@example.org"];
    assert!(!attrs.contains_key("SMS"), "synced without the taken phone");
    assert!(lists.contains(&s.lists.all));
    let reasons: Vec<(i64, String, String)> =
        sqlx::query_as("select id, pipedrive_id, reason from record_errors where tenant_id = $1 and status = 'open' order by id").bind(t).fetch_all(&pool).await.unwrap();
    let sms = reasons
        .iter()
        .find(|(_, _, r)| r.contains("already belongs to another Brevo contact"))
        .unwrap_or_else(|| {
            panic!("the SMS error: {reasons:?} {:?}", actual.get("sam.same@example.org"))
        });
    assert!(reasons.iter().any(|(_, _, r)| r.starts_with("No valid email")));

    // Retry one: still taken, so it is reported again; the run records it.
    assert!(sync::retry(&pool, &s.member, Some(sms.0)).await.unwrap());
    let (_, outcome) = s.worker.run_next_job().await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    let status: String = sqlx::query_scalar("select status from record_errors where tenant_id = $1 and pipedrive_id = $2 and status <> 'resolved'")
        .bind(t)
        .bind(&sms.1)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "open");
    // Free the phone in Brevo, retry: resolved.
    let owner = actual
        .iter()
        .find(|(_, (a, _))| a.get("SMS").and_then(Value::as_str) == Some(taken.as_str()))
        .unwrap()
        .0
        .clone();
    s.http
        .put(format!("{}/v3/contacts/{owner}", s.sb.brevo_url))
        .header("api-key", DEFAULT_API_KEY)
        .json(&json!({"attributes": {"SMS": ""}}))
        .send()
        .await
        .unwrap();
    assert!(sync::retry(&pool, &s.member, Some(
        sqlx::query_scalar::<_, i64>("select id from record_errors where tenant_id = $1 and pipedrive_id = $2 and status = 'open'").bind(t).bind(&sms.1).fetch_one(&pool).await.unwrap()
    )).await.unwrap());
    s.worker.run_next_job().await.unwrap().unwrap();
    let open: i64 = sqlx::query_scalar("select count(*) from record_errors where tenant_id = $1 and pipedrive_id = $2 and status <> 'resolved'").bind(t).bind(&sms.1).fetch_one(&pool).await.unwrap();
    assert_eq!(open, 0, "resolved once the phone was free");
    assert_eq!(s.actual().await["sam.same@example.org"].0["SMS"], json!(taken));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_sync_without_a_mapping_fails_with_a_clear_message(pool: PgPool) {
    let s = setup(&pool, 10, "").await;
    sqlx::query("delete from mapping_versions").execute(&pool).await.unwrap();
    sync::request(&pool, &s.member, false).await.unwrap();
    let (_, outcome) = s.worker.run_next_job().await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Dead);
    let (status, message): (String, String) =
        sqlx::query_as("select status, message from sync_runs").fetch_one(&pool).await.unwrap();
    assert_eq!(status, "failed");
    assert!(message.contains("save one on the Mappings page"), "{message}");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn faults_on_both_sides_and_a_killed_worker_converge_without_loss_or_duplicates(
    pool: PgPool,
) {
    let s = setup(&pool, 1_200, "").await;
    let faults = |url: &str, body: Value| {
        let (http, url) = (s.http.clone(), format!("{url}/_sandbox/faults"));
        async move { assert!(http.post(url).json(&body).send().await.unwrap().status().is_success()) }
    };
    faults(&s.sb.pipedrive_url, json!({"error_rate": 0.2})).await;
    faults(&s.sb.brevo_url, json!({"error_rate": 0.2, "import_refuse_share": 0.05})).await;

    // Imports of 100 rows at most, and no row waits for its group past the next page: at this
    // size too the backfill imports and checkpoints while it reads.
    let services = &Arc::new(
        Services::new(
            pool.clone(),
            s.services.key.clone(),
            s.services.providers.clone(),
            s.services.limits.clone(),
        )
        .with_bulk(sync::Bulk { import_rows: 100, hold_pages: 1, ..Default::default() }),
    );
    // The first worker dies in the middle of the persons, once Brevo has accepted an import: an
    // import is not confirmed at once, so its pages' checkpoints wait for it, and its pages are
    // read and imported again.
    sync::request(&pool, &s.member, false).await.unwrap();
    let first = new_worker(&pool, services);
    // It takes the job up again should a fault end an attempt before that.
    let first_pool = pool.clone();
    let running = tokio::spawn(async move {
        loop {
            sqlx::query("update jobs set run_at = now() where state = 'queued'")
                .execute(&first_pool)
                .await
                .unwrap();
            if first.run_next_job().await.unwrap().is_none() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let imports = s.brevo_state().await["processes"].as_array().map_or(0, Vec::len);
        if imports > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the backfill never reached the persons");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    running.abort();
    let _ = running.await;
    // Its lease runs out; another process's worker takes the job over, through a 429 storm too.
    sqlx::query(
        "update jobs set lease_expires_at = now() - interval '1 second' where state = 'running'",
    )
    .execute(&pool)
    .await
    .unwrap();
    faults(&s.sb.pipedrive_url, json!({"error_rate": 0.2, "storm_429_seconds": 3})).await;
    let second = new_worker(&pool, services);
    let mut outcome = None;
    for _ in 0..40 {
        // Retries wait for their backoff: make them due now.
        sqlx::query("update jobs set run_at = now() where state = 'queued'")
            .execute(&pool)
            .await
            .unwrap();
        if let Some((_, o)) = second.run_next_job().await.unwrap() {
            if o == Outcome::Succeeded {
                outcome = Some(o);
                break;
            }
            assert_ne!(o, Outcome::Dead, "the job died");
        }
    }
    assert_eq!(outcome, Some(Outcome::Succeeded), "the run converged");
    let runs: Vec<(String, i64)> =
        sqlx::query_as("select status, job_id from sync_runs").fetch_all(&pool).await.unwrap();
    assert_eq!(runs.len(), 1, "the second worker continued the same run: {runs:?}");

    faults(&s.sb.pipedrive_url, json!({})).await;
    faults(&s.sb.brevo_url, json!({})).await;
    let expected = s.expected().await;
    let state = s.brevo_state().await;
    let emails: Vec<&str> =
        state["contacts"].as_array().unwrap().iter().filter_map(|c| c["email"].as_str()).collect();
    let unique: BTreeSet<&str> = emails.iter().copied().collect();
    assert_eq!(emails.len(), unique.len(), "no duplicate contact");
    assert_eq!(unique.len(), expected.len(), "nothing lost");
    let actual = s.actual().await;
    for (email, (_, lists)) in &expected {
        if actual.get(email).map(|a| &a.1) != Some(lists) {
            let links: Vec<(String, String, Option<i64>, Value)> = sqlx::query_as("select entity, pipedrive_id, person_id, facts from record_links where brevo_ref = $1 or person_id = (select pipedrive_id::bigint from record_links where brevo_ref = $1 limit 1)")
                .bind(email).fetch_all(&pool).await.unwrap();
            let log: Value = s
                .http
                .get(format!("{}/_sandbox/requests", s.sb.brevo_url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let lists_log: Vec<String> = log
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|r| r["path"].as_str().unwrap_or("").contains("/lists/"))
                .map(|r| format!("{} {}", r["path"], r["status"]))
                .collect();
            eprintln!("DIAG {email}: links {links:?}\nlist calls {lists_log:?}");
        }
    }
    assert_matches(&expected, &actual);
    let refused: i64 = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["info"]["import"]["invalid_emails"].as_i64())
        .sum();
    assert!(refused > 0, "the import really dropped rows, and they were written one by one");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn missing_attributes_are_reported_by_setting_and_a_full_resync_writes_everything_again(
    pool: PgPool,
) {
    let s = setup(&pool, 40, "options:\n  create_missing_attributes: false\n").await;
    s.sync(&pool).await;
    let (message,): (Option<String>,) =
        sqlx::query_as("select message from sync_runs order by id desc limit 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let message = message.unwrap_or_default();
    assert!(
        message.contains("Brevo has no attribute") && message.contains("LEAD_SOURCE"),
        "{message}"
    );
    assert!(
        !s.brevo_state().await["attributes"].to_string().contains("LEAD_SOURCE"),
        "not created"
    );
    let contacts = s.actual().await.len() as u64;

    sync::request(&pool, &s.member, true).await.unwrap();
    let (_, outcome) = s.worker.run_next_job().await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    let (mode, counts): (String, Value) =
        sqlx::query_as("select mode, counts from sync_runs order by id desc limit 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(mode, "backfill");
    assert_eq!(
        counts["person"]["updated"].as_u64().unwrap(),
        contacts,
        "every contact written again: {counts}"
    );
    assert_eq!(s.actual().await.len() as u64, contacts, "and no new one");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_spent_daily_budget_makes_the_sync_wait_not_fail_and_continue_later(pool: PgPool) {
    let s = setup(&pool, 40, "").await;
    // The company's own budget, far below what a backfill spends (set directly: the form's
    // minimum is 1,000 tokens).
    sqlx::query("update connections set daily_token_budget = 30 where provider = 'pipedrive'")
        .execute(&pool)
        .await
        .unwrap();
    sync::request(&pool, &s.member, false).await.unwrap();
    let (_, outcome) = s.worker.run_next_job().await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Snoozed, "waits for the budget, spends no attempt");
    let (status, message): (String, String) =
        sqlx::query_as("select status, message from sync_runs").fetch_one(&pool).await.unwrap();
    assert_eq!(status, "waiting");
    assert!(message.contains("daily token budget"), "{message}");
    let (attempts, wait): (i32, f64) =
        sqlx::query_as("select attempts, extract(epoch from run_at - now())::float8 from jobs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(attempts, 0);
    assert!(wait > 50.0, "until the budget renews, not a tight loop: {wait} s");
    let log: Vec<Value> = s
        .http
        .get(format!("{}/_sandbox/requests", s.sb.pipedrive_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log.iter().all(|r| r["status"] != 429), "never spent into 429s");

    // A larger budget (the company's plan changed): the same run continues and finishes.
    connections::set_daily_budget(&pool, &s.member, Some(100_000)).await.unwrap();
    assert!(
        connections::set_daily_budget(&pool, &s.member, Some(10)).await.is_err(),
        "a budget below 1,000 is refused"
    );
    sqlx::query("update jobs set run_at = now()").execute(&pool).await.unwrap();
    let (_, outcome) = s.worker.run_next_job().await.unwrap().unwrap();
    let (message,): (Option<String>,) =
        sqlx::query_as("select message from sync_runs").fetch_one(&pool).await.unwrap();
    assert_eq!(outcome, Outcome::Succeeded, "{message:?}");
    let runs: Vec<(String,)> =
        sqlx::query_as("select status from sync_runs").fetch_all(&pool).await.unwrap();
    assert_eq!(runs, vec![("succeeded".to_owned(),)]);
}

/// The outbox: a worker process killed (SIGKILL) after its run recorded its deals and
/// activities and before its events step loses no event; the worker that takes the job over
/// sends each once.
#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_run_stopped_before_its_events_step_loses_no_event(pool: PgPool) {
    let s = setup(&pool, 60, "").await;
    let t = s.member.tenant_id;
    s.sync(&pool).await;
    let persons = s.pd_all("/api/v2/persons").await;
    let linked: Vec<u64> =
        sqlx::query_scalar::<_, String>("select pipedrive_id from record_links where tenant_id = $1 and entity = 'person' and brevo_ref is not null")
            .bind(t)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|id| id.parse().unwrap())
            .collect();
    let deals = s.pd_all("/api/v2/deals").await;
    let moved = deals
        .iter()
        .find(|d| {
            d["status"] == "open"
                && d["stage_id"].as_u64() == Some(1)
                && d["person_id"].as_u64().is_some_and(|p| linked.contains(&p))
        })
        .expect("an open deal of a synced person in the first stage")
        .clone();
    s.pd_admin(
        reqwest::Method::PATCH,
        &format!("/_sandbox/deals/{}", moved["id"]),
        json!({"stage_id": 3}),
    )
    .await;
    let active = persons
        .iter()
        .find(|p| p["id"].as_u64().is_some_and(|id| linked.contains(&id)))
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let activity = s
        .pd_admin(
            reqwest::Method::POST,
            "/_sandbox/activities",
            json!({"subject": "Demo call", "type": "call", "person_id": active}),
        )
        .await;
    let faults = |body: Value| {
        let (http, url) = (s.http.clone(), format!("{}/_sandbox/faults", s.sb.brevo_url));
        async move { assert!(http.post(url).json(&body).send().await.unwrap().status().is_success()) }
    };
    // Brevo answers slowly: the run is caught between its recorded pages and its events step.
    faults(json!({"latency_ms": 400})).await;
    sync::request(&pool, &s.member, false).await.unwrap();
    let mut process = worker_process(&pool, &s.services.key);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(&pool, "select count(*) from sync_outbox where tenant_id = $1 and status = 'pending' and event_name = 'activity_logged'", t).await == 0 {
        assert!(std::time::Instant::now() < deadline, "the activity's page was never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    process.kill().unwrap();
    process.wait().unwrap();
    let sent = |state: Value, name: &'static str, key: &'static str, id: Value| {
        state["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event_name"] == name && e["event_properties"][key] == id)
            .count()
    };
    assert_eq!(
        sent(s.brevo_state().await, "deal_stage_changed", "dealId", moved["id"].clone()),
        0,
        "not sent before the stop"
    );
    let waiting = count(
        &pool,
        "select count(*) from sync_outbox where tenant_id = $1 and status = 'pending'",
        t,
    )
    .await;
    assert!(waiting >= 2, "the stage change and the activity wait in the outbox ({waiting})");

    // The worker is gone: its lease runs out and another takes the job over.
    faults(json!({})).await;
    sqlx::query(
        "update jobs set lease_expires_at = now() - interval '1 second' where state = 'running'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (_, outcome) =
        new_worker(&pool, &s.services).run_next_job().await.unwrap().expect("the job again");
    assert_eq!(outcome, Outcome::Succeeded);
    let state = s.brevo_state().await;
    assert_eq!(
        sent(state.clone(), "deal_stage_changed", "dealId", moved["id"].clone()),
        1,
        "the stage change, once"
    );
    assert_eq!(
        sent(state, "activity_logged", "activityId", activity["data"]["id"].clone()),
        1,
        "the activity, once"
    );
    assert_eq!(
        count(
            &pool,
            "select count(*) from sync_outbox where tenant_id = $1 and status = 'pending'",
            t
        )
        .await,
        0
    );
}

/// Lease fencing: once another worker holds the job, the run that lost it commits nothing more,
/// and once its worker has noticed (at its next heartbeat), none of its tasks writes to Brevo.
#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_run_that_lost_its_lease_commits_and_writes_nothing_more(pool: PgPool) {
    let s = setup(&pool, 1_500, "").await;
    let t = s.member.tenant_id;
    let faults = |body: Value| {
        let (http, url) = (s.http.clone(), format!("{}/_sandbox/faults", s.sb.brevo_url));
        async move { assert!(http.post(url).json(&body).send().await.unwrap().status().is_success()) }
    };
    faults(json!({"latency_ms": 150})).await;
    let services = Arc::new(
        Services::new(
            pool.clone(),
            s.services.key.clone(),
            s.services.providers.clone(),
            s.services.limits.clone(),
        )
        .with_bulk(sync::Bulk { import_rows: 100, hold_pages: 1, ..Default::default() }),
    );
    let worker = Worker::new(
        pool.clone(),
        WorkerSettings {
            lease: std::time::Duration::from_millis(1500),
            ..WorkerSettings::default()
        },
    )
    .register(sync::JOB_SYNC, SyncHandler::new(services));
    sync::request(&pool, &s.member, false).await.unwrap();
    let running = tokio::spawn(async move { worker.run_next_job().await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(
        &pool,
        "select count(*) from sync_checkpoints where tenant_id = $1 and entity = 'person'",
        t,
    )
    .await
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "the backfill never reached the persons");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Another worker takes the job over (as after an expired lease).
    let taken: time::OffsetDateTime = sqlx::query_scalar(
        "update jobs set lease_owner = 'the-other-worker', lease_expires_at = now() + interval '10 minutes'
         where state = 'running' returning now()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (_, outcome) = running.await.unwrap().unwrap().unwrap();
    assert_eq!(outcome, Outcome::LeaseLost);
    let requests = || async {
        let brevo = s.get_json(&format!("{}/_sandbox/requests", s.sb.brevo_url)).await;
        let pipedrive = s.get_json(&format!("{}/_sandbox/requests", s.sb.pipedrive_url)).await;
        (brevo["requests"].as_array().unwrap().len(), pipedrive.as_array().unwrap().len())
    };
    let after_stop = requests().await;
    let stopped: time::OffsetDateTime =
        sqlx::query_scalar("select now()").fetch_one(&pool).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(requests().await, after_stop, "no task of the stopped run calls Brevo or Pipedrive");
    let since = |sql: &'static str, at: time::OffsetDateTime| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).bind(t).bind(at).fetch_one(&pool).await.unwrap() }
    };
    let links = "select count(*) from record_links where tenant_id = $1 and updated_at > $2";
    assert_eq!(since(links, stopped).await, 0, "no task of the stopped run records links");
    let checkpoints =
        "select count(*) from sync_checkpoints where tenant_id = $1 and updated_at > $2";
    assert_eq!(since(checkpoints, taken).await, 0, "no checkpoint committed after the takeover");
    let events = "select count(*) from sync_outbox where tenant_id = $1 and created_at > $2";
    assert_eq!(since(events, taken).await, 0, "no event committed after the takeover");
}

/// With `sync.persons` off, a backfill writes no contact at all (the companies' head start
/// used to create email-only contacts).
#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn with_persons_off_no_contact_is_written(pool: PgPool) {
    let s = setup(&pool, 60, "").await;
    let (_, yaml) = pipebridge::mapping::store::current(&pool, &s.member).await.unwrap().unwrap();
    let off = yaml.replacen("persons: true", "persons: false", 1);
    assert_ne!(off, yaml);
    pipebridge::mapping::store::save(&pool, &s.member, &off, None).await.unwrap();
    s.sync(&pool).await;
    let state = s.brevo_state().await;
    assert_eq!(state["contacts"].as_array().unwrap().len(), 0, "{}", state["contacts"]);
}

/// A dead letter (an event Brevo refused) is shown as a record error of its run; Retry puts it
/// back in the outbox and the retry run sends it.
#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_refused_event_is_retried_from_the_run_page(pool: PgPool) {
    let s = setup(&pool, 30, "").await;
    let t = s.member.tenant_id;
    s.sync(&pool).await;
    let (person, run): (String, i64) = sqlx::query_as(
        "select l.pipedrive_id, (select max(id) from sync_runs where tenant_id = $1)
         from record_links l where l.tenant_id = $1 and l.entity = 'person' and l.brevo_ref is not null limit 1",
    )
    .bind(t)
    .fetch_one(&pool)
    .await
    .unwrap();
    // As the drain leaves one: the outbox row dead, its record error open on the run.
    let id: i64 = sqlx::query_scalar(
        "insert into sync_outbox (tenant_id, run_id, dedupe_key, person_id, event_name, properties, status, last_error)
         values ($1, $2, 'test:1', $3, 'retried_event', '{\"n\": 1}', 'dead', 'refused') returning id",
    )
    .bind(t)
    .bind(run)
    .bind(person.parse::<i64>().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into record_errors (tenant_id, run_id, entity, pipedrive_id, reason) values ($1, $2, 'event', $3, 'Brevo refused the event')",
    )
    .bind(t)
    .bind(run)
    .bind(pipebridge::sync::outbox::error_id(id))
    .execute(&pool)
    .await
    .unwrap();
    let error: i64 = sqlx::query_scalar(
        "select id from record_errors where tenant_id = $1 and entity = 'event'",
    )
    .bind(t)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(sync::retry(&pool, &s.member, Some(error)).await.unwrap());
    let (_, outcome) = s.worker.run_next_job().await.unwrap().expect("the retry run");
    assert_eq!(outcome, Outcome::Succeeded);
    let status: String = sqlx::query_scalar("select status from sync_outbox where id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "sent");
    let sent = s.brevo_state().await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_name"] == "retried_event")
        .count();
    assert_eq!(sent, 1);
    let open: i64 = count(&pool, "select count(*) from record_errors where tenant_id = $1 and entity = 'event' and status <> 'resolved'", t).await;
    assert_eq!(open, 0);
}

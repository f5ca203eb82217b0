//! The Brevo calls the sync engine makes: contacts (upsert, get, delete), bulk import with process
//! polling, list membership in chunks of 150, attributes, companies and their links, events.
//! Every call waits for its key's rate-limit slot (contacts 10/s, others 100/h per key); 429 waits
//! for `x-sib-ratelimit-reset` without spending an attempt; 5xx and network failures back off.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::BrevoError;
use crate::rate::SlidingWindow;
use crate::secrets::Secret;

/// At most this many contacts per list add / remove call.
pub const LIST_CHUNK: usize = 150;

/// The per-key limiters; share one per key across every client of the process.
pub struct BrevoLimits {
    /// Brevo counts contact calls in fixed one-second windows, each starting with a call: 9
    /// calls in any 1.02 s, each holding its slot until its answer, keep each of Brevo's windows
    /// to 9 however late calls reach it, yet let calls after a pause leave together (the last
    /// imports of a backfill).
    contacts: SlidingWindow,
    /// `/v3/events` has its own 10-per-second bucket.
    events: SlidingWindow,
    others: DefaultDirectRateLimiter,
}

impl BrevoLimits {
    pub fn new(contacts_per_second: u32, others_per_hour: u32) -> Self {
        let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("at least one");
        // 10% under the limit: 9 calls of 10 in any 1.02 s, each counted from its answer. Brevo
        // counts in fixed one-second windows that start with a request: a request reaches Brevo
        // between its start and its answer, so none of its windows can hold more than 9, however
        // late requests arrive. (Counted from their start, requests that arrived late shortened
        // the gaps after them: at 5% under, 50 ms of delay on a loaded machine let an eleventh
        // into a window; the span was then 1.1 s.)
        let per_second = |n: u32| {
            SlidingWindow::new(
                n.saturating_sub(n.div_ceil(10)) as usize,
                Duration::from_millis(1020),
            )
        };
        Self {
            contacts: per_second(contacts_per_second),
            events: per_second(contacts_per_second),
            // Evenly spread over the hour, with a burst for a first sync's set-up (attribute
            // creation, the first companies). Should Brevo's hourly window still answer 429, the
            // call waits for its reset.
            others: RateLimiter::direct(
                Quota::per_hour(nz(others_per_hour)).allow_burst(nz(others_per_hour.min(40))),
            ),
        }
    }

    /// Brevo's documented limits (brevo-api.md §7).
    pub fn documented() -> Self {
        Self::new(10, 100)
    }
}

/// What a contact write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    Created(i64),
    Updated,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    pub id: i64,
    pub email: Option<String>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(rename = "listIds", default)]
    pub list_ids: Vec<i64>,
    #[serde(rename = "emailBlacklisted", default)]
    pub email_blacklisted: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub category: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Process {
    pub id: i64,
    /// Brevo's word for it (`queued`, `in_process`, `completed`, ...): see [`Process::state`].
    pub status: String,
    #[serde(default)]
    pub info: Option<Value>,
}

/// Where a Brevo process stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// Queued or in process.
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl Process {
    pub fn state(&self) -> ProcessState {
        match self.status.as_str() {
            "completed" => ProcessState::Completed,
            "failed" => ProcessState::Failed,
            "cancelled" => ProcessState::Cancelled,
            _ => ProcessState::Running,
        }
    }

    pub fn finished(&self) -> bool {
        self.state() != ProcessState::Running
    }
}

/// Emails that joined or left a list, and those that did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListChange {
    pub success: Vec<String>,
    pub failure: Vec<String>,
}

#[derive(Clone)]
pub struct BrevoApi {
    http: reqwest::Client,
    base: String,
    key: Secret,
    limits: Arc<BrevoLimits>,
    /// Requests sent by this client and its clones (retries included): a run's Brevo calls.
    calls: Arc<std::sync::atomic::AtomicU64>,
    backoff_base: Duration,
    /// Calls to the 100-calls-an-hour bucket do not wait for it (`without_waiting`).
    no_wait: bool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    metadata: Option<Value>,
}

impl BrevoApi {
    pub fn new(base: &str, key: Secret, limits: Arc<BrevoLimits>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with a timeout builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            limits,
            calls: Arc::default(),
            backoff_base: Duration::from_millis(250),
            no_wait: false,
        }
    }

    /// The first backoff after a 5xx or a network failure (doubling, with jitter).
    pub fn with_backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// This client, for work that can wait for a later run (companies): its calls to the
    /// 100-calls-an-hour bucket fail with `RateLimited` at once, rather than wait, when the bucket
    /// has no call left now or Brevo answers 429. Once an hour's calls are spent the bucket gives
    /// one every 36 s, and waiting for them would hold the whole sync up for minutes.
    pub fn without_waiting(&self) -> Self {
        Self { no_wait: true, ..self.clone() }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One call with its retries; `(status, body)` of the final 2xx/4xx answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, bytes::Bytes), BrevoError> {
        // Serialized before the limiter lets the call go: an import's megabytes take long enough
        // to turn the limiter's even spacing into two calls in one of Brevo's one-second windows.
        // (A `Value` always serializes.)
        let payload: Option<bytes::Bytes> =
            body.map(|b| serde_json::to_vec(b).unwrap_or_default().into());
        self.call_bytes(method, path, query, payload).await
    }

    /// A call with a body already serialized (JSON).
    async fn call_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        payload: Option<bytes::Bytes>,
    ) -> Result<(u16, bytes::Bytes), BrevoError> {
        let window = if path.starts_with("/v3/contacts") {
            Some(&self.limits.contacts)
        } else if path.starts_with("/v3/events") {
            Some(&self.limits.events)
        } else {
            None
        };
        let (mut failures, mut limited) = (0u32, 0u32);
        let no_wait = self.no_wait && window.is_none();
        loop {
            // A per-second slot is held until the answer has come, and counted from then.
            let slot = match window {
                Some(w) => Some(w.hold().await),
                None if no_wait => {
                    if self.limits.others.check().is_err() {
                        // The bucket refills one call every 36 s (100 an hour).
                        return Err(BrevoError::RateLimited { reset_secs: 36 });
                    }
                    None
                }
                None => {
                    self.limits.others.until_ready().await;
                    None
                }
            };
            self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .query(query)
                .header("api-key", self.key.expose())
                .header("accept", "application/json");
            if let Some(p) = &payload {
                req = req.header("content-type", "application/json").body(p.clone());
            }
            let sent = req.send().await;
            drop(slot);
            let res = match sent {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    if failures >= 5 {
                        return Err(BrevoError::Transient(crate::pipedrive::short(&e)));
                    }
                    tokio::time::sleep(backoff(self.backoff_base, failures)).await;
                    continue;
                }
            };
            let status = res.status().as_u16();
            let reset = res
                .headers()
                .get("x-sib-ratelimit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            let bytes = res
                .bytes()
                .await
                .map_err(|e| BrevoError::Transient(crate::pipedrive::short(&e)))?;
            match status {
                429 => {
                    limited += 1;
                    if limited > 20 || no_wait {
                        return Err(BrevoError::RateLimited { reset_secs: reset });
                    }
                    tokio::time::sleep(Duration::from_secs(reset.clamp(1, 3600))).await;
                }
                500..=599 => {
                    failures += 1;
                    if failures >= 5 {
                        return Err(BrevoError::Transient(format!("status {status}")));
                    }
                    tokio::time::sleep(backoff(self.backoff_base, failures)).await;
                }
                401 => return Err(BrevoError::BadKey(parse_error(&bytes).message)),
                _ => return Ok((status, bytes)),
            }
        }
    }

    /// Creates or updates a contact by email (`updateEnabled`), with attributes and lists.
    pub async fn upsert_contact(
        &self,
        email: &str,
        attributes: &Map<String, Value>,
        list_ids: &[i64],
        unlink_list_ids: &[i64],
    ) -> Result<Upserted, BrevoError> {
        let body = json!({"email": email, "attributes": attributes, "listIds": list_ids, "unlinkListIds": unlink_list_ids, "updateEnabled": true});
        let (status, bytes) =
            self.call(reqwest::Method::POST, "/v3/contacts", &[], Some(&body)).await?;
        match status {
            201 => {
                let id = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v["id"].as_i64())
                    .ok_or(BrevoError::Decode { field: "id".into() })?;
                Ok(Upserted::Created(id))
            }
            200 | 204 => Ok(Upserted::Updated),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// Updates an existing contact (`PUT`): attributes, lists to join and lists to leave (the
    /// create call ignores `unlinkListIds`). `UnknownContact` when there is none.
    pub async fn update_contact(
        &self,
        email: &str,
        attributes: &Map<String, Value>,
        list_ids: &[i64],
        unlink_list_ids: &[i64],
    ) -> Result<(), BrevoError> {
        let path = format!("/v3/contacts/{}", urlencode(email));
        let body = json!({"attributes": attributes, "listIds": list_ids, "unlinkListIds": unlink_list_ids});
        let (status, bytes) = self
            .call(reqwest::Method::PUT, &path, &[("identifierType", "email_id")], Some(&body))
            .await?;
        match status {
            200..=299 => Ok(()),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    pub async fn get_contact(&self, email: &str) -> Result<Option<Contact>, BrevoError> {
        let path = format!("/v3/contacts/{}", urlencode(email));
        let (status, bytes) =
            self.call(reqwest::Method::GET, &path, &[("identifierType", "email_id")], None).await?;
        match status {
            200 => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| BrevoError::Decode { field: e.to_string() }),
            404 => Ok(None),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// The most recently created contacts, newest first (at most 1,000: one page).
    pub async fn newest_contacts(&self, limit: usize) -> Result<Vec<Contact>, BrevoError> {
        let limit = limit.clamp(1, 1000).to_string();
        let (status, bytes) = self
            .call(
                reqwest::Method::GET,
                "/v3/contacts",
                &[("limit", &limit), ("offset", "0"), ("sort", "desc")],
                None,
            )
            .await?;
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            contacts: Vec<Contact>,
        }
        match status {
            200 => serde_json::from_slice::<Body>(&bytes)
                .map(|b| b.contacts)
                .map_err(|e| BrevoError::Decode { field: e.to_string() }),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// Deletes a contact (GDPR erasure, a person deleted in Pipedrive); `false` if it was not there.
    pub async fn delete_contact(&self, email: &str) -> Result<bool, BrevoError> {
        let path = format!("/v3/contacts/{}", urlencode(email));
        let (status, bytes) = self
            .call(reqwest::Method::DELETE, &path, &[("identifierType", "email_id")], None)
            .await?;
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// Starts a bulk import (`/contacts/import`, the replacement of the deprecated batch
    /// endpoint); returns the process id to poll.
    /// `/contacts/import` of contacts whose attributes are already JSON: each contact's objects
    /// (serialized maps, their keys not overlapping) are joined into its `attributes` as they are.
    /// A backfill imports 5,000 contacts a call; parsing their attributes into maps only to
    /// serialize them again cost more CPU than anything else in the import.
    pub async fn import_json(
        &self,
        contacts: &[ImportContact<'_>],
        list_ids: &[i64],
    ) -> Result<i64, BrevoError> {
        let body = import_body(contacts, list_ids);
        let (status, bytes) = self
            .call_bytes(reqwest::Method::POST, "/v3/contacts/import", &[], Some(body.into()))
            .await?;
        match status {
            200..=299 => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["processId"].as_i64())
                .ok_or(BrevoError::Decode { field: "processId".into() }),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    pub async fn process(&self, id: i64) -> Result<Process, BrevoError> {
        let (status, bytes) =
            self.call(reqwest::Method::GET, &format!("/v3/processes/{id}"), &[], None).await?;
        match status {
            200 => serde_json::from_slice(&bytes)
                .map_err(|e| BrevoError::Decode { field: e.to_string() }),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// The most recent processes (one call for up to 50: processes share the 100-an-hour bucket).
    pub async fn recent_processes(&self) -> Result<Vec<Process>, BrevoError> {
        let (status, bytes) = self
            .call(
                reqwest::Method::GET,
                "/v3/processes",
                &[("limit", "50"), ("offset", "0"), ("sort", "desc")],
                None,
            )
            .await?;
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            processes: Vec<Process>,
        }
        match status {
            200 => serde_json::from_slice::<Body>(&bytes)
                .map(|b| b.processes)
                .map_err(|e| BrevoError::Decode { field: e.to_string() }),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// Polls a process after each of `waits` until it has ended (completed, failed or
    /// cancelled), and returns it; still running after the last, an error. Processes are in the
    /// 100-calls-an-hour bucket: a few polls, ever further apart, rather than many.
    pub async fn wait_process(&self, id: i64, waits: &[Duration]) -> Result<Process, BrevoError> {
        let mut status = String::from("unpolled");
        for wait in waits {
            tokio::time::sleep(*wait).await;
            let p = self.process(id).await?;
            if p.finished() {
                return Ok(p);
            }
            status = p.status;
        }
        Err(BrevoError::Transient(format!(
            "process {id} still {status} after {} polls",
            waits.len()
        )))
    }

    /// Adds emails to a list, 150 per call.
    pub async fn add_to_list(
        &self,
        list_id: i64,
        emails: &[String],
    ) -> Result<ListChange, BrevoError> {
        self.list_change(list_id, emails, "add").await
    }

    pub async fn remove_from_list(
        &self,
        list_id: i64,
        emails: &[String],
    ) -> Result<ListChange, BrevoError> {
        self.list_change(list_id, emails, "remove").await
    }

    async fn list_change(
        &self,
        list_id: i64,
        emails: &[String],
        verb: &str,
    ) -> Result<ListChange, BrevoError> {
        let mut out = ListChange::default();
        for chunk in emails.chunks(LIST_CHUNK) {
            let path = format!("/v3/contacts/lists/{list_id}/contacts/{verb}");
            let (status, bytes) = self
                .call(reqwest::Method::POST, &path, &[], Some(&json!({"emails": chunk})))
                .await?;
            match status {
                200..=299 => {
                    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    let strings = |k: &str| -> Vec<String> {
                        v["contacts"][k]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    };
                    out.success.extend(strings("success"));
                    out.failure.extend(strings("failure"));
                }
                // Nothing in the chunk could change (already in / not in the list, unknown
                // contacts): not an error for an idempotent sync.
                400 if parse_error(&bytes).message.contains("already in list")
                    || parse_error(&bytes).message.contains("does not exist") =>
                {
                    out.failure.extend(chunk.iter().cloned());
                }
                _ => return Err(contact_error(status, &bytes)),
            }
        }
        Ok(out)
    }

    /// Every contact list's id (paged by 50, Brevo's maximum).
    pub async fn list_ids(&self) -> Result<Vec<i64>, BrevoError> {
        Ok(self.lists().await?.into_iter().map(|(id, _)| id).collect())
    }

    /// Every contact list: id and name.
    pub async fn lists(&self) -> Result<Vec<(i64, String)>, BrevoError> {
        self.named_pages("/v3/contacts/lists", "lists").await
    }

    /// Every contact folder: id and name.
    pub async fn folders(&self) -> Result<Vec<(i64, String)>, BrevoError> {
        self.named_pages("/v3/contacts/folders", "folders").await
    }

    /// Every item (id and name) of a list endpoint, paged by 50 (Brevo's maximum).
    async fn named_pages(&self, path: &str, field: &str) -> Result<Vec<(i64, String)>, BrevoError> {
        let mut items = Vec::new();
        loop {
            let off = items.len().to_string();
            let (status, bytes) = self
                .call(reqwest::Method::GET, path, &[("limit", "50"), ("offset", &off)], None)
                .await?;
            if status != 200 {
                return Err(contact_error(status, &bytes));
            }
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| BrevoError::Decode { field: e.to_string() })?;
            let page: Vec<(i64, String)> = v[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| {
                    Some((l["id"].as_i64()?, l["name"].as_str().unwrap_or_default().to_owned()))
                })
                .collect();
            let n = page.len();
            items.extend(page);
            if n < 50 {
                return Ok(items);
            }
        }
    }

    /// Creates a contact folder; returns its id.
    pub async fn create_folder(&self, name: &str) -> Result<i64, BrevoError> {
        let (status, bytes) = self
            .call(reqwest::Method::POST, "/v3/contacts/folders", &[], Some(&json!({"name": name})))
            .await?;
        created_id(status, &bytes)
    }

    /// Creates a contact list in a folder (Brevo requires one); returns its id.
    pub async fn create_list(&self, name: &str, folder_id: i64) -> Result<i64, BrevoError> {
        let (status, bytes) = self
            .call(
                reqwest::Method::POST,
                "/v3/contacts/lists",
                &[],
                Some(&json!({"name": name, "folderId": folder_id})),
            )
            .await?;
        created_id(status, &bytes)
    }

    pub async fn attributes(&self) -> Result<Vec<Attribute>, BrevoError> {
        let (status, bytes) =
            self.call(reqwest::Method::GET, "/v3/contacts/attributes", &[], None).await?;
        #[derive(Deserialize)]
        struct Body {
            attributes: Vec<Attribute>,
        }
        match status {
            200 => serde_json::from_slice::<Body>(&bytes)
                .map(|b| b.attributes)
                .map_err(|e| BrevoError::Decode { field: e.to_string() }),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// Creates a `normal` attribute of `kind` (text, float, date, boolean).
    pub async fn create_attribute(&self, name: &str, kind: &str) -> Result<(), BrevoError> {
        let path = format!("/v3/contacts/attributes/normal/{}", urlencode(&name.to_uppercase()));
        let (status, bytes) =
            self.call(reqwest::Method::POST, &path, &[], Some(&json!({"type": kind}))).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(contact_error(status, &bytes)) }
    }

    /// Creates a company; returns its id (a string in Brevo).
    pub async fn create_company(
        &self,
        name: &str,
        attributes: &Map<String, Value>,
    ) -> Result<String, BrevoError> {
        let body = json!({"name": name, "attributes": attributes});
        let (status, bytes) =
            self.call(reqwest::Method::POST, "/v3/companies", &[], Some(&body)).await?;
        match status {
            200..=299 => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
                .ok_or(BrevoError::Decode { field: "id".into() }),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// Creates a company already linked to these contacts; returns its id.
    pub async fn create_company_linked(
        &self,
        name: &str,
        contact_ids: &[i64],
    ) -> Result<String, BrevoError> {
        let body = json!({"name": name, "linkedContactsIds": contact_ids});
        let (status, bytes) =
            self.call(reqwest::Method::POST, "/v3/companies", &[], Some(&body)).await?;
        match status {
            200..=299 => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
                .ok_or(BrevoError::Decode { field: "id".into() }),
            _ => Err(contact_error(status, &bytes)),
        }
    }

    /// Renames a company (`PATCH /v3/companies/{id}` without links, which would replace them).
    pub async fn rename_company(&self, company_id: &str, name: &str) -> Result<(), BrevoError> {
        let (status, bytes) = self
            .call(
                reqwest::Method::PATCH,
                &format!("/v3/companies/{company_id}"),
                &[],
                Some(&json!({"name": name})),
            )
            .await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(contact_error(status, &bytes)) }
    }

    pub async fn link_company(
        &self,
        company_id: &str,
        link: &[i64],
        unlink: &[i64],
    ) -> Result<(), BrevoError> {
        let body = json!({"linkContactIds": link, "unlinkContactIds": unlink});
        let (status, bytes) = self
            .call(
                reqwest::Method::PATCH,
                &format!("/v3/companies/link-unlink/{company_id}"),
                &[],
                Some(&body),
            )
            .await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(contact_error(status, &bytes)) }
    }

    /// A custom event on a contact (automations start from these).
    pub async fn track_event(
        &self,
        name: &str,
        email: &str,
        properties: &Map<String, Value>,
    ) -> Result<(), BrevoError> {
        let body = json!({"event_name": name, "identifiers": {"email_id": email}, "event_properties": properties});
        let (status, bytes) =
            self.call(reqwest::Method::POST, "/v3/events", &[], Some(&body)).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(contact_error(status, &bytes)) }
    }
}

impl BrevoApi {
    /// Several events in one call (`/events/batch`): `(event name, email, properties)` each.
    /// Returns the events Brevo refused (a 207 partial success), by index, with its message.
    pub async fn track_events(
        &self,
        events: &[(String, String, Map<String, Value>)],
    ) -> Result<Vec<(usize, String)>, BrevoError> {
        let body: Vec<Value> = events
            .iter()
            .map(|(name, email, props)| json!({"event_name": name, "identifiers": {"email_id": email}, "event_properties": props}))
            .collect();
        let (status, bytes) = self
            .call(reqwest::Method::POST, "/v3/events/batch", &[], Some(&Value::Array(body)))
            .await?;
        match status {
            207 => {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let mut refused = Vec::new();
                for e in v["errors"].as_array().into_iter().flatten() {
                    let message = e["message"].as_str().unwrap_or("refused").to_owned();
                    for i in
                        e["eventIndex"].as_array().into_iter().flatten().filter_map(Value::as_u64)
                    {
                        refused.push((i as usize, message.clone()));
                    }
                }
                Ok(refused)
            }
            200..=299 => Ok(Vec::new()),
            _ => Err(contact_error(status, &bytes)),
        }
    }
}

fn parse_error(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_default()
}

/// The `{"id": n}` of a 201, or the refusal. A 404 here is the folder, not a contact.
fn created_id(status: u16, bytes: &[u8]) -> Result<i64, BrevoError> {
    match status {
        200..=299 => serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| v["id"].as_i64())
            .ok_or_else(|| BrevoError::Decode { field: "id".into() }),
        _ => {
            let e = parse_error(bytes);
            Err(BrevoError::Rejected {
                status,
                message: if e.message.is_empty() { e.code } else { e.message },
            })
        }
    }
}

/// Decodes a contact error into what the sync engine acts on (brevo-api.md §1.3, §2).
fn contact_error(status: u16, bytes: &[u8]) -> BrevoError {
    let e = parse_error(bytes);
    let lower = e.message.to_lowercase();
    let duplicates: Vec<String> = e
        .metadata
        .as_ref()
        .and_then(|m| m["duplicate_identifiers"].as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if status == 404 {
        BrevoError::UnknownContact
    } else if lower.contains("invalid phone number") {
        BrevoError::InvalidPhone
    } else if duplicates.iter().any(|d| d.eq_ignore_ascii_case("sms"))
        || (e.code == "duplicate_parameter" && lower.contains("sms"))
    {
        BrevoError::SmsTaken
    } else if e.code == "duplicate_parameter" || !duplicates.is_empty() {
        BrevoError::Duplicate { identifiers: duplicates }
    } else {
        BrevoError::Rejected {
            status,
            message: if e.message.is_empty() { e.code } else { e.message },
        }
    }
}

fn backoff(base: Duration, failures: u32) -> Duration {
    use rand::Rng;
    let cap = base.as_secs_f64() * 2f64.powi(failures.min(8) as i32);
    Duration::from_secs_f64(rand::thread_rng().gen_range(cap / 2.0..=cap))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A contact of [`BrevoApi::import_json`]: its email, and its attributes as JSON objects.
pub struct ImportContact<'a> {
    pub email: &'a str,
    pub attributes: [&'a str; 2],
}

/// The body of `/contacts/import` for `contacts`, written straight from their JSON texts.
fn import_body(contacts: &[ImportContact<'_>], list_ids: &[i64]) -> Vec<u8> {
    let size: usize = contacts
        .iter()
        .map(|c| c.email.len() + c.attributes.iter().map(|a| a.len()).sum::<usize>() + 40)
        .sum();
    let mut body = Vec::with_capacity(size + 160);
    body.extend_from_slice(b"{\"jsonBody\":[");
    for (i, c) in contacts.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"email\":");
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, c.email);
        body.extend_from_slice(b",\"attributes\":{");
        let mut first = true;
        for object in c.attributes {
            let inner = object
                .trim()
                .strip_prefix('{')
                .and_then(|o| o.strip_suffix('}'))
                .unwrap_or_default()
                .trim();
            if inner.is_empty() {
                continue;
            }
            if !first {
                body.push(b',');
            }
            body.extend_from_slice(inner.as_bytes());
            first = false;
        }
        body.extend_from_slice(b"}}");
    }
    body.extend_from_slice(b"],\"listIds\":");
    let _ = serde_json::to_writer(&mut body, list_ids);
    body.extend_from_slice(b",\"updateExistingContacts\":true,\"emptyContactsAttributes\":false}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_ten_percent_under_brevos() {
        let limits = BrevoLimits::documented();
        assert_eq!(limits.contacts.max(), 9);
        assert_eq!(limits.events.max(), 9);
        assert_eq!(BrevoLimits::new(1, 1).contacts.max(), 1);
    }

    #[test]
    fn an_import_body_from_json_texts_is_the_body_of_the_same_contacts_as_values() {
        let own = serde_json::to_string(
            &json!({"FIRSTNAME": "Zoë \"Z\"", "SMS": "+4915112345678", "TAGS": ["a", "b"]}),
        )
        .unwrap();
        let derived = serde_json::to_string(&json!({"COMPANY": "Acme", "WON_DEALS": 2})).unwrap();
        let contacts = [
            ImportContact { email: "zoe@example.com", attributes: [&own, &derived] },
            ImportContact { email: "a\\b@example.com", attributes: ["{}", &derived] },
            ImportContact { email: "c@example.com", attributes: ["{}", "{}"] },
        ];
        let body: Value =
            serde_json::from_slice(&import_body(&contacts, &[3, 7])).expect("valid JSON");
        let mut zoe = serde_json::from_str::<Map<String, Value>>(&own).unwrap();
        zoe.extend(serde_json::from_str::<Map<String, Value>>(&derived).unwrap());
        let expected = json!({
            "jsonBody": [
                {"email": "zoe@example.com", "attributes": zoe},
                {"email": "a\\b@example.com", "attributes": {"COMPANY": "Acme", "WON_DEALS": 2}},
                {"email": "c@example.com", "attributes": {}},
            ],
            "listIds": [3, 7],
            "updateExistingContacts": true,
            "emptyContactsAttributes": false,
        });
        assert_eq!(body, expected);
    }
}

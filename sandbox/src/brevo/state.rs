//! In-memory state of the fake Brevo: one [`Account`] per API key, plus the sandbox-wide request log,
//! faults and rate-limit windows. Everything sits behind one `std::sync::Mutex` in [`super::Brevo`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::http::render_time;
pub(crate) use super::model::{
    Attribute, Company, Delivery, Enumeration, Folder, ImportCounters, List, Process, StoredEvent,
    Webhook,
};

#[derive(Debug, Clone)]
pub(crate) struct Contact {
    pub id: i64,
    /// Lower-cased; `None` for contacts identified only by SMS / EXT_ID.
    pub email: Option<String>,
    /// Attribute values by UPPER-CASE name, identifiers (`SMS`, `EXT_ID`, ...) included.
    pub attributes: Map<String, Value>,
    pub list_ids: BTreeSet<i64>,
    pub email_blacklisted: bool,
    pub sms_blacklisted: bool,
    pub created_at: OffsetDateTime,
    pub modified_at: OffsetDateTime,
    /// `statistics` entries produced by triggered marketing events (`GET /contacts/{id}`).
    pub hard_bounces: Vec<OffsetDateTime>,
    pub unsubscriptions: Vec<OffsetDateTime>,
}

impl Contact {
    pub fn new(id: i64, now: OffsetDateTime) -> Self {
        Self {
            id,
            email: None,
            attributes: Map::new(),
            list_ids: BTreeSet::new(),
            email_blacklisted: false,
            sms_blacklisted: false,
            created_at: now,
            modified_at: now,
            hard_bounces: Vec::new(),
            unsubscriptions: Vec::new(),
        }
    }

    pub fn attr_str(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(Value::as_str)
    }

    /// The `getContactDetails` shape (spec `components/schemas/getContactDetails`).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "emailBlacklisted": self.email_blacklisted,
            "smsBlacklisted": self.sms_blacklisted,
            "createdAt": render_time(self.created_at),
            "modifiedAt": render_time(self.modified_at),
            "attributes": self.attributes,
            "listIds": self.list_ids.iter().collect::<Vec<_>>(),
        });
        if let Some(email) = &self.email {
            v["email"] = json!(email);
        }
        v
    }

    /// `statistics` of `GET /contacts/{identifier}`: only the kinds the sandbox can produce.
    pub fn statistics(&self) -> Value {
        let mut stats = json!({});
        if !self.hard_bounces.is_empty() {
            stats["hardBounces"] = self
                .hard_bounces
                .iter()
                .map(|t| json!({ "campaignId": 0, "eventTime": render_time(*t) }))
                .collect();
        }
        if !self.unsubscriptions.is_empty() {
            stats["unsubscriptions"] = json!({
                "userUnsubscription": self.unsubscriptions.iter()
                    .map(|t| json!({ "campaignId": 0, "eventTime": render_time(*t) }))
                    .collect::<Vec<_>>(),
                "adminUnsubscription": [],
            });
        }
        stats
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub key: String,
    /// The API key's display name, echoed as `api_key_name` in contact webhooks.
    pub key_name: String,
    pub number: usize,
    pub contacts: BTreeMap<i64, Contact>,
    pub next_contact_id: i64,
    pub attributes: Vec<Attribute>,
    pub folders: BTreeMap<i64, Folder>,
    pub next_folder_id: i64,
    pub lists: BTreeMap<i64, List>,
    pub next_list_id: i64,
    pub companies: BTreeMap<String, Company>,
    pub events: Vec<StoredEvent>,
    pub webhooks: BTreeMap<i64, Webhook>,
    pub next_webhook_id: i64,
    pub processes: BTreeMap<i64, Process>,
    pub next_process_id: i64,
    pub deliveries: Vec<Delivery>,
}

fn text_attr(name: &str) -> Attribute {
    Attribute {
        name: name.to_owned(),
        category: "normal".into(),
        kind: Some("text".into()),
        enumeration: None,
        multi_category_options: None,
        calculated_value: None,
    }
}

impl Account {
    /// A fresh account: the default attributes of a new Brevo account (FIRSTNAME, LASTNAME and the SMS
    /// identifier; spec example of `getAttributes`), one folder and one list, as a new account has.
    pub fn new(key: &str, key_name: &str, number: usize) -> Self {
        let now = OffsetDateTime::now_utc();
        let mut account = Self {
            key: key.to_owned(),
            key_name: key_name.to_owned(),
            number,
            contacts: BTreeMap::new(),
            next_contact_id: 1,
            attributes: vec![
                text_attr("LASTNAME"),
                text_attr("FIRSTNAME"),
                text_attr("SMS"),
            ],
            folders: BTreeMap::new(),
            next_folder_id: 2,
            lists: BTreeMap::new(),
            next_list_id: 2,
            companies: BTreeMap::new(),
            events: Vec::new(),
            webhooks: BTreeMap::new(),
            next_webhook_id: 1,
            processes: BTreeMap::new(),
            next_process_id: 1,
            deliveries: Vec::new(),
        };
        account.folders.insert(
            1,
            Folder {
                id: 1,
                name: "Your first folder".into(),
            },
        );
        account.lists.insert(
            1,
            List {
                id: 1,
                name: "Your first list".into(),
                folder_id: 1,
                created_at: now,
            },
        );
        account
    }

    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn by_email(&self, email: &str) -> Option<i64> {
        let email = email.to_lowercase();
        self.contacts
            .values()
            .find(|c| c.email.as_deref() == Some(email.as_str()))
            .map(|c| c.id)
    }

    /// Every contact's id by email and by identifier attribute, for calls that look up many
    /// contacts at once (imports, list changes): one pass instead of one scan per lookup.
    pub fn lookup(&self) -> Lookup {
        let mut l = Lookup::default();
        for c in self.contacts.values() {
            l.add(c);
        }
        l
    }

    /// [`Account::lookup`] of the contacts holding one of `emails` or an identifier among `values`
    /// (a lookup of anything else may miss).
    pub fn lookup_of(&self, emails: &HashSet<String>, values: &HashSet<&str>) -> Lookup {
        let mut l = Lookup::default();
        for c in self.contacts.values() {
            let email = c.email.as_deref().is_some_and(|e| emails.contains(e));
            if email || Lookup::IDENTIFIERS.iter().any(|n| c.attr_str(n).is_some_and(|v| values.contains(v))) {
                l.add(c);
            }
        }
        l
    }

    /// Finds a contact by an identifier attribute (`SMS`, `EXT_ID`, `WHATSAPP`, `LANDLINE_NUMBER`).
    pub fn by_attr(&self, name: &str, value: &str) -> Option<i64> {
        self.contacts
            .values()
            .find(|c| c.attr_str(name) == Some(value))
            .map(|c| c.id)
    }

    pub fn list_members(&self, list_id: i64) -> impl Iterator<Item = &Contact> {
        self.contacts
            .values()
            .filter(move |c| c.list_ids.contains(&list_id))
    }

    pub fn new_contact_id(&mut self) -> i64 {
        let id = self.next_contact_id;
        self.next_contact_id += 1;
        id
    }

    /// Removes a contact and its company links.
    pub fn delete_contact(&mut self, id: i64) -> Option<Contact> {
        let removed = self.contacts.remove(&id)?;
        for company in self.companies.values_mut() {
            company.linked_contacts.remove(&id);
        }
        Some(removed)
    }

    /// The whole account for `GET /_sandbox/state`.
    pub fn dump(&self) -> Value {
        json!({
            "api_key": self.key,
            "key_name": self.key_name,
            "contacts": self.contacts.values().map(Contact::to_json).collect::<Vec<_>>(),
            "attributes": self.attributes,
            "folders": self.folders.values().map(|f| json!({ "id": f.id, "name": f.name })).collect::<Vec<_>>(),
            "lists": self.lists.values().map(|l| json!({
                "id": l.id, "name": l.name, "folderId": l.folder_id,
                "contactIds": self.list_members(l.id).map(|c| c.id).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "companies": self.companies.values().map(Company::to_json).collect::<Vec<_>>(),
            "events": self.events,
            "webhooks": self.webhooks.values().map(Webhook::to_json).collect::<Vec<_>>(),
            "processes": self.processes.values().map(|p| {
                let mut v = p.to_json();
                if let Some(c) = &p.import {
                    v["sandbox"] = json!({ "created": c.created, "updated": c.updated, "counters": c });
                }
                v
            }).collect::<Vec<_>>(),
            "deliveries": self.deliveries,
        })
    }
}

/// See [`Account::lookup`]. Kept up to date by the caller for the contacts it writes.
#[derive(Debug, Default)]
pub(crate) struct Lookup {
    emails: HashMap<String, i64>,
    identifiers: HashMap<(String, String), i64>,
}

impl Lookup {
    const IDENTIFIERS: [&'static str; 4] = ["SMS", "EXT_ID", "WHATSAPP", "LANDLINE_NUMBER"];

    pub fn add(&mut self, c: &Contact) {
        if let Some(e) = &c.email {
            self.emails.entry(e.clone()).or_insert(c.id);
        }
        for name in Self::IDENTIFIERS {
            if let Some(v) = c.attr_str(name) {
                self.identifiers.entry((name.to_owned(), v.to_owned())).or_insert(c.id);
            }
        }
    }

    pub fn by_email(&self, email: &str) -> Option<i64> {
        self.emails.get(&email.to_lowercase()).copied()
    }

    pub fn by_attr(&self, name: &str, value: &str) -> Option<i64> {
        self.identifiers.get(&(name.to_owned(), value.to_owned())).copied()
    }
}

/// Faults injected through `POST /_sandbox/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Faults {
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub force_429: bool,
    /// Share of `/contacts/import` rows the process refuses (counted as `invalid_emails`, not
    /// applied), as a live import may drop rows.
    #[serde(default)]
    pub import_refuse_share: f64,
    /// Overrides `Settings::rate_limits` at run time when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub time: String,
    pub api_key: Option<String>,
    pub duration_ms: u64,
}

/// A fixed rate-limit window of one (key, bucket).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub started: std::time::Instant,
    pub count: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub accounts: HashMap<String, Account>,
    pub faults: Faults,
    pub requests: Vec<LoggedRequest>,
    pub windows: HashMap<(String, &'static str), Window>,
}

impl Shared {
    pub fn add_account(&mut self, key: &str, name: &str) {
        let number = self.accounts.len() + 1;
        self.accounts
            .entry(key.to_owned())
            .or_insert_with(|| Account::new(key, name, number));
    }
}

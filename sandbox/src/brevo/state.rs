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
    pub contacts: Contacts,
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
            contacts: Contacts::default(),
            next_contact_id: 1,
            attributes: vec![text_attr("LASTNAME"), text_attr("FIRSTNAME"), text_attr("SMS")],
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
        account.folders.insert(1, Folder { id: 1, name: "Your first folder".into() });
        account.lists.insert(
            1,
            List { id: 1, name: "Your first list".into(), folder_id: 1, created_at: now },
        );
        account
    }

    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn by_email(&self, email: &str) -> Option<i64> {
        self.contacts.index.by_email(&email.to_lowercase())
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

    /// [`Account::lookup`] of the contacts holding one of `emails` or one of the identifiers
    /// `values` (name, value); a lookup of anything else may miss. Only the identifiers named
    /// in `values` are read from each contact (reading all four was most of a large import's
    /// time).
    pub fn lookup_of(&self, emails: &HashSet<String>, values: &HashSet<(&str, &str)>) -> Lookup {
        let index = &self.contacts.index;
        let by_email = emails.iter().filter_map(|e| index.holders(None, e));
        let by_value = values.iter().filter_map(|(n, v)| index.holders(Some(n), v));
        // In id order, as a scan of the contacts meets them: the first holder of a value wins.
        let ids: BTreeSet<i64> = by_email.chain(by_value).flatten().copied().collect();
        let mut l = Lookup::default();
        for c in ids.iter().filter_map(|id| self.contacts.get(id)) {
            l.add(c);
        }
        l
    }

    /// Finds a contact by an identifier attribute (`SMS`, `EXT_ID`, `WHATSAPP`, `LANDLINE_NUMBER`).
    pub fn by_attr(&self, name: &str, value: &str) -> Option<i64> {
        match Lookup::IDENTIFIERS.contains(&name) {
            true => self.contacts.index.by_attr(name, value),
            // Not an identifier: not indexed (no call of the API looks one up).
            false => self.contacts.values().find(|c| c.attr_str(name) == Some(value)).map(|c| c.id),
        }
    }

    pub fn list_members(&self, list_id: i64) -> impl Iterator<Item = &Contact> {
        self.contacts.values().filter(move |c| c.list_ids.contains(&list_id))
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

/// An account's contacts by id, with an index of their emails and identifiers kept up to date
/// by every change (the API finds contacts by email or SMS in every write; a scan of 100,000
/// contacts took 40 ms). Read through `Deref`; changed only through the methods below.
#[derive(Debug, Clone, Default)]
pub(crate) struct Contacts {
    map: BTreeMap<i64, Contact>,
    index: Index,
}

impl std::ops::Deref for Contacts {
    type Target = BTreeMap<i64, Contact>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Contacts {
    pub fn insert(&mut self, id: i64, contact: Contact) {
        self.index.add(id, &keys(&contact));
        if let Some(old) = self.map.insert(id, contact) {
            self.index.remove(id, &keys(&old));
            self.index.add(id, &keys(&self.map[&id]));
        }
    }

    pub fn remove(&mut self, id: &i64) -> Option<Contact> {
        let removed = self.map.remove(id)?;
        self.index.remove(*id, &keys(&removed));
        Some(removed)
    }

    /// The contact, changed through a guard that indexes it again when dropped.
    pub fn get_mut(&mut self, id: &i64) -> Option<ContactMut<'_>> {
        let before = keys(self.map.get(id)?);
        Some(ContactMut { contacts: self, id: *id, before })
    }

    /// Changes every contact, then indexes them all again.
    pub fn update_all(&mut self, mut change: impl FnMut(&mut Contact)) {
        self.map.values_mut().for_each(&mut change);
        self.index = Index::default();
        for (id, c) in &self.map {
            self.index.add(*id, &keys(c));
        }
    }
}

/// A contact being changed (see [`Contacts::get_mut`]).
pub(crate) struct ContactMut<'a> {
    contacts: &'a mut Contacts,
    id: i64,
    before: Keys,
}

impl std::ops::Deref for ContactMut<'_> {
    type Target = Contact;
    fn deref(&self) -> &Contact {
        &self.contacts.map[&self.id]
    }
}

impl std::ops::DerefMut for ContactMut<'_> {
    fn deref_mut(&mut self) -> &mut Contact {
        self.contacts.map.get_mut(&self.id).expect("the guard's contact stays until it drops")
    }
}

impl Drop for ContactMut<'_> {
    fn drop(&mut self) {
        let after = keys(&self.contacts.map[&self.id]);
        if after != self.before {
            self.contacts.index.remove(self.id, &self.before);
            self.contacts.index.add(self.id, &after);
        }
    }
}

/// What a contact is found by: its email, and its identifiers (name, value).
type Keys = (Option<String>, Vec<(&'static str, String)>);

fn keys(c: &Contact) -> Keys {
    let identifiers =
        Lookup::IDENTIFIERS.iter().filter_map(|n| Some((*n, c.attr_str(n)?.to_owned()))).collect();
    (c.email.clone(), identifiers)
}

/// The ids holding each email and identifier value (several, should two contacts share one).
#[derive(Debug, Clone, Default)]
struct Index {
    emails: HashMap<String, BTreeSet<i64>>,
    /// By identifier name, then value.
    identifiers: HashMap<&'static str, HashMap<String, BTreeSet<i64>>>,
}

impl Index {
    fn add(&mut self, id: i64, (email, identifiers): &Keys) {
        if let Some(e) = email {
            self.emails.entry(e.clone()).or_default().insert(id);
        }
        for (n, v) in identifiers {
            self.identifiers.entry(n).or_default().entry(v.clone()).or_default().insert(id);
        }
    }

    fn remove(&mut self, id: i64, (email, identifiers): &Keys) {
        fn forget(ids: &mut HashMap<String, BTreeSet<i64>>, key: &str, id: i64) {
            if let Some(held) = ids.get_mut(key) {
                held.remove(&id);
                if held.is_empty() {
                    ids.remove(key);
                }
            }
        }
        if let Some(e) = email {
            forget(&mut self.emails, e, id);
        }
        for (n, v) in identifiers {
            if let Some(values) = self.identifiers.get_mut(n) {
                forget(values, v, id);
            }
        }
    }

    /// The ids holding a value (emails lower-cased).
    fn holders(&self, name: Option<&str>, value: &str) -> Option<&BTreeSet<i64>> {
        match name {
            None => self.emails.get(value),
            Some(n) => self.identifiers.get(n)?.get(value),
        }
    }

    fn by_email(&self, email: &str) -> Option<i64> {
        self.holders(None, email)?.first().copied()
    }

    fn by_attr(&self, name: &str, value: &str) -> Option<i64> {
        self.holders(Some(name), value)?.first().copied()
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
        self.accounts.entry(key.to_owned()).or_insert_with(|| Account::new(key, name, number));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: i64, email: &str, sms: &str) -> Contact {
        let mut c = Contact::new(id, OffsetDateTime::now_utc());
        c.email = Some(email.to_owned());
        c.attributes.insert("SMS".into(), json!(sms));
        c
    }

    #[test]
    fn the_contacts_index_follows_every_change() {
        let mut a = Account::new("key", "name", 1);
        a.contacts.insert(1, contact(1, "ann@example.com", "+33600000001"));
        a.contacts.insert(2, contact(2, "bob@example.com", "+33600000002"));
        assert_eq!(a.by_email("Ann@Example.com"), Some(1));
        assert_eq!(a.by_attr("SMS", "+33600000002"), Some(2));

        // Changed through the guard: found by the new values only.
        if let Some(mut c) = a.contacts.get_mut(&1) {
            c.email = Some("anne@example.com".into());
            c.attributes.remove("SMS");
        }
        assert_eq!(a.by_email("ann@example.com"), None);
        assert_eq!(a.by_email("anne@example.com"), Some(1));
        assert_eq!(a.by_attr("SMS", "+33600000001"), None);

        // Two holders of one value: the lower id, as a scan in id order finds it.
        a.contacts.insert(3, contact(3, "carl@example.com", "+33600000002"));
        assert_eq!(a.by_attr("SMS", "+33600000002"), Some(2));
        a.delete_contact(2);
        assert_eq!(a.by_attr("SMS", "+33600000002"), Some(3));
        assert_eq!(a.by_email("bob@example.com"), None);

        // Replaced, and changed all at once.
        a.contacts.insert(3, contact(3, "carla@example.com", "+33600000003"));
        assert_eq!(a.by_email("carl@example.com"), None);
        assert_eq!(a.by_attr("SMS", "+33600000003"), Some(3));
        a.contacts.update_all(|c| {
            c.attributes.remove("SMS");
        });
        assert_eq!(a.by_attr("SMS", "+33600000003"), None);
        assert_eq!(a.by_email("carla@example.com"), Some(3));

        // An import's lookup holds the contacts it meets.
        let emails: HashSet<String> = ["anne@example.com".to_owned()].into();
        let lookup = a.lookup_of(&emails, &HashSet::new());
        assert_eq!(lookup.by_email("anne@example.com"), Some(1));
        assert_eq!(lookup.by_email("carla@example.com"), None);
    }
}

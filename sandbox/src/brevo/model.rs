//! The records an account holds besides contacts (attributes, lists, folders, companies, events,
//! webhooks, processes, deliveries) and their JSON renderings, which follow the spec's schemas.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::http::render_time;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Attribute {
    pub name: String,
    pub category: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enumeration: Option<Vec<Enumeration>>,
    #[serde(rename = "multiCategoryOptions", skip_serializing_if = "Option::is_none")]
    pub multi_category_options: Option<Vec<String>>,
    #[serde(rename = "calculatedValue", skip_serializing_if = "Option::is_none")]
    pub calculated_value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Enumeration {
    pub value: i64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct List {
    pub id: i64,
    pub name: String,
    pub folder_id: i64,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub(crate) struct Company {
    pub id: String,
    /// Lower-case internal names (`name`, `domain`, ...), plus the read-only ones Brevo adds.
    pub attributes: Map<String, Value>,
    pub linked_contacts: BTreeSet<i64>,
    pub linked_deals: BTreeSet<String>,
    pub created_at: OffsetDateTime,
    pub modified_at: OffsetDateTime,
}

impl Company {
    /// The spec's `Company` schema; `number_of_contacts` and the timestamps are kept current.
    pub fn to_json(&self) -> Value {
        let mut attributes = self.attributes.clone();
        attributes.insert("created_at".into(), json!(render_time(self.created_at)));
        attributes.insert("last_updated_at".into(), json!(render_time(self.modified_at)));
        attributes.insert("number_of_contacts".into(), json!(self.linked_contacts.len()));
        json!({
            "id": self.id,
            "attributes": attributes,
            "linkedContactsIds": self.linked_contacts.iter().collect::<Vec<_>>(),
            "linkedDealsIds": self.linked_deals.iter().collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StoredEvent {
    pub event_name: String,
    pub event_date: String,
    pub identifiers: Value,
    /// The contact the identifiers resolved to when the event arrived, if any.
    pub contact_id: Option<i64>,
    pub contact_properties: Value,
    pub event_properties: Value,
    pub object: Value,
    pub received_at: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub id: i64,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub kind: String,
    pub channel: String,
    pub batched: bool,
    pub auth: Option<Value>,
    pub headers: Vec<(String, String)>,
    pub domain: Option<String>,
    pub created_at: OffsetDateTime,
    pub modified_at: OffsetDateTime,
}

impl Webhook {
    /// The spec's `getWebhook` schema.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "url": self.url,
            "description": self.description,
            "events": self.events,
            "type": self.kind,
            "channel": self.channel,
            "batched": self.batched,
            "createdAt": render_time(self.created_at),
            "modifiedAt": render_time(self.modified_at),
            "headers": self.headers.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>(),
        });
        if let Some(auth) = &self.auth {
            v["auth"] = auth.clone();
        }
        if let Some(domain) = &self.domain {
            v["domain"] = json!(domain);
        }
        v
    }
}

/// Counters of `info.import` in `GET /processes/{id}` (reference §2.12), plus sandbox-only tallies.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ImportCounters {
    pub invalid_emails: i64,
    pub duplicate_contact_id: i64,
    pub duplicate_ext_id: i64,
    pub duplicate_email_id: i64,
    pub duplicate_phone_id: i64,
    pub duplicate_whatsapp_id: i64,
    pub duplicate_landline_number_id: i64,
    #[serde(skip)]
    pub created: i64,
    #[serde(skip)]
    pub updated: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub id: i64,
    pub name: &'static str,
    /// `queued` → `processing` → `completed` | `failed` (spec enum of `getProcess.status`).
    pub status: &'static str,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub import: Option<ImportCounters>,
    pub error: Option<String>,
}

impl Process {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_at": render_time(self.created_at),
        });
        if let Some(done) = self.completed_at {
            v["completed_at"] = json!(render_time(done));
        }
        if self.status == "completed"
            && let Some(counters) = &self.import
        {
            v["info"] = json!({ "import": counters });
        }
        if let Some(error) = &self.error {
            v["error"] = json!(error);
        }
        v
    }
}

/// One attempted webhook delivery, kept for `GET /_sandbox/state`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Delivery {
    pub webhook_id: i64,
    pub url: String,
    pub event: String,
    pub payload: Value,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub time: String,
}

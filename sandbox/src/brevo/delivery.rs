//! Marketing webhook payloads and their delivery (reference §8.2): which registered webhooks an
//! event reaches, the payload each gets, and the POST itself.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::contact_write::Change;
use super::http::render_local;
use super::state::{Account, Contact};

/// The `event` value a payload carries for a registration name: snake_case and sometimes another
/// word (reference §8.2: `hard_bounce`, `contact_updated`; `unsubscribe`/`list_addition` UNSURE).
pub(crate) fn payload_event(registration: &str) -> Option<&'static str> {
    Some(match registration {
        "unsubscribed" => "unsubscribe",
        "hardBounce" => "hard_bounce",
        "softBounce" => "soft_bounce",
        "spam" => "spam",
        "opened" => "opened",
        "click" => "click",
        "delivered" => "delivered",
        "listAddition" => "list_addition",
        "contactUpdated" => "contact_updated",
        "contactDeleted" => "contact_deleted",
        _ => return None,
    })
}

/// A delivery to run outside the state lock.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub webhook_id: i64,
    pub url: String,
    pub auth: Option<Value>,
    pub headers: Vec<(String, String)>,
    pub batched: bool,
    pub event: String,
    pub payload: Value,
}

/// Details some payloads carry besides the contact.
#[derive(Debug, Default, Clone)]
pub(crate) struct Extra {
    pub attributes: Option<Map<String, Value>>,
    pub list_ids: Vec<i64>,
    /// `Some` on contact_updated / list_addition: the API key's name, or "" when the change did not
    /// come through the API (Brevo changelog 2026-11-01, "api_key_name in contact webhooks").
    pub api_key_name: Option<String>,
    pub reason: Option<String>,
}

/// Builds the payloads for every marketing webhook of the account registered for `registration`.
pub(crate) fn jobs_for(
    account: &Account,
    registration: &str,
    contact: &Contact,
    extra: Extra,
) -> Vec<Job> {
    let Some(event) = payload_event(registration) else {
        return Vec::new();
    };
    let now = OffsetDateTime::now_utc();
    let ts = now.unix_timestamp();
    account
        .webhooks
        .values()
        .filter(|w| {
            w.kind == "marketing"
                && w.channel == "email"
                && w.events.iter().any(|e| e == registration)
        })
        .map(|w| {
            // Fields common to marketing events (reference §8.2).
            let mut p = json!({
                "event": event,
                "email": contact.email.clone().unwrap_or_default(),
                "id": w.id,
                "contact_id": contact.id,
                "date": render_local(now),
                "date_event": render_local(now),
                "ts": ts,
                "ts_event": ts,
            });
            if !matches!(registration, "contactUpdated" | "contactDeleted" | "listAddition") {
                p["camp_id"] = json!(1);
                p["campaign name"] = json!("Sandbox campaign");
                p["tag"] = json!("");
                p["date_sent"] = json!(render_local(now));
                p["ts_sent"] = json!(ts);
            }
            if !extra.list_ids.is_empty() {
                p["list_id"] = json!(extra.list_ids);
            }
            if let Some(attributes) = &extra.attributes {
                p["attributes"] = json!(attributes);
            }
            if let Some(name) = &extra.api_key_name {
                p["api_key_name"] = json!(name);
            }
            if let Some(reason) = &extra.reason {
                p["reason"] = json!(reason);
            }
            Job {
                webhook_id: w.id,
                url: w.url.clone(),
                auth: w.auth.clone(),
                headers: w.headers.clone(),
                batched: w.batched,
                event: event.to_owned(),
                payload: p,
            }
        })
        .collect()
}

/// Webhooks fired by a contact write: `contact_updated` when attributes of an existing contact
/// changed, `list_addition` for lists it joined.
pub(crate) fn contact_change_jobs(account: &Account, change: &Change, via_api: bool) -> Vec<Job> {
    let Some(contact) = account.contacts.get(&change.contact_id) else {
        return Vec::new();
    };
    let key_name = if via_api { account.key_name.clone() } else { String::new() };
    let mut jobs = Vec::new();
    if !change.created && !change.attributes.is_empty() {
        let extra = Extra {
            attributes: Some(change.attributes.clone()),
            api_key_name: Some(key_name.clone()),
            ..Extra::default()
        };
        jobs.extend(jobs_for(account, "contactUpdated", contact, extra));
    }
    if !change.added_lists.is_empty() {
        let extra = Extra {
            list_ids: change.added_lists.clone(),
            api_key_name: Some(key_name),
            ..Extra::default()
        };
        jobs.extend(jobs_for(account, "listAddition", contact, extra));
    }
    jobs
}

/// POSTs one payload (an array of one when the webhook is `batched`), with the webhook's bearer
/// token and custom headers. Returns the HTTP status or the transport error.
pub(crate) async fn deliver(http: &reqwest::Client, job: &Job) -> Result<u16, String> {
    let body = if job.batched { json!([job.payload]) } else { job.payload.clone() };
    let mut request = http.post(&job.url).json(&body);
    if let Some(token) = job.auth.as_ref().and_then(|a| a.get("token")).and_then(Value::as_str) {
        request = request.bearer_auth(token);
    }
    for (k, v) in &job.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

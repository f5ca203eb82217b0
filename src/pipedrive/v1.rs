//! The v1-only endpoints the product needs (pipedrive-api.md §3): webhooks, leads, recents and
//! person merge. Same limiter, budget and retries as the v2 calls.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::PipedriveError;
use super::client::PipedriveClient;

#[derive(Debug, Clone, Deserialize)]
pub struct Webhook {
    pub id: u64,
    pub event_action: String,
    pub event_object: String,
    pub subscription_url: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What to subscribe to; credentials are sent as HTTP Basic on every delivery.
#[derive(Debug, Clone)]
pub struct NewWebhook<'a> {
    pub subscription_url: &'a str,
    pub event_action: &'a str,
    pub event_object: &'a str,
    pub name: &'a str,
    pub http_auth_user: &'a str,
    pub http_auth_password: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lead {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub person_id: Option<u64>,
    #[serde(default)]
    pub organization_id: Option<u64>,
    #[serde(default)]
    pub is_archived: bool,
    #[serde(default)]
    pub update_time: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One entry of `/v1/recents`: `data` in v1 shape.
#[derive(Debug, Clone, Deserialize)]
pub struct Recent {
    pub item: String,
    pub id: Value,
    pub data: Value,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
    #[serde(default)]
    additional_data: Option<Value>,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<T>, PipedriveError> {
    serde_json::from_slice(bytes).map_err(|e| PipedriveError::Decode { field: super::field_of(&e) })
}

impl PipedriveClient {
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, PipedriveError> {
        let body = self.get("/api/v1/webhooks", &[], 10).await?;
        Ok(decode(&body)?.data)
    }

    pub async fn create_webhook(&self, w: &NewWebhook<'_>) -> Result<Webhook, PipedriveError> {
        let body = json!({
            "subscription_url": w.subscription_url, "event_action": w.event_action, "event_object": w.event_object,
            "name": w.name, "http_auth_user": w.http_auth_user, "http_auth_password": w.http_auth_password, "version": "2.0",
        });
        let bytes = self.send(reqwest::Method::POST, "/api/v1/webhooks", Some(&body), 10).await?;
        Ok(decode(&bytes)?.data)
    }

    pub async fn delete_webhook(&self, id: u64) -> Result<(), PipedriveError> {
        self.send(reqwest::Method::DELETE, &format!("/api/v1/webhooks/{id}"), None, 6)
            .await
            .map(|_| ())
    }

    /// One page of leads (v1 offset pagination); the next `start`, if any.
    pub async fn leads(
        &self,
        start: u64,
        limit: u64,
    ) -> Result<(Vec<Lead>, Option<u64>), PipedriveError> {
        let query =
            [("start".to_owned(), start.to_string()), ("limit".to_owned(), limit.to_string())];
        let body = self.get("/api/v1/leads", &query, 20).await?;
        let page: Envelope<Vec<Lead>> = decode(&body)?;
        // `GET /leads` documents the pagination directly in additional_data; tolerate nesting.
        let more = page.additional_data.map(|a| {
            let p = if a.get("pagination").is_some() { a["pagination"].clone() } else { a };
            p["more_items_in_collection"].as_bool().unwrap_or(false)
        });
        let next = (more == Some(true)).then_some(start + limit);
        Ok((page.data, next))
    }

    /// Changes since `since` (`YYYY-MM-DD HH:MM:SS`, UTC), at most a month back (§8).
    pub async fn recents(
        &self,
        since: &str,
        items: &str,
        start: u64,
    ) -> Result<(Vec<Recent>, Option<u64>), PipedriveError> {
        let query = [
            ("since_timestamp".to_owned(), since.to_owned()),
            ("items".to_owned(), items.to_owned()),
            ("start".to_owned(), start.to_string()),
            ("limit".to_owned(), "500".to_owned()),
        ];
        let body = self.get("/api/v1/recents", &query, 20).await?;
        let page: Envelope<Vec<Option<Recent>>> = decode(&body)?;
        let next =
            page.additional_data.as_ref().and_then(|a| a["pagination"]["next_start"].as_u64());
        // Entries with null data occur (deleted items): skipped.
        Ok((page.data.into_iter().flatten().collect(), next))
    }

    /// Merges person `id` into `into` (the one that stays).
    pub async fn merge_persons(&self, id: u64, into: u64) -> Result<Value, PipedriveError> {
        let bytes = self
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/persons/{id}/merge"),
                Some(&json!({"merge_with_id": into})),
                40,
            )
            .await?;
        Ok(decode::<Value>(&bytes)?.data)
    }
}

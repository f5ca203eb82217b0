//! `POST /v3/contacts/batch` (spec `updateBatchContacts`): deprecated (2026-10-30) but still
//! answering, update-only and all-or-nothing. Reference §2.10.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::contact_write::{self, WriteBody};
use super::http::{ApiError, ApiResult, Body};
use super::{ApiKey, Brevo, delivery};

#[derive(Debug, Deserialize)]
pub(crate) struct BatchItem {
    email: Option<String>,
    id: Option<i64>,
    sms: Option<String>,
    #[serde(flatten)]
    write: WriteBody,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BatchBody {
    contacts: Option<Vec<BatchItem>>,
}

/// `POST /v3/contacts/batch` → 204. Update only, all or nothing: an unknown contact fails the call
/// with 404 "No contact found for indexes i,j" and nothing is written (reference §2.10, §10 #1).
pub(crate) async fn batch(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Body(body): Body<BatchBody>,
) -> ApiResult<Response> {
    let items = body
        .contacts
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::missing("contacts is missing"))?;
    let now = OffsetDateTime::now_utc();
    let jobs = brevo.with_account(&key, |account| {
        let mut targets = Vec::with_capacity(items.len());
        let mut unknown = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let given = [item.email.is_some(), item.id.is_some(), item.sms.is_some()]
                .iter()
                .filter(|g| **g)
                .count();
            if given != 1 {
                return Err(ApiError::invalid(format!(
                    "Pass exactly one of email, id or sms for the contact at index {i}"
                )));
            }
            let found = match (&item.email, item.id, &item.sms) {
                (Some(e), _, _) => account.by_email(e),
                (_, Some(id), _) => account.contacts.contains_key(&id).then_some(id),
                (_, _, Some(sms)) => {
                    super::http::normalize_phone(sms).and_then(|n| account.by_attr("SMS", &n))
                }
                _ => None,
            };
            match found {
                Some(id) => targets.push(id),
                None => unknown.push(i.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(ApiError::not_found(format!(
                "No contact found for indexes {}",
                unknown.join(",")
            )));
        }
        // Work on a copy so that a failing item leaves the account untouched.
        let mut draft = account.clone();
        let mut changes = Vec::new();
        for (item, id) in items.into_iter().zip(targets) {
            changes.push(contact_write::update(&mut draft, id, item.write, now)?);
        }
        *account = draft;
        Ok(changes
            .iter()
            .flat_map(|c| delivery::contact_change_jobs(account, c, true))
            .collect::<Vec<_>>())
    })??;
    brevo.dispatch(&key, jobs);
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! `POST /v3/contacts/import` (spec `importContacts`): answered at once with a `processId`, applied
//! by a background task that moves the process through its statuses. Reference §2.11–§2.12.

use std::collections::HashSet;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::contact_write::{self, held_by_others_in, vet};
use super::http::{ApiError, ApiResult, parse_body_off_workers, valid_email};
use super::state::{Account, Contact, ImportCounters, Process};
use super::{ApiKey, Brevo, lists};

/// `fileBody` / `jsonBody` may carry at most 10 MB (reference §2.11).
pub(crate) const MAX_INLINE_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct NewList {
    #[serde(rename = "listName")]
    list_name: Option<String>,
    #[serde(rename = "folderId")]
    folder_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ImportBody {
    #[serde(rename = "fileUrl")]
    file_url: Option<String>,
    #[serde(rename = "fileBody")]
    file_body: Option<String>,
    #[serde(rename = "jsonBody")]
    json_body: Option<Vec<Value>>,
    #[serde(rename = "listIds")]
    list_ids: Option<Vec<i64>>,
    #[serde(rename = "newList")]
    new_list: Option<NewList>,
    #[serde(rename = "updateExistingContacts")]
    update_existing: Option<bool>,
    #[serde(rename = "emptyContactsAttributes")]
    empty_attributes: Option<bool>,
    #[serde(rename = "emailBlacklist")]
    email_blacklist: Option<bool>,
    #[serde(rename = "smsBlacklist")]
    sms_blacklist: Option<bool>,
}

enum Source {
    Json(Vec<Value>),
    Csv(String),
    Url(String),
}

struct Options {
    list_ids: Vec<i64>,
    update_existing: bool,
    empty_attributes: bool,
    email_blacklist: bool,
    sms_blacklist: bool,
}

/// `POST /v3/contacts/import` → 202 `{processId}`; the rows are applied by a background task that
/// moves the process `queued` → `processing` → `completed`.
pub(crate) async fn import(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    // A whole body within the limit has a jsonBody within it; only a larger one is measured.
    let body_len = raw.len();
    let body: ImportBody = parse_body_off_workers(raw).await?;
    let source = match (body.file_url, body.file_body, body.json_body) {
        (Some(url), None, None) => Source::Url(url),
        (None, Some(csv), None) => Source::Csv(csv),
        (None, None, Some(rows)) => Source::Json(rows),
        (None, None, None) => {
            return Err(ApiError::missing("Please provide one of fileUrl, fileBody or jsonBody"));
        }
        _ => {
            return Err(ApiError::invalid(
                "Only one of fileUrl, fileBody or jsonBody can be passed",
            ));
        }
    };
    let too_big = match &source {
        Source::Csv(s) => s.len() > MAX_INLINE_BYTES,
        Source::Json(rows) => {
            body_len > MAX_INLINE_BYTES
                && serde_json::to_vec(rows).map(|b| b.len()).unwrap_or(0) > MAX_INLINE_BYTES
        }
        Source::Url(u) => !(u.starts_with("http://") || u.starts_with("https://")),
    };
    if too_big {
        return Err(ApiError::invalid(
            "fileBody/jsonBody exceeds 10MB, or fileUrl is not an http(s) URL",
        ));
    }
    let list_ids = body.list_ids.unwrap_or_default();
    let new_list = body
        .new_list
        .and_then(|n| n.list_name.filter(|l| !l.trim().is_empty()).map(|l| (l, n.folder_id)));
    if list_ids.is_empty() && new_list.is_none() {
        return Err(ApiError::missing("listIds or newList is required"));
    }
    let mut options = Options {
        list_ids,
        update_existing: body.update_existing.unwrap_or(true),
        empty_attributes: body.empty_attributes.unwrap_or(false),
        email_blacklist: body.email_blacklist.unwrap_or(false),
        sms_blacklist: body.sms_blacklist.unwrap_or(false),
    };
    let process_id = brevo.with_account(&key, |account| {
        contact_write::check_lists(account, &options.list_ids)?;
        if let Some((name, folder)) = new_list {
            // folderId is mandatory with listName (spec `newList.folderId`).
            let folder = folder
                .ok_or_else(|| ApiError::missing("newList.folderId is required with listName"))?;
            options.list_ids.push(lists::create_list(account, name, folder)?);
        }
        let id = account.next_process_id;
        account.next_process_id += 1;
        let now = OffsetDateTime::now_utc();
        account.processes.insert(
            id,
            Process {
                id,
                name: "IMPORTUSER",
                status: "queued",
                created_at: now,
                completed_at: None,
                import: None,
                error: None,
            },
        );
        Ok::<_, ApiError>(id)
    })??;
    let runner = brevo.clone();
    tokio::spawn(async move { run_import(runner, key, process_id, source, options).await });
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "processId": process_id }))).into_response())
}

fn set_status(brevo: &Brevo, key: &ApiKey, id: i64, status: &'static str) {
    let _ = brevo.with_account(key, |account| {
        if let Some(p) = account.processes.get_mut(&id) {
            p.status = status;
        }
    });
}

async fn run_import(brevo: Brevo, key: ApiKey, id: i64, source: Source, options: Options) {
    let step = Duration::from_millis(brevo.settings().process_step_ms);
    tokio::time::sleep(step).await;
    set_status(&brevo, &key, id, "processing");
    let rows = match source {
        Source::Json(rows) => Ok(rows_from_json(rows)),
        Source::Csv(text) => Ok(rows_from_csv(&text)),
        Source::Url(url) => fetch_rows(&url).await,
    };
    tokio::time::sleep(step).await;
    let refuse = brevo.lock().faults.import_refuse_share.clamp(0.0, 1.0);
    let (rows, refused) = match rows {
        Ok(rows) if refuse > 0.0 => {
            let mut rng = rand::thread_rng();
            let (kept, dropped): (Vec<Row>, Vec<Row>) =
                rows.into_iter().partition(|_| !rand::Rng::gen_bool(&mut rng, refuse));
            (Ok(kept), dropped.len())
        }
        other => (other, 0),
    };
    // Applying thousands of rows is CPU work: on a blocking thread, not the runtime's workers.
    let apply = move || {
        let _ = brevo.with_account(&key, |account| {
            let now = OffsetDateTime::now_utc();
            let (status, counters, error) = match rows {
                Ok(rows) => {
                    let mut counters = apply_rows(account, rows, &options, now);
                    counters.invalid_emails += refused as i64;
                    ("completed", counters, None)
                }
                Err(e) => ("failed", ImportCounters::default(), Some(e)),
            };
            if let Some(p) = account.processes.get_mut(&id) {
                p.status = status;
                p.completed_at = Some(now);
                p.import = Some(counters);
                p.error = error;
            }
        });
    };
    let _ = tokio::task::spawn_blocking(apply).await;
}

type Row = Map<String, Value>;

/// `jsonBody` items are `{email, attributes}` (spec `importContacts.jsonBody`).
fn rows_from_json(items: Vec<Value>) -> Vec<Row> {
    items
        .into_iter()
        .map(|item| {
            let Value::Object(mut item) = item else {
                return Row::new();
            };
            let mut row = match item.remove("attributes") {
                Some(Value::Object(attributes)) => attributes,
                _ => Row::new(),
            };
            if let Some(email) = item.remove("email").filter(|e| !e.is_null()) {
                row.insert("EMAIL".into(), email);
            }
            row
        })
        .collect()
}

/// `fileBody` is CSV with `;` separators and a header row of attribute names (reference §2.11).
/// Cells are strings; [`coerce`] turns them into the attribute's type later.
fn rows_from_csv(text: &str) -> Vec<Row> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let sep = if header.contains(';') { ';' } else { ',' };
    let names: Vec<String> =
        header.split(sep).map(|h| h.trim().trim_matches('"').to_uppercase()).collect();
    lines
        .map(|line| {
            names
                .iter()
                .zip(line.split(sep))
                .map(|(n, cell)| {
                    (n.clone(), Value::String(cell.trim().trim_matches('"').to_owned()))
                })
                .collect()
        })
        .collect()
}

async fn fetch_rows(url: &str) -> Result<Vec<Row>, String> {
    let response = reqwest::get(url).await.map_err(|e| format!("Unable to fetch fileUrl: {e}"))?;
    let text = response.text().await.map_err(|e| format!("Unable to read fileUrl: {e}"))?;
    match serde_json::from_str::<Vec<Value>>(&text) {
        Ok(items) => Ok(rows_from_json(items)),
        Err(_) => Ok(rows_from_csv(&text)),
    }
}

/// CSV cells arrive as text; typed attributes get parsed (numbers, booleans).
fn coerce(account: &Account, row: &mut Row) {
    for (name, value) in row.iter_mut() {
        let Some(s) = value.as_str() else { continue };
        let kind = account.attribute(name).and_then(|a| a.kind.clone());
        match kind.as_deref() {
            Some("float") => {
                if let Ok(n) = s.parse::<f64>() {
                    *value = json!(n);
                }
            }
            Some("boolean") => match s.to_lowercase().as_str() {
                "true" | "yes" | "1" => *value = json!(true),
                "false" | "no" | "0" => *value = json!(false),
                _ => {}
            },
            _ => {}
        }
    }
}

/// Applies import rows. Only counters come out (reference §2.12: no per-row errors): invalid emails,
/// duplicates within the file, and identifiers already held by another contact (dropped from the row).
fn apply_rows(
    account: &mut Account,
    rows: Vec<Row>,
    options: &Options,
    now: OffsetDateTime,
) -> ImportCounters {
    let mut counters = ImportCounters::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    // Rows are checked against the attributes first (they do not change during an import), so
    // that the index below holds only the contacts this import can meet.
    let rows: Vec<(Option<Value>, contact_write::Vetted)> = rows
        .into_iter()
        .filter_map(|mut row| {
            coerce(account, &mut row);
            let raw_email = row.remove("EMAIL");
            vet(account, &row, false).ok().map(|vetted| (raw_email, vetted))
        })
        .collect();
    let emails: HashSet<String> = rows
        .iter()
        .filter_map(|(e, _)| e.as_ref()?.as_str().map(|e| e.trim().to_lowercase()))
        .collect();
    let values: HashSet<(&str, &str)> = rows
        .iter()
        .flat_map(|(_, v)| {
            v.identifiers.iter().filter_map(|(name, value)| Some((*name, value.as_deref()?)))
        })
        .collect();
    // One index for the whole import (a scan per row made large imports quadratic), of the
    // contacts holding one of its emails or identifier values (indexing every contact again for
    // each import was most of the sandbox's time in a large backfill); it learns each contact as
    // the import writes it. A value a contact gives up within the same import stays in it until
    // the next call.
    let mut lookup = account.lookup_of(&emails, &values);
    drop(values);
    for (raw_email, mut vetted) in rows {
        if !options.empty_attributes {
            vetted.values.retain(|(_, v)| v.is_some());
            vetted.identifiers.retain(|(_, v)| v.is_some());
        }
        let email =
            match raw_email.as_ref().and_then(Value::as_str).map(|e| e.trim().to_lowercase()) {
                Some(e) if e.is_empty() => None,
                Some(e) if !valid_email(&e) => {
                    counters.invalid_emails += 1;
                    continue;
                }
                other => other,
            };
        if let Some(e) = &email
            && !seen.insert(("email".into(), e.clone()))
        {
            counters.duplicate_email_id += 1;
            continue;
        }
        let mut dropped = Vec::new();
        for (name, value) in &vetted.identifiers {
            if let Some(v) = value
                && !seen.insert(((*name).to_owned(), v.clone()))
            {
                dropped.push(*name);
            }
        }
        let ext =
            vetted.identifiers.iter().find(|(n, _)| *n == "EXT_ID").and_then(|(_, v)| v.clone());
        let target = email
            .as_deref()
            .and_then(|e| lookup.by_email(e))
            .or_else(|| ext.as_deref().and_then(|x| lookup.by_attr("EXT_ID", x)));
        dropped.extend(
            held_by_others_in(
                |e| lookup.by_email(e),
                |n, v| lookup.by_attr(n, v),
                target,
                email.as_deref(),
                &vetted,
            )
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| *n != "email"),
        );
        for name in &dropped {
            match *name {
                "EXT_ID" => counters.duplicate_ext_id += 1,
                "SMS" => counters.duplicate_phone_id += 1,
                "WHATSAPP" => counters.duplicate_whatsapp_id += 1,
                _ => counters.duplicate_landline_number_id += 1,
            }
        }
        vetted.identifiers.retain(|(n, _)| !dropped.contains(n));
        if email.is_none()
            && target.is_none()
            && !vetted.identifiers.iter().any(|(_, v)| v.is_some())
        {
            counters.invalid_emails += 1;
            continue;
        }
        let id = match target {
            Some(_) if !options.update_existing => continue,
            Some(id) => {
                counters.updated += 1;
                id
            }
            None => {
                counters.created += 1;
                let id = account.new_contact_id();
                account.contacts.insert(id, Contact::new(id, now));
                id
            }
        };
        let Some(mut contact) = account.contacts.get_mut(&id) else {
            continue;
        };
        contact_write::apply(&mut contact, email, vetted, now);
        lookup.add(&contact);
        contact.list_ids.extend(options.list_ids.iter().copied());
        if options.email_blacklist {
            contact.email_blacklisted = true;
        }
        if options.sms_blacklist {
            contact.sms_blacklisted = true;
        }
    }
    counters
}

//! Lists under `/v3/contacts/lists` and list membership (`/contacts/add`, `/contacts/remove`).
//! Spec operations `getLists`, `createList`, `getList`, `updateList`, `deleteList`,
//! `getContactsFromList`, `addContactToList`, `removeContactFromList`; reference §4.1, §4.3.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::contact_write::Change;
use super::contacts::page;
use super::delivery;
use super::http::{ApiError, ApiResult, Body, Params, path_id, render_time};
use super::state::{Account, List};
use super::{ApiKey, Brevo};

/// Most contacts one add/remove call takes (spec `maxItems: 150`; reference §4.3).
const MAX_PER_CALL: usize = 150;

fn list_not_found() -> ApiError {
    ApiError::not_found("List ID does not exist")
}

/// `getList` (+ `folderId`). `totalSubscribers`/`totalBlacklisted` are being dropped by Brevo and
/// default to 0 (spec note on `getLists`); `uniqueSubscribers` counts members.
pub(crate) fn list_json(account: &Account, list: &List) -> Value {
    json!({
        "id": list.id,
        "name": list.name,
        "totalBlacklisted": 0,
        "totalSubscribers": 0,
        "uniqueSubscribers": account.list_members(list.id).count(),
        "folderId": list.folder_id,
    })
}

/// Pages values in creation (= id) order, descending unless `sort=asc` (limit default 10, max 50).
pub(crate) fn paged(mut items: Vec<Value>, params: &Params) -> ApiResult<(Vec<Value>, usize)> {
    let (limit, offset) = params.paging(10, 50)?;
    if params.descending()? {
        items.reverse();
    }
    let count = items.len();
    Ok((items.into_iter().skip(offset).take(limit).collect(), count))
}

pub(crate) async fn list(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    params: Params,
) -> ApiResult<Response> {
    let all = brevo
        .with_account(&key, |a| a.lists.values().map(|l| list_json(a, l)).collect::<Vec<_>>())?;
    let (lists, count) = paged(all, &params)?;
    Ok(axum::Json(json!({ "lists": lists, "count": count })).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListBody {
    name: Option<String>,
    #[serde(rename = "folderId")]
    folder_id: Option<i64>,
}

/// `POST /contacts/lists` `{name, folderId}` (both required) → 201 `{id}`.
pub(crate) async fn create(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Body(body): Body<ListBody>,
) -> ApiResult<Response> {
    let name = body
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::missing("name is missing"))?;
    let folder_id = body.folder_id.ok_or_else(|| ApiError::missing("folderId is missing"))?;
    let id = brevo.with_account(&key, |account| create_list(account, name, folder_id))??;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": id }))).into_response())
}

pub(crate) fn create_list(account: &mut Account, name: String, folder_id: i64) -> ApiResult<i64> {
    if !account.folders.contains_key(&folder_id) {
        return Err(ApiError::invalid("Folder ID does not exist"));
    }
    let id = account.next_list_id;
    account.next_list_id += 1;
    account.lists.insert(id, List { id, name, folder_id, created_at: OffsetDateTime::now_utc() });
    Ok(id)
}

pub(crate) async fn get(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, "listId")?;
    let body = brevo.with_account(&key, |account| {
        let list = account.lists.get(&id).ok_or_else(list_not_found)?;
        let mut v = list_json(account, list);
        v["createdAt"] = json!(render_time(list.created_at));
        v["dynamicList"] = json!(false);
        Ok::<_, ApiError>(v)
    })??;
    Ok(axum::Json(body).into_response())
}

pub(crate) async fn update(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
    Body(body): Body<ListBody>,
) -> ApiResult<Response> {
    let id = path_id(&id, "listId")?;
    brevo.with_account(&key, |account| {
        if body.folder_id.is_some_and(|f| !account.folders.contains_key(&f)) {
            return Err(ApiError::invalid("Folder ID does not exist"));
        }
        let list = account.lists.get_mut(&id).ok_or_else(list_not_found)?;
        if let Some(name) = body.name.filter(|n| !n.trim().is_empty()) {
            list.name = name;
        }
        if let Some(folder) = body.folder_id {
            list.folder_id = folder;
        }
        Ok(())
    })??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn delete(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, "listId")?;
    brevo.with_account(&key, |account| {
        account.lists.remove(&id).ok_or_else(list_not_found)?;
        account.contacts.update_all(|contact| {
            contact.list_ids.remove(&id);
        });
        Ok::<_, ApiError>(())
    })??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /contacts/lists/{listId}/contacts` (limit default 50, max 500; reference §2.6).
pub(crate) async fn contacts(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let id = path_id(&id, "listId")?;
    let body = brevo.with_account(&key, |account| {
        if !account.lists.contains_key(&id) {
            return Err(list_not_found());
        }
        page(account.list_members(id), &params, 500)
    })??;
    Ok(axum::Json(body).into_response())
}

/// The three (add) or four (remove) body forms of the spec's `oneOf`.
#[derive(Debug, Deserialize)]
pub(crate) struct MembersBody {
    emails: Option<Vec<String>>,
    ids: Option<Vec<i64>>,
    #[serde(rename = "extIds")]
    ext_ids: Option<Vec<String>>,
    all: Option<bool>,
}

enum Who {
    Emails(Vec<String>),
    Ids(Vec<i64>),
    ExtIds(Vec<String>),
}

fn who(body: MembersBody) -> ApiResult<Who> {
    let who = match (body.emails, body.ids, body.ext_ids) {
        (Some(e), None, None) => Who::Emails(e),
        (None, Some(i), None) => Who::Ids(i),
        (None, None, Some(x)) => Who::ExtIds(x),
        (None, None, None) => {
            return Err(ApiError::missing("One of emails, ids or extIds is required"));
        }
        _ => return Err(ApiError::invalid("Pass only one of emails, ids or extIds")),
    };
    let n = match &who {
        Who::Emails(v) | Who::ExtIds(v) => v.len(),
        Who::Ids(v) => v.len(),
    };
    if n == 0 {
        return Err(ApiError::missing("The contact array is empty"));
    }
    if n > MAX_PER_CALL {
        // Live wording unknown; the limit itself is the spec's maxItems.
        return Err(ApiError::invalid(format!(
            "You can add or remove at most {MAX_PER_CALL} contacts in one request, got {n}; use /contacts/import for bulk"
        )));
    }
    Ok(who)
}

/// Applies an add (`adding = true`) or remove; answers `postContactInfo`. When nothing succeeded,
/// Brevo refuses the whole call: 400 `invalid_parameter` "Contact already in list and/or does not
/// exist" (sendinblue/APIv3-php-library#134).
fn membership(
    account: &mut Account,
    list_id: i64,
    who: Who,
    adding: bool,
) -> ApiResult<(Value, Vec<Change>)> {
    if !account.lists.contains_key(&list_id) {
        return Err(list_not_found());
    }
    let now = OffsetDateTime::now_utc();
    let mut success = Vec::new();
    let mut failure = Vec::new();
    let mut changes = Vec::new();
    let items: Vec<(Value, Option<i64>)> = match who {
        Who::Emails(v) => {
            let lookup = account.lookup();
            v.into_iter()
                .map(|e| {
                    let id = lookup.by_email(&e);
                    (json!(e), id)
                })
                .collect()
        }
        Who::Ids(v) => v
            .into_iter()
            .map(|i| (json!(i), account.contacts.contains_key(&i).then_some(i)))
            .collect(),
        Who::ExtIds(v) => v
            .into_iter()
            .map(|x| {
                let id = account.by_attr("EXT_ID", &x);
                (json!(x), id)
            })
            .collect(),
    };
    for (label, id) in items {
        let Some(mut contact) = id.and_then(|id| account.contacts.get_mut(&id)) else {
            failure.push(label);
            continue;
        };
        let done = if adding {
            contact.list_ids.insert(list_id)
        } else {
            contact.list_ids.remove(&list_id)
        };
        if done {
            contact.modified_at = now;
            success.push(label);
            if adding {
                changes.push(Change {
                    contact_id: contact.id,
                    created: false,
                    attributes: Default::default(),
                    added_lists: vec![list_id],
                });
            }
        } else {
            failure.push(label);
        }
    }
    if success.is_empty() {
        let message = if adding {
            "Contact already in list and/or does not exist"
        } else {
            "Contact already removed from list and/or does not exist"
        };
        return Err(ApiError::invalid(message));
    }
    Ok((json!({ "contacts": { "success": success, "failure": failure } }), changes))
}

pub(crate) async fn add(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
    Body(body): Body<MembersBody>,
) -> ApiResult<Response> {
    let id = path_id(&id, "listId")?;
    let who = who(body)?;
    let (answer, jobs) = brevo.with_account(&key, |account| {
        let (answer, changes) = membership(account, id, who, true)?;
        let jobs: Vec<_> =
            changes.iter().flat_map(|c| delivery::contact_change_jobs(account, c, true)).collect();
        Ok::<_, ApiError>((answer, jobs))
    })??;
    brevo.dispatch(&key, jobs);
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// `remove` also takes `{"all": true}`, which Brevo runs as a background process.
pub(crate) async fn remove(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
    Body(body): Body<MembersBody>,
) -> ApiResult<Response> {
    let id = path_id(&id, "listId")?;
    if body.all == Some(true) {
        let answer = brevo.with_account(&key, |account| {
            if !account.lists.contains_key(&id) {
                return Err(list_not_found());
            }
            let mut total = 0;
            account.contacts.update_all(|contact| {
                if contact.list_ids.remove(&id) {
                    total += 1;
                }
            });
            // The spec's process-name enum has no entry for a list purge; the nearest is used.
            let process_id = super::processes::finished_process(account, "LIST_EXPORT");
            Ok(json!({ "contacts": { "total": total, "processId": process_id } }))
        })??;
        return Ok((StatusCode::CREATED, axum::Json(answer)).into_response());
    }
    let who = who(body)?;
    let (answer, _) = brevo.with_account(&key, |account| membership(account, id, who, false))??;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

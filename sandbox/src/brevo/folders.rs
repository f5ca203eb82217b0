//! Folders under `/v3/contacts/folders` (spec `getFolders`, `createFolder`, `getFolder`,
//! `getFolderLists`; reference §4.2).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{ApiError, ApiResult, Body, Params, path_id};
use super::lists::{list_json, paged};
use super::state::{Account, Folder, List};
use super::{ApiKey, Brevo};

fn folder_not_found() -> ApiError {
    ApiError::not_found("Folder ID does not exist")
}

fn folder_json(account: &Account, folder: &Folder) -> Value {
    let lists: Vec<&List> = account.lists.values().filter(|l| l.folder_id == folder.id).collect();
    let unique = account
        .contacts
        .values()
        .filter(|c| lists.iter().any(|l| c.list_ids.contains(&l.id)))
        .count();
    json!({ "id": folder.id, "name": folder.name, "totalBlacklisted": 0, "totalSubscribers": 0, "uniqueSubscribers": unique })
}

pub(crate) async fn folders(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    params: Params,
) -> ApiResult<Response> {
    let all = brevo.with_account(&key, |a| {
        a.folders.values().map(|f| folder_json(a, f)).collect::<Vec<_>>()
    })?;
    let (folders, count) = paged(all, &params)?;
    Ok(axum::Json(json!({ "folders": folders, "count": count })).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct FolderBody {
    name: Option<String>,
}

/// `POST /contacts/folders` `{name}` → 201 `{id}`.
pub(crate) async fn create_folder(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Body(body): Body<FolderBody>,
) -> ApiResult<Response> {
    let name = body
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::missing("name is missing"))?;
    let id = brevo.with_account(&key, |account| {
        let id = account.next_folder_id;
        account.next_folder_id += 1;
        account.folders.insert(id, Folder { id, name });
        id
    })?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": id }))).into_response())
}

pub(crate) async fn folder(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, "folderId")?;
    let body = brevo.with_account(&key, |a| a.folders.get(&id).map(|f| folder_json(a, f)))?;
    Ok(axum::Json(body.ok_or_else(folder_not_found)?).into_response())
}

pub(crate) async fn folder_lists(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let id = path_id(&id, "folderId")?;
    let all = brevo.with_account(&key, |a| {
        a.folders.contains_key(&id).then(|| {
            a.lists
                .values()
                .filter(|l| l.folder_id == id)
                .map(|l| list_json(a, l))
                .collect::<Vec<_>>()
        })
    })?;
    let (lists, count) = paged(all.ok_or_else(folder_not_found)?, &params)?;
    Ok(axum::Json(json!({ "lists": lists, "count": count })).into_response())
}

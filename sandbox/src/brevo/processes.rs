//! Background processes: `GET /v3/processes[/{processId}]` (spec `getProcesses`, `getProcess`;
//! reference §2.12).

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::http::{ApiError, ApiResult, Params, path_id};
use super::state::{Account, Process};
use super::{ApiKey, Brevo};

/// A process that is already finished (for synchronous-looking operations that Brevo reports as
/// processes, e.g. removing all contacts of a list).
pub(crate) fn finished_process(account: &mut Account, name: &'static str) -> i64 {
    let id = account.next_process_id;
    account.next_process_id += 1;
    let now = OffsetDateTime::now_utc();
    account.processes.insert(
        id,
        Process {
            id,
            name,
            status: "completed",
            created_at: now,
            completed_at: Some(now),
            import: None,
            error: None,
        },
    );
    id
}

/// `GET /v3/processes` (limit default 10, max 50).
pub(crate) async fn processes(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    params: Params,
) -> ApiResult<Response> {
    let (limit, offset) = params.paging(10, 50)?;
    let descending = params.descending()?;
    let mut all = brevo
        .with_account(&key, |a| a.processes.values().map(Process::to_json).collect::<Vec<_>>())?;
    if descending {
        all.reverse();
    }
    let count = all.len();
    let page: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
    Ok(axum::Json(json!({ "processes": page, "count": count })).into_response())
}

/// `GET /v3/processes/{processId}`.
pub(crate) async fn process(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, "processId")?;
    let body = brevo.with_account(&key, |a| a.processes.get(&id).map(Process::to_json))?;
    Ok(axum::Json(body.ok_or_else(|| ApiError::not_found("Process ID not found"))?).into_response())
}

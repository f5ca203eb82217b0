//! Sync now / Full resync, the run history with live progress, record errors and their retry.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityCountsView {
    pub entity: String,
    pub read: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    pub deleted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    pub id: i64,
    pub mode: String,
    pub trigger: String,
    pub status: String,
    pub phase: Option<String>,
    /// 0–100, from the steps done.
    pub percent: u32,
    pub counts: Vec<EntityCountsView>,
    pub pipedrive_tokens: i64,
    pub brevo_calls: i64,
    pub message: Option<String>,
    pub started_at: String,
    pub duration: String,
    pub open_errors: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatusView {
    pub runs: Vec<RunView>,
    /// A sync is queued or running.
    pub pending: bool,
    pub can_manage: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordErrorView {
    pub id: i64,
    pub run_id: Option<i64>,
    pub entity: String,
    pub pipedrive_id: String,
    pub reason: String,
    pub payload: String,
    pub status: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetailView {
    pub run: RunView,
    pub errors: Vec<RecordErrorView>,
    pub can_manage: bool,
}

#[server(endpoint = "sync_overview")]
pub async fn sync_overview(tenant_id: String) -> Result<SyncStatusView, AppError> {
    server::overview(tenant_id).await
}

#[server(endpoint = "start_sync")]
pub async fn start_sync(tenant_id: String, full_resync: bool) -> Result<String, AppError> {
    server::start(tenant_id, full_resync).await
}

#[server(endpoint = "run_detail")]
pub async fn run_detail(tenant_id: String, run_id: i64) -> Result<RunDetailView, AppError> {
    server::detail(tenant_id, run_id).await
}

/// Retries one record error (`error_id`), or every open one.
#[server(endpoint = "retry_errors")]
pub async fn retry_errors(tenant_id: String, error_id: Option<i64>) -> Result<String, AppError> {
    server::retry(tenant_id, error_id).await
}

#[cfg(feature = "ssr")]
mod server {
    use pipebridge::sync::{self, history};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::{EntityCountsView, RecordErrorView, RunDetailView, RunView, SyncStatusView};
    use crate::api::server::{self as s, respond};
    use crate::error::AppError;

    fn duration(from: OffsetDateTime, to: Option<OffsetDateTime>) -> String {
        let secs = (to.unwrap_or_else(OffsetDateTime::now_utc) - from).whole_seconds().max(0);
        if secs < 60 { format!("{secs} s") } else { format!("{} min {} s", secs / 60, secs % 60) }
    }

    fn view(r: &history::RunInfo) -> RunView {
        let percent = if r.status == "succeeded" {
            100
        } else if r.steps_total > 0 {
            ((r.steps_done.max(0) as u32) * 100 / r.steps_total as u32).min(99)
        } else {
            0
        };
        RunView {
            id: r.id,
            mode: r.mode.clone(),
            trigger: r.trigger.clone(),
            status: r.status.clone(),
            phase: r.phase.clone(),
            percent,
            counts: r
                .counts()
                .into_iter()
                .map(|(entity, c)| EntityCountsView {
                    entity,
                    read: c.read,
                    created: c.created,
                    updated: c.updated,
                    unchanged: c.unchanged,
                    skipped: c.skipped,
                    failed: c.failed,
                    deleted: c.deleted,
                })
                .collect(),
            pipedrive_tokens: r.pipedrive_tokens,
            brevo_calls: r.brevo_calls,
            message: r.message.clone(),
            started_at: r.started_at.format(&Rfc3339).unwrap_or_default(),
            duration: duration(r.started_at, r.finished_at),
            open_errors: r.open_errors,
        }
    }

    pub async fn overview(tenant_id: String) -> Result<SyncStatusView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let runs = history::runs(&state.pool, &member, 30).await?;
                let pending = history::sync_pending(&state.pool, &member).await?;
                Ok(SyncStatusView {
                    runs: runs.iter().map(view).collect(),
                    pending,
                    can_manage: member.role.can_manage(),
                })
            }
            .await,
        )
    }

    pub async fn start(tenant_id: String, full_resync: bool) -> Result<String, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let queued = sync::request(&state.pool, &member, full_resync).await?;
                Ok(match (queued, full_resync) {
                    (true, true) => {
                        "Full resync queued: everything is read and written again.".to_owned()
                    }
                    (true, false) => "Sync queued.".to_owned(),
                    (false, _) => "A sync is already queued; it starts shortly.".to_owned(),
                })
            }
            .await,
        )
    }

    pub async fn detail(tenant_id: String, run_id: i64) -> Result<RunDetailView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let run =
                    history::run(&state.pool, &member, run_id).await?.ok_or(AppError::NotFound)?;
                let errors = history::errors(&state.pool, &member, Some(run_id), 500)
                    .await?
                    .into_iter()
                    .map(|e| RecordErrorView {
                        id: e.id,
                        run_id: e.run_id,
                        entity: e.entity,
                        pipedrive_id: e.pipedrive_id,
                        reason: e.reason,
                        payload: e.payload.map(|p| p.to_string()).unwrap_or_default(),
                        status: e.status,
                        at: e.created_at.format(&Rfc3339).unwrap_or_default(),
                    })
                    .collect();
                Ok(RunDetailView { run: view(&run), errors, can_manage: member.role.can_manage() })
            }
            .await,
        )
    }

    pub async fn retry(tenant_id: String, error_id: Option<i64>) -> Result<String, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                Ok(if sync::retry(&state.pool, &member, error_id).await? {
                    "Retry queued: the record(s) are written again in a moment.".to_owned()
                } else {
                    "Nothing to retry.".to_owned()
                })
            }
            .await,
        )
    }
}

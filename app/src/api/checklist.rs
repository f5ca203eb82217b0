//! The first-run checklist of the dashboard.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// One step's state, as the checklist shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    Todo,
    Done,
    /// Started but not finished (a sync queued or running).
    Underway,
    /// Needs the person again (a connection to renew, a sync that failed).
    Attention,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistView {
    pub pipedrive: StepState,
    pub brevo: StepState,
    pub mapping: StepState,
    /// The mapping version in force.
    pub mapping_version: Option<i32>,
    pub first_sync: StepState,
    /// The first sync has succeeded: the checklist is no longer shown.
    pub done: bool,
}

#[server(endpoint = "first_run_checklist")]
pub async fn first_run_checklist(tenant_id: String) -> Result<ChecklistView, AppError> {
    server::load(tenant_id).await
}

#[cfg(feature = "ssr")]
mod server {
    use pipebridge::checklist::{self, Connection, FirstSync};

    use super::{ChecklistView, StepState};
    use crate::api::server::{self as s, respond};
    use crate::error::AppError;

    fn connection(c: Connection) -> StepState {
        match c {
            Connection::Missing => StepState::Todo,
            Connection::Connected => StepState::Done,
            Connection::NeedsReauthorization => StepState::Attention,
        }
    }

    pub async fn load(tenant_id: String) -> Result<ChecklistView, AppError> {
        respond(
            async {
                let (state, member) = s::member(&tenant_id).await?;
                let c = checklist::checklist(&state.pool, &member).await?;
                Ok(ChecklistView {
                    pipedrive: connection(c.pipedrive),
                    brevo: connection(c.brevo),
                    mapping: if c.mapping.is_some() { StepState::Done } else { StepState::Todo },
                    mapping_version: c.mapping,
                    first_sync: match c.first_sync {
                        FirstSync::NotStarted => StepState::Todo,
                        FirstSync::Underway => StepState::Underway,
                        FirstSync::Failed => StepState::Attention,
                        FirstSync::Succeeded => StepState::Done,
                    },
                    done: c.done(),
                })
            }
            .await,
        )
    }
}

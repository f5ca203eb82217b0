//! The first-run checklist on the dashboard: the four steps from a new company to contacts in
//! Brevo, each with its state, read in one query scoped by the member's tenant.

use sqlx::PgPool;

use crate::accounts::Member;

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Missing,
    Connected,
    NeedsReauthorization,
}

impl Connection {
    fn from_status(status: Option<&str>) -> Self {
        match status {
            None => Connection::Missing,
            Some("connected") => Connection::Connected,
            Some(_) => Connection::NeedsReauthorization,
        }
    }
}

/// Where the first sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstSync {
    NotStarted,
    /// Queued or running.
    Underway,
    /// Every run so far failed; the last one's message says why.
    Failed,
    Succeeded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checklist {
    pub pipedrive: Connection,
    pub brevo: Connection,
    /// The mapping version in force, if one is saved.
    pub mapping: Option<i32>,
    pub first_sync: FirstSync,
}

impl Checklist {
    /// The checklist is shown until the first sync has succeeded.
    pub fn done(&self) -> bool {
        self.first_sync == FirstSync::Succeeded
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    pipedrive: Option<String>,
    brevo: Option<String>,
    mapping: Option<i32>,
    succeeded: bool,
    failed: bool,
}

pub async fn checklist(pool: &PgPool, member: &Member) -> Result<Checklist, sqlx::Error> {
    let row: Row = sqlx::query_as(
        "select
            (select status from connections where tenant_id = $1 and provider = 'pipedrive') as pipedrive,
            (select status from connections where tenant_id = $1 and provider = 'brevo') as brevo,
            (select max(version) from mapping_versions where tenant_id = $1) as mapping,
            exists (select 1 from sync_runs where tenant_id = $1 and status = 'succeeded') as succeeded,
            exists (select 1 from sync_runs where tenant_id = $1 and status = 'failed') as failed",
    )
    .bind(member.tenant_id)
    .fetch_one(pool)
    .await?;
    let first_sync = if row.succeeded {
        FirstSync::Succeeded
    } else if crate::sync::history::sync_pending(pool, member).await? {
        FirstSync::Underway
    } else if row.failed {
        FirstSync::Failed
    } else {
        FirstSync::NotStarted
    };
    Ok(Checklist {
        pipedrive: Connection::from_status(row.pipedrive.as_deref()),
        brevo: Connection::from_status(row.brevo.as_deref()),
        mapping: row.mapping,
        first_sync,
    })
}

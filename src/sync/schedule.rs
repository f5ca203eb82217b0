//! Which sync jobs exist and who may run them: every sync job of a tenant shares one
//! concurrency key (one run per tenant at a time, across every process), and the incremental
//! sync of every tenant that can sync is queued each period.

use serde_json::Value;
use sqlx::PgPool;

use crate::domain::TenantId;
use crate::queue::NewJob;

/// An incremental run (a backfill first, if the tenant has none).
pub const JOB_SYNC: &str = "sync.incremental";
/// A full resync: everything read and written again.
pub const JOB_FULL_RESYNC: &str = "sync.full";
/// The name of the periodic schedule of incremental syncs.
pub const SCHEDULE: &str = "sync.incremental";

/// The key that lets at most one sync of the tenant run at a time.
pub fn concurrency_key(tenant: TenantId) -> String {
    format!("sync:{tenant}")
}

/// A sync job of `kind` for `tenant`, under the tenant's concurrency key.
pub fn job(kind: &str, tenant: TenantId, payload: Value) -> NewJob {
    NewJob::new(kind, payload).tenant(tenant).concurrency(concurrency_key(tenant))
}

/// The incremental sync of every tenant whose Pipedrive and Brevo are both connected, who has
/// saved a mapping, and whose jobs are not held. (A tenant who has connected both sides but not
/// yet saved a mapping has nothing to sync: scheduled then, each run failed and showed as the
/// latest on the dashboard while the mapping was being written.)
pub async fn incremental_sync_jobs(pool: &PgPool) -> Result<Vec<NewJob>, sqlx::Error> {
    let tenants: Vec<TenantId> = sqlx::query_scalar(
        "select p.tenant_id from connections p
         join connections b on b.tenant_id = p.tenant_id and b.provider = 'brevo' and b.status = 'connected'
         where p.provider = 'pipedrive' and p.status = 'connected'
           and exists (select 1 from mapping_versions m where m.tenant_id = p.tenant_id)
           and not exists (select 1 from job_holds h where h.tenant_id = p.tenant_id)
         order by p.tenant_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(tenants
        .into_iter()
        .map(|t| {
            job(JOB_SYNC, t, serde_json::json!({"trigger": "schedule"}))
                .dedupe(format!("{JOB_SYNC}:{t}"))
        })
        .collect())
}

//! The outbox of Brevo events. A run never holds an event only in memory past the moment its
//! change is consumed: the event is written here in the transaction that records the change's
//! links and checkpoint (or, where those are written elsewhere, committed just before them).
//! The run's `events` step, and every later run's, drains what is pending, oldest first, in
//! batches; Brevo's refusals become dead letters shown as record errors with a Retry.
//!
//! An event is never lost; it is sent twice only if the process dies between Brevo's 2xx and
//! the commit that marks it sent. Each event carries the key of the change it comes from, so a
//! change read again after a crash, while its event still waits, queues nothing new.

use crate::sync::Entity;
use serde_json::{Map, Value, json};
use sqlx::{PgExecutor, PgPool};

use super::store;
use crate::brevo::BrevoError;
use crate::brevo::api::BrevoApi;
use crate::domain::TenantId;

/// Events a batch sends at most (Brevo's batch endpoint takes more; a smaller batch loses less
/// to a failed call).
const BATCH: i64 = 100;

/// An event a run decided to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The change it comes from, e.g. `deal:42:<its new content hash>:deal_stage_changed`.
    pub key: String,
    pub name: String,
    /// The Pipedrive person whose contact gets it.
    pub person_id: i64,
    pub properties: Map<String, Value>,
}

/// Queues events; one still waiting for the same change is left as it is.
pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    tenant: TenantId,
    run: i64,
    events: &[Event],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    let persons: Vec<i64> = events.iter().map(|e| e.person_id).collect();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let properties: Vec<Value> =
        events.iter().map(|e| Value::Object(e.properties.clone())).collect();
    sqlx::query(
        "insert into sync_outbox (tenant_id, run_id, dedupe_key, person_id, event_name, properties)
         select $1, $2, k, p, n, props
         from unnest($3::text[], $4::bigint[], $5::text[], $6::jsonb[]) with ordinality as e(k, p, n, props, i)
         order by i
         on conflict (tenant_id, dedupe_key) where status = 'pending' do nothing",
    )
    .bind(tenant)
    .bind(run)
    .bind(&keys)
    .bind(&persons)
    .bind(&names)
    .bind(&properties)
    .execute(db)
    .await?;
    Ok(())
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub sent: u64,
    /// For a person without a Brevo contact (no valid email): nothing to send it to.
    pub skipped: u64,
    /// Refused by Brevo: dead letters, shown as record errors.
    pub refused: u64,
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    person_id: i64,
    event_name: String,
    properties: Value,
}

/// Sends the tenant's pending events, oldest first, until none is left. A failure worth another
/// attempt (network, 5xx, rate limit, a refused key) stops the drain with what was not sent
/// still pending.
pub async fn drain(
    pool: &PgPool,
    brevo: &BrevoApi,
    tenant: TenantId,
    run: i64,
) -> Result<Drained, DrainError> {
    let mut done = Drained::default();
    loop {
        let batch: Vec<Pending> = sqlx::query_as(
            "select id, person_id, event_name, properties from sync_outbox
             where tenant_id = $1 and status = 'pending' order by id limit $2",
        )
        .bind(tenant)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        if batch.is_empty() {
            return Ok(done);
        }
        let persons: Vec<String> = batch.iter().map(|e| e.person_id.to_string()).collect();
        let contacts = store::links(pool, tenant, Entity::Person, &persons).await?;
        let (mut to_send, mut ids, mut no_contact) = (Vec::new(), Vec::new(), Vec::new());
        for e in batch {
            match contacts.get(&e.person_id.to_string()).and_then(|l| l.brevo_ref.clone()) {
                Some(email) => {
                    let props = e.properties.as_object().cloned().unwrap_or_default();
                    to_send.push((e.event_name, email, props));
                    ids.push(e.id);
                }
                None => no_contact.push(e.id),
            }
        }
        mark(pool, &no_contact, "skipped", Some("the person has no Brevo contact")).await?;
        done.skipped += no_contact.len() as u64;
        if to_send.is_empty() {
            continue;
        }
        match brevo.track_events(&to_send).await {
            Ok(refused) => {
                let refused_ids: Vec<i64> =
                    refused.iter().filter_map(|(i, _)| ids.get(*i).copied()).collect();
                let sent: Vec<i64> =
                    ids.iter().copied().filter(|id| !refused_ids.contains(id)).collect();
                mark(pool, &sent, "sent", None).await?;
                done.sent += sent.len() as u64;
                for (i, message) in refused {
                    let (Some(id), Some((name, email, props))) = (ids.get(i), to_send.get(i))
                    else {
                        continue;
                    };
                    dead_letter(pool, tenant, run, *id, name, email, props, &message).await?;
                    done.refused += 1;
                }
            }
            Err(
                e @ (BrevoError::Transient(_)
                | BrevoError::RateLimited { .. }
                | BrevoError::BadKey(_)),
            ) => {
                sqlx::query("update sync_outbox set attempts = attempts + 1, last_error = $2, updated_at = now() where id = any($1)")
                    .bind(&ids)
                    .bind(e.to_string())
                    .execute(pool)
                    .await?;
                return Err(DrainError::Brevo(e));
            }
            Err(e) => {
                // The whole batch refused (a malformed request): each event a dead letter.
                for (id, (name, email, props)) in ids.iter().zip(&to_send) {
                    dead_letter(pool, tenant, run, *id, name, email, props, &e.to_string()).await?;
                    done.refused += 1;
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Brevo(BrevoError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

async fn mark(
    pool: &PgPool,
    ids: &[i64],
    status: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "update sync_outbox set status = $2, last_error = $3, updated_at = now(),
                sent_at = case when $2 = 'sent' then now() else sent_at end
         where id = any($1)",
    )
    .bind(ids)
    .bind(status)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// The record error's id of an outbox row: `outbox:<id>`.
pub fn error_id(outbox_id: i64) -> String {
    format!("outbox:{outbox_id}")
}

#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    pool: &PgPool,
    tenant: TenantId,
    run: i64,
    id: i64,
    name: &str,
    email: &str,
    props: &Map<String, Value>,
    message: &str,
) -> Result<(), sqlx::Error> {
    // The record error first, so that a dead letter is never out of sight. (Should the process
    // stop in between, the event stays pending and is tried again; a Retry of that error then
    // finds nothing dead to put back and only resolves it.)
    store::record_error(
        pool,
        tenant,
        run,
        Entity::Event,
        &error_id(id),
        &format!("Brevo refused the event {name}: {message}"),
        &json!({"event": name, "email": email, "properties": props}),
    )
    .await?;
    mark(pool, &[id], "dead", Some(message)).await
}

/// Puts dead letters back in the queue (by their record errors' ids, `outbox:<id>`); returns
/// how many.
pub async fn requeue<'e>(
    db: impl PgExecutor<'e>,
    tenant: TenantId,
    error_ids: &[String],
) -> Result<u64, sqlx::Error> {
    let ids: Vec<i64> =
        error_ids.iter().filter_map(|e| e.strip_prefix("outbox:")?.parse().ok()).collect();
    let done = sqlx::query(
        "update sync_outbox set status = 'pending', last_error = null, updated_at = now()
         where tenant_id = $1 and id = any($2) and status = 'dead'",
    )
    .bind(tenant)
    .bind(&ids)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes sent and skipped events older than `age`.
pub async fn prune(pool: &PgPool, age: std::time::Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "delete from sync_outbox where status in ('sent', 'skipped') and updated_at < now() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}

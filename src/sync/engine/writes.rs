//! Writing contacts: rows grouped by their lists into imports, or written one by one; writes on
//! their way, and the checkpoint that waits for them.

use super::BULK_MIN;
use super::Bucket;
use super::Bulk;
use super::Engine;
use super::IMPORT_BYTES;
use super::MAX_INFLIGHT;
use super::PendingImport;
use super::Row;
use super::Sent;
use super::Stop;
use super::object;
use crate::brevo::BrevoError;
use crate::brevo::api::BrevoApi;
use crate::brevo::api::ImportContact;
use crate::brevo::api::Upserted;
use crate::domain::TenantId;
use crate::mapping::transform;
use crate::sync::Entity;
use crate::sync::Mode;
use crate::sync::outbox::Event;
use crate::sync::store;
use crate::sync::store::Checkpoint;
use crate::sync::store::Link;
use crate::sync::store::RecordError;
use crate::task::AbortOnDrop;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashSet;
use std::time::Instant;
use tracing::Instrument;

impl<'s> Engine<'s> {
    /// Writes contacts: a backfill page into its import groups, an incremental page held with the
    /// next ones (`write_later`), anything else at once.
    pub(super) async fn write(
        &mut self,
        rows: Vec<Row>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), Stop> {
        // Contacts whose email changed: the old contact leaves our lists.
        // (A backfill that started with no person linked has every row new and no old contact.)
        let moved: Vec<i64> = rows.iter().filter(|r| !r.existed).map(|r| r.person_id).collect();
        if !moved.is_empty() && self.persons_linked {
            let old = store::links(
                self.pool,
                self.tenant,
                Entity::Person,
                &moved.iter().map(i64::to_string).collect::<Vec<_>>(),
            )
            .await?;
            for (l, r) in
                rows.iter().filter_map(|r| old.get(&r.person_id.to_string()).map(|l| (l, r)))
            {
                if let Some(old_email) = l.brevo_ref.as_deref().filter(|e| *e != r.email) {
                    for list in lists_of(&l.facts) {
                        self.brevo.remove_from_list(list, &[old_email.to_owned()]).await?;
                    }
                }
            }
        }
        match (self.mode, checkpoint) {
            (Mode::Backfill, Some(cp)) => self.stage(rows, cp).await,
            (Mode::Incremental, Some(cp)) => {
                // A person changed again during the run comes on a later page too: the newer row
                // is the one to write.
                let ids: HashSet<i64> = rows.iter().map(|r| r.person_id).collect();
                self.later.retain(|r| !ids.contains(&r.person_id));
                self.later.extend(rows);
                self.later_checkpoint = Some(cp);
                if self.later.len() >= self.s.bulk.import_rows {
                    self.write_later().await?;
                }
                Ok(())
            }
            (_, None) => self.write_now(rows).await,
        }
    }

    /// Writes the contacts an incremental run held, then saves the checkpoint of their last page.
    pub(super) async fn write_later(&mut self) -> Result<(), Stop> {
        let rows = std::mem::take(&mut self.later);
        self.write_now(rows).await?;
        if let Some(cp) = self.later_checkpoint.take() {
            self.save_checkpoint(Entity::Person.as_str(), &cp).await?;
        }
        Ok(())
    }

    /// Puts a backfill page's rows in their groups, imports the groups that are full (or have
    /// waited long enough), and keeps the newest checkpoint no waiting row depends on.
    pub(super) async fn stage(
        &mut self,
        rows: Vec<Row>,
        checkpoint: Checkpoint,
    ) -> Result<(), Stop> {
        // `page_read` numbered this page (a stage follows each page of a backfill's persons).
        let page = self.backfill_pages;
        self.gate.hold(page, checkpoint);
        for row in rows {
            let bucket = self.bulk.entry(row.lists.clone()).or_insert_with(|| Bucket {
                rows: Vec::new(),
                bytes: 0,
                since: page,
            });
            bucket.bytes += row.email.len() + row.own.len() + row.derived.len() + 32;
            bucket.rows.push(row);
        }
        let Bulk { import_rows, hold_pages, held_rows, .. } = self.s.bulk;
        let due: Vec<Vec<i64>> = self
            .bulk
            .iter()
            .filter(|(_, b)| {
                b.rows.len() >= import_rows
                    || b.bytes >= IMPORT_BYTES
                    || page - b.since >= hold_pages
            })
            .map(|(lists, _)| lists.clone())
            .collect();
        for lists in due {
            self.flush(&lists).await?;
        }
        while self.bulk.values().map(|b| b.rows.len()).sum::<usize>() > held_rows {
            let Some(largest) =
                self.bulk.iter().max_by_key(|(_, b)| b.rows.len()).map(|(lists, _)| lists.clone())
            else {
                break;
            };
            self.flush(&largest).await?;
        }
        self.release_checkpoint().await
    }

    /// Imports every waiting group (the end of the persons).
    ///
    /// Nothing else overlaps these imports: Brevo's limiter spaces them, then
    /// they are processed and recorded. When the groups outnumber their lists (the seed mapping:
    /// ten groups over the all-contacts list and four more), each list beyond those every group
    /// has gets one import instead, with those common lists, of every waiting row in it, and the
    /// rows in the common lists only get one more. A row goes into one import per list it has
    /// beyond the common ones, each creating or updating it with all its attributes, so no
    /// import leaves a contact half-written, and fewer imports leave sooner.
    pub(super) async fn flush_all(&mut self) -> Result<(), Stop> {
        let rows: usize = self.bulk.values().map(|b| b.rows.len()).sum();
        tracing::debug!(groups = self.bulk.len(), rows, "importing the groups still waiting");
        let (single, bulk): (Vec<Vec<i64>>, Vec<Vec<i64>>) = self
            .bulk
            .keys()
            .cloned()
            .partition(|lists| self.bulk[lists].rows.len() < BULK_MIN || lists.is_empty());
        for lists in single {
            self.flush(&lists).await?;
        }
        let plan = by_list(&bulk);
        let bytes: usize = self.bulk.values().map(|b| b.bytes).sum();
        if plan.len() < bulk.len() && bytes <= IMPORT_BYTES {
            let rows: Vec<Row> =
                std::mem::take(&mut self.bulk).into_values().flat_map(|b| b.rows).collect();
            let brevo = self.brevo.clone();
            let all: Vec<i64> =
                bulk.iter().flatten().copied().collect::<BTreeSet<i64>>().into_iter().collect();
            self.spawn_write(async move {
                let imports = plan.iter().map(|(target, extra)| {
                    let members: Vec<&Row> =
                        rows.iter().filter(|r| takes(target, *extra, &r.lists)).collect();
                    let brevo = &brevo;
                    async move { send_import(brevo, target, members).await }
                });
                let ids = futures_util::future::try_join_all(imports).await?;
                let (first, companions) = ids
                    .split_first()
                    .map(|(f, c)| (*f, c.to_vec()))
                    .ok_or_else(|| Stop::Retry("no list to import the last groups into".into()))?;
                Ok(Sent::Import(first, companions, all, rows))
            })
            .await?;
        } else {
            for lists in bulk {
                self.flush(&lists).await?;
            }
        }
        self.release_checkpoint().await
    }

    /// One group's rows as one import whose target is their lists; a handful, or rows in no list
    /// (an import needs a target), one by one. Either way by a task, beside the persons loop.
    pub(super) async fn flush(&mut self, lists: &[i64]) -> Result<(), Stop> {
        let Some(bucket) = self.bulk.remove(lists) else { return Ok(()) };
        tracing::debug!(
            ?lists,
            rows = bucket.rows.len(),
            page = self.backfill_pages,
            "importing a group"
        );
        if bucket.rows.len() < BULK_MIN || lists.is_empty() {
            return self.spawn_one_by_one(bucket.rows).await;
        }
        let (brevo, lists) = (self.brevo.clone(), lists.to_vec());
        self.spawn_write(async move {
            let process_id = send_import(&brevo, &lists, &bucket.rows).await?;
            Ok(Sent::Import(process_id, Vec::new(), lists, bucket.rows))
        })
        .await
    }

    /// Writes contacts one at a time in a task of their own (recorded when it is settled).
    pub(super) async fn spawn_one_by_one(&mut self, rows: Vec<Row>) -> Result<(), Stop> {
        let (managed, sms) = self.one_by_one_rules();
        let brevo = self.brevo.clone();
        self.spawn_write(async move {
            let (written, stopped) = send_one_by_one(&brevo, &managed, sms.as_deref(), rows).await;
            Ok(Sent::OneByOne(written, stopped))
        })
        .await
    }

    /// Starts a write task, once fewer than `MAX_INFLIGHT` are on their way.
    pub(super) async fn spawn_write(
        &mut self,
        write: impl Future<Output = Result<Sent, Stop>> + Send + 'static,
    ) -> Result<(), Stop> {
        self.company_contacts_ready().await;
        while self.inflight.len() >= MAX_INFLIGHT {
            let t = Instant::now();
            self.settle_one().await?;
            self.report.spent.add("waiting for Brevo to take writes", t);
        }
        self.inflight.push_back(AbortOnDrop::spawn(write.in_current_span()));
        self.gate.sent();
        Ok(())
    }

    /// Waits for the oldest write on its way, and takes in what it did.
    pub(super) async fn settle_one(&mut self) -> Result<(), Stop> {
        let Some(task) = self.inflight.pop_front() else { return Ok(()) };
        let sent = task
            .await
            .map_err(|e| Stop::Retry(format!("a write to Brevo was interrupted: {e}")))??;
        let write = self.gate.settle();
        match sent {
            Sent::Import(process_id, companions, lists, rows) => {
                self.pending.push(PendingImport { process_id, companions, lists, rows, write });
            }
            Sent::OneByOne(written, stopped) => {
                let t = Instant::now();
                self.record_written(written).await?;
                self.report.spent.add("recording contacts written one by one", t);
                if let Some(e) = stopped {
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Takes in the writes that are done (`wait`: all of them), then saves the newest checkpoint
    /// whose writes all are.
    pub(super) async fn settle_writes(&mut self, wait: bool) -> Result<(), Stop> {
        let t = Instant::now();
        while self.inflight.front().is_some_and(|task| wait || task.is_finished()) {
            self.settle_one().await?;
        }
        self.report.spent.add("waiting for Brevo to take writes", t);
        self.save_ready_checkpoint().await
    }

    /// Saves the newest persons checkpoint whose writes are all settled and whose imports are
    /// all recorded.
    pub(super) async fn save_ready_checkpoint(&mut self) -> Result<(), Stop> {
        self.settle_recording(false).await?;
        // The first checkpoint an unrecorded import (or record error) holds back: those released
        // after the write it came from.
        let held_from = self
            .pending
            .iter()
            .map(|p| p.write + 1)
            .chain(self.recording.iter().map(|(from, _)| *from))
            .min()
            .unwrap_or(u64::MAX);
        if let Some(cp) = self.gate.ready(held_from) {
            let t = Instant::now();
            self.save_checkpoint(Entity::Person.as_str(), &cp).await?;
            self.report.spent.add("database: checkpoints", t);
        }
        Ok(())
    }

    /// Takes in the link writes that are done (`wait`: all of them).
    pub(super) async fn settle_recording(&mut self, wait: bool) -> Result<(), Stop> {
        let t = Instant::now();
        while self.recording.front().is_some_and(|(_, task)| wait || task.is_finished()) {
            if let Some((_, task)) = self.recording.pop_front() {
                task.await.map_err(|e| {
                    Stop::Retry(format!("recording an import was interrupted: {e}"))
                })??;
            }
        }
        self.report.spent.add("waiting for imports to be recorded", t);
        Ok(())
    }

    /// Keeps the checkpoint of the last page none of whose rows still waits in `bulk`, to be
    /// saved once the imports sent before it are recorded: a restarted run reads again only the
    /// pages it has not written.
    pub(super) async fn release_checkpoint(&mut self) -> Result<(), Stop> {
        let oldest_waiting = self.bulk.values().map(|b| b.since).min().unwrap_or(u64::MAX);
        self.gate.release_before(oldest_waiting);
        self.settle_writes(false).await
    }

    /// Writes contacts before returning (an incremental run, a retry). When `Bulk::write_now_rows`
    /// of them can go in imports, each group of at least `BULK_MIN` going to the same lists is one
    /// import, which Brevo confirms before this returns; the rest go one by one meanwhile. A burst
    /// of changed persons costs a few imports, not a call per person.
    pub(super) async fn write_now(&mut self, rows: Vec<Row>) -> Result<(), Stop> {
        let groups = by_their_lists(rows);
        let importable =
            |lists: &Vec<i64>, rows: &Vec<Row>| rows.len() >= BULK_MIN && !lists.is_empty();
        let bulk =
            groups.iter().filter(|(l, r)| importable(l, r)).map(|(_, r)| r.len()).sum::<usize>()
                >= self.s.bulk.write_now_rows;
        let mut single = Vec::new();
        let mut imported = false;
        for (lists, mut rows) in groups {
            if !bulk || !importable(&lists, &rows) {
                single.append(&mut rows);
                continue;
            }
            while !rows.is_empty() {
                let rest = rows.split_off(rows.len().min(self.s.bulk.import_rows.max(1)));
                let process_id = send_import(&self.brevo, &lists, &rows).await?;
                self.pending.push(PendingImport {
                    process_id,
                    companions: Vec::new(),
                    lists: lists.clone(),
                    rows,
                    write: self.gate.settled_so_far(),
                });
                imported = true;
                rows = rest;
            }
        }
        self.write_one_by_one(single).await?;
        if imported {
            self.confirm_imports(true).await?;
            self.settle_recording(true).await?;
        }
        Ok(())
    }

    /// What a contact written on its own needs from the mapping: the lists it may leave, and the
    /// attribute that holds the phone (written again without it should Brevo refuse it).
    pub(super) fn one_by_one_rules(&self) -> (BTreeSet<i64>, Option<String>) {
        (transform::managed_lists(&self.mapping), self.mapping.person_mapping.get("phone").cloned())
    }

    /// Writes contacts one at a time (each can join and leave lists) and records what became of
    /// each.
    pub(super) async fn write_one_by_one(&mut self, rows: Vec<Row>) -> Result<(), Stop> {
        let (managed, sms) = self.one_by_one_rules();
        let (written, stopped) = send_one_by_one(&self.brevo, &managed, sms.as_deref(), rows).await;
        self.record_written(written).await?;
        match stopped {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Records contacts written one at a time: counts, errors, events, links.
    pub(super) async fn record_written(&mut self, written: Vec<Written>) -> Result<(), Stop> {
        let mut links = Vec::new();
        let mut resolved = Vec::new();
        let mut errors = Vec::new();
        for Written { row, result, phone_refused } in written {
            errors.extend(phone_refused);
            let brevo_id = match result {
                Ok(Upserted::Created(id)) => {
                    self.took(&row, true, true);
                    Some(id)
                }
                Ok(Upserted::Updated) => {
                    self.took(&row, !row.existed, true);
                    None
                }
                Err(e) => {
                    self.count(Entity::Person).failed += 1;
                    let payload = json!({"email": row.email, "attributes": row.attributes(), "lists": row.lists});
                    errors.push(RecordError {
                        id: row.person_id.to_string(),
                        reason: format!("Brevo refused the contact: {e}"),
                        payload,
                    });
                    continue;
                }
            };
            if !row.has_issues {
                resolved.push(row.person_id.to_string());
            }
            links.push(person_link(&row, brevo_id));
        }
        store::record_errors(self.pool, self.tenant, self.run, Entity::Person, &errors).await?;
        // The events of these writes are durable before the links that consume them.
        self.flush_events().await?;
        store::upsert_links(self.pool, self.tenant, &links).await?;
        store::resolve_errors(self.pool, self.tenant, Entity::Person, &resolved).await?;
        Ok(())
    }

    /// Counts a contact Brevo took, and queues the event the mapping asks for when a person is
    /// added or updated (not in a backfill, which fires no automations for the past).
    pub(super) fn took(&mut self, row: &Row, created: bool, events: bool) {
        if created {
            self.count(Entity::Person).created += 1
        } else {
            self.count(Entity::Person).updated += 1
        }
        if self.mode == Mode::Incremental && events {
            let rule = if row.existed {
                self.rule("updated", Entity::Person)
            } else {
                self.rule("added", Entity::Person)
            };
            if let Some(name) = rule {
                self.events.push(Event {
                    key: format!("person:{}:{}:{name}", row.person_id, row.hash),
                    name,
                    person_id: row.person_id,
                    properties: Map::from_iter([("personId".to_owned(), json!(row.person_id))]),
                });
            }
        }
    }
}

/// Sends rows as one import targeting `lists`; returns Brevo's process.
pub(super) async fn send_import<'r>(
    brevo: &BrevoApi,
    lists: &[i64],
    rows: impl IntoIterator<Item = &'r Row>,
) -> Result<i64, Stop> {
    // A row's own and derived attributes never share a key (`draft`).
    let contacts: Vec<ImportContact> = rows
        .into_iter()
        .map(|r| ImportContact { email: &r.email, attributes: [&r.own, &r.derived] })
        .collect();
    Ok(brevo.import_json(&contacts, lists).await?)
}

/// A contact written one at a time: the row, Brevo's answer, and the error to record when Brevo
/// refused the phone (the contact was then written without it).
pub(super) struct Written {
    pub(super) row: Row,
    pub(super) result: Result<Upserted, BrevoError>,
    pub(super) phone_refused: Option<RecordError>,
}

/// Writes contacts one at a time, until Brevo or the network fails in a way worth another
/// attempt (returned with what was written before it; the rows after it are not sent).
pub(super) async fn send_one_by_one(
    brevo: &BrevoApi,
    managed: &BTreeSet<i64>,
    sms: Option<&str>,
    rows: Vec<Row>,
) -> (Vec<Written>, Option<BrevoError>) {
    let mut written = Vec::new();
    for mut row in rows {
        let add: Vec<i64> =
            row.lists.iter().filter(|l| !row.prev_lists.contains(l)).copied().collect();
        let unlink: Vec<i64> = row
            .prev_lists
            .iter()
            .filter(|l| !row.lists.contains(l) && managed.contains(l))
            .copied()
            .collect();
        let mut attributes = row.attributes();
        let mut result = put_contact(brevo, &row, &attributes, &add, &unlink).await;
        let mut phone_refused = None;
        if let (Err(e @ (BrevoError::InvalidPhone | BrevoError::SmsTaken)), Some(sms)) =
            (&result, sms)
            && let Some(number) = attributes.remove(sms)
        {
            let reason = match e {
                BrevoError::SmsTaken => format!(
                    "The phone {number} already belongs to another Brevo contact: the contact was synced without SMS."
                ),
                _ => {
                    format!("Brevo refused the phone {number}: the contact was synced without SMS.")
                }
            };
            phone_refused = Some(RecordError {
                id: row.person_id.to_string(),
                reason,
                payload: json!({"email": row.email, "phone": number}),
            });
            row.has_issues = true;
            result = put_contact(brevo, &row, &attributes, &add, &unlink).await;
        }
        if let Err(
            e @ (BrevoError::Transient(_) | BrevoError::RateLimited { .. } | BrevoError::BadKey(_)),
        ) = result
        {
            return (written, Some(e));
        }
        written.push(Written { row, result, phone_refused });
    }
    (written, None)
}

/// An existing contact is updated (so it can leave lists), a new one created.
pub(super) async fn put_contact(
    brevo: &BrevoApi,
    row: &Row,
    attributes: &Map<String, Value>,
    add: &[i64],
    unlink: &[i64],
) -> Result<Upserted, BrevoError> {
    if row.existed {
        match brevo.update_contact(&row.email, attributes, add, unlink).await {
            Ok(()) => return Ok(Upserted::Updated),
            // Deleted in Brevo meanwhile: created again below.
            Err(BrevoError::UnknownContact) => {}
            Err(e) => return Err(e),
        }
    }
    brevo.upsert_contact(&row.email, attributes, add, &[]).await
}

pub(super) fn lists_of(facts: &Value) -> Vec<i64> {
    facts["lists"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect()
}

pub(super) fn person_link(r: &Row, brevo_id: Option<i64>) -> Link {
    Link {
        entity: Entity::Person.to_string(),
        pipedrive_id: r.person_id.to_string(),
        brevo_ref: Some(r.email.clone()),
        brevo_id,
        org_id: r.org_id,
        content_hash: Some(r.hash.clone()),
        facts: json!({"own": object(&r.own), "lists": r.lists}),
        ..Default::default()
    }
}

/// The links of written rows ([`person_link`]s without a Brevo id) in the columns
/// [`store::upsert_link_columns`] takes, written straight from the rows' texts: the links of a
/// 5,000-row import as maps were several times its size, and parsed and serialized twice.
pub(super) fn person_links(rows: &[Row]) -> store::LinkColumns {
    let mut c = store::LinkColumns::with_capacity(rows.len());
    for r in rows {
        let lists = r.lists.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let own = if r.own.trim().is_empty() { "{}" } else { &r.own };
        c.entity.push(Entity::Person.to_string());
        c.pipedrive_id.push(r.person_id.to_string());
        c.brevo_ref.push(Some(r.email.clone()));
        c.brevo_id.push(None);
        c.person_id.push(None);
        c.org_id.push(r.org_id);
        c.content_hash.push(Some(r.hash.clone()));
        c.facts.push(format!(r#"{{"own":{own},"lists":[{lists}]}}"#));
    }
    c
}

/// Writes links in a transaction of their own, committed without waiting for the disk: should
/// the database stop before the commit reaches it, the checkpoint saved after it is lost too,
/// and the rows are read and written again.
pub(super) async fn record_links(
    pool: &PgPool,
    tenant: TenantId,
    links: &store::LinkColumns,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    store::relaxed_commit(&mut tx).await?;
    store::upsert_link_columns(&mut *tx, tenant, links).await?;
    tx.commit().await
}

/// Rows by the lists they go to.
pub(super) fn by_their_lists(rows: Vec<Row>) -> BTreeMap<Vec<i64>, Vec<Row>> {
    let mut groups: BTreeMap<Vec<i64>, Vec<Row>> = BTreeMap::new();
    for row in rows {
        groups.entry(row.lists.clone()).or_default().push(row);
    }
    groups
}

/// Imports that write groups of rows by list rather than by group (see [`Engine::flush_all`]):
/// each target, with the list beyond the ones every group has that it is for (`None`: the common
/// lists alone, for the rows that have no other). [`takes`] tells which rows go in each.
pub(super) fn by_list(groups: &[Vec<i64>]) -> Vec<(Vec<i64>, Option<i64>)> {
    let Some(first) = groups.first() else { return Vec::new() };
    let common: BTreeSet<i64> = groups.iter().fold(first.iter().copied().collect(), |acc, g| {
        acc.intersection(&g.iter().copied().collect()).copied().collect()
    });
    let extra: BTreeSet<i64> =
        groups.iter().flatten().copied().filter(|l| !common.contains(l)).collect();
    let only_common = groups
        .iter()
        .any(|g| g.len() == common.len())
        .then(|| (common.iter().copied().collect(), None));
    let per_list = extra.into_iter().map(|list| {
        (
            common.iter().copied().chain([list]).collect::<BTreeSet<i64>>().into_iter().collect(),
            Some(list),
        )
    });
    only_common.into_iter().chain(per_list).collect()
}

/// Whether a row going to `lists` (which hold every common list) is in the import of
/// [`by_list`]'s `target`, made for `extra`.
pub(super) fn takes(target: &[i64], extra: Option<i64>, lists: &[i64]) -> bool {
    match extra {
        Some(list) => lists.contains(&list),
        None => lists.len() == target.len(),
    }
}

//! What only incremental runs do: persons touched by the earlier steps, deletions and merges,
//! activities, and the events they send.

use super::DELETIONS;
use super::DELETIONS_EVERY;
use super::Engine;
use super::OVERLAP;
use super::PAGE;
use super::PAGES_AHEAD;
use super::Stop;
use super::hash;
use super::parse_time;
use super::persons::Known;
use super::persons::draft;
use super::persons::related;
use super::persons::row;
use super::prefetch;
use super::writes::lists_of;
use crate::mapping::DeletedPersons;
use crate::mapping::transform;
use crate::pipedrive::client::ListQuery;
use crate::pipedrive::models::Activity;
use crate::sync::Entity;
use crate::sync::Mode;
use crate::sync::outbox;
use crate::sync::outbox::Event;
use crate::sync::store;
use crate::sync::store::Checkpoint;
use crate::sync::store::Link;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;

impl<'s> Engine<'s> {
    /// Persons whose deals, leads or organization changed, recomputed from what the links hold.
    pub(super) async fn related_persons(&mut self) -> Result<(), Stop> {
        let ids: Vec<i64> = self.dirty.iter().filter(|p| !self.done.contains(p)).copied().collect();
        let mut rows = Vec::new();
        for chunk in ids.chunks(PAGE as usize) {
            let texts: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let links = store::links(self.pool, self.tenant, Entity::Person, &texts).await?;
            let related = related(self.pool, self.tenant, chunk).await?;
            let org_ids: Vec<String> =
                links.values().filter_map(|l| l.org_id).map(|o| o.to_string()).collect();
            let known = Known {
                related,
                orgs: store::links(self.pool, self.tenant, Entity::Organization, &org_ids).await?,
            };
            for (id, link) in &links {
                let (Some(email), Ok(pid)) = (link.brevo_ref.clone(), id.parse::<i64>()) else {
                    continue;
                };
                let own = link.facts["own"].as_object().cloned().unwrap_or_default();
                self.count(Entity::Person).read += 1;
                let draft = draft(&self.mapping, pid, &email, own, link.org_id, &known);
                match row(pid, email, draft, link.org_id, Some(link), false) {
                    Some(r) => rows.push(r),
                    None => self.count(Entity::Person).unchanged += 1,
                }
            }
            // Written together, so that those going to the same lists make one import.
            if rows.len() >= self.s.bulk.import_rows {
                self.write_now(std::mem::take(&mut rows)).await?;
            }
            self.report_soon();
        }
        self.write_now(rows).await
    }

    /// Deleted persons and deals since the last check (`/v1/recents`: v2 lists leave them out).
    pub(super) async fn deletions(&mut self) -> Result<(), Stop> {
        let cp = self.checkpoint(DELETIONS);
        // `/v1/recents` lists every change, not only deletions, at 20 tokens a page: it runs every
        // quarter of an hour, not every minute (Pipedrive's webhooks report deletions at once).
        if cp.since.is_some_and(|s| s > self.started - DELETIONS_EVERY)
            && self.retry_persons.is_empty()
            && !self.force_deletions
        {
            return Ok(());
        }
        let since = cp.since.unwrap_or(self.started) - OVERLAP;
        let since = since.max(self.started - time::Duration::days(29));
        let text = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            since.year(),
            since.month() as u8,
            since.day(),
            since.hour(),
            since.minute(),
            since.second()
        );
        let mut start = 0;
        loop {
            let (recents, next) = self.pd.recents(&text, "person,deal", start).await?;
            for r in recents {
                let Some(id) = r.id.as_u64().or_else(|| r.id.as_str().and_then(|s| s.parse().ok()))
                else {
                    continue;
                };
                let gone = r.data["active_flag"] == json!(false)
                    || r.data["deleted"] == json!(true)
                    || r.data["is_deleted"] == json!(true);
                if !gone {
                    continue;
                }
                match r.item.as_str() {
                    "person" => self.person_deleted(id as i64).await?,
                    "deal" => {
                        let links =
                            store::links(self.pool, self.tenant, Entity::Deal, &[id.to_string()])
                                .await?;
                        if let Some(l) = links.get(&id.to_string()) {
                            self.count(Entity::Deal).deleted += 1;
                            self.dirty.extend(l.person_id);
                            store::delete_link(
                                self.pool,
                                self.tenant,
                                Entity::Deal,
                                &id.to_string(),
                            )
                            .await?;
                        }
                    }
                    _ => {}
                }
            }
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
        let cp = Checkpoint { since: Some(self.started), ..cp };
        self.checkpoints.insert(DELETIONS.into(), cp.clone());
        self.save_checkpoint(DELETIONS, &cp).await?;
        Ok(())
    }

    /// A person deleted in Pipedrive: its contact leaves the synced lists or is deleted (by
    /// setting). When another person read in this run has its email, it was merged into that one.
    pub(super) async fn person_deleted(&mut self, id: i64) -> Result<(), Stop> {
        // Changed earlier in this run and not written yet: not to be written now.
        self.later.retain(|r| r.person_id != id);
        let links = store::links(self.pool, self.tenant, Entity::Person, &[id.to_string()]).await?;
        let Some(link) = links.get(&id.to_string()) else { return Ok(()) };
        let Some(email) = link.brevo_ref.clone() else { return Ok(()) };
        let survivor = self.seen_emails.get(&email).copied().filter(|s| *s != id);
        match self.mapping.options.deleted_persons {
            DeletedPersons::Delete => {
                self.brevo.delete_contact(&email).await?;
            }
            DeletedPersons::Unlink => {
                let managed = transform::managed_lists(&self.mapping);
                for list in lists_of(&link.facts).into_iter().filter(|l| managed.contains(l)) {
                    self.brevo.remove_from_list(list, std::slice::from_ref(&email)).await?;
                }
            }
        }
        if let Some(survivor) = survivor {
            self.dirty.insert(survivor);
            if let Some(name) = self.rule("merged", Entity::Person) {
                self.events.push(Event {
                    key: format!("merged:{id}:{survivor}"),
                    name,
                    person_id: survivor,
                    properties: Map::from_iter([
                        ("mergedPersonId".to_owned(), json!(id)),
                        ("mergedEmail".to_owned(), json!(email)),
                    ]),
                });
            }
        }
        // The merge's event is durable before the link that tells of the deletion goes.
        self.flush_events().await?;
        store::delete_link(self.pool, self.tenant, Entity::Person, &id.to_string()).await?;
        store::resolve_errors(self.pool, self.tenant, Entity::Person, &[id.to_string()]).await?;
        self.count(Entity::Person).deleted += 1;
        Ok(())
    }

    pub(super) async fn activities(&mut self) -> Result<(), Stop> {
        let cp = self.checkpoint(Entity::Activity.as_str());
        let query = match self.mode {
            // No events for the past: only the last `backfill_event_days` days are read at all.
            Mode::Backfill => {
                let days = self.mapping.options.backfill_event_days;
                if days == 0 {
                    return Ok(());
                }
                ListQuery {
                    limit: Some(PAGE),
                    updated_since: Some(self.started - time::Duration::days(i64::from(days))),
                    ..Default::default()
                }
            }
            Mode::Incremental => ListQuery {
                limit: Some(PAGE),
                updated_since: cp.since.map(|s| s - OVERLAP),
                sort_by_update_time: true,
                ..Default::default()
            },
        };
        let added_after = match self.mode {
            Mode::Backfill => {
                self.started
                    - time::Duration::days(i64::from(self.mapping.options.backfill_event_days))
            }
            Mode::Incremental => cp.since.unwrap_or(self.started) - OVERLAP,
        };
        let mut pages =
            prefetch(self.pd.list_from::<Activity>("/api/v2/activities", query, None), PAGES_AHEAD);
        while let Some(page) = pages.recv().await {
            let page = page?;
            let ids: Vec<String> = page.items.iter().map(|a| a.id.to_string()).collect();
            self.saved().await?;
            let existing = store::links(self.pool, self.tenant, Entity::Activity, &ids).await?;
            let mut links = Vec::new();
            let mut latest = None;
            for a in &page.items {
                self.count(Entity::Activity).read += 1;
                latest = latest.max(parse_time(a.update_time.as_deref()));
                let facts = json!({"type": a.kind, "subject": a.subject, "done": a.done, "deal_id": a.deal_id, "due_date": a.other.get("due_date")});
                let content = hash(&json!([facts, a.person_id, a.is_deleted]));
                let prev = existing.get(&a.id.to_string());
                if prev.and_then(|p| p.content_hash.as_deref()) == Some(content.as_str()) {
                    self.count(Entity::Activity).unchanged += 1;
                    continue;
                }
                let added = prev.is_none()
                    && parse_time(a.other.get("add_time").and_then(Value::as_str))
                        .is_none_or(|t| t >= added_after);
                if added {
                    self.count(Entity::Activity).created += 1
                } else {
                    self.count(Entity::Activity).updated += 1
                }
                let rule = if added {
                    self.rule("added", Entity::Activity)
                } else {
                    self.rule("updated", Entity::Activity)
                };
                if let (Some(name), Some(person)) = (rule.filter(|_| !a.is_deleted), a.person_id) {
                    let mut properties = facts.as_object().cloned().unwrap_or_default();
                    properties.insert("activityId".into(), json!(a.id));
                    let key = format!("activity:{}:{content}:{name}", a.id);
                    self.events.push(Event { key, name, person_id: person as i64, properties });
                }
                links.push(Link {
                    entity: Entity::Activity.to_string(),
                    pipedrive_id: a.id.to_string(),
                    person_id: a.person_id.map(|p| p as i64),
                    content_hash: Some(content),
                    facts,
                    ..Default::default()
                });
            }
            // The page's events go to the outbox with its links and checkpoint.
            let cp = match self.mode {
                Mode::Backfill => self.checkpoint(Entity::Activity.as_str()),
                Mode::Incremental => self.advance(Entity::Activity, None, latest),
            };
            self.save_page(Entity::Activity, links, cp).await?;
        }
        Ok(())
    }

    /// Sends what the outbox holds for the tenant (this run's events and any an earlier run
    /// left), oldest first.
    pub(super) async fn send_events(&mut self) -> Result<(), Stop> {
        self.flush_events().await?;
        let drained = outbox::drain(self.pool, &self.brevo, self.tenant, self.run).await;
        let done = match drained {
            Ok(done) => done,
            Err(outbox::DrainError::Brevo(e)) => return Err(e.into()),
            Err(outbox::DrainError::Database(e)) => return Err(e.into()),
        };
        let count = self.count(Entity::Event);
        count.created += done.sent;
        count.skipped += done.skipped;
        count.failed += done.refused;
        Ok(())
    }
}

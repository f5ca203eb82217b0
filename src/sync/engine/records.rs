//! Organizations, deals and leads: read page by page, their links recorded (the persons' lookups
//! read them).

use super::Engine;
use super::LEADS_EVERY;
use super::PAGE;
use super::PAGES_AHEAD;
use super::STAGE_CHANGED;
use super::Stop;
use super::hash;
use super::parse_time;
use super::prefetch;
use crate::pipedrive::models::Deal;
use crate::pipedrive::models::Organization;
use crate::sync::Entity;
use crate::sync::Mode;
use crate::sync::outbox::Event;
use crate::sync::store;
use crate::sync::store::Link;
use serde_json::Value;
use serde_json::json;
use std::collections::HashMap;

impl<'s> Engine<'s> {
    pub(super) async fn organizations(&mut self) -> Result<(), Stop> {
        let Some((query, cursor)) = self.query(Entity::Organization) else { return Ok(()) };
        let linked = self.linked(Entity::Organization).await?;
        let mut pages = prefetch(
            self.pd.list_from::<Organization>("/api/v2/organizations", query, cursor),
            PAGES_AHEAD,
        );
        while let Some(page) = pages.recv().await {
            let page = page?;
            let ids: Vec<String> = page.items.iter().map(|o| o.id.to_string()).collect();
            // (A page whose links are still being recorded may hold some of these records.)
            let existing = if linked {
                self.saved().await?;
                store::links(self.pool, self.tenant, Entity::Organization, &ids).await?
            } else {
                HashMap::new()
            };
            let mut links = Vec::new();
            let mut latest = None;
            for org in &page.items {
                self.count(Entity::Organization).read += 1;
                latest = latest.max(parse_time(org.update_time.as_deref()));
                let content = hash(&json!({"name": org.name}));
                let prev = existing.get(&org.id.to_string());
                if prev.and_then(|p| p.content_hash.as_deref()) == Some(content.as_str()) {
                    self.count(Entity::Organization).unchanged += 1;
                    continue;
                }
                match prev {
                    Some(_) => {
                        self.count(Entity::Organization).updated += 1;
                        // COMPANY changes on every contact of the organization.
                        self.dirty.extend(
                            store::persons_of_org(self.pool, self.tenant, org.id as i64).await?,
                        );
                    }
                    None => self.count(Entity::Organization).created += 1,
                }
                let mut facts = prev
                    .map(|p| p.facts.clone())
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                facts["name"] = json!(org.name);
                links.push(Link {
                    entity: Entity::Organization.to_string(),
                    pipedrive_id: org.id.to_string(),
                    brevo_ref: prev.and_then(|p| p.brevo_ref.clone()),
                    content_hash: Some(content),
                    facts,
                    ..Default::default()
                });
            }
            let cp = self.advance(Entity::Organization, page.next_cursor, latest);
            self.save_page(Entity::Organization, links, cp).await?;
        }
        Ok(())
    }

    pub(super) fn stage_label(&self, status: &str, stage: Option<u64>) -> String {
        match status {
            "won" | "lost" => status.to_owned(),
            _ => stage.and_then(|s| self.cat.stage_names.get(&s).cloned()).unwrap_or_default(),
        }
    }

    pub(super) async fn deals(&mut self) -> Result<(), Stop> {
        let Some((query, cursor)) = self.query(Entity::Deal) else { return Ok(()) };
        let linked = self.linked(Entity::Deal).await?;
        let mut pages = match self.deals_ahead.take() {
            Some(pages) => pages,
            None => {
                prefetch(self.pd.list_from::<Deal>("/api/v2/deals", query, cursor), PAGES_AHEAD)
            }
        };
        while let Some(page) = pages.recv().await {
            let page = page?;
            let ids: Vec<String> = page.items.iter().map(|d| d.id.to_string()).collect();
            // (A page whose links are still being recorded may hold some of these records.)
            let existing = if linked {
                self.saved().await?;
                store::links(self.pool, self.tenant, Entity::Deal, &ids).await?
            } else {
                HashMap::new()
            };
            let mut links = Vec::new();
            let mut latest = None;
            for d in &page.items {
                self.count(Entity::Deal).read += 1;
                let updated = parse_time(d.update_time.as_deref());
                latest = latest.max(updated);
                let facts = json!({
                    "status": d.status, "value": d.value.unwrap_or(0.0), "stage_id": d.stage_id, "pipeline_id": d.pipeline_id,
                    "title": d.title, "currency": d.currency,
                });
                let content = hash(&json!([facts, d.person_id]));
                let prev = existing.get(&d.id.to_string());
                if prev.and_then(|p| p.content_hash.as_deref()) == Some(content.as_str()) {
                    self.count(Entity::Deal).unchanged += 1;
                    continue;
                }
                if prev.is_some() {
                    self.count(Entity::Deal).updated += 1
                } else {
                    self.count(Entity::Deal).created += 1
                }
                self.dirty.extend(prev.and_then(|p| p.person_id));
                self.dirty.extend(d.person_id.map(|p| p as i64));
                if let Some(person) = d.person_id.filter(|_| self.events_for(updated)) {
                    let stage = self.stage_label(&d.status, d.stage_id);
                    let base = json!({"dealId": d.id, "dealTitle": d.title, "value": d.value, "currency": d.currency, "personId": person,
                                      "stage": stage, "status": d.status});
                    let props = |extra: Value| {
                        let mut m = base.as_object().cloned().unwrap_or_default();
                        m.extend(extra.as_object().cloned().unwrap_or_default());
                        m
                    };
                    let rule = if prev.is_none() {
                        self.rule("added", Entity::Deal)
                    } else {
                        self.rule("updated", Entity::Deal)
                    };
                    let mut new_events = Vec::new();
                    let key = |name: &str| format!("deal:{}:{content}:{name}", d.id);
                    if let Some(name) = rule {
                        new_events.push(Event {
                            key: key(&name),
                            name,
                            person_id: person as i64,
                            properties: props(json!({})),
                        });
                    }
                    if let Some(p) = prev {
                        let (old_status, old_stage) = (
                            p.facts["status"].as_str().unwrap_or("open").to_owned(),
                            p.facts["stage_id"].as_u64(),
                        );
                        if old_status != d.status || old_stage != d.stage_id {
                            let extra = json!({"previousStage": self.stage_label(&old_status, old_stage), "newStage": stage});
                            new_events.push(Event {
                                key: key(STAGE_CHANGED),
                                name: STAGE_CHANGED.into(),
                                person_id: person as i64,
                                properties: props(extra),
                            });
                        }
                    }
                    self.events.extend(new_events);
                }
                links.push(Link {
                    entity: Entity::Deal.to_string(),
                    pipedrive_id: d.id.to_string(),
                    person_id: d.person_id.map(|p| p as i64),
                    org_id: d.org_id.map(|o| o as i64),
                    content_hash: Some(content),
                    facts,
                    ..Default::default()
                });
            }
            let cp = self.advance(Entity::Deal, page.next_cursor, latest);
            self.save_page(Entity::Deal, links, cp).await?;
        }
        Ok(())
    }

    /// Leads (v1, offset pages, no `updated_since`): all of them in a backfill, then at most hourly.
    pub(super) async fn leads(&mut self) -> Result<(), Stop> {
        let cp = self.checkpoint(Entity::Lead.as_str());
        let mut start: u64 = match self.mode {
            Mode::Backfill if cp.backfill_done => return Ok(()),
            Mode::Backfill => {
                cp.backfill_cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0)
            }
            Mode::Incremental if cp.since.is_some_and(|s| s > self.started - LEADS_EVERY) => {
                return Ok(());
            }
            Mode::Incremental => 0,
        };
        let full_scan = start == 0;
        let linked = self.linked(Entity::Lead).await?;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let (leads, next) = self.pd.leads(start, u64::from(PAGE)).await?;
            let ids: Vec<String> = leads.iter().map(|l| l.id.clone()).collect();
            // (A page whose links are still being recorded may hold some of these records.)
            let existing = if linked {
                self.saved().await?;
                store::links(self.pool, self.tenant, Entity::Lead, &ids).await?
            } else {
                HashMap::new()
            };
            let mut links = Vec::new();
            for lead in &leads {
                self.count(Entity::Lead).read += 1;
                seen.push(lead.id.clone());
                let content = hash(&json!([lead.person_id, lead.is_archived]));
                let prev = existing.get(&lead.id);
                if prev.and_then(|p| p.content_hash.as_deref()) == Some(content.as_str()) {
                    self.count(Entity::Lead).unchanged += 1;
                    continue;
                }
                if prev.is_some() {
                    self.count(Entity::Lead).updated += 1
                } else {
                    self.count(Entity::Lead).created += 1
                }
                self.dirty.extend(prev.and_then(|p| p.person_id));
                self.dirty.extend(lead.person_id.map(|p| p as i64));
                links.push(Link {
                    entity: Entity::Lead.to_string(),
                    pipedrive_id: lead.id.clone(),
                    person_id: lead.person_id.map(|p| p as i64),
                    content_hash: Some(content),
                    facts: json!({"archived": lead.is_archived, "title": lead.title}),
                    ..Default::default()
                });
            }
            let mut cp = self.checkpoints.get(Entity::Lead.as_str()).cloned().unwrap_or_default();
            match self.mode {
                Mode::Backfill => {
                    cp.backfill_cursor = next.map(|n| n.to_string());
                    cp.backfill_done = next.is_none();
                }
                Mode::Incremental => {
                    if next.is_none() {
                        cp.since = Some(self.started);
                    }
                }
            }
            self.checkpoints.insert(Entity::Lead.to_string(), cp.clone());
            self.save_page(Entity::Lead, links, cp).await?;
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
        if full_scan && self.mode == Mode::Incremental {
            // Leads no longer listed were deleted or converted: their persons leave the nurture list.
            let gone: Vec<(String, Option<i64>)> = sqlx::query_as(
                "delete from record_links l where l.tenant_id = $1 and l.entity = 'lead'
                 and not exists (select 1 from unnest($2::text[]) as s(id) where s.id = l.pipedrive_id)
                 returning l.pipedrive_id, l.person_id",
            )
            .bind(self.tenant)
            .bind(&seen)
            .fetch_all(self.pool)
            .await?;
            for (_, person) in gone {
                self.count(Entity::Lead).deleted += 1;
                self.dirty.extend(person);
            }
        }
        Ok(())
    }
}

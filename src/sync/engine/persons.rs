//! The persons: each page's deals, leads and organizations looked up beside the loop, its contacts
//! drafted, and the loop that decides what to write.

use super::Catalogue;
use super::Engine;
use super::PERSON_PAGES_AHEAD;
use super::Row;
use super::Stop;
use super::hash;
use super::object_text;
use super::parse_time;
use super::prefetch;
use super::writes::lists_of;
use crate::domain::TenantId;
use crate::mapping::MappingConfig;
use crate::mapping::transform;
use crate::mapping::transform::DealFacts;
use crate::mapping::transform::Issue;
use crate::mapping::transform::Skip;
use crate::pipedrive::client::ListQuery;
use crate::pipedrive::models::Person;
use crate::sync::Entity;
use crate::sync::Mode;
use crate::sync::store;
use crate::sync::store::Checkpoint;
use crate::sync::store::Link;
use crate::sync::store::RecordError;
use crate::task::AbortOnDrop;
use futures_util::StreamExt;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

impl<'s> Engine<'s> {
    pub(super) async fn persons(&mut self) -> Result<(), Stop> {
        let Some((query, cursor)) = self.query(Entity::Person) else { return Ok(()) };
        // Beside the loop, one task reads the pages (they queue, so Pipedrive's limiter is never
        // idle; in a backfill it started during the deals), and tasks look up each page's deals,
        // leads and organizations and draft its contacts (`drafts`), two pages at a time.
        let (mapping, cat, pool, tenant) =
            (Arc::new(self.mapping.clone()), self.cat.clone(), self.pool.clone(), self.tenant);
        let read = match self.persons_ahead.take() {
            Some(pages) => pages,
            None => prefetch(
                self.pd.list_from::<Person>("/api/v2/persons", query, cursor),
                PERSON_PAGES_AHEAD,
            ),
        };
        let read = futures_util::stream::unfold(read, |mut pages| async move {
            pages.recv().await.map(|page| (page, pages))
        });
        let pages = read
            .map(move |page| {
                let (mapping, cat, pool) = (mapping.clone(), cat.clone(), pool.clone());
                let work = async move {
                    let page = page?;
                    let known = known(&pool, tenant, &page.items).await?;
                    // CPU work (phone numbers, hashes) on a blocking thread: on the runtime's
                    // workers it would hold up the requests on their way, Pipedrive's included.
                    let cpu = move || {
                        let mut prepared = prepare(&page.items, &mapping, &cat);
                        let drafts = drafts(&page.items, &mut prepared, &known, &mapping);
                        (page, (prepared, drafts))
                    };
                    tokio::task::spawn_blocking(cpu).await.map_err(|e| {
                        Stop::Retry(format!("preparing a page of persons was interrupted: {e}"))
                    })
                };
                // Each page in a task of its own, so that two are worked on at once (the stream
                // keeps their order); dropped, the task stops.
                let mut task = AbortOnDrop(tokio::spawn(work.in_current_span()));
                async move {
                    (&mut task.0).await.map_err(|e| {
                        Stop::Retry(format!("preparing a page of persons was interrupted: {e}"))
                    })?
                }
            })
            .buffered(PREPARING);
        let mut stream = prefetch(pages, 2);
        if self.mode == Mode::Backfill {
            self.persons_linked = store::has_links(self.pool, self.tenant, Entity::Person).await?;
        }
        loop {
            let t = Instant::now();
            let Some(page) = stream.recv().await else { break };
            self.report.spent.add("waiting for Pipedrive", t);
            let (page, prepared) = page?;
            self.page_read().await?;
            let latest =
                page.items.iter().filter_map(|p| parse_time(p.update_time.as_deref())).max();
            let cp = self.advance(Entity::Person, page.next_cursor.clone(), latest);
            self.sync_persons(page.items, Some(prepared), Some(cp)).await?;
            if self.mode == Mode::Backfill {
                self.confirm_imports(false).await?;
            }
            let t = Instant::now();
            self.report_soon();
            self.report.spent.add("progress", t);
        }
        self.persons_read = true;
        let t = Instant::now();
        self.write_later().await?;
        self.flush_all().await?;
        let s = Instant::now();
        self.settle_writes(true).await?;
        self.report.spent.add("(end) sending the last writes", s);
        let s = Instant::now();
        self.confirm_imports(true).await?;
        self.report.spent.add("(end) Brevo's imports", s);
        let s = Instant::now();
        self.settle_recording(true).await?;
        self.save_ready_checkpoint().await?;
        self.report.spent.add("(end) recording", s);
        self.report.spent.add("(after the last persons page)", t);
        Ok(())
    }

    /// Persons named by id (a retry of failed records).
    pub(super) async fn persons_by_id(&mut self, ids: &[i64]) -> Result<(), Stop> {
        for chunk in ids.chunks(100) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let query = ListQuery {
                limit: Some(100),
                extra: vec![("ids".into(), list)],
                ..Default::default()
            };
            let mut pages =
                prefetch(self.pd.list_from::<Person>("/api/v2/persons", query, None), 1);
            let mut found = HashSet::new();
            while let Some(page) = pages.recv().await {
                let page = page?;
                found.extend(page.items.iter().map(|p| p.id as i64));
                self.sync_persons(page.items, None, None).await?;
            }
            // Persons that are gone: nothing to retry.
            let gone: Vec<String> =
                chunk.iter().filter(|id| !found.contains(id)).map(i64::to_string).collect();
            store::resolve_errors(self.pool, self.tenant, Entity::Person, &gone).await?;
        }
        Ok(())
    }

    /// Decides what each person becomes in Brevo and writes what changed; saves `checkpoint` with
    /// the page's links (or its pending import).
    pub(super) async fn sync_persons(
        &mut self,
        persons: Vec<Person>,
        ahead: Option<(Vec<Prepared>, Vec<Option<Draft>>)>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), Stop> {
        let t = Instant::now();
        let (prepared, drafts) = match ahead {
            Some(ahead) => ahead,
            None => {
                let mut prepared = prepare(&persons, &self.mapping, &self.cat);
                let known = known(self.pool, self.tenant, &persons).await?;
                let drafts = drafts(&persons, &mut prepared, &known, &self.mapping);
                (prepared, drafts)
            }
        };
        let mut rows = Vec::new();
        let mut deleted = Vec::new();
        // Who already holds each email in Brevo.
        let mut emails: Vec<String> = Vec::new();
        for (p, out) in persons.iter().zip(&prepared) {
            self.count(Entity::Person).read += 1;
            self.done.insert(p.id as i64);
            self.dirty.remove(&(p.id as i64));
            for e in p.emails.iter().filter_map(|e| crate::domain::Email::parse(&e.value).ok()) {
                self.seen_emails.entry(e.as_str().to_owned()).or_insert(p.id as i64);
            }
            match out {
                None => deleted.push(p.id as i64),
                Some(Ok(o)) => emails.push(o.email.as_str().to_owned()),
                Some(Err(_)) => {}
            }
        }
        self.report.spent.add("transform", t);
        // What the links know of these persons, and who holds their emails (their deals, leads and
        // organizations are in `known`).
        let t = Instant::now();
        let id_texts: Vec<String> = persons.iter().map(|p| p.id.to_string()).collect();
        let (pool, tenant) = (self.pool, self.tenant);
        // A backfill that found no person linked when it started has nothing to look up by
        // person or by email: every person comes once, and `claimed` knows this run's emails.
        let (existing, owners) = match self.persons_linked {
            true => tokio::try_join!(
                store::links(pool, tenant, Entity::Person, &id_texts),
                store::persons_by_email(pool, tenant, &emails)
            )?,
            false => (HashMap::new(), HashMap::new()),
        };
        self.report.spent.add("database: lookups", t);
        let t = Instant::now();
        let mut errors = Vec::new();
        for ((p, out), draft) in persons.iter().zip(prepared).zip(drafts) {
            let Some(out) = out else { continue };
            let pid = p.id as i64;
            let out = match out {
                Ok(o) => o,
                Err(Skip::NoValidEmail) => {
                    self.count(Entity::Person).skipped += 1;
                    let payload = json!({"name": p.name, "emails": p.emails.iter().map(|e| &e.value).collect::<Vec<_>>()});
                    errors.push(RecordError {
                        id: pid.to_string(),
                        reason: "No valid email address: the person stays out of Brevo until one is added in Pipedrive.".into(),
                        payload,
                    });
                    continue;
                }
            };
            let email = out.email.as_str().to_owned();
            let owner = owners
                .get(&email)
                .and_then(|o| o.parse::<i64>().ok())
                .or_else(|| self.claimed.get(&email).copied());
            if let Some(owner) = owner.filter(|o| *o != pid) {
                self.count(Entity::Person).skipped += 1;
                errors.push(RecordError {
                    id: pid.to_string(),
                    reason: format!("The email {email} is also on Pipedrive person #{owner}, which is synced to that Brevo contact: give this person its own email, or merge the two in Pipedrive."),
                    payload: json!({"name": p.name, "email": email}),
                });
                continue;
            }
            self.claimed.insert(email.clone(), pid);
            let prev = existing.get(&pid.to_string());
            let mut issues = Vec::new();
            for issue in &out.issues {
                issues.push(match issue {
                    Issue::InvalidPhone(raw) => format!(
                        "The phone {raw:?} is not a valid number{}: the contact was synced without SMS.",
                        self.mapping.options.default_country.as_deref().map(|c| format!(" (default country {c})")).unwrap_or_default()
                    ),
                    Issue::UnreadableValue { field } => format!("The value of {field} could not be read as its type: left out."),
                });
            }
            if !issues.is_empty() {
                errors.push(RecordError {
                    id: pid.to_string(),
                    reason: issues.join(" "),
                    payload: json!({"name": p.name, "email": email}),
                });
            }
            let Some(draft) = draft else { continue };
            let row = row(pid, email, draft, p.org_id.map(|o| o as i64), prev, !issues.is_empty());
            match row {
                Some(r) => rows.push(r),
                None => self.count(Entity::Person).unchanged += 1,
            }
        }
        self.report.spent.add("transform", t);
        let t = Instant::now();
        if self.mode == Mode::Backfill && checkpoint.is_some() && !errors.is_empty() {
            // Written beside the loop; the page's checkpoint waits for them.
            let (pool, tenant, run, recorder) =
                (self.pool.clone(), self.tenant, self.run, self.recorder.clone());
            let task = async move {
                let _turn = recorder
                    .acquire()
                    .await
                    .map_err(|_| Stop::Retry("the run stopped recording".into()))?;
                Ok(store::record_errors(&pool, tenant, run, Entity::Person, &errors).await?)
            };
            self.recording
                .push_back((self.gate.sent_so_far(), AbortOnDrop::spawn(task.in_current_span())));
        } else {
            store::record_errors(self.pool, self.tenant, self.run, Entity::Person, &errors).await?;
        }
        self.report.spent.add("database: record errors", t);
        for id in deleted {
            self.person_deleted(id).await?;
        }
        self.write(rows, checkpoint).await
    }
}

/// The deals (their facts) and the leads (the persons with one) of some persons, from the links.
pub(super) type Related = (HashMap<i64, Vec<DealFacts>>, HashSet<i64>);

pub(super) async fn related(
    pool: &PgPool,
    tenant: TenantId,
    persons: &[i64],
) -> Result<Related, sqlx::Error> {
    let (deal_links, lead_links) = tokio::try_join!(
        store::links_of_persons(pool, tenant, Entity::Deal, persons),
        store::links_of_persons(pool, tenant, Entity::Lead, persons)
    )?;
    let mut deals: HashMap<i64, Vec<DealFacts>> = HashMap::new();
    for l in deal_links {
        let Some(p) = l.person_id else { continue };
        deals.entry(p).or_default().push(DealFacts {
            status: l.facts["status"].as_str().unwrap_or("open").to_owned(),
            value: l.facts["value"].as_f64().unwrap_or(0.0),
            stage_id: l.facts["stage_id"].as_u64(),
        });
    }
    let leads = lead_links
        .into_iter()
        .filter(|l| !l.facts["archived"].as_bool().unwrap_or(false))
        .filter_map(|l| l.person_id)
        .collect();
    Ok((deals, leads))
}

/// What the links know of a page of persons: their deals and leads, and their organizations.
/// These links are written by the steps before the persons, so the task reading the pages looks
/// them up ahead of the loop.
pub(super) struct Known {
    pub(super) related: Related,
    pub(super) orgs: HashMap<String, Link>,
}

pub(super) async fn known(
    pool: &PgPool,
    tenant: TenantId,
    persons: &[Person],
) -> Result<Known, sqlx::Error> {
    let ids: Vec<i64> = persons.iter().map(|p| p.id as i64).collect();
    let org_ids: Vec<String> =
        persons.iter().filter_map(|p| p.org_id).map(|o| o.to_string()).collect();
    let (related, orgs) = tokio::try_join!(
        related(pool, tenant, &ids),
        store::links(pool, tenant, Entity::Organization, &org_ids)
    )?;
    Ok(Known { related, orgs })
}

/// What a person's own fields give: `None` for a deleted person.
pub(super) type Prepared = Option<Result<transform::ContactOut, Skip>>;

/// Each person's own attributes (pure: the task that reads the pages computes them).
pub(super) fn prepare(
    persons: &[Person],
    mapping: &MappingConfig,
    cat: &Catalogue,
) -> Vec<Prepared> {
    let country = mapping.options.country();
    persons
        .iter()
        .map(|p| {
            (!p.is_deleted)
                .then(|| transform::own_attributes(p, mapping, &cat.catalog, &cat.options, country))
        })
        .collect()
}

/// What a person becomes in Brevo, computed beside the loop from its own attributes and what
/// the links know (`Known`): the loop only compares it with the person's link.
pub(super) struct Draft {
    pub(super) own: Box<str>,
    pub(super) derived: Box<str>,
    pub(super) lists: Vec<i64>,
    pub(super) hash: String,
}

/// What a person with these own attributes becomes, given what the links know (pure).
pub(super) fn draft(
    mapping: &MappingConfig,
    pid: i64,
    email: &str,
    own: Map<String, Value>,
    org_id: Option<i64>,
    known: &Known,
) -> Draft {
    let (deals_of, leads) = &known.related;
    let deals = deals_of.get(&pid).map(Vec::as_slice).unwrap_or_default();
    let org_name =
        org_id.and_then(|o| known.orgs.get(&o.to_string())).and_then(|l| l.facts["name"].as_str());
    let derived = transform::derived(mapping, org_name, &transform::counts(deals));
    let lists: Vec<i64> =
        transform::lists(mapping, deals, leads.contains(&pid)).into_iter().collect();
    // What the derived attributes override is left out of the own ones, so that the two never
    // share a key and an import joins their texts as they are.
    let mut attributes = own;
    for key in derived.keys() {
        attributes.remove(key);
    }
    let (own_text, derived_text) = (object_text(&attributes), object_text(&derived));
    attributes.extend(derived);
    let hash = hash(&json!([email, attributes, lists]));
    Draft { own: own_text, derived: derived_text, lists, hash }
}

/// The draft of every person of a page with a valid email (their own attributes move into it).
pub(super) fn drafts(
    persons: &[Person],
    prepared: &mut [Prepared],
    known: &Known,
    mapping: &MappingConfig,
) -> Vec<Option<Draft>> {
    persons
        .iter()
        .zip(prepared)
        .map(|(p, out)| match out {
            Some(Ok(out)) => Some(draft(
                mapping,
                p.id as i64,
                out.email.as_str(),
                std::mem::take(&mut out.attributes),
                p.org_id.map(|o| o as i64),
                known,
            )),
            _ => None,
        })
        .collect()
}

/// A contact to write, or `None` when Brevo already has exactly this.
pub(super) fn row(
    pid: i64,
    email: String,
    draft: Draft,
    org_id: Option<i64>,
    prev: Option<&Link>,
    has_issues: bool,
) -> Option<Row> {
    if prev.and_then(|p| p.content_hash.as_deref()) == Some(draft.hash.as_str()) {
        return None;
    }
    // A changed email is a new contact: the old one leaves the synced lists.
    let same_contact = prev.is_some_and(|p| p.brevo_ref.as_deref() == Some(email.as_str()));
    let prev_lists = prev.filter(|_| same_contact).map(|p| lists_of(&p.facts)).unwrap_or_default();
    let Draft { own, derived, lists, hash } = draft;
    Some(Row {
        person_id: pid,
        email,
        own,
        derived,
        lists,
        prev_lists,
        existed: same_contact,
        hash,
        org_id,
        has_issues,
    })
}

/// Persons pages worked on at once beside the loop (their attributes, lookups and drafts).
pub(super) const PREPARING: usize = 2;

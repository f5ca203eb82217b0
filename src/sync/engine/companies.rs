//! Brevo companies for organizations, a few per run, and a backfill's head start on their contacts'
//! ids.

use super::BULK_MIN;
use super::COMPANIES_PER_RUN;
use super::COMPANY_CONTACTS_AHEAD;
use super::Engine;
use super::PAGE;
use super::Stop;
use super::persons::prepare;
use crate::brevo::BrevoError;
use crate::brevo::api::BrevoApi;
use crate::brevo::api::ImportContact;
use crate::brevo::api::Upserted;
use crate::pipedrive::client::ListQuery;
use crate::pipedrive::models::Person;
use crate::sync::Entity;
use crate::sync::Mode;
use crate::sync::store;
use crate::sync::store::Link;
use crate::task::AbortOnDrop;
use futures_util::StreamExt;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::pin::pin;
use std::time::Duration;
use std::time::Instant;
use tracing::Instrument;

impl<'s> Engine<'s> {
    /// Waits for the companies' head start (`start_company_contacts`) to end, and keeps what it
    /// found. Before the first contact write of the persons: the companies' contacts are created
    /// before an import reaches them, so that they are the newest contacts when the head start
    /// reads their ids. (Brevo may take seconds for the import: the task's polls are bounded.)
    pub(super) async fn company_contacts_ready(&mut self) {
        if let Some(mut task) = self.company_contacts_task.take() {
            let t = Instant::now();
            self.company_contacts = (&mut task.0).await.unwrap_or_default();
            self.report.spent.add("waiting for the companies' contacts", t);
        }
    }

    /// A backfill's head start on the contacts of the companies it will write. A company links
    /// contacts by id, and an import gives no ids: looking them up after the last import cost a
    /// call per contact at the end of the run, and writing them one by one cost the same calls
    /// while Brevo was busiest. While deals and leads are read, Brevo has nothing to do: this task
    /// reads the persons of the next organizations to become companies and creates their contacts
    /// with the email alone (`created_contacts`: one import, then their ids from the newest
    /// contacts). Their imports fill them in later. It only saves time: what it misses, the
    /// companies step looks up.
    pub(super) fn start_company_contacts(&self) -> Option<AbortOnDrop<HashMap<String, i64>>> {
        // Not when the deals were read before (a resumed backfill): the persons come next. And
        // only when persons are synced: it writes contacts, which `sync.persons: false` forbids.
        let deals_read =
            self.checkpoints.get(Entity::Deal.as_str()).is_some_and(|c| c.backfill_done);
        let sync = self.mapping.connectors.pipedrive.sync;
        if self.mode != Mode::Backfill || !sync.organizations || !sync.persons || deals_read {
            return None;
        }
        let (pool, tenant, pd, brevo, mapping, cat) = (
            self.pool.clone(),
            self.tenant,
            self.pd.clone(),
            self.brevo.clone(),
            self.mapping.clone(),
            self.cat.clone(),
        );
        let all_contacts = self.mapping.connectors.pipedrive.lists.all_contacts;
        let task = async move {
            let mut ids = HashMap::new();
            let mut emails: Vec<String> = Vec::new();
            let result: Result<(), Stop> = async {
                let mut orgs_found = 0;
                for org in store::next_companies(&pool, tenant, 2 * COMPANIES_PER_RUN).await? {
                    if orgs_found >= COMPANIES_PER_RUN || emails.len() >= COMPANY_CONTACTS_AHEAD {
                        break;
                    }
                    let query = ListQuery { limit: Some(PAGE), extra: vec![("org_id".into(), org.to_string())], ..Default::default() };
                    let Some(page) = pin!(pd.list::<Person>("/api/v2/persons", query)).next().await.transpose()? else { continue };
                    let found: BTreeSet<String> = prepare(&page.items, &mapping, &cat).into_iter().flatten().flatten().map(|o| o.email.as_str().to_owned()).collect();
                    orgs_found += i64::from(!found.is_empty());
                    let room = COMPANY_CONTACTS_AHEAD - emails.len();
                    emails.extend(found.into_iter().filter(|e| !emails.contains(e)).take(room).collect::<Vec<_>>());
                }
                // One import creates them all, and one listing of the newest contacts gives
                // their ids; what it does not give (contacts that were there before) is asked
                // for one by one. (One by one, the 35 contacts of a backfill's first companies
                // took a third of Brevo's contact calls, and delayed the persons' imports.)
                if let Some(list) = all_contacts.filter(|_| emails.len() >= BULK_MIN) {
                    match created_contacts(&brevo, list, &emails).await {
                        Ok(created) => ids.extend(created),
                        Err(e) => tracing::info!(error = %e, "creating the companies' contacts in one import did not work: creating them one by one"),
                    }
                }
                let missing: Vec<&String> = emails.iter().filter(|e| !ids.contains_key(*e)).collect();
                for email in missing {
                    let id = match brevo.upsert_contact(email, &Map::new(), &[], &[]).await? {
                        Upserted::Created(id) => Some(id),
                        Upserted::Updated => brevo.get_contact(email).await?.map(|c| c.id),
                    };
                    ids.extend(id.map(|id| (email.clone(), id)));
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::info!(error = ?e, found = ids.len(), "the companies' head start stopped: the companies step looks up the rest");
            }
            ids
        };
        Some(AbortOnDrop(tokio::spawn(task.in_current_span())))
    }

    /// Brevo companies for organizations with synced contacts, a few per run: companies share
    /// Brevo's 100-calls-an-hour bucket. What is left continues in the next runs.
    pub(super) async fn companies(&mut self) -> Result<(), Stop> {
        self.company_contacts_ready().await;
        let (orgs, total) =
            store::companies_to_write(self.pool, self.tenant, COMPANIES_PER_RUN).await?;
        // Company calls share Brevo's 100-calls-an-hour bucket: when it has no call left now, the
        // companies wait for a later run rather than hold this one up.
        let brevo_companies = self.brevo.without_waiting();
        let mut written = 0;
        for org in &orgs {
            let Ok(org_id) = org.pipedrive_id.parse::<i64>() else { continue };
            let name = org.facts["name"].as_str().unwrap_or_default().to_owned();
            let persons: Vec<String> = store::persons_of_org(self.pool, self.tenant, org_id)
                .await?
                .iter()
                .map(i64::to_string)
                .collect();
            let mut contact_ids = Vec::new();
            let mut found = Vec::new();
            for link in
                store::links(self.pool, self.tenant, Entity::Person, &persons).await?.into_values()
            {
                match (link.brevo_id, link.brevo_ref.as_deref()) {
                    (Some(id), _) => contact_ids.push(id),
                    (None, Some(email)) => {
                        let id = match self.company_contacts.get(email) {
                            Some(id) => Some(*id),
                            None => self.brevo.get_contact(email).await?.map(|c| c.id),
                        };
                        if let Some(id) = id {
                            contact_ids.push(id);
                            found.push(Link { brevo_id: Some(id), ..link.clone() });
                        }
                    }
                    _ => {}
                }
            }
            contact_ids.sort_unstable();
            let linked: Vec<i64> = org.facts["linked"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            let result = match org.brevo_ref.clone() {
                None => brevo_companies
                    .create_company_linked(&name, &contact_ids)
                    .await
                    .map(|id| (id, true)),
                Some(id) => {
                    let add: Vec<i64> =
                        contact_ids.iter().filter(|c| !linked.contains(c)).copied().collect();
                    let remove: Vec<i64> =
                        linked.iter().filter(|c| !contact_ids.contains(c)).copied().collect();
                    async {
                        brevo_companies.rename_company(&id, &name).await?;
                        if !add.is_empty() || !remove.is_empty() {
                            brevo_companies.link_company(&id, &add, &remove).await?;
                        }
                        Ok((id, false))
                    }
                    .await
                }
            };
            let company = match result {
                Ok((id, created)) => {
                    if created {
                        self.count(Entity::Company).created += 1
                    } else {
                        self.count(Entity::Company).updated += 1
                    }
                    written += 1;
                    id
                }
                Err(BrevoError::RateLimited { .. }) => {
                    // The ids it looked up stay known.
                    store::upsert_links(self.pool, self.tenant, &found).await?;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let mut facts = org.facts.clone();
            facts["written"] = json!(org.content_hash);
            facts["linked"] = json!(contact_ids);
            let done = Link { brevo_ref: Some(company), facts, ..org.clone() };
            let mut tx = self.pool.begin().await?;
            store::upsert_links(&mut *tx, self.tenant, &found).await?;
            store::upsert_links(&mut *tx, self.tenant, std::slice::from_ref(&done)).await?;
            tx.commit().await?;
        }
        let left = total - written;
        if left > 0 {
            self.report.notes.push(format!(
                "{left} organization(s) wait for their Brevo company: Brevo allows 100 company calls an hour, so they follow in the next runs."
            ));
        }
        Ok(())
    }
}

/// Creates contacts with their email alone in one import into `list` (an import needs a list;
/// every synced person goes to the all-contacts list anyway), and returns the ids of those it
/// created, read from the newest contacts. Contacts that were there before are not among the
/// newest: the caller looks them up. A process that does not complete within four polls, or an
/// hour's bucket without a poll left, is an error (the caller falls back to single writes).
pub(super) async fn created_contacts(
    brevo: &BrevoApi,
    list: i64,
    emails: &[String],
) -> Result<HashMap<String, i64>, BrevoError> {
    let rows: Vec<ImportContact> =
        emails.iter().map(|email| ImportContact { email, attributes: ["{}", "{}"] }).collect();
    let process = brevo.import_json(&rows, &[list]).await?;
    // Polls share the 100-calls-an-hour bucket: four at most, ever further apart, and none that
    // would wait for the bucket; the persons' first
    // write waits for this task. Past them the caller goes on one by one.
    let waits = [250, 500, 1_000, 2_000].map(Duration::from_millis);
    let process = brevo.without_waiting().wait_process(process, &waits).await?;
    if process.state() != crate::brevo::api::ProcessState::Completed {
        return Err(BrevoError::Transient(format!(
            "import process {} {}",
            process.id, process.status
        )));
    }
    // Brevo keeps emails in lower case.
    let wanted: HashMap<String, &String> = emails.iter().map(|e| (e.to_lowercase(), e)).collect();
    let newest = brevo.newest_contacts(emails.len().max(50) * 2).await?;
    Ok(newest
        .into_iter()
        .filter_map(|c| wanted.get(&c.email?.to_lowercase()).map(|e| ((*e).clone(), c.id)))
        .collect())
}

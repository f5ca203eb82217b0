//! Brevo's imports: polled until Brevo has processed them, then recorded; rows an import dropped
//! are imported again or written one by one.

use super::BULK_MIN;
use super::EAGER_POLLS;
use super::Engine;
use super::POLL_AT_IMPORTS;
use super::POLL_EVERY;
use super::POLL_SOON;
use super::PendingImport;
use super::Stop;
use super::WAIT_AT_IMPORTS;
use super::person_links;
use super::writes::by_their_lists;
use super::writes::record_links;
use super::writes::send_import;
use crate::brevo::BrevoError;
use crate::brevo::api::ProcessState;
use crate::mapping::transform;
use crate::sync::Entity;
use crate::sync::store;
use crate::task::AbortOnDrop;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;
use tracing::Instrument;

impl<'s> Engine<'s> {
    /// Confirms pending imports: a completed one has its list memberships and links recorded; one
    /// that failed, or dropped rows, is imported again in halves, and a few rows are written one
    /// contact at a time (which tells which contact failed and why). `wait`: until none is pending.
    pub(super) async fn confirm_imports(&mut self, wait: bool) -> Result<(), Stop> {
        // Brevo takes a few tenths of a second for the imports of a backfill's end: the first
        // waits are short, the later ones ever longer (polls share the 100-calls-an-hour bucket).
        let (mut delay, mut waits) = (Duration::from_millis(200), 0);
        let deadline = Instant::now() + Duration::from_secs(15 * 60);
        loop {
            let waiting: usize = self.pending.iter().map(|p| p.rows.len()).sum();
            let (poll_at, wait_at) = (
                POLL_AT_IMPORTS * self.s.bulk.import_rows,
                WAIT_AT_IMPORTS * self.s.bulk.import_rows,
            );
            // A poll is answered beside the loop unless the run must wait for its imports: the
            // loop goes on with the pages meanwhile, and the answer is taken in on a later page.
            let must = wait || waiting >= wait_at;
            let beside = match self.polling.take() {
                Some((ids, mut task)) if must || task.0.is_finished() => {
                    let t = Instant::now();
                    let answer = (&mut task.0).await.map_err(|e| {
                        Stop::Retry(format!("polling Brevo's imports was interrupted: {e}"))
                    })?;
                    self.report.spent.add("Brevo: process polls", t);
                    match answer {
                        Ok(processes) => Some((ids, processes)),
                        // The hour's bucket had no call left: a later poll waits for one.
                        Err(BrevoError::RateLimited { .. }) if !must => {
                            return self.save_ready_checkpoint().await;
                        }
                        Err(BrevoError::RateLimited { .. }) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(on_its_way) => {
                    self.polling = Some(on_its_way);
                    return self.save_ready_checkpoint().await;
                }
                None => {
                    let every = if self.polls < EAGER_POLLS { POLL_SOON } else { POLL_EVERY };
                    let polled_lately = self.last_poll.is_some_and(|at| at.elapsed() < every);
                    if self.pending.is_empty() || (!must && (waiting < poll_at || polled_lately)) {
                        return self.save_ready_checkpoint().await;
                    }
                    if !must {
                        (self.last_poll, self.polls) = (Some(Instant::now()), self.polls + 1);
                        let ids = self.pending.iter().map(|p| p.process_id).collect();
                        // Never waits for the hour's bucket: a drained one fails it at once.
                        let brevo = self.brevo.without_waiting();
                        let task = async move { brevo.recent_processes().await };
                        self.polling =
                            Some((ids, AbortOnDrop(tokio::spawn(task.in_current_span()))));
                        return self.save_ready_checkpoint().await;
                    }
                    None
                }
            };
            let (answers_for, processes) = match beside {
                Some((ids, processes)) => (Some(ids), processes),
                None => {
                    (self.last_poll, self.polls) = (Some(Instant::now()), self.polls + 1);
                    let t = Instant::now();
                    let processes = self.brevo.recent_processes().await?;
                    self.report.spent.add("Brevo: process polls", t);
                    (None, processes)
                }
            };
            let mut known: HashMap<i64, crate::brevo::api::Process> =
                processes.into_iter().map(|p| (p.id, p)).collect();
            let mut still = Vec::new();
            for import in std::mem::take(&mut self.pending) {
                // Sent after the poll: the next one tells.
                if answers_for.as_ref().is_some_and(|ids| !ids.contains(&import.process_id)) {
                    still.push(import);
                    continue;
                }
                let mut parts = Vec::with_capacity(1 + import.companions.len());
                for id in
                    std::iter::once(import.process_id).chain(import.companions.iter().copied())
                {
                    parts.push(match known.remove(&id) {
                        Some(p) => p,
                        None => match self.brevo.process(id).await {
                            Ok(p) => p,
                            // Brevo forgot it: write the rows again.
                            Err(BrevoError::UnknownContact) => crate::brevo::api::Process {
                                id,
                                status: "failed".into(),
                                info: None,
                            },
                            Err(e) => return Err(e.into()),
                        },
                    });
                }
                let process = combined(parts);
                let took_all = process.state() == ProcessState::Completed
                    && !dropped_rows(process.info.as_ref());
                match process.state() {
                    ProcessState::Running => still.push(import),
                    _ if !import.companions.is_empty() && !took_all => {
                        // One of the lists' imports did not take every row: the rows are imported
                        // again by the lists they go to, as any other group.
                        tracing::info!(process.id, status = %process.status, rows = import.rows.len(), "an import of the last groups did not take every row: importing each group again");
                        for (lists, rows) in by_their_lists(import.rows) {
                            if rows.len() < BULK_MIN || lists.is_empty() {
                                self.write_one_by_one(rows).await?;
                                continue;
                            }
                            let process_id = send_import(&self.brevo, &lists, &rows).await?;
                            still.push(PendingImport {
                                process_id,
                                companions: Vec::new(),
                                lists,
                                rows,
                                write: import.write,
                            });
                        }
                    }
                    _ if took_all => {
                        let t = Instant::now();
                        self.apply_import(import).await?;
                        self.report.spent.add("recording imports", t);
                    }
                    _ if import.rows.len() >= 2 * BULK_MIN && !import.lists.is_empty() => {
                        // Which rows it dropped Brevo does not say: each half is imported again,
                        // down to a few rows written one by one, which names the failing record:
                        // a bad row costs a logarithmic number of imports, not a call per row.
                        tracing::info!(process.id, status = %process.status, rows = import.rows.len(), "an import did not take every row: importing each half again");
                        let (first, second) = import.rows.split_at(import.rows.len() / 2);
                        for half in [first, second] {
                            let process_id = send_import(&self.brevo, &import.lists, half).await?;
                            still.push(PendingImport {
                                process_id,
                                companions: Vec::new(),
                                lists: import.lists.clone(),
                                rows: half.to_vec(),
                                write: import.write,
                            });
                        }
                    }
                    _ => {
                        tracing::info!(process.id, status = %process.status, "an import did not take every row: writing them one by one");
                        self.write_one_by_one(import.rows).await?;
                    }
                }
            }
            self.pending = still;
            let running: usize = self.pending.iter().map(|p| p.rows.len()).sum();
            if self.pending.is_empty() || !wait && running < wait_at {
                return self.save_ready_checkpoint().await;
            }
            // Imports the poll beside the loop could not answer for are asked about at once.
            if answers_for
                .is_some_and(|ids| self.pending.iter().any(|p| !ids.contains(&p.process_id)))
            {
                continue;
            }
            if Instant::now() > deadline {
                return Err(Stop::Retry(format!(
                    "Brevo has not finished {} contact import(s) after 15 minutes.",
                    self.pending.len()
                )));
            }
            let t = Instant::now();
            tokio::time::sleep(delay).await;
            self.report.spent.add("waiting for Brevo's imports", t);
            waits += 1;
            if waits >= 3 {
                delay = delay.mul_f64(1.5).min(Duration::from_secs(30));
            }
        }
    }

    /// Records a completed import: the list memberships its target did not cover (none, for the
    /// imports of this version) and the removals, then — by a task, beside the persons loop —
    /// the links.
    pub(super) async fn apply_import(&mut self, import: PendingImport) -> Result<(), Stop> {
        let managed = transform::managed_lists(&self.mapping);
        let mut adds: HashMap<i64, Vec<String>> = HashMap::new();
        let mut removes: HashMap<i64, Vec<String>> = HashMap::new();
        for r in &import.rows {
            for l in
                r.lists.iter().filter(|l| !r.prev_lists.contains(l) && !import.lists.contains(l))
            {
                adds.entry(*l).or_default().push(r.email.clone());
            }
            for l in r.prev_lists.iter().filter(|l| !r.lists.contains(l) && managed.contains(l)) {
                removes.entry(*l).or_default().push(r.email.clone());
            }
        }
        for (list, emails) in adds {
            self.brevo.add_to_list(list, &emails).await?;
        }
        for (list, emails) in removes {
            self.brevo.remove_from_list(list, &emails).await?;
        }
        for r in &import.rows {
            self.took(r, !r.existed, true);
        }
        // The events of these writes are durable before the links that consume them.
        self.flush_events().await?;
        let (pool, tenant, recorder) = (self.pool.clone(), self.tenant, self.recorder.clone());
        let held_from = import.write + 1;
        let resolved: Vec<String> =
            import.rows.iter().filter(|r| !r.has_issues).map(|r| r.person_id.to_string()).collect();
        // Once the persons are read, nothing else needs the database: the links go in two halves
        // at once (on two cores).
        let parts = if self.persons_read { 2 } else { 1 };
        let task = async move {
            // The links' text (about the rows' size) is made only in a turn: made before it,
            // every import waiting for one would hold it too.
            let _turn = recorder
                .acquire()
                .await
                .map_err(|_| Stop::Retry("the run stopped recording".into()))?;
            let parts: Vec<store::LinkColumns> = import
                .rows
                .chunks(import.rows.len().div_ceil(parts).max(1))
                .map(person_links)
                .collect();
            drop(import.rows);
            futures_util::future::try_join_all(
                parts.iter().map(|part| record_links(&pool, tenant, part)),
            )
            .await?;
            store::resolve_errors(&pool, tenant, Entity::Person, &resolved).await?;
            Ok(())
        };
        self.recording.push_back((held_from, AbortOnDrop::spawn(task.in_current_span())));
        Ok(())
    }
}

/// What the imports of the same rows did together: the first still running, else the first
/// that failed or dropped rows, else the first (all completed).
pub(super) fn combined(mut parts: Vec<crate::brevo::api::Process>) -> crate::brevo::api::Process {
    let pick = parts
        .iter()
        .position(|p| !p.finished())
        .or_else(|| {
            parts
                .iter()
                .position(|p| p.state() != ProcessState::Completed || dropped_rows(p.info.as_ref()))
        })
        .unwrap_or(0);
    parts.swap_remove(pick)
}

/// Whether an import's counters say rows were dropped or changed (`info.import`).
pub(super) fn dropped_rows(info: Option<&Value>) -> bool {
    let Some(counters) = info.and_then(|i| i.get("import")).and_then(Value::as_object) else {
        return false;
    };
    counters.iter().any(|(k, v)| {
        (k == "invalid_emails" || k.starts_with("duplicate_")) && v.as_u64().unwrap_or(0) > 0
    })
}

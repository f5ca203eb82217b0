//! What a run knows of both sides (Pipedrive's fields and stages, Brevo's attributes and lists),
//! and the attributes the mapping needs that it creates in Brevo.

use super::Catalogue;
use super::Engine;
use super::Stop;
use crate::brevo::BrevoError;
use crate::brevo::api::BrevoApi;
use crate::mapping::transform::FieldOptions;
use crate::mapping::validate;
use crate::mapping::validate::AttributeInfo;
use crate::mapping::validate::Catalog;
use crate::pipedrive::client::PipedriveClient;
use crate::pipedrive::models::Field;
use crate::pipedrive::models::Stage;
use crate::task::AbortOnDrop;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

impl<'s> Engine<'s> {
    /// Starts creating the attributes the mapping needs and Brevo lacks, in a task of its own
    /// (or, when `options.create_missing_attributes` is off, notes them in the run's message).
    pub(super) fn start_attributes(
        &mut self,
    ) -> Option<AbortOnDrop<Result<Vec<AttributeInfo>, Stop>>> {
        let missing: Vec<(String, &'static str)> = self
            .mapping
            .person_mapping
            .iter()
            .filter(|(path, attribute)| {
                *path != "email"
                    && !self.cat.catalog.attributes.iter().any(|a| &a.name == *attribute)
            })
            .map(|(path, attribute)| {
                let field = path
                    .strip_prefix("custom_fields.")
                    .and_then(|n| validate::custom_field(&self.cat.catalog, n));
                (attribute.clone(), validate::expected_kind(path, field).unwrap_or("text"))
            })
            .collect();
        if missing.is_empty() {
            return None;
        }
        if !self.mapping.options.create_missing_attributes {
            self.report.notes.push(format!(
                "Brevo has no attribute {}: Brevo drops their values (create them in Brevo, or turn options.create_missing_attributes on).",
                missing.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ")
            ));
            return None;
        }
        let brevo = self.brevo.clone();
        Some(AbortOnDrop::spawn(
            async move {
                let mut created = Vec::new();
                for (name, kind) in missing {
                    match brevo.create_attribute(&name, kind).await {
                        Ok(()) => {}
                        // Created meanwhile (by someone else, or by an earlier attempt of this
                        // run that stopped before the catalog learnt it): Brevo answers 400
                        // `duplicate_parameter`.
                        Err(BrevoError::Duplicate { .. }) => {}
                        Err(BrevoError::Rejected { status: 400, message })
                            if message.to_lowercase().contains("already") => {}
                        Err(e) => return Err(e.into()),
                    }
                    created.push(AttributeInfo { name, kind: kind.into() });
                }
                Ok(created)
            }
            .in_current_span(),
        ))
    }

    /// Waits for the attributes `start_attributes` creates, and has the catalog learn them.
    pub(super) async fn finish_attributes(
        &mut self,
        task: Option<AbortOnDrop<Result<Vec<AttributeInfo>, Stop>>>,
    ) -> Result<(), Stop> {
        let Some(task) = task else { return Ok(()) };
        let t = Instant::now();
        let created = task.await.map_err(|e| {
            Stop::Retry(format!("creating the Brevo attributes was interrupted: {e}"))
        })??;
        self.report.spent.add("waiting for attributes", t);
        if !created.is_empty() {
            tracing::info!(count = created.len(), "created the Brevo attributes the mapping needs");
            self.report.notes.push(format!(
                "Created Brevo attributes: {}.",
                created.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
            let mut cat = Catalogue {
                catalog: self.cat.catalog.clone(),
                options: self.cat.options.clone(),
                stage_names: self.cat.stage_names.clone(),
            };
            cat.catalog.attributes.extend(created);
            self.cat = Arc::new(cat);
            // The cached catalog learns the new attributes (no need to read it all again).
            if let Some(entry) =
                self.s.catalogs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&self.tenant)
            {
                entry.2 = self.cat.clone();
            }
        }
        Ok(())
    }
}

/// Reads the catalog: person fields with their options, stages with their names, Brevo's
/// attributes and lists.
pub(super) async fn load_catalogue(
    pd: &PipedriveClient,
    brevo: &BrevoApi,
) -> Result<Catalogue, Stop> {
    use crate::mapping::catalog;
    let fields: Vec<Field> = catalog::all(pd, "/api/v2/personFields").await?;
    let stages: Vec<Stage> = catalog::all(pd, "/api/v2/stages").await?;
    let options: FieldOptions = fields
        .iter()
        .filter(|f| f.is_custom_field)
        .map(|f| {
            let opts = f
                .options
                .iter()
                .flatten()
                .map(|o| (o.id.to_string().trim_matches('"').to_owned(), o.label.clone()))
                .collect();
            (f.field_code.clone(), opts)
        })
        .collect();
    Ok(Catalogue {
        catalog: Catalog {
            person_fields: catalog::custom_fields(&fields),
            stage_ids: stages.iter().map(|s| s.id).collect(),
            attributes: catalog::attribute_infos(brevo.attributes().await?),
            list_ids: brevo.list_ids().await?,
        },
        options,
        stage_names: stages.into_iter().map(|s| (s.id, s.name)).collect(),
    })
}

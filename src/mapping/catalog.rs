//! The catalog a mapping is checked against, read from the tenant's connections: Pipedrive person
//! fields (key, label, type) and stages; Brevo contact attributes and lists.

use futures_util::TryStreamExt;

use super::validate::{AttributeInfo, Catalog, FieldInfo};
use crate::brevo::BrevoError;
use crate::brevo::api::BrevoApi;
use crate::pipedrive::PipedriveError;
use crate::pipedrive::client::{ListQuery, PipedriveClient};
use crate::pipedrive::models::{Field, Stage};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading Pipedrive's fields and stages failed: {0}")]
    Pipedrive(#[from] PipedriveError),
    #[error("reading Brevo's attributes and lists failed: {0}")]
    Brevo(#[from] BrevoError),
}

pub async fn load(pipedrive: &PipedriveClient, brevo: &BrevoApi) -> Result<Catalog, CatalogError> {
    let fields: Vec<Field> = pipedrive
        .list::<Field>("/api/v2/personFields", ListQuery::default())
        .map_ok(|page| futures_util::stream::iter(page.items.into_iter().map(Ok::<_, PipedriveError>)))
        .try_flatten()
        .try_collect()
        .await?;
    let stages: Vec<Stage> = pipedrive
        .list::<Stage>("/api/v2/stages", ListQuery::default())
        .map_ok(|page| futures_util::stream::iter(page.items.into_iter().map(Ok::<_, PipedriveError>)))
        .try_flatten()
        .try_collect()
        .await?;
    let attributes = brevo.attributes().await?;
    let list_ids = brevo.list_ids().await?;
    Ok(Catalog {
        person_fields: fields
            .into_iter()
            .filter(|f| f.is_custom_field)
            .map(|f| FieldInfo { key: f.field_code, label: f.field_name, field_type: f.field_type })
            .collect(),
        stage_ids: stages.into_iter().map(|s| s.id).collect(),
        attributes: attributes.into_iter().map(|a| AttributeInfo { name: a.name, kind: a.kind.unwrap_or_else(|| "text".into()) }).collect(),
        list_ids,
    })
}

//! The catalog a mapping is checked against, read from the tenant's connections: Pipedrive person
//! fields (key, label, type) and stages; Brevo contact attributes and lists.

use futures_util::TryStreamExt;

use super::validate::{AttributeInfo, Catalog, FieldInfo};
use crate::brevo::BrevoError;
use crate::brevo::api::BrevoApi;
use crate::pipedrive::PipedriveError;
use crate::pipedrive::client::{ListQuery, PipedriveClient};
use crate::pipedrive::models::{Field, Pipeline, Stage};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading Pipedrive's fields and stages failed: {0}")]
    Pipedrive(#[from] PipedriveError),
    #[error("reading Brevo's attributes and lists failed: {0}")]
    Brevo(#[from] BrevoError),
}

/// Every item of a Pipedrive v2 list (short lists: fields, pipelines, stages).
pub async fn all<T: serde::de::DeserializeOwned + Send + 'static>(
    p: &PipedriveClient,
    path: &str,
) -> Result<Vec<T>, PipedriveError> {
    p.list::<T>(path, ListQuery::default())
        .map_ok(|page| {
            futures_util::stream::iter(page.items.into_iter().map(Ok::<_, PipedriveError>))
        })
        .try_flatten()
        .try_collect()
        .await
}

/// The custom person fields, as the mapping names them.
pub fn custom_fields(fields: &[Field]) -> Vec<FieldInfo> {
    fields
        .iter()
        .filter(|f| f.is_custom_field)
        .map(|f| FieldInfo {
            key: f.field_code.clone(),
            label: f.field_name.clone(),
            field_type: f.field_type.clone(),
        })
        .collect()
}

pub fn attribute_infos(attributes: Vec<crate::brevo::api::Attribute>) -> Vec<AttributeInfo> {
    attributes
        .into_iter()
        .map(|a| AttributeInfo { name: a.name, kind: a.kind.unwrap_or_else(|| "text".into()) })
        .collect()
}

pub async fn load(pipedrive: &PipedriveClient, brevo: &BrevoApi) -> Result<Catalog, CatalogError> {
    let fields: Vec<Field> = all(pipedrive, "/api/v2/personFields").await?;
    let stages: Vec<Stage> = all(pipedrive, "/api/v2/stages").await?;
    Ok(Catalog {
        person_fields: custom_fields(&fields),
        stage_ids: stages.into_iter().map(|s| s.id).collect(),
        attributes: attribute_infos(brevo.attributes().await?),
        list_ids: brevo.list_ids().await?,
    })
}

/// What the mapping forms offer: the tenant's custom person fields by label, stages by pipeline
/// and name, Brevo attributes with their types, and lists by name.
#[derive(Debug, Clone, Default)]
pub struct Named {
    pub fields: Vec<FieldInfo>,
    /// (stage id, "Pipeline → Stage").
    pub stages: Vec<(u64, String)>,
    pub attributes: Vec<AttributeInfo>,
    pub lists: Vec<(i64, String)>,
}

pub async fn load_named(
    pipedrive: &PipedriveClient,
    brevo: &BrevoApi,
) -> Result<Named, CatalogError> {
    let fields: Vec<Field> = all(pipedrive, "/api/v2/personFields").await?;
    let pipelines: Vec<Pipeline> = all(pipedrive, "/api/v2/pipelines").await?;
    let stages: Vec<Stage> = all(pipedrive, "/api/v2/stages").await?;
    let attributes = brevo.attributes().await?;
    let lists = brevo.lists().await?;
    let pipeline =
        |id: u64| pipelines.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_default();
    Ok(Named {
        fields: custom_fields(&fields),
        stages: stages
            .iter()
            .map(|s| (s.id, format!("{} → {}", pipeline(s.pipeline_id), s.name)))
            .collect(),
        attributes: attribute_infos(attributes),
        lists,
    })
}

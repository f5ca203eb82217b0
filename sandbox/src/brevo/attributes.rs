//! Contact attributes: `GET /v3/contacts/attributes` and
//! `POST|PUT|DELETE /v3/contacts/attributes/{attributeCategory}/{attributeName}`
//! (spec `getAttributes`, `createAttribute`, `updateAttribute`, `deleteAttribute`; reference §3).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::http::{ApiError, ApiResult, Body};
use super::state::{Attribute, Enumeration};
use super::{ApiKey, Brevo};

/// Category and option labels are limited to 200 characters (reference §3.2).
const MAX_LABEL: usize = 200;

#[derive(Debug, Deserialize)]
pub(crate) struct AttributeBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    enumeration: Option<Vec<Enumeration>>,
    #[serde(rename = "multiCategoryOptions")]
    multi_category_options: Option<Vec<String>>,
    value: Option<String>,
    #[serde(rename = "isRecurring")]
    _is_recurring: Option<bool>,
}

pub(crate) async fn list(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
) -> ApiResult<Response> {
    let attributes = brevo.with_account(&key, |account| account.attributes.clone())?;
    Ok(axum::Json(json!({ "attributes": attributes })).into_response())
}

fn check_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> ApiResult<()> {
    match labels.into_iter().find(|l| l.is_empty() || l.chars().count() > MAX_LABEL) {
        Some(_) => {
            Err(ApiError::invalid(format!("Options must be 1 to {MAX_LABEL} characters long")))
        }
        None => Ok(()),
    }
}

/// Attribute names are used upper-case in payloads (reference §3.4); the sandbox upper-cases the
/// name it is given and accepts letters, digits, `_` and `-` after a leading letter.
fn normalize_name(raw: &str) -> ApiResult<String> {
    let name = raw.trim().to_uppercase();
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok { Ok(name) } else { Err(ApiError::invalid(format!("Invalid attribute name {raw}"))) }
}

/// `POST ...` → 201 with an empty body. Type/category combinations follow the spec's `type`
/// description: `user` and `multiple-choice` only for normal, `id` only for transactional,
/// `category` only for category; `value` for calculated/global.
pub(crate) async fn create(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path((category, name)): Path<(String, String)>,
    Body(body): Body<AttributeBody>,
) -> ApiResult<Response> {
    let name = normalize_name(&name)?;
    let mut attribute = Attribute {
        name: name.clone(),
        category: category.clone(),
        kind: None,
        enumeration: None,
        multi_category_options: None,
        calculated_value: None,
    };
    match category.as_str() {
        "normal" => {
            let kind = body.kind.unwrap_or_else(|| "text".into());
            if !matches!(
                kind.as_str(),
                "text" | "date" | "float" | "boolean" | "user" | "multiple-choice"
            ) {
                return Err(ApiError::invalid(format!(
                    "type {kind} is not allowed for a normal attribute"
                )));
            }
            if kind == "multiple-choice" {
                let options = body.multi_category_options.filter(|o| !o.is_empty());
                let options = options.ok_or_else(|| {
                    ApiError::missing("multiCategoryOptions is required for multiple-choice")
                })?;
                check_labels(options.iter().map(String::as_str))?;
                attribute.multi_category_options = Some(options);
            }
            attribute.kind = Some(kind);
        }
        "transactional" => {
            let kind = body.kind.unwrap_or_else(|| "text".into());
            if !matches!(kind.as_str(), "text" | "date" | "float" | "boolean" | "id") {
                return Err(ApiError::invalid(format!(
                    "type {kind} is not allowed for a transactional attribute"
                )));
            }
            attribute.kind = Some(kind);
        }
        "category" => {
            if body.kind.as_deref().is_some_and(|k| k != "category") {
                return Err(ApiError::invalid("type must be category for a category attribute"));
            }
            let enumeration = body.enumeration.filter(|e| !e.is_empty());
            let enumeration = enumeration.ok_or_else(|| {
                ApiError::missing("enumeration is required for a category attribute")
            })?;
            check_labels(enumeration.iter().map(|e| e.label.as_str()))?;
            // GET lists category attributes with type "text" (spec example of getAttributes).
            attribute.kind = Some("text".into());
            attribute.enumeration = Some(enumeration);
        }
        "calculated" | "global" => {
            let value = body.value.filter(|v| !v.trim().is_empty());
            attribute.calculated_value =
                Some(value.ok_or_else(|| ApiError::missing("value is required"))?);
        }
        other => {
            return Err(ApiError::invalid(format!(
                "attributeCategory {other} must be one of normal, transactional, category, calculated, global"
            )));
        }
    }
    brevo.with_account(&key, |account| {
        if account.attribute(&name).is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "duplicate_parameter",
                "Attribute name already exists",
            ));
        }
        // A transactional attribute needs an `id` attribute first (reference §3.2).
        let has_id = account
            .attributes
            .iter()
            .any(|a| a.category == "transactional" && a.kind.as_deref() == Some("id"));
        if attribute.category == "transactional"
            && attribute.kind.as_deref() != Some("id")
            && !has_id
        {
            return Err(ApiError::invalid("Transactional attribute as primary Key is missing"));
        }
        account.attributes.push(attribute);
        Ok(())
    })??;
    Ok(StatusCode::CREATED.into_response())
}

fn attribute_not_found() -> ApiError {
    ApiError::not_found("Attribute not found")
}

/// `PUT ...` (category ∈ category, calculated, global, normal) → 204.
pub(crate) async fn update(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path((category, name)): Path<(String, String)>,
    Body(body): Body<AttributeBody>,
) -> ApiResult<Response> {
    let name = name.to_uppercase();
    brevo.with_account(&key, |account| {
        let attribute = account
            .attributes
            .iter_mut()
            .find(|a| a.name == name && a.category == category)
            .ok_or_else(attribute_not_found)?;
        if let Some(enumeration) = body.enumeration {
            check_labels(enumeration.iter().map(|e| e.label.as_str()))?;
            attribute.enumeration = Some(enumeration);
        }
        if let Some(options) = body.multi_category_options {
            check_labels(options.iter().map(String::as_str))?;
            attribute.multi_category_options = Some(options);
        }
        if let Some(value) = body.value {
            attribute.calculated_value = Some(value);
        }
        Ok::<_, ApiError>(())
    })??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE ...` → 204; the values disappear from every contact.
pub(crate) async fn delete(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
    Path((category, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let name = name.to_uppercase();
    brevo.with_account(&key, |account| {
        let before = account.attributes.len();
        account.attributes.retain(|a| !(a.name == name && a.category == category));
        if account.attributes.len() == before {
            return Err(attribute_not_found());
        }
        account.contacts.update_all(|contact| {
            contact.attributes.remove(&name);
        });
        Ok(())
    })??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! Checking custom field values written through API v2 (`custom_fields`), per field type (§7.2).

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::{Map, Value};

use super::model::Field;
use super::reply::bad_request;

/// Applies `custom_fields` from a v2 body to `values`. Unknown keys are ignored, like deleted
/// fields on the real API; a value of the wrong type is a 400 naming the field.
pub fn apply(
    fields: &[Field],
    values: &mut BTreeMap<String, Value>,
    body: &Map<String, Value>,
) -> Result<(), Response> {
    let Some(incoming) = body.get("custom_fields") else {
        return Ok(());
    };
    let Some(incoming) = incoming.as_object() else {
        return Err(bad_request("\"custom_fields\" must be an object"));
    };
    for (key, v) in incoming {
        let Some(f) = fields.iter().find(|f| f.is_custom && &f.key == key) else {
            continue;
        };
        if v.is_null() {
            values.remove(key);
            continue;
        }
        let wrong = || {
            bad_request(format!(
                "Invalid value for custom field '{}' ({}) of type {}",
                f.name, f.key, f.field_type
            ))
        };
        let option = |v: &Value| v.as_u64().is_some_and(|id| f.options.iter().any(|o| o.0 == id));
        let ok = match f.field_type.as_str() {
            "enum" => option(v),
            "set" => v.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(option)),
            "double" => v.is_number(),
            "monetary" => {
                v.get("value").is_some_and(Value::is_number)
                    && v.get("currency").is_some_and(Value::is_string)
            }
            "date" => v.as_str().is_some_and(|s| {
                time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                    .is_ok()
            }),
            "address" => v.get("value").is_some_and(Value::is_string),
            "user" | "org" | "people" => v.as_u64().is_some(),
            _ => v.is_string(),
        };
        if !ok {
            return Err(wrong());
        }
        values.insert(key.clone(), v.clone());
    }
    Ok(())
}

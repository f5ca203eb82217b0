//! Typed Pipedrive v2 records. Custom fields stay keyed by their 40-character hash, and fields
//! this code does not know are kept in `other`, so nothing the API sends is lost.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Labeled {
    pub value: String,
    #[serde(default)]
    pub primary: bool,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Person {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub owner_id: Option<u64>,
    #[serde(default)]
    pub org_id: Option<u64>,
    #[serde(default)]
    pub emails: Vec<Labeled>,
    #[serde(default)]
    pub phones: Vec<Labeled>,
    #[serde(default)]
    pub is_deleted: bool,
    pub update_time: Option<String>,
    #[serde(default)]
    pub custom_fields: BTreeMap<String, Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Organization {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub is_deleted: bool,
    pub update_time: Option<String>,
    #[serde(default)]
    pub custom_fields: BTreeMap<String, Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Deal {
    pub id: u64,
    pub title: String,
    #[serde(default)]
    pub person_id: Option<u64>,
    #[serde(default)]
    pub org_id: Option<u64>,
    pub pipeline_id: Option<u64>,
    pub stage_id: Option<u64>,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub currency: Option<String>,
    pub status: String,
    #[serde(default)]
    pub is_deleted: bool,
    pub update_time: Option<String>,
    #[serde(default)]
    pub custom_fields: BTreeMap<String, Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Activity {
    pub id: u64,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub person_id: Option<u64>,
    #[serde(default)]
    pub deal_id: Option<u64>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub is_deleted: bool,
    pub update_time: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Stage {
    pub id: u64,
    pub name: String,
    pub pipeline_id: u64,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pipeline {
    pub id: u64,
    pub name: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A field definition (`/api/v2/personFields` and friends).
#[derive(Debug, Clone, Deserialize)]
pub struct Field {
    pub field_code: String,
    pub field_name: String,
    pub field_type: String,
    #[serde(default)]
    pub is_custom_field: bool,
    #[serde(default)]
    pub options: Option<Vec<FieldOption>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldOption {
    pub id: Value,
    pub label: String,
}

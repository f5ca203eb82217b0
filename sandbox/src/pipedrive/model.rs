//! The canonical records of the fake Pipedrive. One store; v1 and v2 views are rendered from it
//! (render.rs), as pipedrive-api.md §13.4 advises. Custom field values are kept in their v2 form.

use std::collections::BTreeMap;

use serde_json::Value;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct Company {
    pub id: u64,
    pub name: String,
    /// The subdomain (`{domain}.pipedrive.com`), reported by `/v1/users/me`.
    pub domain: String,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
    pub api_token: String,
}

/// A value in a person's `emails` / `phones` list (v1: `email` / `phone`).
#[derive(Debug, Clone)]
pub struct Labeled {
    pub value: String,
    pub primary: bool,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Person {
    pub id: u64,
    pub name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub owner_id: u64,
    pub org_id: Option<u64>,
    pub emails: Vec<Labeled>,
    pub phones: Vec<Labeled>,
    pub is_deleted: bool,
    pub visible_to: u8,
    pub label_ids: Vec<u64>,
    pub marketing_status: Option<String>,
    pub add_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    pub custom_fields: BTreeMap<String, Value>,
}

impl Person {
    /// An empty person owned by `owner`, before a create body is applied.
    pub fn blank(id: u64, owner: u64, now: OffsetDateTime) -> Self {
        Self {
            id,
            name: String::new(),
            first_name: None,
            last_name: None,
            owner_id: owner,
            org_id: None,
            emails: vec![],
            phones: vec![],
            is_deleted: false,
            visible_to: 3,
            label_ids: vec![],
            marketing_status: None,
            add_time: now,
            update_time: now,
            custom_fields: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Organization {
    pub id: u64,
    pub name: String,
    pub owner_id: u64,
    pub address: Option<String>,
    pub website: Option<String>,
    pub is_deleted: bool,
    pub visible_to: u8,
    pub label_ids: Vec<u64>,
    pub add_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    pub custom_fields: BTreeMap<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Deal {
    pub id: u64,
    pub title: String,
    pub creator_user_id: u64,
    pub owner_id: u64,
    pub person_id: Option<u64>,
    pub org_id: Option<u64>,
    pub pipeline_id: u64,
    pub stage_id: u64,
    pub value: f64,
    pub currency: String,
    /// `open`, `won` or `lost`.
    pub status: String,
    pub is_deleted: bool,
    pub probability: Option<f64>,
    pub lost_reason: Option<String>,
    pub visible_to: u8,
    pub expected_close_date: Option<String>,
    pub add_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    pub stage_change_time: Option<OffsetDateTime>,
    pub won_time: Option<OffsetDateTime>,
    pub lost_time: Option<OffsetDateTime>,
    pub close_time: Option<OffsetDateTime>,
    pub custom_fields: BTreeMap<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Activity {
    pub id: u64,
    pub subject: String,
    /// The activity type's `key_string`: call, meeting, email, task, ...
    pub kind: String,
    pub owner_id: u64,
    pub creator_user_id: u64,
    pub person_id: Option<u64>,
    pub org_id: Option<u64>,
    pub deal_id: Option<u64>,
    pub lead_id: Option<String>,
    pub due_date: Option<String>,
    pub due_time: Option<String>,
    pub duration: Option<String>,
    pub done: bool,
    pub busy: bool,
    pub note: Option<String>,
    pub is_deleted: bool,
    pub add_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    pub marked_as_done_time: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct Lead {
    pub id: String,
    pub title: String,
    pub owner_id: u64,
    pub creator_id: u64,
    pub person_id: Option<u64>,
    pub organization_id: Option<u64>,
    pub value: Option<(f64, String)>,
    pub label_ids: Vec<String>,
    pub source_name: String,
    pub is_archived: bool,
    pub was_seen: bool,
    pub expected_close_date: Option<String>,
    pub add_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    pub is_deleted: bool,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: u64,
    pub name: String,
    pub order_nr: u32,
    pub is_deleted: bool,
    pub add_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: u64,
    pub pipeline_id: u64,
    pub name: String,
    pub order_nr: u32,
    pub deal_probability: u32,
    pub is_deleted: bool,
    pub add_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
}

/// A field definition (`/personFields` and friends): built-in or custom.
#[derive(Debug, Clone)]
pub struct Field {
    pub id: u64,
    /// A built-in field's name (`name`, `email`), or a custom field's 40-char hex hash.
    pub key: String,
    pub name: String,
    /// v1 `field_type`: varchar, text, double, monetary, enum, set, date, address, phone, ...
    pub field_type: String,
    pub options: Vec<(u64, String)>,
    pub is_custom: bool,
    pub add_time: OffsetDateTime,
}

/// Which entity a change is about (webhook `event_object` / `meta.entity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Person,
    Organization,
    Deal,
    Activity,
    Lead,
    Pipeline,
    Stage,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "person",
            EntityKind::Organization => "organization",
            EntityKind::Deal => "deal",
            EntityKind::Activity => "activity",
            EntityKind::Lead => "lead",
            EntityKind::Pipeline => "pipeline",
            EntityKind::Stage => "stage",
        }
    }
}

/// Common access for listing: id order, update-time order, soft deletion.
pub trait Row {
    fn id(&self) -> u64;
    fn add_time(&self) -> OffsetDateTime;
    fn update_time(&self) -> OffsetDateTime;
    fn is_deleted(&self) -> bool;
}

macro_rules! row {
    ($t:ty) => {
        impl Row for $t {
            fn id(&self) -> u64 {
                self.id
            }
            fn add_time(&self) -> OffsetDateTime {
                self.add_time
            }
            fn update_time(&self) -> OffsetDateTime {
                self.update_time
            }
            fn is_deleted(&self) -> bool {
                self.is_deleted
            }
        }
    };
}

row!(Person);
row!(Organization);
row!(Deal);
row!(Activity);
row!(Pipeline);
row!(Stage);

//! The v1 and v2 JSON shapes of each record (pipedrive-api.md §6, §7.2): field renames, objects vs
//! ids, root-level vs nested custom fields, date formats, `active_flag` vs `is_deleted`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::model::*;
use super::state::World;

/// v2: RFC 3339 in UTC (`2024-01-01T00:00:00Z`).
pub fn t2(t: OffsetDateTime) -> String {
    t.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .unwrap_or_default()
}

/// v1: `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn t1(t: OffsetDateTime) -> String {
    t.format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        .unwrap_or_default()
}

/// Leads (v1 API, but ISO 8601 with milliseconds and Z).
pub fn t_lead(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

fn labeled(list: &[Labeled]) -> Value {
    Value::Array(
        list.iter()
            .map(|l| json!({"value": l.value, "primary": l.primary, "label": l.label}))
            .collect(),
    )
}

/// v1 form of custom field values, at the root of the object (§7.2).
fn custom_v1(out: &mut Map<String, Value>, fields: &[Field], values: &BTreeMap<String, Value>) {
    for f in fields.iter().filter(|f| f.is_custom) {
        let key = &f.key;
        let Some(v) = values.get(key) else {
            out.insert(key.clone(), Value::Null);
            continue;
        };
        match f.field_type.as_str() {
            "enum" => {
                out.insert(key.clone(), json!(v.as_u64().map(|n| n.to_string())));
            }
            "set" => {
                let ids: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .map(|n| n.to_string())
                    .collect();
                out.insert(key.clone(), json!(ids.join(",")));
            }
            "monetary" => {
                out.insert(key.clone(), v["value"].clone());
                out.insert(format!("{key}_currency"), v["currency"].clone());
            }
            "address" => {
                out.insert(key.clone(), v["value"].clone());
                for part in [
                    "route",
                    "street_number",
                    "locality",
                    "sublocality",
                    "admin_area_level_1",
                    "admin_area_level_2",
                    "country",
                    "postal_code",
                    "formatted_address",
                ] {
                    out.insert(
                        format!("{key}_{part}"),
                        v.get(part).cloned().unwrap_or(Value::Null),
                    );
                }
            }
            _ => {
                out.insert(key.clone(), v.clone());
            }
        }
    }
}

/// v2 `custom_fields`, with option labels when asked (`include_option_labels`).
fn custom_v2(fields: &[Field], values: &BTreeMap<String, Value>, labels: bool) -> Value {
    let mut out = Map::new();
    for f in fields.iter().filter(|f| f.is_custom) {
        let v = values.get(&f.key).cloned().unwrap_or(Value::Null);
        let label = |id: &Value| -> Value {
            let id = id.as_u64();
            let name = f.options.iter().find(|o| Some(o.0) == id).map(|o| o.1.clone());
            json!({"id": id, "label": name})
        };
        let v = match (labels, f.field_type.as_str()) {
            (true, "enum") if !v.is_null() => label(&v),
            (true, "set") if !v.is_null() => {
                Value::Array(v.as_array().into_iter().flatten().map(label).collect())
            }
            _ => v,
        };
        out.insert(f.key.clone(), v);
    }
    Value::Object(out)
}

/// Options of the v2 views.
#[derive(Debug, Default, Clone)]
pub struct V2Opts {
    pub option_labels: bool,
    /// `include_fields` asked for; computed counts are added for those present.
    pub include: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct DealCounts {
    pub open: u64,
    pub won: u64,
    pub lost: u64,
}

pub fn person_v2(w: &World, p: &Person, o: &V2Opts, counts: Option<DealCounts>) -> Value {
    let mut v = json!({
        "id": p.id, "name": p.name, "first_name": p.first_name, "last_name": p.last_name,
        "owner_id": p.owner_id, "org_id": p.org_id,
        "add_time": t2(p.add_time), "update_time": t2(p.update_time),
        "emails": labeled(&p.emails), "phones": labeled(&p.phones),
        "is_deleted": p.is_deleted, "visible_to": p.visible_to, "label_ids": p.label_ids, "picture_id": null,
        "custom_fields": custom_v2(&w.person_fields, &p.custom_fields, o.option_labels),
    });
    if let Some(c) = counts {
        let obj = v.as_object_mut().expect("an object");
        for (name, n) in [
            ("open_deals_count", c.open),
            ("won_deals_count", c.won),
            ("lost_deals_count", c.lost),
            ("closed_deals_count", c.won + c.lost),
        ] {
            if o.include.iter().any(|i| i == name) {
                obj.insert(name.into(), json!(n));
            }
        }
        if o.include.iter().any(|i| i == "marketing_status") {
            obj.insert("marketing_status".into(), json!(p.marketing_status));
        }
    }
    v
}

/// The v1 user object. The spec types `has_pic` as an integer on persons and organizations and as
/// a boolean on deals; each shape follows its operation.
fn user_object(w: &World, id: u64) -> Value {
    user_object_as(w, id, json!(0))
}

fn user_object_as(w: &World, id: u64, has_pic: Value) -> Value {
    match w.user(id) {
        Some(u) => {
            json!({"id": u.id, "name": u.name, "email": u.email, "has_pic": has_pic, "pic_hash": null, "active_flag": true, "value": u.id})
        }
        None => Value::Null,
    }
}

fn org_object(w: &World, id: Option<u64>) -> Value {
    match id.and_then(|id| w.organizations.get(id)) {
        Some(o) => {
            json!({"name": o.name, "people_count": null, "owner_id": o.owner_id, "address": o.address, "active_flag": !o.is_deleted, "cc_email": null, "value": o.id})
        }
        None => Value::Null,
    }
}

/// v1 person. `flat` gives plain ids for `owner_id` / `org_id` (webhooks v1, recents, merge).
pub fn person_v1(w: &World, p: &Person, flat: bool) -> Value {
    let org_name = p.org_id.and_then(|id| w.organizations.get(id)).map(|o| o.name.clone());
    let mut obj = json!({
        "id": p.id, "company_id": w.company().id,
        "owner_id": if flat { json!(p.owner_id) } else { user_object(w, p.owner_id) },
        "org_id": if flat { json!(p.org_id) } else { org_object(w, p.org_id) },
        "name": p.name, "first_name": p.first_name, "last_name": p.last_name,
        "email": labeled(&p.emails), "phone": labeled(&p.phones),
        "primary_email": p.emails.iter().find(|e| e.primary).map(|e| e.value.clone()),
        "active_flag": !p.is_deleted, "visible_to": p.visible_to.to_string(),
        "label_ids": p.label_ids, "label": null,
        "add_time": t1(p.add_time), "update_time": t1(p.update_time),
        "delete_time": p.is_deleted.then(|| t1(p.update_time)),
        "org_name": org_name, "owner_name": w.user(p.owner_id).map(|u| u.name.clone()),
        "first_char": p.name.chars().next().map(|c| c.to_lowercase().to_string()),
        "cc_email": format!("{}@pipedrivemail.com", w.company().domain),
    });
    custom_v1(obj.as_object_mut().expect("an object"), &w.person_fields, &p.custom_fields);
    obj
}

pub fn organization_v2(w: &World, o: &Organization, opts: &V2Opts) -> Value {
    json!({
        "id": o.id, "name": o.name, "owner_id": o.owner_id,
        "add_time": t2(o.add_time), "update_time": t2(o.update_time),
        "is_deleted": o.is_deleted, "visible_to": o.visible_to, "label_ids": o.label_ids,
        "address": o.address.as_ref().map(|a| json!({"value": a})),
        "website": o.website,
        "custom_fields": custom_v2(&w.organization_fields, &o.custom_fields, opts.option_labels),
    })
}

pub fn organization_v1(w: &World, o: &Organization, flat: bool) -> Value {
    let mut obj = json!({
        "id": o.id, "company_id": w.company().id,
        "owner_id": if flat { json!(o.owner_id) } else { user_object(w, o.owner_id) },
        "name": o.name, "active_flag": !o.is_deleted, "visible_to": o.visible_to.to_string(),
        "address": o.address, "label_ids": o.label_ids,
        "add_time": t1(o.add_time), "update_time": t1(o.update_time),
        "owner_name": w.user(o.owner_id).map(|u| u.name.clone()),
        "first_char": o.name.chars().next().map(|c| c.to_lowercase().to_string()),
    });
    custom_v1(obj.as_object_mut().expect("an object"), &w.organization_fields, &o.custom_fields);
    obj
}

pub fn deal_v2(w: &World, d: &Deal, opts: &V2Opts) -> Value {
    json!({
        "id": d.id, "title": d.title, "creator_user_id": d.creator_user_id, "owner_id": d.owner_id,
        "person_id": d.person_id, "org_id": d.org_id, "pipeline_id": d.pipeline_id, "stage_id": d.stage_id,
        "value": d.value, "currency": d.currency, "status": d.status,
        "add_time": t2(d.add_time), "update_time": t2(d.update_time),
        "stage_change_time": d.stage_change_time.map(t2),
        "is_deleted": d.is_deleted, "is_archived": false, "archive_time": null,
        "probability": d.probability, "lost_reason": d.lost_reason, "visible_to": d.visible_to,
        "close_time": d.close_time.map(t2), "won_time": d.won_time.map(t2), "lost_time": d.lost_time.map(t2),
        "expected_close_date": d.expected_close_date, "label_ids": [],
        "origin": "API", "origin_id": null, "channel": null, "channel_id": null,
        "custom_fields": custom_v2(&w.deal_fields, &d.custom_fields, opts.option_labels),
    })
}

pub fn deal_v1(w: &World, d: &Deal, flat: bool) -> Value {
    let stage = w.stages.get(d.stage_id);
    let mut obj = json!({
        "id": d.id, "title": d.title,
        "creator_user_id": if flat { json!(d.creator_user_id) } else { user_object_as(w, d.creator_user_id, json!(false)) },
        "user_id": if flat { json!(d.owner_id) } else { user_object_as(w, d.owner_id, json!(false)) },
        "person_id": if flat { json!(d.person_id) } else {
            d.person_id.and_then(|id| w.persons.get(id)).map(|p| json!({"name": p.name, "active_flag": !p.is_deleted, "value": p.id})).unwrap_or(Value::Null)
        },
        "org_id": if flat { json!(d.org_id) } else { org_object(w, d.org_id) },
        "pipeline_id": d.pipeline_id, "stage_id": d.stage_id, "stage_order_nr": stage.map(|s| s.order_nr),
        "value": d.value, "currency": d.currency, "weighted_value": d.value,
        "formatted_value": format!("{} {:.0}", d.currency, d.value),
        "status": d.status, "active": d.status == "open", "deleted": d.is_deleted,
        "add_time": t1(d.add_time), "update_time": t1(d.update_time),
        "stage_change_time": d.stage_change_time.map(t1),
        "won_time": d.won_time.map(t1), "lost_time": d.lost_time.map(t1), "close_time": d.close_time.map(t1),
        "lost_reason": d.lost_reason, "visible_to": d.visible_to.to_string(), "label": null,
        "expected_close_date": d.expected_close_date, "probability": d.probability,
        "person_name": d.person_id.and_then(|id| w.persons.get(id)).map(|p| p.name.clone()),
        "org_name": d.org_id.and_then(|id| w.organizations.get(id)).map(|o| o.name.clone()),
        "owner_name": w.user(d.owner_id).map(|u| u.name.clone()),
    });
    custom_v1(obj.as_object_mut().expect("an object"), &w.deal_fields, &d.custom_fields);
    obj
}

pub fn activity_v2(a: &Activity) -> Value {
    json!({
        "id": a.id, "subject": a.subject, "type": a.kind, "owner_id": a.owner_id,
        "creator_user_id": a.creator_user_id, "is_deleted": a.is_deleted,
        "add_time": t2(a.add_time), "update_time": t2(a.update_time),
        "deal_id": a.deal_id, "lead_id": a.lead_id, "person_id": a.person_id, "org_id": a.org_id,
        "project_id": null, "due_date": a.due_date, "due_time": a.due_time, "duration": a.duration,
        "busy": a.busy, "done": a.done, "marked_as_done_time": a.marked_as_done_time.map(t2),
        "participants": a.person_id.map(|p| json!([{"person_id": p, "primary": true}])).unwrap_or(json!([])),
        "note": a.note, "public_description": null, "priority": null, "location": null,
    })
}

pub fn activity_v1(w: &World, a: &Activity) -> Value {
    json!({
        "id": a.id, "company_id": w.company().id, "user_id": a.owner_id, "done": a.done, "type": a.kind,
        "subject": a.subject, "due_date": a.due_date, "due_time": a.due_time, "duration": a.duration,
        "busy_flag": a.busy, "add_time": t1(a.add_time), "update_time": t1(a.update_time),
        "marked_as_done_time": a.marked_as_done_time.map(t1).unwrap_or_default(),
        "active_flag": !a.is_deleted, "person_id": a.person_id, "org_id": a.org_id, "deal_id": a.deal_id,
        "lead_id": a.lead_id, "note": a.note, "created_by_user_id": a.creator_user_id,
        "assigned_to_user_id": a.owner_id,
        "participants": a.person_id.map(|p| json!([{"person_id": p, "primary_flag": true}])),
        "person_name": a.person_id.and_then(|id| w.persons.get(id)).map(|p| p.name.clone()),
        "org_name": a.org_id.and_then(|id| w.organizations.get(id)).map(|o| o.name.clone()),
        "deal_title": a.deal_id.and_then(|id| w.deals.get(id)).map(|d| d.title.clone()),
    })
}

pub fn lead_v1(l: &Lead) -> Value {
    json!({
        "id": l.id, "title": l.title, "owner_id": l.owner_id, "creator_id": l.creator_id,
        "label_ids": l.label_ids, "person_id": l.person_id, "organization_id": l.organization_id,
        "source_name": l.source_name, "origin": "API", "origin_id": null, "channel": null, "channel_id": null,
        "is_archived": l.is_archived, "was_seen": l.was_seen,
        "value": l.value.as_ref().map(|(amount, currency)| json!({"amount": amount, "currency": currency})),
        "expected_close_date": l.expected_close_date, "next_activity_id": null,
        "add_time": t_lead(l.add_time), "update_time": t_lead(l.update_time),
        "visible_to": "3", "cc_email": null,
    })
}

pub fn pipeline_v2(p: &Pipeline) -> Value {
    json!({"id": p.id, "name": p.name, "order_nr": p.order_nr, "is_deleted": p.is_deleted,
           "is_deal_probability_enabled": false, "add_time": t2(p.add_time), "update_time": t2(p.update_time)})
}

pub fn pipeline_v1(p: &Pipeline) -> Value {
    json!({"id": p.id, "name": p.name, "url_title": p.name.to_lowercase(), "order_nr": p.order_nr,
           "active": !p.is_deleted, "deal_probability": false, "selected": p.order_nr == 0,
           "add_time": t1(p.add_time), "update_time": t1(p.update_time)})
}

pub fn stage_v2(s: &Stage) -> Value {
    json!({"id": s.id, "order_nr": s.order_nr, "name": s.name, "is_deleted": s.is_deleted,
           "deal_probability": s.deal_probability, "pipeline_id": s.pipeline_id,
           "is_deal_rot_enabled": false, "days_to_rotten": null,
           "add_time": t2(s.add_time), "update_time": t2(s.update_time)})
}

pub fn stage_v1(w: &World, s: &Stage) -> Value {
    json!({"id": s.id, "order_nr": s.order_nr, "name": s.name, "active_flag": !s.is_deleted,
           "deal_probability": s.deal_probability, "pipeline_id": s.pipeline_id, "rotten_flag": false,
           "rotten_days": null, "add_time": t1(s.add_time), "update_time": t1(s.update_time),
           "pipeline_name": w.pipelines.get(s.pipeline_id).map(|p| p.name.clone())})
}

fn options(f: &Field) -> Value {
    if f.options.is_empty() {
        Value::Null
    } else {
        Value::Array(
            f.options.iter().map(|(id, label)| json!({"id": id, "label": label})).collect(),
        )
    }
}

pub fn field_v1(f: &Field) -> Value {
    json!({
        "id": f.id, "key": f.key, "name": f.name, "order_nr": f.id, "field_type": f.field_type,
        "add_time": t1(f.add_time), "update_time": t1(f.add_time), "last_updated_by_user_id": 1,
        "created_by_user_id": 1, "active_flag": true, "edit_flag": f.is_custom, "bulk_edit_allowed": true,
        "searchable_flag": f.is_custom, "filtering_allowed": true, "sortable_flag": true,
        "mandatory_flag": false, "options": options(f),
    })
}

pub fn field_v2(f: &Field) -> Value {
    let subfields = match f.field_type.as_str() {
        "monetary" => {
            json!([{"field_code": format!("{}_currency", f.key), "field_name": "Currency", "field_type": "varchar"}])
        }
        "address" => {
            json!([{"field_code": format!("{}_locality", f.key), "field_name": "City/town/village/locality", "field_type": "varchar"},
                            {"field_code": format!("{}_country", f.key), "field_name": "Country", "field_type": "varchar"}])
        }
        _ => Value::Null,
    };
    json!({
        "field_name": f.name, "field_code": f.key, "description": null, "field_type": f.field_type,
        "options": options(f), "subfields": subfields, "is_custom_field": f.is_custom,
        "is_optional_response_field": false,
    })
}

/// The v2 person, serialized straight from the record: the hot path of every backfill, so it
/// skips building a `serde_json::Value` tree (which cost most of a 500-person page's time).
pub struct PersonV2Ref<'a> {
    pub world: &'a World,
    pub person: &'a Person,
    pub opts: &'a V2Opts,
    pub counts: Option<DealCounts>,
}

struct LabeledList<'a>(&'a [Labeled]);

impl serde::Serialize for LabeledList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct One<'b>(&'b Labeled);
        impl serde::Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("value", &self.0.value)?;
                m.serialize_entry("primary", &self.0.primary)?;
                m.serialize_entry("label", &self.0.label)?;
                m.end()
            }
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for l in self.0 {
            seq.serialize_element(&One(l))?;
        }
        seq.end()
    }
}

struct CustomV2<'a> {
    fields: &'a [Field],
    values: &'a BTreeMap<String, Value>,
    labels: bool,
}

impl serde::Serialize for CustomV2<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for f in self.fields.iter().filter(|f| f.is_custom) {
            let v = self.values.get(&f.key);
            match (self.labels, f.field_type.as_str(), v) {
                (true, "enum" | "set", Some(_)) => {
                    // Rare (include_option_labels): reuse the Value path.
                    let one = custom_v2(std::slice::from_ref(f), self.values, true);
                    m.serialize_entry(&f.key, &one[&f.key])?;
                }
                (_, _, Some(v)) => m.serialize_entry(&f.key, v)?,
                (_, _, None) => m.serialize_entry(&f.key, &Value::Null)?,
            }
        }
        m.end()
    }
}

impl serde::Serialize for PersonV2Ref<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = self.person;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &p.id)?;
        m.serialize_entry("name", &p.name)?;
        m.serialize_entry("first_name", &p.first_name)?;
        m.serialize_entry("last_name", &p.last_name)?;
        m.serialize_entry("owner_id", &p.owner_id)?;
        m.serialize_entry("org_id", &p.org_id)?;
        m.serialize_entry("add_time", &t2(p.add_time))?;
        m.serialize_entry("update_time", &t2(p.update_time))?;
        m.serialize_entry("emails", &LabeledList(&p.emails))?;
        m.serialize_entry("phones", &LabeledList(&p.phones))?;
        m.serialize_entry("is_deleted", &p.is_deleted)?;
        m.serialize_entry("visible_to", &p.visible_to)?;
        m.serialize_entry("label_ids", &p.label_ids)?;
        m.serialize_entry("picture_id", &Value::Null)?;
        m.serialize_entry(
            "custom_fields",
            &CustomV2 {
                fields: &self.world.person_fields,
                values: &p.custom_fields,
                labels: self.opts.option_labels,
            },
        )?;
        if let Some(c) = self.counts {
            for (name, n) in [
                ("open_deals_count", c.open),
                ("won_deals_count", c.won),
                ("lost_deals_count", c.lost),
                ("closed_deals_count", c.won + c.lost),
            ] {
                if self.opts.include.iter().any(|i| i == name) {
                    m.serialize_entry(name, &n)?;
                }
            }
            if self.opts.include.iter().any(|i| i == "marketing_status") {
                m.serialize_entry("marketing_status", &p.marketing_status)?;
            }
        }
        m.end()
    }
}

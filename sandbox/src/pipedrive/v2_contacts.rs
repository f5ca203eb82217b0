//! API v2 persons and organizations: list (cursor pages), get, create, update (PATCH), delete (soft).

use std::collections::HashMap;

use axum::extract::{Path, Query as Q, State};
use axum::response::Response;
use axum::{Extension, Json};
use serde_json::{Map, Value, json};

use super::custom;
use super::gate::{Caller, Query};
use super::listing::{V2List, object_body, opt_str, opt_u64};
use super::model::*;
use super::render::{
    DealCounts, PersonV2Ref, V2Opts, organization_v1, organization_v2, person_v1, person_v2,
};
use super::reply::{bad_request, bool_param, int_param, not_found, ok, ok_with};
use super::state::{Pipedrive, World};
use super::webhooks::Action;

fn v2_opts(q: &Query) -> Result<V2Opts, Response> {
    Ok(V2Opts {
        option_labels: bool_param("include_option_labels", q.get("include_option_labels"))?
            .unwrap_or(false),
        include: q
            .get("include_fields")
            .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect())
            .unwrap_or_default(),
    })
}

fn parse_id(raw: &str) -> Result<u64, Response> {
    raw.parse().map_err(|_| bad_request("The id must be an integer"))
}

/// Deal counts per person, computed once per request when `include_fields` asks for them.
fn deal_counts(w: &World) -> HashMap<u64, DealCounts> {
    let mut out: HashMap<u64, DealCounts> = HashMap::new();
    for d in w.deals.values().filter(|d| !d.is_deleted) {
        if let Some(p) = d.person_id {
            let c = out.entry(p).or_default();
            match d.status.as_str() {
                "won" => c.won += 1,
                "lost" => c.lost += 1,
                _ => c.open += 1,
            }
        }
    }
    out
}

pub async fn list_persons(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let (list, opts) = match (V2List::parse(&q, 500), v2_opts(&q)) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let org_id = match int_param("org_id", q.get("org_id")) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let deal_id = match int_param("deal_id", q.get("deal_id")) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let w = pd.world();
    let deal_person = deal_id.map(|d| w.deals.get(d).and_then(|d| d.person_id));
    let counts = (!opts.include.is_empty()).then(|| deal_counts(&w));
    let (rows, next) = list.page(&w.persons, |p| {
        !p.is_deleted
            && org_id.is_none_or(|o| p.org_id == Some(o))
            && deal_person.is_none_or(|dp| dp == Some(p.id))
    });
    let data: Vec<PersonV2Ref<'_>> = rows
        .into_iter()
        .map(|p| PersonV2Ref {
            world: &w,
            person: p,
            opts: &opts,
            counts: counts.as_ref().map(|c| c.get(&p.id).copied().unwrap_or_default()),
        })
        .collect();
    super::reply::ok_page(&data, next)
}

pub async fn get_person(
    State(pd): State<Pipedrive>,
    Path(id): Path<String>,
    Q(q): Q<Query>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let opts = match v2_opts(&q) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let w = pd.world();
    match w.persons.get(id) {
        Some(p) => {
            let counts = (!opts.include.is_empty())
                .then(|| deal_counts(&w).get(&id).copied().unwrap_or_default());
            ok(person_v2(&w, p, &opts, counts))
        }
        None => not_found("Person"),
    }
}

fn labeled_list(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<Labeled>>, Response> {
    let Some(v) = m.get(key) else { return Ok(None) };
    let Some(items) = v.as_array() else {
        return Err(bad_request(format!("\"{key}\" must be an array of objects with \"value\"")));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let value = item
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request(format!("\"{key}[{i}].value\" must be a string")))?;
        let primary = match item.get("primary") {
            None => i == 0,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(bad_request(format!("\"{key}[{i}].primary\" must be a boolean")));
            }
        };
        let label = item.get("label").and_then(Value::as_str).unwrap_or("work").to_owned();
        out.push(Labeled { value: value.to_owned(), primary, label });
    }
    Ok(Some(out))
}

/// Applies a v2 person body; `name` is required when creating.
pub(super) fn apply_person(
    w: &World,
    p: &mut Person,
    m: &Map<String, Value>,
    creating: bool,
) -> Result<(), Response> {
    match opt_str(m, "name")? {
        Some(Some(name)) if !name.trim().is_empty() => {
            p.name = name.trim().to_owned();
            let mut parts = p.name.splitn(2, ' ');
            p.first_name = parts.next().map(str::to_owned);
            p.last_name = parts.next().map(str::to_owned);
        }
        None if !creating => {}
        _ => return Err(bad_request("\"name\" is required")),
    }
    if let Some(Some(owner)) = opt_u64(m, "owner_id")? {
        if w.user(owner).is_none() {
            return Err(bad_request(format!("User with id {owner} does not exist")));
        }
        p.owner_id = owner;
    }
    if let Some(org) = opt_u64(m, "org_id")? {
        if let Some(id) = org
            && w.organizations.get(id).is_none_or(|o| o.is_deleted)
        {
            return Err(bad_request(format!("Organization with id {id} does not exist")));
        }
        p.org_id = org;
    }
    if let Some(emails) = labeled_list(m, "emails")? {
        p.emails = emails;
    }
    if let Some(phones) = labeled_list(m, "phones")? {
        p.phones = phones;
    }
    if let Some(v) = opt_u64(m, "visible_to")? {
        match v {
            Some(n @ (1 | 3 | 5 | 7)) => p.visible_to = n as u8,
            _ => return Err(bad_request("\"visible_to\" must be one of 1, 3, 5, 7")),
        }
    }
    if let Some(status) = opt_str(m, "marketing_status")? {
        match status.as_deref() {
            Some("no_consent" | "unsubscribed" | "subscribed" | "archived") | None => {
                p.marketing_status = status
            }
            Some(other) => {
                return Err(bad_request(format!(
                    "\"marketing_status\" value '{other}' is not allowed"
                )));
            }
        }
    }
    custom::apply(&w.person_fields, &mut p.custom_fields, m)
}

pub async fn create_person(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        let id = w.persons.next_id;
        let mut p = Person::blank(id, caller.user_id, now);
        if let Err(e) = apply_person(w, &mut p, &m, true) {
            return e;
        }
        w.persons.put(p);
        let p = w.persons.get(id).expect("just inserted");
        let (v2, v1) = (person_v2(w, p, &V2Opts::default(), None), person_v1(w, p, true));
        w.emit(
            Action::Create,
            EntityKind::Person,
            id,
            caller.user_id,
            now,
            (None, Some(v2.clone())),
            (None, Some(v1)),
        );
        ok(v2)
    })
}

pub async fn update_person(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        let Some(before) = w.persons.get(id).filter(|p| !p.is_deleted).cloned() else {
            return not_found("Person");
        };
        let mut p = before.clone();
        if let Err(e) = apply_person(w, &mut p, &m, false) {
            return e;
        }
        p.update_time = now;
        let (b2, b1) =
            (person_v2(w, &before, &V2Opts::default(), None), person_v1(w, &before, true));
        w.persons.put(p);
        let p = w.persons.get(id).expect("just updated");
        let (a2, a1) = (person_v2(w, p, &V2Opts::default(), None), person_v1(w, p, true));
        w.emit(
            Action::Change,
            EntityKind::Person,
            id,
            caller.user_id,
            now,
            (Some(b2), Some(a2.clone())),
            (Some(b1), Some(a1)),
        );
        ok(a2)
    })
}

/// Soft delete (is_deleted / active_flag false), as the real API does for 30 days.
pub fn delete_person_in(w: &mut World, id: u64, user_id: u64, now: time::OffsetDateTime) -> bool {
    let Some(before) = w.persons.get(id).filter(|p| !p.is_deleted).cloned() else {
        return false;
    };
    let (b2, b1) = (person_v2(w, &before, &V2Opts::default(), None), person_v1(w, &before, true));
    w.persons.update(id, |p| {
        p.is_deleted = true;
        p.update_time = now;
    });
    w.emit(
        Action::Delete,
        EntityKind::Person,
        id,
        user_id,
        now,
        (Some(b2), None),
        (Some(b1), None),
    );
    true
}

pub async fn delete_person(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        if delete_person_in(w, id, caller.user_id, now) {
            ok(json!({"id": id}))
        } else {
            not_found("Person")
        }
    })
}

pub async fn list_organizations(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let (list, opts) = match (V2List::parse(&q, 500), v2_opts(&q)) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let w = pd.world();
    let (rows, next) = list.page(&w.organizations, |o| !o.is_deleted);
    let data: Vec<Value> = rows.into_iter().map(|o| organization_v2(&w, o, &opts)).collect();
    ok_with(json!(data), json!({"next_cursor": next}))
}

pub async fn get_organization(
    State(pd): State<Pipedrive>,
    Path(id): Path<String>,
    Q(q): Q<Query>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let opts = match v2_opts(&q) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let w = pd.world();
    w.organizations
        .get(id)
        .map(|o| ok(organization_v2(&w, o, &opts)))
        .unwrap_or_else(|| not_found("Organization"))
}

pub(super) fn apply_org(
    w: &World,
    o: &mut Organization,
    m: &Map<String, Value>,
    creating: bool,
) -> Result<(), Response> {
    match opt_str(m, "name")? {
        Some(Some(name)) if !name.trim().is_empty() => o.name = name.trim().to_owned(),
        None if !creating => {}
        _ => return Err(bad_request("\"name\" is required")),
    }
    if let Some(Some(owner)) = opt_u64(m, "owner_id")? {
        if w.user(owner).is_none() {
            return Err(bad_request(format!("User with id {owner} does not exist")));
        }
        o.owner_id = owner;
    }
    if let Some(a) = m.get("address") {
        o.address = match a {
            Value::Null => None,
            Value::Object(obj) => Some(
                obj.get("value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad_request("\"address.value\" must be a string"))?
                    .to_owned(),
            ),
            _ => return Err(bad_request("\"address\" must be an object with \"value\"")),
        };
    }
    custom::apply(&w.organization_fields, &mut o.custom_fields, m)
}

pub async fn create_organization(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        let id = w.organizations.next_id;
        let mut o = Organization {
            id,
            name: String::new(),
            owner_id: caller.user_id,
            address: None,
            website: None,
            is_deleted: false,
            visible_to: 3,
            label_ids: vec![],
            add_time: now,
            update_time: now,
            custom_fields: Default::default(),
        };
        if let Err(e) = apply_org(w, &mut o, &m, true) {
            return e;
        }
        w.organizations.put(o);
        let o = w.organizations.get(id).expect("just inserted");
        let (v2, v1) = (organization_v2(w, o, &V2Opts::default()), organization_v1(w, o, true));
        w.emit(
            Action::Create,
            EntityKind::Organization,
            id,
            caller.user_id,
            now,
            (None, Some(v2.clone())),
            (None, Some(v1)),
        );
        ok(v2)
    })
}

pub async fn update_organization(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        let Some(before) = w.organizations.get(id).filter(|o| !o.is_deleted).cloned() else {
            return not_found("Organization");
        };
        let mut o = before.clone();
        if let Err(e) = apply_org(w, &mut o, &m, false) {
            return e;
        }
        o.update_time = now;
        let (b2, b1) =
            (organization_v2(w, &before, &V2Opts::default()), organization_v1(w, &before, true));
        w.organizations.put(o);
        let o = w.organizations.get(id).expect("just updated");
        let (a2, a1) = (organization_v2(w, o, &V2Opts::default()), organization_v1(w, o, true));
        w.emit(
            Action::Change,
            EntityKind::Organization,
            id,
            caller.user_id,
            now,
            (Some(b2), Some(a2.clone())),
            (Some(b1), Some(a1)),
        );
        ok(a2)
    })
}

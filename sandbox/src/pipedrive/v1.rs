//! API v1: users/me, leads, recents, field lists, merge, and the deprecated v1 entity endpoints
//! (out of support since 2026-08-01 but still answering, as the real service may).

use axum::extract::{Path, Query as Q, State};
use axum::response::Response;
use axum::{Extension, Json};
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use super::gate::{Caller, Query};
use super::listing::{object_body, v1_pagination, v1_window};
use super::model::*;
use super::render::*;
use super::reply::{bad_request, created, not_found, ok, ok_with};
use super::state::{Pipedrive, World};
use super::v2_contacts::apply_person;
use super::webhooks::Action;

pub async fn users_me(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let w = pd.world();
    let Some(u) = w.user(caller.user_id) else { return super::reply::unauthorized() };
    let c = w.company();
    ok(json!({
        "id": u.id, "name": u.name, "email": u.email, "default_currency": "EUR", "locale": "en_US", "lang": 1,
        "phone": null, "activated": true, "last_login": null, "created": "2024-01-01 00:00:00", "modified": null,
        "has_created_company": u.is_admin, "access": [{"app": "sales", "admin": u.is_admin, "permission_set_id": "1"}],
        "active_flag": true, "timezone_name": "Europe/Tallinn", "timezone_offset": "+02:00", "role_id": 1,
        "icon_url": null, "is_you": true, "is_admin": if u.is_admin { 1 } else { 0 },
        "company_id": c.id, "company_name": c.name, "company_domain": c.domain, "company_country": "EE",
        "company_industry": "Software", "language": {"language_code": "en", "country_code": "US"},
    }))
}

fn window<'a, T: 'a>(
    items: impl Iterator<Item = &'a T>,
    q: &Query,
) -> Result<(Vec<&'a T>, Value), Response> {
    let (start, limit) = v1_window(q)?;
    let mut page: Vec<&T> = items.skip(start).take(limit + 1).collect();
    let more = page.len() > limit;
    page.truncate(limit);
    Ok((page, v1_pagination(start, limit, more)))
}

pub async fn list_persons(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let w = pd.world();
    match window(w.persons.values().filter(|p| !p.is_deleted), &q) {
        Ok((page, more)) => ok_with(
            json!(page.into_iter().map(|p| person_v1(&w, p, false)).collect::<Vec<_>>()),
            more,
        ),
        Err(e) => e,
    }
}

pub async fn get_person(State(pd): State<Pipedrive>, Path(id): Path<u64>) -> Response {
    let w = pd.world();
    w.persons.get(id).map(|p| ok(person_v1(&w, p, false))).unwrap_or_else(|| not_found("Person"))
}

/// A v1 person body (`email` / `phone` as strings or arrays) in v2 words.
fn v1_person_body(m: Map<String, Value>) -> Map<String, Value> {
    let mut out = m.clone();
    for (v1, v2) in [("email", "emails"), ("phone", "phones")] {
        if let Some(v) = m.get(v1) {
            let list = match v {
                Value::String(s) => json!([{"value": s, "primary": true}]),
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|i| if i.is_string() { json!({"value": i}) } else { i.clone() })
                        .collect(),
                ),
                other => other.clone(),
            };
            out.insert(v2.into(), list);
            out.remove(v1);
        }
    }
    out
}

pub async fn create_person(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => v1_person_body(m),
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
            (None, Some(v2)),
            (None, Some(v1)),
        );
        created(person_v1(w, w.persons.get(id).expect("exists"), false))
    })
}

pub async fn update_person(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => v1_person_body(m),
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
        let p = w.persons.get(id).expect("exists");
        let (a2, a1) = (person_v2(w, p, &V2Opts::default(), None), person_v1(w, p, true));
        w.emit(
            Action::Change,
            EntityKind::Person,
            id,
            caller.user_id,
            now,
            (Some(b2), Some(a2)),
            (Some(b1), Some(a1)),
        );
        ok(person_v1(w, w.persons.get(id).expect("exists"), false))
    })
}

pub async fn delete_person(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Response {
    pd.mutate(|w, now| {
        if super::v2_contacts::delete_person_in(w, id, caller.user_id, now) {
            ok(json!({"id": id}))
        } else {
            not_found("Person")
        }
    })
}

pub async fn list_deals(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let w = pd.world();
    let status = q.get("status").cloned().unwrap_or_else(|| "all_not_deleted".into());
    let keep = |d: &&Deal| !d.is_deleted && (status == "all_not_deleted" || d.status == status);
    match window(w.deals.values().filter(keep), &q) {
        Ok((page, more)) => ok_with(
            json!(page.into_iter().map(|d| deal_v1(&w, d, false)).collect::<Vec<_>>()),
            more,
        ),
        Err(e) => e,
    }
}

pub async fn update_deal(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        let r = super::v2_deals::update_deal_in(w, id, &m, caller.user_id, now);
        if r.status().is_success() {
            ok(deal_v1(w, w.deals.get(id).expect("exists"), false))
        } else {
            r
        }
    })
}

pub async fn list_organizations(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let w = pd.world();
    match window(w.organizations.values().filter(|o| !o.is_deleted), &q) {
        Ok((page, more)) => ok_with(
            json!(page.into_iter().map(|o| organization_v1(&w, o, false)).collect::<Vec<_>>()),
            more,
        ),
        Err(e) => e,
    }
}

pub async fn list_activities(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let w = pd.world();
    match window(w.activities.values().filter(|a| !a.is_deleted), &q) {
        Ok((page, more)) => {
            ok_with(json!(page.into_iter().map(|a| activity_v1(&w, a)).collect::<Vec<_>>()), more)
        }
        Err(e) => e,
    }
}

pub async fn list_pipelines(State(pd): State<Pipedrive>) -> Response {
    let w = pd.world();
    ok(json!(w.pipelines.values().filter(|p| !p.is_deleted).map(pipeline_v1).collect::<Vec<_>>()))
}

pub async fn list_stages(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let w = pd.world();
    let pipeline: Option<u64> = q.get("pipeline_id").and_then(|p| p.parse().ok());
    ok(json!(
        w.stages
            .values()
            .filter(|s| !s.is_deleted && pipeline.is_none_or(|p| s.pipeline_id == p))
            .map(|s| stage_v1(&w, s))
            .collect::<Vec<_>>()
    ))
}

pub async fn item_search(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let (term, types, exact) = match super::v2_misc::search_params(&q) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    let all = super::v2_misc::search(&pd, &term, &types, exact);
    match window(all.iter(), &q) {
        Ok((page, more)) => ok_with(json!({"items": page, "related_items": []}), more),
        Err(e) => e,
    }
}

fn fields_v1(fields: &[Field], q: &Query) -> Response {
    match window(fields.iter(), q) {
        Ok((page, more)) => {
            ok_with(json!(page.into_iter().map(field_v1).collect::<Vec<_>>()), more)
        }
        Err(e) => e,
    }
}

pub async fn person_fields(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    fields_v1(&pd.world().person_fields, &q)
}

pub async fn deal_fields(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    fields_v1(&pd.world().deal_fields, &q)
}

pub async fn organization_fields(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    fields_v1(&pd.world().organization_fields, &q)
}

pub async fn list_leads(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let w = pd.world();
    let since = q.get("updated_since").and_then(|s| {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    });
    let keep =
        |l: &&Lead| !l.is_deleted && !l.is_archived && since.is_none_or(|s| l.update_time >= s);
    match window(w.leads.iter().filter(keep), &q) {
        Ok((page, more)) => {
            // `GET /leads` documents start/limit/more_items directly in additional_data (§4.1).
            let p = more["pagination"].clone();
            ok_with(json!(page.into_iter().map(lead_v1).collect::<Vec<_>>()), p)
        }
        Err(e) => e,
    }
}

pub async fn create_lead(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let Some(title) = m.get("title").and_then(Value::as_str).filter(|t| !t.trim().is_empty())
    else {
        return bad_request("\"title\" is required");
    };
    let person_id = m.get("person_id").and_then(Value::as_u64);
    let organization_id = m.get("organization_id").and_then(Value::as_u64);
    if person_id.is_none() && organization_id.is_none() {
        return bad_request("A lead must be linked to a person or an organization");
    }
    let value = match m.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => match (
            v.get("amount").and_then(Value::as_f64),
            v.get("currency").and_then(Value::as_str),
        ) {
            (Some(a), Some(c)) => Some((a, c.to_owned())),
            _ => {
                return bad_request("\"value\" must be an object with \"amount\" and \"currency\"");
            }
        },
    };
    pd.mutate(|w, now| {
        if person_id.is_some_and(|p| w.persons.get(p).is_none_or(|p| p.is_deleted)) {
            return bad_request("Person not found");
        }
        let lead = Lead {
            id: uuid::Uuid::new_v4().to_string(),
            title: title.trim().into(),
            owner_id: caller.user_id,
            creator_id: caller.user_id,
            person_id,
            organization_id,
            value,
            label_ids: vec![],
            source_name: "API".into(),
            is_archived: false,
            was_seen: false,
            expected_close_date: m
                .get("expected_close_date")
                .and_then(Value::as_str)
                .map(str::to_owned),
            add_time: now,
            update_time: now,
            is_deleted: false,
        };
        let view = lead_v1(&lead);
        w.leads.push(lead);
        created(view)
    })
}

fn parse_v1_time(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(
        s,
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()
    .map(|t| t.assume_utc())
}

/// `/v1/recents`: v1-shaped changes after `since_timestamp` (exclusive), reaching back one month
/// at most, whatever is asked (§8).
pub async fn recents(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let Some(raw) = q.get("since_timestamp") else {
        return bad_request("Parameter 'since_timestamp' is required");
    };
    let Some(asked) = parse_v1_time(raw) else {
        return bad_request(
            "Parameter 'since_timestamp' must be in the format YYYY-MM-DD HH:MM:SS",
        );
    };
    let now = pd.now();
    let since = asked.max(now - Duration::days(30));
    let items: Vec<String> = q
        .get("items")
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect())
        .unwrap_or_default();
    let want = |t: &str| items.is_empty() || items.iter().any(|i| i == t);
    let w = pd.world();
    let mut found: Vec<(OffsetDateTime, &'static str, u64, Value)> = Vec::new();
    let later = |t: OffsetDateTime| t > since;
    if want("person") {
        found.extend(
            w.persons
                .values()
                .filter(|p| later(p.update_time))
                .map(|p| (p.update_time, "person", p.id, person_v1(&w, p, true))),
        );
    }
    if want("deal") {
        found.extend(
            w.deals
                .values()
                .filter(|d| later(d.update_time))
                .map(|d| (d.update_time, "deal", d.id, deal_v1(&w, d, true))),
        );
    }
    if want("organization") {
        found.extend(
            w.organizations
                .values()
                .filter(|o| later(o.update_time))
                .map(|o| (o.update_time, "organization", o.id, organization_v1(&w, o, true))),
        );
    }
    if want("activity") {
        found.extend(
            w.activities
                .values()
                .filter(|a| later(a.update_time))
                .map(|a| (a.update_time, "activity", a.id, activity_v1(&w, a))),
        );
    }
    found.sort_by_key(|(t, _, id, _)| (*t, *id));
    let (start, limit) = match v1_window(&q) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let page: Vec<_> = found.iter().skip(start).take(limit).collect();
    let more = start + limit < found.len();
    let last = page.last().map(|(t, ..)| t1(*t));
    let data: Vec<Value> = page
        .iter()
        .map(|(_, item, id, data)| json!({"item": item, "id": id, "data": data}))
        .collect();
    let mut additional = v1_pagination(start, limit, more);
    additional["since_timestamp"] = json!(t1(since));
    additional["last_timestamp_on_page"] = json!(last);
    ok_with(json!(data), additional)
}

/// `PUT /v1/persons/{id}/merge`: the person in the URL is merged away into `merge_with_id`, which
/// keeps its values and takes the other's where it has none; deals and activities move (§12).
pub async fn merge_persons(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let Some(into) = m.get("merge_with_id").and_then(Value::as_u64) else {
        return bad_request("\"merge_with_id\" is required");
    };
    if into == id {
        return bad_request("A person cannot be merged with itself");
    }
    pd.mutate(|w, now| merge_in(w, id, into, caller.user_id, now))
}

pub fn merge_in(w: &mut World, id: u64, into: u64, user_id: u64, now: OffsetDateTime) -> Response {
    let (Some(gone), Some(kept)) = (
        w.persons.get(id).filter(|p| !p.is_deleted).cloned(),
        w.persons.get(into).filter(|p| !p.is_deleted).cloned(),
    ) else {
        return not_found("Person");
    };
    let mut merged = kept.clone();
    for e in &gone.emails {
        if !merged.emails.iter().any(|x| x.value == e.value) {
            merged.emails.push(Labeled { primary: merged.emails.is_empty(), ..e.clone() });
        }
    }
    for p in &gone.phones {
        if !merged.phones.iter().any(|x| x.value == p.value) {
            merged.phones.push(Labeled { primary: merged.phones.is_empty(), ..p.clone() });
        }
    }
    merged.org_id = merged.org_id.or(gone.org_id);
    for (k, v) in &gone.custom_fields {
        merged.custom_fields.entry(k.clone()).or_insert_with(|| v.clone());
    }
    merged.update_time = now;
    let deal_ids: Vec<u64> =
        w.deals.values().filter(|d| d.person_id == Some(id)).map(|d| d.id).collect();
    for d in deal_ids {
        w.deals.update(d, |d| {
            d.person_id = Some(into);
            d.update_time = now;
        });
    }
    let act_ids: Vec<u64> =
        w.activities.values().filter(|a| a.person_id == Some(id)).map(|a| a.id).collect();
    for a in act_ids {
        w.activities.update(a, |a| {
            a.person_id = Some(into);
            a.update_time = now;
        });
    }
    let (g2, g1) = (person_v2(w, &gone, &V2Opts::default(), None), person_v1(w, &gone, true));
    let (b2, b1) = (person_v2(w, &kept, &V2Opts::default(), None), person_v1(w, &kept, true));
    w.persons.update(id, |p| {
        p.is_deleted = true;
        p.update_time = now;
    });
    w.persons.put(merged);
    let survivor = w.persons.get(into).expect("exists");
    let (a2, a1) = (person_v2(w, survivor, &V2Opts::default(), None), person_v1(w, survivor, true));
    // v2: a delete with merged_to_id, then a change with merged_from_id (§10.3).
    w.emit(
        Action::Delete,
        EntityKind::Person,
        id,
        user_id,
        now,
        (Some(g2), None),
        (Some(g1), None),
    );
    if let Some(c) = w.pending.last_mut() {
        c.merged_to_id = Some(into);
    }
    w.emit(
        Action::Change,
        EntityKind::Person,
        into,
        user_id,
        now,
        (Some(b2), Some(a2)),
        (Some(b1), Some(a1.clone())),
    );
    if let Some(c) = w.pending.last_mut() {
        c.merged_from_id = Some(id);
    }
    let mut data = a1;
    data["merge_what_id"] = json!(id);
    ok(data)
}

/// v1 creates share the v2 rules and answer in v1 form with 201 (the v1 spec's status).
async fn as_v1_created(
    pd: &Pipedrive,
    v2_answer: Response,
    render: impl Fn(&World, u64) -> Option<Value>,
) -> Response {
    if !v2_answer.status().is_success() {
        return v2_answer;
    }
    let Ok(bytes) = axum::body::to_bytes(v2_answer.into_body(), 1 << 20).await else {
        return super::reply::error(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        );
    };
    let id = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["data"]["id"].as_u64());
    let w = pd.world();
    match id.and_then(|id| render(&w, id)) {
        Some(view) => created(view),
        None => {
            super::reply::error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

pub async fn create_deal(
    State(pd): State<Pipedrive>,
    caller: Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let answer = super::v2_deals::create_deal(State(pd.clone()), caller, body).await;
    as_v1_created(&pd, answer, |w, id| w.deals.get(id).map(|d| deal_v1(w, d, false))).await
}

pub async fn create_organization(
    State(pd): State<Pipedrive>,
    caller: Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let answer = super::v2_contacts::create_organization(State(pd.clone()), caller, body).await;
    as_v1_created(&pd, answer, |w, id| {
        w.organizations.get(id).map(|o| organization_v1(w, o, false))
    })
    .await
}

pub async fn create_activity(
    State(pd): State<Pipedrive>,
    caller: Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let answer = super::v2_deals::create_activity(State(pd.clone()), caller, body).await;
    as_v1_created(&pd, answer, |w, id| w.activities.get(id).map(|a| activity_v1(w, a))).await
}

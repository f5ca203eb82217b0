//! API v2 pipelines, stages, field definitions and itemSearch.

use axum::extract::{Path, Query as Q, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::gate::Query;
use super::listing::V2List;
use super::model::Field;
use super::render::{field_v2, pipeline_v2, stage_v2};
use super::reply::{bad_request, bool_param, int_param, not_found, ok, ok_with};
use super::state::Pipedrive;

pub async fn list_pipelines(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let list = match V2List::parse(&q, 500) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let w = pd.world();
    let (rows, next) = list.page(&w.pipelines, |p| !p.is_deleted);
    ok_with(
        json!(rows.into_iter().map(pipeline_v2).collect::<Vec<_>>()),
        json!({"next_cursor": next}),
    )
}

pub async fn get_pipeline(State(pd): State<Pipedrive>, Path(id): Path<u64>) -> Response {
    pd.world()
        .pipelines
        .get(id)
        .map(|p| ok(pipeline_v2(p)))
        .unwrap_or_else(|| not_found("Pipeline"))
}

pub async fn list_stages(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let list = match V2List::parse(&q, 500) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let pipeline = match int_param("pipeline_id", q.get("pipeline_id")) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let w = pd.world();
    let (rows, next) =
        list.page(&w.stages, |s| !s.is_deleted && pipeline.is_none_or(|p| s.pipeline_id == p));
    ok_with(json!(rows.into_iter().map(stage_v2).collect::<Vec<_>>()), json!({"next_cursor": next}))
}

pub async fn get_stage(State(pd): State<Pipedrive>, Path(id): Path<u64>) -> Response {
    pd.world().stages.get(id).map(|s| ok(stage_v2(s))).unwrap_or_else(|| not_found("Stage"))
}

/// Field lists page with an offset cursor (they are small and have no update order).
fn fields_page(fields: &[Field], q: &Query) -> Response {
    let limit = match int_param("limit", q.get("limit")) {
        Ok(l) => l.unwrap_or(100).clamp(1, 500) as usize,
        Err(e) => return e,
    };
    let start = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["offset"].as_u64())
        {
            Some(o) => o as usize,
            None => return bad_request("Invalid cursor"),
        },
    };
    let page: Vec<Value> = fields.iter().skip(start).take(limit).map(field_v2).collect();
    let next = (start + limit < fields.len())
        .then(|| URL_SAFE_NO_PAD.encode(json!({"offset": start + limit}).to_string()));
    ok_with(json!(page), json!({"next_cursor": next}))
}

pub async fn person_fields(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    fields_page(&pd.world().person_fields, &q)
}

pub async fn organization_fields(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    fields_page(&pd.world().organization_fields, &q)
}

pub async fn deal_fields(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    fields_page(&pd.world().deal_fields, &q)
}

/// Search results: (score, item) over persons, organizations, deals, leads.
pub fn search(pd: &Pipedrive, term: &str, types: &[&str], exact: bool) -> Vec<Value> {
    let term_l = term.to_lowercase();
    let hit = |text: &str| {
        if exact { text.to_lowercase() == term_l } else { text.to_lowercase().contains(&term_l) }
    };
    let w = pd.world();
    let mut out = Vec::new();
    let want = |t: &str| types.is_empty() || types.contains(&t);
    if want("person") {
        for p in w.persons.values().filter(|p| !p.is_deleted) {
            let emails: Vec<&str> = p.emails.iter().map(|e| e.value.as_str()).collect();
            let phones: Vec<&str> = p.phones.iter().map(|e| e.value.as_str()).collect();
            if hit(&p.name) || emails.iter().any(|e| hit(e)) || phones.iter().any(|e| hit(e)) {
                let org = p
                    .org_id
                    .and_then(|id| w.organizations.get(id))
                    .map(|o| json!({"id": o.id, "name": o.name, "address": o.address}));
                out.push(json!({"result_score": if hit(&p.name) { 1.0 } else { 0.8 }, "item": {
                    "id": p.id, "type": "person", "name": p.name, "phones": phones, "emails": emails,
                    "visible_to": p.visible_to, "owner": {"id": p.owner_id}, "organization": org,
                    "custom_fields": [], "notes": [] }}));
            }
        }
    }
    if want("organization") {
        for o in w.organizations.values().filter(|o| !o.is_deleted && hit(&o.name)) {
            out.push(json!({"result_score": 1.0, "item": {"id": o.id, "type": "organization", "name": o.name, "address": o.address,
                "visible_to": o.visible_to, "owner": {"id": o.owner_id}, "custom_fields": [], "notes": []}}));
        }
    }
    if want("deal") {
        for d in w.deals.values().filter(|d| !d.is_deleted && hit(&d.title)) {
            let stage = w.stages.get(d.stage_id).map(|s| json!({"id": s.id, "name": s.name}));
            let person = d
                .person_id
                .and_then(|id| w.persons.get(id))
                .map(|p| json!({"id": p.id, "name": p.name}));
            let org = d
                .org_id
                .and_then(|id| w.organizations.get(id))
                .map(|o| json!({"id": o.id, "name": o.name, "address": o.address}));
            out.push(json!({"result_score": 1.0, "item": {"id": d.id, "type": "deal", "title": d.title, "value": d.value,
                "currency": d.currency, "status": d.status, "visible_to": d.visible_to, "owner": {"id": d.owner_id},
                "stage": stage, "person": person, "organization": org, "custom_fields": [], "notes": [], "is_archived": false}}));
        }
    }
    if want("lead") {
        for l in w.leads.iter().filter(|l| !l.is_deleted && hit(&l.title)) {
            out.push(json!({"result_score": 1.0, "item": {"id": l.id, "type": "lead", "title": l.title, "owner": {"id": l.owner_id},
                "person": l.person_id.map(|id| json!({"id": id})), "organization": null, "is_archived": l.is_archived}}));
        }
    }
    out
}

pub const ITEM_TYPES: &[&str] =
    &["deal", "person", "organization", "product", "lead", "file", "mail_attachment", "project"];

/// Validated `term` / `item_types` / `exact_match` of a search request.
pub fn search_params(q: &Query) -> Result<(String, Vec<String>, bool), Response> {
    let exact = bool_param("exact_match", q.get("exact_match"))?.unwrap_or(false);
    let term = q.get("term").map(|t| t.trim().to_owned()).unwrap_or_default();
    if term.chars().count() < if exact { 1 } else { 2 } {
        return Err(bad_request(
            "Parameter 'term' must be at least 2 characters long (1 with exact_match)",
        ));
    }
    let types: Vec<String> = q
        .get("item_types")
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    if let Some(bad) = types.iter().find(|t| !ITEM_TYPES.contains(&t.as_str())) {
        return Err(bad_request(format!("Invalid item_types value '{bad}'")));
    }
    Ok((term, types, exact))
}

pub async fn item_search(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let (term, types, exact) = match search_params(&q) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let limit = match int_param("limit", q.get("limit")) {
        Ok(l) => l.unwrap_or(100),
        Err(e) => return e,
    };
    if limit == 0 || limit > 100 {
        return bad_request("Parameter 'limit' must be between 1 and 100");
    }
    let start = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["offset"].as_u64())
        {
            Some(o) => o as usize,
            None => return bad_request("Invalid cursor"),
        },
    };
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    let all = search(&pd, &term, &types, exact);
    let limit = limit as usize;
    let items: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let next = (start + limit < all.len())
        .then(|| URL_SAFE_NO_PAD.encode(json!({"offset": start + limit}).to_string()));
    ok_with(json!({"items": items, "related_items": []}), json!({"next_cursor": next}))
}

//! API v2 deals and activities: list (cursor pages, filters), get, create, update, delete (soft).

use axum::extract::{Path, Query as Q, State};
use axum::response::Response;
use axum::{Extension, Json};
use serde_json::{Map, Value, json};

use super::custom;
use super::gate::{Caller, Query};
use super::listing::{V2List, object_body, opt_str, opt_u64};
use super::model::*;
use super::render::{V2Opts, activity_v1, activity_v2, deal_v1, deal_v2};
use super::reply::{bad_request, bool_param, int_param, not_found, ok, ok_with};
use super::state::{Pipedrive, World};
use super::webhooks::Action;

fn parse_id(raw: &str) -> Result<u64, Response> {
    raw.parse().map_err(|_| bad_request("The id must be an integer"))
}

pub async fn list_deals(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let list = match V2List::parse(&q, 500) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let opts = V2Opts {
        option_labels: q.get("include_option_labels").is_some_and(|v| v == "true"),
        include: vec![],
    };
    let mut filters = [None; 4];
    for (i, name) in ["person_id", "org_id", "pipeline_id", "stage_id"].iter().enumerate() {
        match int_param(name, q.get(*name)) {
            Ok(v) => filters[i] = v,
            Err(e) => return e,
        }
    }
    // Default: every status but deleted; `deleted` lists deals deleted within 30 days (§4.2).
    let statuses: Vec<String> = match q.get("status").filter(|s| !s.is_empty()) {
        None => vec!["open".into(), "won".into(), "lost".into()],
        Some(s) => s.split(',').map(|x| x.trim().to_owned()).collect(),
    };
    if let Some(bad) =
        statuses.iter().find(|s| !["open", "won", "lost", "deleted"].contains(&s.as_str()))
    {
        return bad_request(format!(
            "Invalid status value '{bad}'. Allowed values: open, won, lost, deleted"
        ));
    }
    let w = pd.world();
    let [person, org, pipeline, stage] = filters;
    let (rows, next) = list.page(&w.deals, |d| {
        let status_ok = if d.is_deleted {
            statuses.iter().any(|s| s == "deleted")
        } else {
            statuses.contains(&d.status)
        };
        status_ok
            && person.is_none_or(|p| d.person_id == Some(p))
            && org.is_none_or(|o| d.org_id == Some(o))
            && pipeline.is_none_or(|p| d.pipeline_id == p)
            && stage.is_none_or(|s| d.stage_id == s)
    });
    let data: Vec<Value> = rows.into_iter().map(|d| deal_v2(&w, d, &opts)).collect();
    ok_with(json!(data), json!({"next_cursor": next}))
}

pub async fn get_deal(State(pd): State<Pipedrive>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let w = pd.world();
    w.deals
        .get(id)
        .map(|d| ok(deal_v2(&w, d, &V2Opts::default())))
        .unwrap_or_else(|| not_found("Deal"))
}

fn apply_deal(
    w: &World,
    d: &mut Deal,
    m: &Map<String, Value>,
    creating: bool,
    now: time::OffsetDateTime,
) -> Result<(), Response> {
    match opt_str(m, "title")? {
        Some(Some(t)) if !t.trim().is_empty() => d.title = t.trim().to_owned(),
        None if !creating => {}
        _ => return Err(bad_request("\"title\" is required")),
    }
    if let Some(v) = m.get("value") {
        d.value = v.as_f64().ok_or_else(|| bad_request("\"value\" must be a number"))?;
    }
    if let Some(Some(c)) = opt_str(m, "currency")? {
        if c.len() != 3 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
            return Err(bad_request("\"currency\" must be a 3-letter ISO code"));
        }
        d.currency = c;
    }
    if let Some(p) = opt_u64(m, "person_id")? {
        if let Some(id) = p
            && w.persons.get(id).is_none_or(|p| p.is_deleted)
        {
            return Err(bad_request(format!("Person with id {id} does not exist")));
        }
        d.person_id = p;
    }
    if let Some(o) = opt_u64(m, "org_id")? {
        if let Some(id) = o
            && w.organizations.get(id).is_none_or(|o| o.is_deleted)
        {
            return Err(bad_request(format!("Organization with id {id} does not exist")));
        }
        d.org_id = o;
    }
    if let Some(Some(owner)) = opt_u64(m, "owner_id")? {
        d.owner_id = owner;
    }
    if let Some(Some(stage_id)) = opt_u64(m, "stage_id")? {
        let stage = w
            .stages
            .get(stage_id)
            .filter(|s| !s.is_deleted)
            .ok_or_else(|| bad_request(format!("Stage with id {stage_id} does not exist")))?;
        if stage_id != d.stage_id {
            d.stage_change_time = Some(now);
        }
        d.stage_id = stage_id;
        d.pipeline_id = stage.pipeline_id;
    } else if let Some(Some(pipeline_id)) = opt_u64(m, "pipeline_id")? {
        let first = w
            .stages
            .values()
            .filter(|s| s.pipeline_id == pipeline_id && !s.is_deleted)
            .min_by_key(|s| s.order_nr);
        let first = first
            .ok_or_else(|| bad_request(format!("Pipeline with id {pipeline_id} does not exist")))?;
        if first.id != d.stage_id {
            d.stage_change_time = Some(now);
        }
        d.pipeline_id = pipeline_id;
        d.stage_id = first.id;
    }
    if let Some(Some(status)) = opt_str(m, "status")? {
        if !["open", "won", "lost"].contains(&status.as_str()) {
            return Err(bad_request("\"status\" must be one of open, won, lost"));
        }
        if status != d.status {
            d.won_time = (status == "won").then_some(now);
            d.lost_time = (status == "lost").then_some(now);
            d.close_time = (status != "open").then_some(now);
        }
        d.status = status;
    }
    if let Some(reason) = opt_str(m, "lost_reason")? {
        d.lost_reason = reason;
    }
    if let Some(date) = opt_str(m, "expected_close_date")? {
        d.expected_close_date = date;
    }
    custom::apply(&w.deal_fields, &mut d.custom_fields, m)
}

pub async fn create_deal(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        let id = w.deals.next_id;
        let first_stage = w
            .stages
            .values()
            .filter(|s| !s.is_deleted)
            .min_by_key(|s| (s.pipeline_id, s.order_nr))
            .map(|s| (s.id, s.pipeline_id))
            .unwrap_or((1, 1));
        let mut d = Deal {
            id,
            title: String::new(),
            creator_user_id: caller.user_id,
            owner_id: caller.user_id,
            person_id: None,
            org_id: None,
            pipeline_id: first_stage.1,
            stage_id: first_stage.0,
            value: 0.0,
            currency: "EUR".into(),
            status: "open".into(),
            is_deleted: false,
            probability: None,
            lost_reason: None,
            visible_to: 3,
            expected_close_date: None,
            add_time: now,
            update_time: now,
            stage_change_time: None,
            won_time: None,
            lost_time: None,
            close_time: None,
            custom_fields: Default::default(),
        };
        if let Err(e) = apply_deal(w, &mut d, &m, true, now) {
            return e;
        }
        w.deals.put(d);
        let d = w.deals.get(id).expect("just inserted");
        let (v2, v1) = (deal_v2(w, d, &V2Opts::default()), deal_v1(w, d, true));
        w.emit(
            Action::Create,
            EntityKind::Deal,
            id,
            caller.user_id,
            now,
            (None, Some(v2.clone())),
            (None, Some(v1)),
        );
        ok(v2)
    })
}

pub fn update_deal_in(
    w: &mut World,
    id: u64,
    m: &Map<String, Value>,
    user_id: u64,
    now: time::OffsetDateTime,
) -> Response {
    let Some(before) = w.deals.get(id).filter(|d| !d.is_deleted).cloned() else {
        return not_found("Deal");
    };
    let mut d = before.clone();
    if let Err(e) = apply_deal(w, &mut d, m, false, now) {
        return e;
    }
    d.update_time = now;
    let (b2, b1) = (deal_v2(w, &before, &V2Opts::default()), deal_v1(w, &before, true));
    w.deals.put(d);
    let d = w.deals.get(id).expect("just updated");
    let (a2, a1) = (deal_v2(w, d, &V2Opts::default()), deal_v1(w, d, true));
    w.emit(
        Action::Change,
        EntityKind::Deal,
        id,
        user_id,
        now,
        (Some(b2), Some(a2.clone())),
        (Some(b1), Some(a1)),
    );
    ok(a2)
}

pub async fn update_deal(
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
    pd.mutate(|w, now| update_deal_in(w, id, &m, caller.user_id, now))
}

pub async fn delete_deal(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        let Some(before) = w.deals.get(id).filter(|d| !d.is_deleted).cloned() else {
            return not_found("Deal");
        };
        let (b2, b1) = (deal_v2(w, &before, &V2Opts::default()), deal_v1(w, &before, true));
        w.deals.update(id, |d| {
            d.is_deleted = true;
            d.update_time = now;
        });
        w.emit(
            Action::Delete,
            EntityKind::Deal,
            id,
            caller.user_id,
            now,
            (Some(b2), None),
            (Some(b1), None),
        );
        ok(json!({"id": id}))
    })
}

pub async fn list_activities(State(pd): State<Pipedrive>, Q(q): Q<Query>) -> Response {
    let list = match V2List::parse(&q, 500) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let mut filters = [None; 3];
    for (i, name) in ["deal_id", "person_id", "org_id"].iter().enumerate() {
        match int_param(name, q.get(*name)) {
            Ok(v) => filters[i] = v,
            Err(e) => return e,
        }
    }
    let done = match bool_param("done", q.get("done")) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let [deal, person, org] = filters;
    let w = pd.world();
    let (rows, next) = list.page(&w.activities, |a| {
        !a.is_deleted
            && deal.is_none_or(|d| a.deal_id == Some(d))
            && person.is_none_or(|p| a.person_id == Some(p))
            && org.is_none_or(|o| a.org_id == Some(o))
            && done.is_none_or(|d| a.done == d)
    });
    let data: Vec<Value> = rows.into_iter().map(activity_v2).collect();
    ok_with(json!(data), json!({"next_cursor": next}))
}

pub async fn get_activity(State(pd): State<Pipedrive>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let w = pd.world();
    w.activities.get(id).map(|a| ok(activity_v2(a))).unwrap_or_else(|| not_found("Activity"))
}

pub async fn create_activity(
    State(pd): State<Pipedrive>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<Value>>,
) -> Response {
    let m = match object_body(body) {
        Ok(m) => m,
        Err(e) => return e,
    };
    pd.mutate(|w, now| {
        let subject = match opt_str(&m, "subject") {
            Ok(s) => s.flatten(),
            Err(e) => return e,
        };
        let kind = match opt_str(&m, "type") {
            Ok(s) => s.flatten().unwrap_or_else(|| "task".into()),
            Err(e) => return e,
        };
        if !["call", "meeting", "email", "task", "deadline", "lunch"].contains(&kind.as_str()) {
            return bad_request(format!("Activity type '{kind}' does not exist"));
        }
        // The primary participant links the person on write (§6.5).
        let participant = m.get("participants").and_then(Value::as_array).and_then(|ps| {
            ps.iter()
                .find(|p| p.get("primary").and_then(Value::as_bool).unwrap_or(false))
                .or(ps.first())
                .and_then(|p| p.get("person_id"))
                .and_then(Value::as_u64)
        });
        let person_id = match opt_u64(&m, "person_id") {
            Ok(p) => p.flatten().or(participant),
            Err(e) => return e,
        };
        if let Some(p) = person_id
            && w.persons.get(p).is_none_or(|p| p.is_deleted)
        {
            return bad_request(format!("Person with id {p} does not exist"));
        }
        let deal_id = match opt_u64(&m, "deal_id") {
            Ok(d) => d.flatten(),
            Err(e) => return e,
        };
        let done = m.get("done").and_then(Value::as_bool).unwrap_or(false);
        let id = w.activities.take_id();
        let a = Activity {
            id,
            subject: subject.unwrap_or_else(|| kind.clone()),
            kind,
            owner_id: caller.user_id,
            creator_user_id: caller.user_id,
            person_id,
            org_id: person_id.and_then(|p| w.persons.get(p)).and_then(|p| p.org_id),
            deal_id,
            lead_id: None,
            due_date: m.get("due_date").and_then(Value::as_str).map(str::to_owned),
            due_time: m.get("due_time").and_then(Value::as_str).map(str::to_owned),
            duration: m.get("duration").and_then(Value::as_str).map(str::to_owned),
            done,
            busy: true,
            note: m.get("note").and_then(Value::as_str).map(str::to_owned),
            is_deleted: false,
            add_time: now,
            update_time: now,
            marked_as_done_time: done.then_some(now),
        };
        let (v2, v1) = (activity_v2(&a), activity_v1(w, &a));
        w.activities.put(a);
        w.emit(
            Action::Create,
            EntityKind::Activity,
            id,
            caller.user_id,
            now,
            (None, Some(v2.clone())),
            (None, Some(v1)),
        );
        ok(v2)
    })
}

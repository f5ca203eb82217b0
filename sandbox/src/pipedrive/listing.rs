//! Shared parsing of list queries (v2 cursor pages, v1 offset pages) and body helpers.

use axum::response::Response;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::gate::Query;
use super::model::Row;
use super::reply::{bad_request, int_param};
use super::table::{Cursor, Order, Table};

pub const MAX_LIMIT: u64 = 500;

pub struct V2List {
    pub order: Order,
    pub cursor: Option<Cursor>,
    pub limit: usize,
    pub updated_since: Option<OffsetDateTime>,
    pub updated_until: Option<OffsetDateTime>,
    pub ids: Option<Vec<u64>>,
}

fn time_param(name: &str, q: &Query) -> Result<Option<OffsetDateTime>, Response> {
    match q.get(name).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => OffsetDateTime::parse(s, &Rfc3339).map(Some).map_err(|_| {
            bad_request(format!(
                "Parameter '{name}' must be a RFC3339 date-time (e.g. 2025-01-01T10:20:00Z)"
            ))
        }),
    }
}

impl V2List {
    pub fn parse(q: &Query, max_limit: u64) -> Result<Self, Response> {
        let order = Order::parse(
            q.get("sort_by").map(String::as_str),
            q.get("sort_direction").map(String::as_str),
        )
        .map_err(bad_request)?;
        let limit = int_param("limit", q.get("limit"))?.unwrap_or(100);
        if limit == 0 || limit > max_limit {
            return Err(bad_request(format!(
                "Parameter 'limit' must be between 1 and {max_limit}"
            )));
        }
        let cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
            Some(raw) => Some(Cursor::decode(raw, &order).map_err(bad_request)?),
            None => None,
        };
        let ids = match q.get("ids").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let parsed: Result<Vec<u64>, _> = s.split(',').map(|x| x.trim().parse()).collect();
                let ids = parsed.map_err(|_| {
                    bad_request("Parameter 'ids' must be a comma-separated list of integers")
                })?;
                if ids.len() > 100 {
                    return Err(bad_request("Parameter 'ids' accepts at most 100 ids"));
                }
                Some(ids)
            }
        };
        Ok(Self {
            order,
            cursor,
            limit: limit as usize,
            updated_since: time_param("updated_since", q)?,
            updated_until: time_param("updated_until", q)?,
            ids,
        })
    }

    /// The filters every v2 list shares: `updated_since` (≥), `updated_until` (<), `ids`.
    pub fn keeps<T: Row>(&self, r: &T) -> bool {
        self.updated_since.is_none_or(|s| r.update_time() >= s)
            && self.updated_until.is_none_or(|u| r.update_time() < u)
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&r.id()))
    }

    pub fn page<'a, T: Row>(
        &self,
        table: &'a Table<T>,
        keep: impl Fn(&T) -> bool,
    ) -> (Vec<&'a T>, Option<String>) {
        table.page(&self.order, self.cursor.as_ref(), self.limit, |r| self.keeps(r) && keep(r))
    }
}

/// v1 `start` / `limit` (default 100, at most 500).
pub fn v1_window(q: &Query) -> Result<(usize, usize), Response> {
    let start = int_param("start", q.get("start"))?.unwrap_or(0) as usize;
    let limit = int_param("limit", q.get("limit"))?.unwrap_or(100).clamp(1, MAX_LIMIT) as usize;
    Ok((start, limit))
}

/// The v1 `additional_data.pagination` of a window over `total` matches.
pub fn v1_pagination(start: usize, limit: usize, more: bool) -> Value {
    let mut p =
        serde_json::json!({"start": start, "limit": limit, "more_items_in_collection": more});
    if more {
        p["next_start"] = serde_json::json!(start + limit);
    }
    serde_json::json!({"pagination": p})
}

/// A JSON object body, or the API's 400.
pub fn object_body(body: Option<axum::Json<Value>>) -> Result<Map<String, Value>, Response> {
    match body {
        Some(axum::Json(Value::Object(map))) => Ok(map),
        _ => Err(bad_request("Request body must be a JSON object")),
    }
}

pub fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<Option<String>>, Response> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(bad_request(format!("\"{key}\" must be a string"))),
    }
}

pub fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<Option<u64>>, Response> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v
            .as_u64()
            .map(|n| Some(Some(n)))
            .ok_or_else(|| bad_request(format!("\"{key}\" must be an integer"))),
    }
}

/// Top-level keys whose values differ: what a v2 `change` webhook carries as `previous`.
pub fn changed_fields(before: &Value, after: &Value) -> Value {
    let mut out = Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, v) in b {
            if a.get(k) != Some(v) && k != "update_time" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

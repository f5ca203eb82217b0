//! A table of records by id with an index on `update_time`, and the cursor pagination over it
//! (v2: `cursor`, `limit`, `sort_by` id | update_time | add_time, `sort_direction`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::model::Row;

pub struct Table<T: Row> {
    rows: BTreeMap<u64, T>,
    by_update: BTreeSet<(i128, u64)>,
    pub next_id: u64,
}

impl<T: Row> Default for Table<T> {
    fn default() -> Self {
        Self { rows: BTreeMap::new(), by_update: BTreeSet::new(), next_id: 1 }
    }
}

fn key(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos()
}

impl<T: Row> Table<T> {
    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn put(&mut self, row: T) {
        let id = row.id();
        if let Some(old) = self.rows.get(&id) {
            self.by_update.remove(&(key(old.update_time()), id));
        }
        self.by_update.insert((key(row.update_time()), id));
        self.next_id = self.next_id.max(id + 1);
        self.rows.insert(id, row);
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        self.rows.get(&id)
    }

    /// Changes a row in place, keeping the index right.
    pub fn update(&mut self, id: u64, f: impl FnOnce(&mut T)) -> Option<&T> {
        let row = self.rows.get_mut(&id)?;
        let before = key(row.update_time());
        f(row);
        let after = key(row.update_time());
        if before != after {
            self.by_update.remove(&(before, id));
            self.by_update.insert((after, id));
        }
        self.rows.get(&id)
    }

    pub fn remove(&mut self, id: u64) -> Option<T> {
        let row = self.rows.remove(&id)?;
        self.by_update.remove(&(key(row.update_time()), id));
        Some(row)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.rows.values()
    }

    /// One page in the requested order after `cursor`, and the cursor of the next page.
    pub fn page<'a>(
        &'a self,
        order: &Order,
        cursor: Option<&Cursor>,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> (Vec<&'a T>, Option<String>) {
        let mut out: Vec<&T> = Vec::with_capacity(limit + 1);
        let asc = order.ascending;
        match order.by {
            SortBy::Id => {
                let after = cursor.map(|c| c.id);
                let iter: Box<dyn Iterator<Item = &T>> = match (after, asc) {
                    (None, true) => Box::new(self.rows.values()),
                    (None, false) => Box::new(self.rows.values().rev()),
                    (Some(a), true) => Box::new(
                        self.rows.range((Bound::Excluded(a), Bound::Unbounded)).map(|(_, v)| v),
                    ),
                    (Some(a), false) => Box::new(self.rows.range(..a).rev().map(|(_, v)| v)),
                };
                out.extend(iter.filter(|r| keep(r)).take(limit + 1));
            }
            SortBy::UpdateTime => {
                let after = cursor.and_then(|c| c.time_key.map(|t| (t, c.id)));
                let iter: Box<dyn Iterator<Item = &(i128, u64)>> = match (after, asc) {
                    (None, true) => Box::new(self.by_update.iter()),
                    (None, false) => Box::new(self.by_update.iter().rev()),
                    (Some(a), true) => {
                        Box::new(self.by_update.range((Bound::Excluded(a), Bound::Unbounded)))
                    }
                    (Some(a), false) => Box::new(self.by_update.range(..a).rev()),
                };
                out.extend(
                    iter.filter_map(|(_, id)| self.rows.get(id))
                        .filter(|r| keep(r))
                        .take(limit + 1),
                );
            }
            SortBy::AddTime => {
                // No index: add-time order is rare in syncs; sort the matches.
                let mut all: Vec<&T> = self.rows.values().filter(|r| keep(r)).collect();
                all.sort_by_key(|r| (key(r.add_time()), r.id()));
                if !asc {
                    all.reverse();
                }
                let start = match cursor.and_then(|c| c.time_key.map(|t| (t, c.id))) {
                    None => 0,
                    Some(a) => all
                        .iter()
                        .position(|r| {
                            let k = (key(r.add_time()), r.id());
                            if asc { k > a } else { k < a }
                        })
                        .unwrap_or(all.len()),
                };
                out.extend(all.into_iter().skip(start).take(limit + 1));
            }
        }
        let next = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|last| Cursor::after(order, *last).encode())
        } else {
            None
        };
        (out, next)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Id,
    UpdateTime,
    AddTime,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub by: SortBy,
    pub ascending: bool,
}

impl Order {
    pub fn parse(sort_by: Option<&str>, direction: Option<&str>) -> Result<Self, String> {
        let by = match sort_by.unwrap_or("id") {
            "id" => SortBy::Id,
            "update_time" => SortBy::UpdateTime,
            "add_time" => SortBy::AddTime,
            other => {
                return Err(format!(
                    "Invalid sort_by value '{other}'. Allowed values: id, update_time, add_time"
                ));
            }
        };
        let ascending = match direction.unwrap_or("asc") {
            "asc" => true,
            "desc" => false,
            other => {
                return Err(format!(
                    "Invalid sort_direction value '{other}'. Allowed values: asc, desc"
                ));
            }
        };
        Ok(Self { by, ascending })
    }

    fn field(&self) -> &'static str {
        match self.by {
            SortBy::Id => "id",
            SortBy::UpdateTime => "update_time",
            SortBy::AddTime => "add_time",
        }
    }
}

/// The opaque cursor: base64url JSON as in the spec's examples (pipedrive-api.md §4.2).
#[derive(Debug, Clone)]
pub struct Cursor {
    pub field: String,
    pub field_value: Value,
    pub direction: String,
    pub id: u64,
    time_key: Option<i128>,
}

impl Cursor {
    fn after<T: Row>(order: &Order, row: &T) -> Self {
        let (field_value, time_key) = match order.by {
            SortBy::Id => (json!(row.id()), None),
            SortBy::UpdateTime => {
                (json!(key(row.update_time()).to_string()), Some(key(row.update_time())))
            }
            SortBy::AddTime => (json!(key(row.add_time()).to_string()), Some(key(row.add_time()))),
        };
        Self {
            field: order.field().into(),
            field_value,
            direction: if order.ascending { "asc".into() } else { "desc".into() },
            id: row.id(),
            time_key,
        }
    }

    pub fn encode(&self) -> String {
        let v = json!({"field": self.field, "fieldValue": self.field_value, "sortDirection": self.direction, "id": self.id});
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Decodes a cursor made for this order; anything else is a client error.
    pub fn decode(raw: &str, order: &Order) -> Result<Self, String> {
        let invalid = || "Invalid cursor".to_string();
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).map_err(|_| invalid())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        let field = v["field"].as_str().ok_or_else(invalid)?.to_owned();
        let direction = v["sortDirection"].as_str().ok_or_else(invalid)?.to_owned();
        let id = v["id"].as_u64().ok_or_else(invalid)?;
        if field != order.field() || (direction == "asc") != order.ascending {
            return Err("The cursor does not match the requested sort order".into());
        }
        let time_key = match order.by {
            SortBy::Id => None,
            _ => Some(v["fieldValue"].as_str().and_then(|s| s.parse().ok()).ok_or_else(invalid)?),
        };
        Ok(Self { field, field_value: v["fieldValue"].clone(), direction, id, time_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipedrive::model::Pipeline;

    fn table(n: u64) -> Table<Pipeline> {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut t = Table::default();
        for id in 1..=n {
            // Update times run against the ids, so the two orders differ.
            let at = t0 + time::Duration::seconds((n - id) as i64);
            t.put(Pipeline {
                id,
                name: format!("p{id}"),
                order_nr: 0,
                is_deleted: false,
                add_time: at,
                update_time: at,
            });
        }
        t
    }

    fn all_pages(t: &Table<Pipeline>, order: &Order, limit: usize) -> (Vec<u64>, usize) {
        let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None::<Cursor>);
        loop {
            let (rows, next) = t.page(order, cursor.as_ref(), limit, |_| true);
            pages += 1;
            ids.extend(rows.iter().map(|r| r.id));
            match next {
                Some(c) => cursor = Some(Cursor::decode(&c, order).unwrap()),
                None => return (ids, pages),
            }
        }
    }

    #[test]
    fn empty_exact_and_partial_last_pages() {
        let by_id = Order::parse(None, None).unwrap();
        assert_eq!(
            all_pages(&table(0), &by_id, 500),
            (vec![], 1),
            "empty: one empty page, no cursor"
        );
        let (ids, pages) = all_pages(&table(500), &by_id, 500);
        assert_eq!((ids.len(), pages), (500, 1), "exactly one full page: no next cursor");
        let (ids, pages) = all_pages(&table(1001), &by_id, 500);
        assert_eq!((ids.len(), pages), (1001, 3));
        assert_eq!(ids, (1..=1001).collect::<Vec<_>>());
    }

    #[test]
    fn every_order_visits_each_row_once() {
        let t = table(37);
        for (by, dir) in [
            ("id", "desc"),
            ("update_time", "asc"),
            ("update_time", "desc"),
            ("add_time", "asc"),
            ("add_time", "desc"),
        ] {
            let order = Order::parse(Some(by), Some(dir)).unwrap();
            let (ids, _) = all_pages(&t, &order, 5);
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(sorted, (1..=37).collect::<Vec<_>>(), "{by} {dir}");
        }
        let (ids, _) = all_pages(&t, &Order::parse(Some("update_time"), Some("asc")).unwrap(), 5);
        assert_eq!(ids[0], 37, "the oldest update first");
    }

    #[test]
    fn a_cursor_of_another_order_is_refused() {
        let t = table(3);
        let by_id = Order::parse(None, None).unwrap();
        let (_, next) = t.page(&by_id, None, 1, |_| true);
        let by_time = Order::parse(Some("update_time"), None).unwrap();
        assert!(Cursor::decode(&next.unwrap(), &by_time).is_err());
        assert!(Cursor::decode("not base64 json", &by_id).is_err());
    }
}

-- A backfill import now targets the lists its rows go to (rows are grouped by their lists), so
-- the lists it covered are kept with it. Null: an import saved before, which targeted the
-- all-contacts list alone.
alter table sync_imports add column list_ids bigint[];

-- The rows of an import are kept minutes, not compressed: pglz spent more time on them than
-- the rest of their insert.
alter table sync_imports alter column rows set storage external;

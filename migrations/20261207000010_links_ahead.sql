-- A fresh backfill records an import's links while Brevo processes it, before Brevo confirms
-- it: `recorded` holds the persons whose links went in ahead, `rows` is then empty. Should the
-- run stop before Brevo confirms, the next attempt deletes those links (its pages, whose
-- checkpoint waited for the import, are read and imported again); once Brevo confirms, the row
-- goes.
alter table sync_imports add column recorded bigint[];

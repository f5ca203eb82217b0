-- The engine no longer records an import's links before Brevo confirms it (it bought at most
-- half a second of a backfill and needed a crash path of its own). Links an interrupted run
-- recorded that way are undone here, once, as the engine did when the next run started: their
-- persons' pages, whose checkpoints waited for the imports, are read and written again.
delete from record_links l
using sync_imports i, unnest(i.recorded) as p(id)
where i.recorded is not null
  and l.tenant_id = i.tenant_id
  and l.entity = 'person'
  and l.pipedrive_id = p.id::text;

drop table sync_imports;

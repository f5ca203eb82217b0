-- The outbox: Brevo events that a run has decided to send, written in the transaction that
-- records the change they come from (or before it), and sent by the run's last step. A change
-- is never consumed (links, hashes, checkpoint) before its event is here; an event is sent twice
-- only if the process dies between Brevo's answer and the row being marked sent.
-- `dedupe_key` names the change an event comes from (the record, its new content, the event):
-- a change read again after a crash, while its event still waits, does not queue it twice; the
-- same change made again later (a deal back in a stage) is a new event.

create table sync_outbox (
    id bigint generated always as identity primary key,
    tenant_id uuid not null constraint sync_outbox_tenant_fkey references tenants (id) on delete cascade,
    run_id bigint constraint sync_outbox_run_fkey references sync_runs (id) on delete set null,
    dedupe_key text not null,
    -- The Pipedrive person whose Brevo contact the event is for.
    person_id bigint not null,
    event_name text not null,
    properties jsonb not null default '{}'::jsonb,
    status text not null default 'pending'
        constraint sync_outbox_status_check check (status in ('pending', 'sent', 'skipped', 'dead')),
    attempts integer not null default 0,
    last_error text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    sent_at timestamptz
);

create unique index sync_outbox_waiting_key on sync_outbox (tenant_id, dedupe_key) where status = 'pending';

create index sync_outbox_pending_idx on sync_outbox (tenant_id, id) where status = 'pending';

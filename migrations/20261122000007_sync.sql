-- The sync engine's state: runs (the history a tenant sees), checkpoints per entity, a link per
-- synced record with the hash of what was last written to Brevo, per-record errors that can be
-- retried, and bulk imports started but not yet confirmed.

create table sync_runs (
    id bigint generated always as identity primary key,
    tenant_id uuid not null constraint sync_runs_tenant_fkey references tenants (id) on delete cascade,
    job_id bigint,
    mode text not null constraint sync_runs_mode_check check (mode in ('backfill', 'incremental')),
    trigger text not null constraint sync_runs_trigger_check check (trigger in ('manual', 'schedule', 'webhook', 'retry')),
    status text not null default 'running'
        constraint sync_runs_status_check check (status in ('running', 'waiting', 'succeeded', 'failed')),
    -- Which step is running, and how many of the run's steps are done (the progress bar).
    phase text,
    steps_done integer not null default 0,
    steps_total integer not null default 0,
    -- Per entity: read, created, updated, unchanged, skipped, failed.
    counts jsonb not null default '{}'::jsonb,
    pipedrive_tokens bigint not null default 0,
    brevo_calls bigint not null default 0,
    message text,
    requested_by uuid constraint sync_runs_user_fkey references users (id) on delete set null,
    started_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    finished_at timestamptz
);

create index sync_runs_tenant_idx on sync_runs (tenant_id, id desc);
create index sync_runs_job_idx on sync_runs (job_id) where status in ('running', 'waiting');

-- Where each entity's sync stands: the cursor of an unfinished backfill, and the update time
-- the next incremental run starts from (minus an overlap window).
create table sync_checkpoints (
    tenant_id uuid not null constraint sync_checkpoints_tenant_fkey references tenants (id) on delete cascade,
    entity text not null,
    backfill_cursor text,
    backfill_done boolean not null default false,
    since timestamptz,
    updated_at timestamptz not null default now(),
    constraint sync_checkpoints_pkey primary key (tenant_id, entity)
);

-- One row per Pipedrive record the engine has seen. `content_hash` is the hash of what Brevo was
-- last given for it: equal content is not written again.
create table record_links (
    tenant_id uuid not null constraint record_links_tenant_fkey references tenants (id) on delete cascade,
    entity text not null
        constraint record_links_entity_check check (entity in ('person', 'organization', 'deal', 'activity', 'lead')),
    pipedrive_id text not null,
    -- The Brevo side: a contact's email, a company's id.
    brevo_ref text,
    brevo_id bigint,
    person_id bigint,
    org_id bigint,
    content_hash bytea,
    -- What later steps need without asking Pipedrive again (a deal's status, value and stage; a
    -- person's own attributes and lists; an organization's name).
    facts jsonb not null default '{}'::jsonb,
    updated_at timestamptz not null default now(),
    constraint record_links_pkey primary key (tenant_id, entity, pipedrive_id)
);

create index record_links_person_idx on record_links (tenant_id, entity, person_id) where person_id is not null;
create index record_links_org_idx on record_links (tenant_id, entity, org_id) where org_id is not null;
-- A contact email to the person synced to it (one each: enforced by the engine).
create index record_links_email_idx on record_links (tenant_id, brevo_ref) where entity = 'person';

create table record_errors (
    id bigint generated always as identity primary key,
    tenant_id uuid not null constraint record_errors_tenant_fkey references tenants (id) on delete cascade,
    run_id bigint constraint record_errors_run_fkey references sync_runs (id) on delete set null,
    entity text not null,
    pipedrive_id text not null,
    reason text not null,
    payload jsonb,
    status text not null default 'open' constraint record_errors_status_check check (status in ('open', 'retrying', 'resolved')),
    created_at timestamptz not null default now(),
    resolved_at timestamptz
);

create unique index record_errors_open_idx on record_errors (tenant_id, entity, pipedrive_id) where status <> 'resolved';
create index record_errors_run_idx on record_errors (run_id);

-- A bulk contact import Brevo accepted but has not confirmed: its rows, to record (or replay one
-- by one) once the process completes. Saved with the checkpoint of the page it came from.
create table sync_imports (
    id bigint generated always as identity primary key,
    tenant_id uuid not null constraint sync_imports_tenant_fkey references tenants (id) on delete cascade,
    run_id bigint constraint sync_imports_run_fkey references sync_runs (id) on delete set null,
    process_id bigint not null,
    rows jsonb not null,
    created_at timestamptz not null default now()
);

create index sync_imports_tenant_idx on sync_imports (tenant_id, id);

-- The job queue: claimed with FOR UPDATE SKIP LOCKED, held by a lease that the worker's heartbeat
-- renews; a job whose lease expired is claimable again. Queued and running jobs with the same
-- dedupe_key cannot coexist; running jobs with the same concurrency_key cannot coexist (checked
-- at claim time under an advisory lock, queue.rs).

create table jobs (
    id bigint generated always as identity primary key,
    kind text not null,
    tenant_id uuid constraint jobs_tenant_fkey references tenants (id) on delete cascade,
    payload jsonb not null default '{}'::jsonb,
    state text not null default 'queued'
        constraint jobs_state_check check (state in ('queued', 'running', 'succeeded', 'dead')),
    attempts integer not null default 0,
    max_attempts integer not null default 10 constraint jobs_max_attempts_check check (max_attempts > 0),
    run_at timestamptz not null default now(),
    lease_owner text,
    lease_expires_at timestamptz,
    last_error text,
    dedupe_key text,
    concurrency_key text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    finished_at timestamptz
);

create unique index jobs_dedupe_key_idx on jobs (dedupe_key)
    where dedupe_key is not null and state in ('queued', 'running');
create index jobs_ready_idx on jobs (run_at, id) where state = 'queued';
create index jobs_running_idx on jobs (lease_expires_at) where state = 'running';
create index jobs_concurrency_idx on jobs (concurrency_key) where state = 'running';
create index jobs_tenant_idx on jobs (tenant_id, created_at);

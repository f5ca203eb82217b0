-- Holds stop a tenant's jobs from being claimed until released: a Pipedrive connection that needs
-- reauthorization, a paused sync. Jobs wait in the queue meanwhile; nothing is lost.

create table job_holds (
    tenant_id uuid not null constraint job_holds_tenant_fkey references tenants (id) on delete cascade,
    reason text not null,
    created_at timestamptz not null default now(),
    constraint job_holds_pkey primary key (tenant_id, reason)
);

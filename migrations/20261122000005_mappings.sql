-- Every saved version of a tenant's mapping (the YAML of PRODUCT.md, as exported: no secrets),
-- who saved it and when. The newest version is the one in force.

create table mapping_versions (
    id bigint generated always as identity primary key,
    tenant_id uuid not null constraint mapping_versions_tenant_fkey references tenants (id) on delete cascade,
    version integer not null,
    yaml text not null,
    created_by uuid constraint mapping_versions_user_fkey references users (id) on delete set null,
    created_at timestamptz not null default now(),
    constraint mapping_versions_tenant_version_key unique (tenant_id, version)
);

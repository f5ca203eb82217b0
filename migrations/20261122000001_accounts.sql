-- Accounts and tenants: users, the companies they work for, and their role in each.

create table users (
    id uuid primary key default gen_random_uuid(),
    -- Stored lower-cased by the application (domain::Email), so a plain unique index is enough.
    email text not null,
    -- argon2id PHC string.
    password_hash text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint users_email_key unique (email)
);

create table tenants (
    id uuid primary key default gen_random_uuid(),
    name text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table memberships (
    tenant_id uuid not null constraint memberships_tenant_fkey references tenants (id) on delete cascade,
    user_id uuid not null constraint memberships_user_fkey references users (id) on delete cascade,
    role text not null constraint memberships_role_check check (role in ('owner', 'admin', 'viewer')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint memberships_pkey primary key (tenant_id, user_id)
);

create index memberships_user_idx on memberships (user_id);

-- Failed log-in attempts, for slowing down password guessing per email and per client address.
-- Rows older than the throttle window are pruned on every failure.
create table login_failures (
    id bigint generated always as identity primary key,
    email text not null,
    client_ip text,
    created_at timestamptz not null default now()
);

create index login_failures_email_idx on login_failures (email, created_at);
create index login_failures_ip_idx on login_failures (client_ip, created_at);

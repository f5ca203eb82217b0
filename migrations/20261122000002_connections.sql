-- A tenant's connection to each provider. Tokens and keys are sealed (secrets.rs): ChaCha20-Poly1305
-- bound to the tenant and the column; only their last four characters are kept in clear.

create table connections (
    tenant_id uuid not null constraint connections_tenant_fkey references tenants (id) on delete cascade,
    provider text not null constraint connections_provider_check check (provider in ('pipedrive', 'brevo')),
    auth_kind text not null constraint connections_auth_kind_check check (auth_kind in ('oauth', 'api_token', 'api_key')),
    status text not null constraint connections_status_check check (status in ('connected', 'needs_reauthorization')),
    -- Where requests go: Pipedrive's api_domain (OAuth) or company URL, Brevo's API base.
    api_base text not null,
    -- What the UI shows to recognise the account: company name, account email.
    account_label text not null,
    secret bytea not null,
    refresh_secret bytea,
    access_expires_at timestamptz,
    secret_last4 text not null,
    is_sandbox boolean not null default false,
    last_checked_at timestamptz,
    last_error text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint connections_pkey primary key (tenant_id, provider)
);

-- One row per schedule and period: the process that inserts it enqueues that period's jobs, so
-- several processes running the scheduler enqueue each period once.

create table schedule_ticks (
    name text not null,
    tick bigint not null,
    created_at timestamptz not null default now(),
    constraint schedule_ticks_pkey primary key (name, tick)
);

-- A company's own daily Pipedrive token budget (30,000 × plan multiplier × seats); null: the
-- server's PIPEBRIDGE_PIPEDRIVE_DAILY_BUDGET.
alter table connections add column daily_token_budget bigint
    constraint connections_daily_token_budget_check check (daily_token_budget > 0);

-- Recognized revenue (docs/metrics.md §8), customer margins (§11, margins API), customer <-> cost-tag
-- mappings and stored forecasts (§12, v1 API). Portable SQL like 0002: layer-qualified names,
-- JSONB becomes TEXT on SQLite. Exact percents are kept as decimal TEXT, never floats.

-- Recognized revenue per customer, month ("YYYY-MM", workspace time zone) and native currency.
-- amount_reporting_micros is NULL when at least one contributing line had no FX rate on its day
-- (skipped_lines counts those lines); such rows are left out of reporting totals and counted.
CREATE TABLE IF NOT EXISTS core.recognized_revenue_monthly (
    workspace_id TEXT NOT NULL, customer_id TEXT NOT NULL, month TEXT NOT NULL,
    currency TEXT NOT NULL, amount_micros BIGINT NOT NULL, amount_reporting_micros BIGINT,
    reporting_currency TEXT NOT NULL, skipped_lines INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, customer_id, month, currency)
);
CREATE INDEX IF NOT EXISTS recognized_revenue_monthly_month
    ON core.recognized_revenue_monthly (workspace_id, month);

-- One row per customer with revenue or attributed cost in a month. row_json is the margins API
-- GET /api/margins `customers[]` item as is (percents as exact decimal strings).
CREATE TABLE IF NOT EXISTS mart.customer_margins_monthly (
    workspace_id TEXT NOT NULL, month TEXT NOT NULL, customer_key TEXT NOT NULL,
    stripe_customer_id TEXT NOT NULL, customer_name TEXT, tag_value TEXT,
    revenue_micros BIGINT NOT NULL, cost_micros BIGINT NOT NULL, margin_micros BIGINT NOT NULL,
    margin_percent TEXT, health_tier TEXT NOT NULL, projected_margin_percent TEXT,
    projected_tier_worsening BOOLEAN NOT NULL, budget_suggestion_micros BIGINT,
    sort_order INTEGER NOT NULL, sparkline_json JSONB NOT NULL, row_json JSONB NOT NULL,
    PRIMARY KEY (workspace_id, month, customer_key)
);

-- One row per workspace and month: the margins API `summary` object, and the unmatched report
-- of that month (unmatched Stripe customers, unmapped tags with totals, pending auto matches).
CREATE TABLE IF NOT EXISTS mart.customer_margins_summary_monthly (
    workspace_id TEXT NOT NULL, month TEXT NOT NULL,
    revenue_micros BIGINT NOT NULL, cost_micros BIGINT NOT NULL,
    blended_margin_percent TEXT, critical_count INTEGER NOT NULL, at_risk_count INTEGER NOT NULL,
    untagged_cost_micros BIGINT NOT NULL, unmapped_cost_micros BIGINT NOT NULL,
    summary_json JSONB NOT NULL, unmatched_json JSONB NOT NULL, computed_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, month)
);

-- Stripe customer <-> cost tag mappings, owned by people (the API), read by the margin marts.
-- A manual mapping always wins; auto ones count once accepted. confidence is a decimal string.
CREATE TABLE IF NOT EXISTS app.customer_mappings (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, stripe_customer_id TEXT NOT NULL,
    tag_key TEXT NOT NULL DEFAULT 'customer', tag_value TEXT NOT NULL,
    match_type TEXT NOT NULL CHECK (match_type IN ('manual', 'auto')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted')),
    confidence TEXT, created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, stripe_customer_id, tag_key)
);
CREATE INDEX IF NOT EXISTS customer_mappings_tag ON app.customer_mappings (workspace_id, tag_value);

-- Saved forecasts: request and full response (v1 API create 201 shape) as JSON. The pipeline
-- keeps one is_default forecast per workspace and month-end as_of; API-created ones are not default.
CREATE TABLE IF NOT EXISTS mart.forecasts (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT, as_of DATE NOT NULL,
    horizon_months INTEGER NOT NULL, request_json JSONB NOT NULL, response_json JSONB NOT NULL,
    created_at BIGINT NOT NULL, is_default BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS forecasts_ws ON mart.forecasts (workspace_id, as_of);

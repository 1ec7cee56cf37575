-- CFO metrics, daily revenue and alerts (docs/metrics.md §9, §10, §14). Money in the reporting currency.

-- The v1 API metrics object for the 30 local days ending `day`. *_cents are rounded once from
-- exact micro totals; runway_months / runway_days are exact decimals with 2 places as text, NULL
-- without cash on hand or without positive recurring burn.
CREATE TABLE IF NOT EXISTS mart.cfo_metrics_daily (
    workspace_id TEXT NOT NULL, day DATE NOT NULL, currency TEXT NOT NULL,
    gross_revenue_cents_30d BIGINT NOT NULL, refunds_cents_30d BIGINT NOT NULL,
    net_revenue_cents_30d BIGINT NOT NULL, mrr_cents BIGINT NOT NULL, arr_cents BIGINT NOT NULL,
    burn_cents_30d BIGINT NOT NULL, recurring_burn_cents_30d BIGINT NOT NULL,
    one_time_expenses_cents_30d BIGINT NOT NULL, cash_on_hand_cents BIGINT,
    runway_months TEXT, runway_days TEXT,
    total_expenses_cents_30d BIGINT NOT NULL, recurring_expenses_cents_30d BIGINT NOT NULL,
    warnings_json JSONB NOT NULL, skipped_currencies_json JSONB NOT NULL,
    PRIMARY KEY (workspace_id, day)
);

-- Ledger totals of one local day (one row per day of a materialized window, zeros included).
-- gross_revenue = Stripe gross + manual revenue (refunds excluded); expenses = expenses + fees;
-- refunds are negative; net = gross_revenue - expenses (§10); net_revenue = gross + refunds (§9).
-- Entries without an FX rate are left out and counted in skipped_currencies_json.
CREATE TABLE IF NOT EXISTS mart.revenue_daily (
    workspace_id TEXT NOT NULL, day DATE NOT NULL, currency TEXT NOT NULL,
    gross_revenue_micros BIGINT NOT NULL, manual_revenue_micros BIGINT NOT NULL,
    refunds_micros BIGINT NOT NULL, expenses_micros BIGINT NOT NULL, fees_micros BIGINT NOT NULL,
    one_time_expenses_micros BIGINT NOT NULL, net_micros BIGINT NOT NULL,
    net_revenue_micros BIGINT NOT NULL, skipped_currencies_json JSONB NOT NULL,
    PRIMARY KEY (workspace_id, day)
);

-- Alerts active on a day (§14); a day's set is replaced on every evaluation. alert_id is
-- deterministic from (workspace, day, type, subject), so re-runs never duplicate.
CREATE TABLE IF NOT EXISTS mart.alerts (
    workspace_id TEXT NOT NULL, day DATE NOT NULL, alert_id TEXT NOT NULL,
    type TEXT NOT NULL, severity TEXT NOT NULL, subject TEXT NOT NULL, message TEXT NOT NULL,
    payload_json JSONB NOT NULL, created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, day, alert_id)
);
CREATE INDEX IF NOT EXISTS alerts_type ON mart.alerts (workspace_id, type, day);

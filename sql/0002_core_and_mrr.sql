-- Core layer (subscription history, ledger, FX) and the MRR marts. Exact values that are not whole
-- micro-units (a weekly price is x 52/12 per month) are kept as "num/den" text beside the rounded
-- BIGINT, so totals are the rounding of exact sums (docs/metrics.md §2).

-- One row per subscription item per half-open interval [valid_from, valid_to) of constant state;
-- item_id is '' for an interval with no items. Subscription-level fields repeat on each item row.
CREATE TABLE IF NOT EXISTS core.subscription_history (
    workspace_id TEXT NOT NULL, subscription_id TEXT NOT NULL, valid_from BIGINT NOT NULL,
    item_id TEXT NOT NULL, valid_to BIGINT, customer_id TEXT NOT NULL, currency TEXT NOT NULL,
    status TEXT NOT NULL, price_id TEXT, product_id TEXT, quantity BIGINT,
    trial_end BIGINT, pause_collection BOOLEAN NOT NULL, cancel_scheduled BOOLEAN NOT NULL,
    past_due_since BIGINT, started_at BIGINT, ended_at BIGINT, cancellation_reason TEXT,
    price_json JSONB, discounts_json JSONB NOT NULL,
    PRIMARY KEY (workspace_id, subscription_id, valid_from, item_id)
);
CREATE INDEX IF NOT EXISTS subscription_history_customer ON core.subscription_history (workspace_id, customer_id);

-- 1 unit of currency = rate units of base on a day (exact decimal text), as ingested.
CREATE TABLE IF NOT EXISTS core.fx_rates (
    base TEXT NOT NULL, currency TEXT NOT NULL, date DATE NOT NULL, rate TEXT NOT NULL,
    PRIMARY KEY (base, currency, date)
);

-- One row per money movement (docs/metrics.md §7). amount_micros is signed in its own currency;
-- amount_reporting_micros is NULL when the day's FX rate is missing (counted as skipped).
CREATE TABLE IF NOT EXISTS core.ledger (
    workspace_id TEXT NOT NULL, entry_id TEXT NOT NULL, day DATE NOT NULL, occurred_at BIGINT,
    kind TEXT NOT NULL, subtype TEXT, category TEXT, customer_id TEXT,
    amount_micros BIGINT NOT NULL, currency TEXT NOT NULL,
    amount_reporting_micros BIGINT, reporting_currency TEXT NOT NULL, fx_rate TEXT,
    source_table TEXT NOT NULL, source_id TEXT NOT NULL, description TEXT,
    PRIMARY KEY (workspace_id, entry_id)
);
CREATE INDEX IF NOT EXISTS ledger_day ON core.ledger (workspace_id, day);

-- Per-customer MRR change rows: one row when a customer's end-of-day MRR, CMRR or counted
-- subscriptions change (native currency). Cost grows with changes, not customers x days.
CREATE TABLE IF NOT EXISTS mart.mrr_changes (
    workspace_id TEXT NOT NULL, customer_id TEXT NOT NULL, currency TEXT NOT NULL, day DATE NOT NULL,
    mrr_micros BIGINT NOT NULL, cmrr_micros BIGINT NOT NULL, active_subscriptions INTEGER NOT NULL,
    mrr_exact TEXT NOT NULL, cmrr_exact TEXT NOT NULL, by_plan_json JSONB NOT NULL,
    churn_reason TEXT,
    PRIMARY KEY (workspace_id, customer_id, currency, day)
);

-- Daily movements per customer in the reporting currency (docs/metrics.md §5).
CREATE TABLE IF NOT EXISTS mart.mrr_movements (
    workspace_id TEXT NOT NULL, customer_id TEXT NOT NULL, day DATE NOT NULL, kind TEXT NOT NULL,
    amount_micros BIGINT NOT NULL, amount_exact TEXT NOT NULL, reason TEXT,
    PRIMARY KEY (workspace_id, customer_id, day, kind)
);
CREATE INDEX IF NOT EXISTS mrr_movements_day ON mart.mrr_movements (workspace_id, day);

-- Daily workspace summary in the reporting currency. exact_json holds the exact values of every
-- money column, which the roll-forward check verifies to the last fraction.
CREATE TABLE IF NOT EXISTS mart.mrr_daily (
    workspace_id TEXT NOT NULL, day DATE NOT NULL, currency TEXT NOT NULL,
    mrr_micros BIGINT NOT NULL, cmrr_micros BIGINT NOT NULL, arr_micros BIGINT NOT NULL,
    active_subscriptions INTEGER NOT NULL, paying_customers INTEGER NOT NULL,
    new_micros BIGINT NOT NULL, expansion_micros BIGINT NOT NULL, reactivation_micros BIGINT NOT NULL,
    contraction_micros BIGINT NOT NULL, churn_micros BIGINT NOT NULL, fx_micros BIGINT NOT NULL,
    new_customers INTEGER NOT NULL, reactivated_customers INTEGER NOT NULL,
    churned_customers INTEGER NOT NULL, delinquent_churned_customers INTEGER NOT NULL,
    skipped_currencies_json JSONB NOT NULL, exact_json JSONB NOT NULL,
    PRIMARY KEY (workspace_id, day)
);

-- Daily MRR per plan (price), so the seeds' plan_id filter reads one table.
CREATE TABLE IF NOT EXISTS mart.mrr_plan_daily (
    workspace_id TEXT NOT NULL, day DATE NOT NULL, plan_id TEXT NOT NULL, currency TEXT NOT NULL,
    mrr_micros BIGINT NOT NULL, subscriptions INTEGER NOT NULL, mrr_exact TEXT NOT NULL,
    PRIMARY KEY (workspace_id, day, plan_id)
);

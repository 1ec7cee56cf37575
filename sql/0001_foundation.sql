-- Foundation: tenancy (app), Stripe raw tables, sync state, landing files and ingested rows (raw).
-- Portable SQL with layer-qualified names; the migrator rewrites raw.x to raw__x on SQLite and
-- JSONB to TEXT. Money is BIGINT micro-units unless the column mirrors a Stripe minor-unit amount
-- (those keep Stripe's integer and its name). Instants are BIGINT Unix seconds, local days DATE.
CREATE SCHEMA IF NOT EXISTS app;
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS core;
CREATE SCHEMA IF NOT EXISTS mart;

CREATE TABLE IF NOT EXISTS app.organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS app.workspaces (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES app.organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    reporting_currency TEXT NOT NULL DEFAULT 'usd',
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    cash_on_hand_micros BIGINT,
    settings_json JSONB NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS workspaces_org ON app.workspaces (org_id);

-- The secret key is stored Fernet-encrypted (key_ciphertext) or as a reference (key_ref, e.g.
-- env:STRIPE_KEY_ACME); key_hint is the masked form shown to people.
CREATE TABLE IF NOT EXISTS app.stripe_connections (
    workspace_id TEXT PRIMARY KEY REFERENCES app.workspaces (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    livemode BOOLEAN NOT NULL,
    api_base TEXT NOT NULL DEFAULT 'https://api.stripe.com',
    key_ciphertext TEXT,
    key_ref TEXT,
    key_hint TEXT NOT NULL,
    stripe_account_header TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (key_ciphertext IS NOT NULL OR key_ref IS NOT NULL)
);

-- Stripe objects: one row per object per workspace, upserted by id; payload is the object as
-- Stripe returned it, the other columns are extracted for joins and filters.
CREATE TABLE IF NOT EXISTS raw.stripe_customers (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, email TEXT, name TEXT, currency TEXT, deleted BOOLEAN NOT NULL DEFAULT FALSE,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_products (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, name TEXT, active BOOLEAN,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_prices (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, product TEXT, currency TEXT, type TEXT, unit_amount BIGINT,
    unit_amount_decimal TEXT, billing_scheme TEXT, tiers_mode TEXT, recurring_interval TEXT,
    recurring_interval_count INTEGER, usage_type TEXT, tax_behavior TEXT, active BOOLEAN,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_coupons (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, percent_off TEXT, amount_off BIGINT, currency TEXT, duration TEXT,
    duration_in_months INTEGER, valid BOOLEAN,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_subscriptions (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, customer TEXT, status TEXT, currency TEXT, start_date BIGINT, trial_start BIGINT,
    trial_end BIGINT, cancel_at BIGINT, cancel_at_period_end BOOLEAN, canceled_at BIGINT,
    ended_at BIGINT, pause_behavior TEXT, items_count INTEGER,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX IF NOT EXISTS stripe_subscriptions_customer ON raw.stripe_subscriptions (workspace_id, customer);

-- Every item of every subscription, including those beyond the 10 embedded in the list response.
CREATE TABLE IF NOT EXISTS raw.stripe_subscription_items (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, subscription TEXT NOT NULL, price TEXT, quantity BIGINT,
    current_period_start BIGINT, current_period_end BIGINT,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX IF NOT EXISTS stripe_subscription_items_sub ON raw.stripe_subscription_items (workspace_id, subscription);

CREATE TABLE IF NOT EXISTS raw.stripe_invoices (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, customer TEXT, subscription TEXT, status TEXT, currency TEXT, billing_reason TEXT,
    subtotal BIGINT, total BIGINT, total_excluding_tax BIGINT, amount_due BIGINT, amount_paid BIGINT,
    amount_remaining BIGINT, period_start BIGINT, period_end BIGINT, paid_at BIGINT,
    lines_count INTEGER,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX IF NOT EXISTS stripe_invoices_status ON raw.stripe_invoices (workspace_id, status);

-- Every line of every invoice, including those beyond the 10 embedded in the invoice.
CREATE TABLE IF NOT EXISTS raw.stripe_invoice_lines (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    invoice TEXT NOT NULL, subscription TEXT, subscription_item TEXT, price TEXT, quantity BIGINT,
    amount BIGINT, currency TEXT, period_start BIGINT, period_end BIGINT, proration BOOLEAN,
    parent_type TEXT,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX IF NOT EXISTS stripe_invoice_lines_invoice ON raw.stripe_invoice_lines (workspace_id, invoice);

CREATE TABLE IF NOT EXISTS raw.stripe_invoice_payments (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, invoice TEXT, charge TEXT, payment_intent TEXT, amount_paid BIGINT,
    amount_requested BIGINT, currency TEXT, status TEXT, is_default BOOLEAN, paid_at BIGINT,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_charges (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, customer TEXT, amount BIGINT, amount_captured BIGINT, amount_refunded BIGINT,
    currency TEXT, status TEXT, paid BOOLEAN, refunded BOOLEAN, balance_transaction TEXT,
    payment_intent TEXT, failure_code TEXT,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_refunds (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, charge TEXT, amount BIGINT, currency TEXT, status TEXT, reason TEXT,
    balance_transaction TEXT,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_credit_notes (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, invoice TEXT, customer TEXT, type TEXT, status TEXT, currency TEXT,
    amount BIGINT, total BIGINT, total_excluding_tax BIGINT, refund_amount BIGINT,
    pre_payment_amount BIGINT, post_payment_amount BIGINT, effective_at BIGINT, lines_count INTEGER,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_credit_note_lines (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    credit_note TEXT NOT NULL, invoice_line_item TEXT, type TEXT, amount BIGINT, quantity BIGINT,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_balance_transactions (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT, source TEXT, type TEXT, reporting_category TEXT, amount BIGINT, fee BIGINT,
    net BIGINT, currency TEXT, available_on BIGINT,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE IF NOT EXISTS raw.stripe_events (
    workspace_id TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL, livemode BOOLEAN NOT NULL,
    created BIGINT NOT NULL, type TEXT NOT NULL, object_type TEXT, object_id TEXT, api_version TEXT,
    payload JSONB NOT NULL, synced_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX IF NOT EXISTS stripe_events_created ON raw.stripe_events (workspace_id, created);

-- Incremental-sync checkpoints, one row per workspace and stream. cursor_json holds an unfinished
-- pass ({lower, starting_after, pass_max}) so a killed run resumes where it stopped.
CREATE TABLE IF NOT EXISTS raw.sync_state (
    workspace_id TEXT NOT NULL, stream TEXT NOT NULL,
    high_water BIGINT, cursor_json JSONB, events_checkpoint BIGINT,
    last_full_sync_at BIGINT, last_success_at BIGINT, last_attempt_at BIGINT,
    status TEXT NOT NULL DEFAULT 'never', last_error TEXT,
    objects_total BIGINT NOT NULL DEFAULT 0, last_run_objects BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, stream)
);

-- One row per sync of a workspace (all streams), for sync health and the UI's history.
CREATE TABLE IF NOT EXISTS raw.sync_runs (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, dagster_run_id TEXT, trigger TEXT,
    started_at BIGINT NOT NULL, finished_at BIGINT, status TEXT NOT NULL,
    objects BIGINT NOT NULL DEFAULT 0, requests BIGINT NOT NULL DEFAULT 0, retries BIGINT NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS sync_runs_ws ON raw.sync_runs (workspace_id, started_at);

-- Files seen in the landing folder: accepted, rejected (with the error report) or duplicate.
CREATE TABLE IF NOT EXISTS raw.landing_files (
    sha256 TEXT NOT NULL, workspace_id TEXT NOT NULL, file_name TEXT NOT NULL, kind TEXT,
    status TEXT NOT NULL, row_count INTEGER NOT NULL DEFAULT 0, inserted INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0, errors_json JSONB, processed_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, sha256)
);

CREATE TABLE IF NOT EXISTS raw.cost_records (
    workspace_id TEXT NOT NULL, external_id TEXT NOT NULL, name TEXT NOT NULL,
    amount_micros BIGINT NOT NULL, currency TEXT NOT NULL, category TEXT NOT NULL,
    is_recurring BOOLEAN NOT NULL, note TEXT, date DATE NOT NULL, customer_tag TEXT,
    source TEXT NOT NULL, ingested_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, external_id)
);

CREATE TABLE IF NOT EXISTS raw.expense_events (
    workspace_id TEXT NOT NULL, external_id TEXT NOT NULL, subtype TEXT NOT NULL,
    amount_micros BIGINT NOT NULL, currency TEXT NOT NULL, occurred_on DATE NOT NULL, vendor TEXT,
    source TEXT NOT NULL, ingested_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, external_id)
);

CREATE TABLE IF NOT EXISTS raw.usage_costs (
    workspace_id TEXT NOT NULL, external_id TEXT NOT NULL, customer_tag TEXT NOT NULL,
    model TEXT NOT NULL, cost_micros BIGINT NOT NULL, currency TEXT NOT NULL,
    request_count BIGINT NOT NULL, occurred_on DATE NOT NULL, occurred_at BIGINT,
    source TEXT NOT NULL, ingested_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, external_id)
);
CREATE INDEX IF NOT EXISTS usage_costs_day ON raw.usage_costs (workspace_id, occurred_on);

-- Manual revenue in both vocabularies: type (products API) and subtype (v1 API). Refunds negative.
CREATE TABLE IF NOT EXISTS raw.manual_revenue (
    workspace_id TEXT NOT NULL, external_id TEXT NOT NULL, type TEXT NOT NULL, subtype TEXT NOT NULL,
    amount_micros BIGINT NOT NULL, currency TEXT NOT NULL, date DATE NOT NULL, customer_id TEXT,
    source TEXT, note TEXT, ingested_via TEXT NOT NULL, ingested_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, external_id)
);

-- 1 unit of currency = rate units of base, on a day. Kept as an exact decimal string.
CREATE TABLE IF NOT EXISTS raw.fx_rates (
    base TEXT NOT NULL, currency TEXT NOT NULL, date DATE NOT NULL, rate TEXT NOT NULL,
    source TEXT NOT NULL, ingested_at BIGINT NOT NULL,
    PRIMARY KEY (base, currency, date)
);

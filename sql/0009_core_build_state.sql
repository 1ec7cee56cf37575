-- Incremental core builds: per workspace and asset, how far raw was read and with which settings,
-- plus the lookup indexes that finding "what changed since then" needs. Portable SQL like 0001.

-- One row per workspace and core asset (core.ledger, core.subscription_history). watermarks_json
-- maps each raw source table to the largest synced_at / ingested_at already built from it (clocks
-- differ per source: the sync's clock for Stripe tables, ingestion time for landing rows);
-- watermark is the largest of them. settings_hash names the workspace settings the rows used: a
-- change forces a full rebuild.
CREATE TABLE IF NOT EXISTS core.build_state (
    workspace_id TEXT NOT NULL, asset TEXT NOT NULL, watermark BIGINT, built_at BIGINT NOT NULL,
    mode TEXT NOT NULL, settings_hash TEXT NOT NULL, watermarks_json JSONB NOT NULL,
    PRIMARY KEY (workspace_id, asset)
);

-- Subscriptions whose stored history depends on the build time ("now"): the history must be
-- rebuilt by any run later than due_at even when no raw row of theirs changed.
CREATE TABLE IF NOT EXISTS core.subscription_history_due (
    workspace_id TEXT NOT NULL, subscription_id TEXT NOT NULL, due_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, subscription_id)
);
CREATE INDEX IF NOT EXISTS subscription_history_due_at ON core.subscription_history_due (workspace_id, due_at);

-- When an FX rate reached the core table (copied from raw.fx_rates): the ledger restates the
-- entries of a (currency, day) whose rate arrived after its last build.
ALTER TABLE core.fx_rates ADD COLUMN ingested_at BIGINT;

-- "Changed since the watermark" lookups, one per source table.
CREATE INDEX IF NOT EXISTS stripe_subscriptions_synced ON raw.stripe_subscriptions (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_subscription_items_synced ON raw.stripe_subscription_items (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_events_synced ON raw.stripe_events (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_invoices_synced ON raw.stripe_invoices (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_invoice_lines_synced ON raw.stripe_invoice_lines (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_invoice_payments_synced ON raw.stripe_invoice_payments (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_charges_synced ON raw.stripe_charges (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_refunds_synced ON raw.stripe_refunds (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_balance_transactions_synced ON raw.stripe_balance_transactions (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS stripe_prices_synced ON raw.stripe_prices (workspace_id, synced_at);
CREATE INDEX IF NOT EXISTS manual_revenue_ingested ON raw.manual_revenue (workspace_id, ingested_at);
CREATE INDEX IF NOT EXISTS cost_records_ingested ON raw.cost_records (workspace_id, ingested_at);
CREATE INDEX IF NOT EXISTS expense_events_ingested ON raw.expense_events (workspace_id, ingested_at);
CREATE INDEX IF NOT EXISTS usage_costs_ingested ON raw.usage_costs (workspace_id, ingested_at);
CREATE INDEX IF NOT EXISTS core_fx_rates_ingested ON core.fx_rates (base, ingested_at);

-- Reading the inputs of only the changed subscriptions and charges.
CREATE INDEX IF NOT EXISTS stripe_events_object ON raw.stripe_events (workspace_id, object_type, object_id);
CREATE INDEX IF NOT EXISTS stripe_invoice_lines_subscription ON raw.stripe_invoice_lines (workspace_id, subscription);
CREATE INDEX IF NOT EXISTS stripe_invoices_subscription ON raw.stripe_invoices (workspace_id, subscription);
CREATE INDEX IF NOT EXISTS stripe_invoices_customer ON raw.stripe_invoices (workspace_id, customer);
CREATE INDEX IF NOT EXISTS stripe_invoice_payments_invoice ON raw.stripe_invoice_payments (workspace_id, invoice);
CREATE INDEX IF NOT EXISTS stripe_charges_customer ON raw.stripe_charges (workspace_id, customer);
CREATE INDEX IF NOT EXISTS stripe_refunds_charge ON raw.stripe_refunds (workspace_id, charge);

-- Covering indexes for core.ledger's blocking reconciliation (ledger_matches_raw_stripe), which
-- compares the whole ledger with the whole of raw Stripe on every build, incremental or not.
-- Each side is read from an index alone instead of from table rows that hold the JSON payloads:
-- at 10,000 customers the check was most of an incremental day's ledger step.

-- Raw side: succeeded charges with their currency and amount...
CREATE INDEX IF NOT EXISTS stripe_charges_reconcile
    ON raw.stripe_charges (status, workspace_id, currency, amount, id);
-- ...joined to their invoice payment...
CREATE INDEX IF NOT EXISTS stripe_invoice_payments_charge_invoice
    ON raw.stripe_invoice_payments (workspace_id, charge, invoice);
-- ...and to that invoice's totals (the tax-exclusive ratio).
CREATE INDEX IF NOT EXISTS stripe_invoices_totals
    ON raw.stripe_invoices (workspace_id, id, total, total_excluding_tax);

-- Ledger side: count and sum of the charge and refund entries per workspace and currency.
CREATE INDEX IF NOT EXISTS ledger_reconcile
    ON core.ledger (source_table, kind, workspace_id, currency, amount_micros);

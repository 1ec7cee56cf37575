-- Lookup indexes the raw tables lacked. Portable SQL like 0001: layer-qualified names.

-- core.ledger's reconciliation joins every charge to its invoice payment by charge id
-- (charges LEFT JOIN invoice_payments ON charge). Without this index SQLite scans every payment
-- for every charge: quadratic in charges, minutes at 10,000 customers.
CREATE INDEX IF NOT EXISTS stripe_invoice_payments_charge
    ON raw.stripe_invoice_payments (workspace_id, charge);

-- The sync's stale-children delete finds a credit note's lines by their parent, as the invoice
-- lines and subscription items indexes of 0001 do for theirs.
CREATE INDEX IF NOT EXISTS stripe_credit_note_lines_credit_note
    ON raw.stripe_credit_note_lines (workspace_id, credit_note);

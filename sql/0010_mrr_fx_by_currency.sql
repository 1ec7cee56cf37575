-- The fx movement is stored per currency and day on mart.mrr_daily instead of per customer and
-- day in mart.mrr_movements: the per-customer rows grew with foreign customers x days (2.4 M rows
-- at 10,000 customers over 3 years), against the rule that cost grows with changes. The sum over a
-- currency's customers of p x (r - r') is P x (r - r') exactly (docs/metrics.md §5).
ALTER TABLE mart.mrr_daily ADD COLUMN fx_by_currency_json JSONB NOT NULL DEFAULT '{}';
DELETE FROM mart.mrr_movements WHERE kind = 'fx';

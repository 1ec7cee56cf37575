-- Each write of a workspace's month of margins (docs/metrics.md §11) gets a new id on its summary
-- row, in the transaction that replaces the month's customer rows. The read API keys its cache of
-- the month's encoded answer on it: any rewrite of the month changes it, so a cached answer is
-- never served for data that has changed. Rows written before this migration have none and are
-- never cached.
ALTER TABLE mart.customer_margins_summary_monthly ADD COLUMN write_id TEXT;

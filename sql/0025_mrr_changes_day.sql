-- The change rows of a window of days (the 30-day logo churn of GET /mrr reads only the customers
-- that changed in it): without this index a day range scans the workspace's whole change history,
-- since the primary key leads with the customer.
CREATE INDEX IF NOT EXISTS mrr_changes_day ON mart.mrr_changes (workspace_id, day);

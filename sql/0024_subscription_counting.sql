-- Each subscription's starts and stops of counting as active (docs/metrics.md §3), written by the
-- MRR marts with the window's change rows. Stripe's 30-day subscriber churn (§6) reads them: a
-- handful of rows per subscription instead of replaying every subscription's history 31 times.
CREATE TABLE IF NOT EXISTS mart.subscription_counting (
    workspace_id TEXT NOT NULL, subscription_id TEXT NOT NULL, customer_id TEXT NOT NULL,
    day DATE NOT NULL, counts BOOLEAN NOT NULL,
    PRIMARY KEY (workspace_id, subscription_id, day)
);
-- The MRR run replaces a window of days; the churn read takes the days up to the close.
CREATE INDEX IF NOT EXISTS subscription_counting_day
    ON mart.subscription_counting (workspace_id, day);

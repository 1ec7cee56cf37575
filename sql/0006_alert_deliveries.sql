-- Webhook deliveries of alerts (docs/metrics.md §14): one row per workspace and alert id. An alert id
-- whose row says 'delivered' is never sent again, which is how re-runs and restatements dedupe.
-- attempts counts every POST ever made for the alert; last_error is the latest failure reason
-- (NULL once delivered); times are Unix seconds.
CREATE TABLE IF NOT EXISTS app.alert_deliveries (
    workspace_id TEXT NOT NULL REFERENCES app.workspaces (id) ON DELETE CASCADE,
    alert_id TEXT NOT NULL, day DATE NOT NULL, type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('delivered', 'failed')),
    attempts INTEGER NOT NULL, last_error TEXT,
    first_attempt_at BIGINT NOT NULL, last_attempt_at BIGINT NOT NULL, delivered_at BIGINT,
    PRIMARY KEY (workspace_id, alert_id)
);
CREATE INDEX IF NOT EXISTS alert_deliveries_day ON app.alert_deliveries (workspace_id, day);

-- Alert episodes (docs/metrics.md §14): consecutive local days on which the same alert (workspace, type,
-- subject; subject is the customer for margin_threshold_crossed, '' otherwise) is active form one
-- episode. Rebuilt from the stored daily rows of mart.alerts after every window write, so the
-- result does not depend on the order or split of runs. episode_id is deterministic from
-- (workspace, type, subject, opened_on). resolved_on is the first evaluated day without the alert
-- (NULL while running); status is opened (first day only so far), active or resolved. severity is
-- the latest active day's, peak_severity the worst; first_* / last_* fields are the first and latest
-- daily alert of the episode.
CREATE TABLE IF NOT EXISTS mart.alert_episodes (
    workspace_id TEXT NOT NULL, episode_id TEXT NOT NULL, type TEXT NOT NULL, subject TEXT NOT NULL,
    opened_on DATE NOT NULL, last_active_on DATE NOT NULL, resolved_on DATE,
    status TEXT NOT NULL CHECK (status IN ('opened', 'active', 'resolved')),
    peak_severity TEXT NOT NULL, severity TEXT NOT NULL, first_severity TEXT NOT NULL,
    first_alert_id TEXT NOT NULL, last_alert_id TEXT NOT NULL,
    first_message TEXT NOT NULL, last_message TEXT NOT NULL,
    first_payload_json JSONB NOT NULL, last_payload_json JSONB NOT NULL,
    PRIMARY KEY (workspace_id, episode_id)
);
CREATE INDEX IF NOT EXISTS alert_episodes_alert ON mart.alert_episodes (workspace_id, type, subject, opened_on);
CREATE INDEX IF NOT EXISTS alert_episodes_last ON mart.alert_episodes (workspace_id, last_active_on);

-- The local days whose alerts were evaluated, per workspace: an episode resolves only on a day
-- known to lack it (a day never evaluated neither continues nor resolves an episode).
CREATE TABLE IF NOT EXISTS mart.alert_evaluated_days (
    workspace_id TEXT NOT NULL, day DATE NOT NULL,
    PRIMARY KEY (workspace_id, day)
);

-- Each daily alert names its episode and whether that day opened it (NULL / FALSE for rows
-- written before this migration until their days are re-evaluated).
ALTER TABLE mart.alerts ADD COLUMN episode_id TEXT;
ALTER TABLE mart.alerts ADD COLUMN opens_episode BOOLEAN NOT NULL DEFAULT FALSE;

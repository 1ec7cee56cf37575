-- Report emails (design "Reports and the close"): one row per workspace and delivery key, e.g.
-- `close_pack/2026-10/<sha256 of the PDF>`. A key whose row says 'delivered' is never sent again,
-- which is how re-runs dedupe; a new rendering (a restated close) has a new key and is sent.
-- 'sending' claims the key while a run talks to the SMTP server, so two runs cannot both send.
-- recipients is comma separated; attempts counts every SMTP attempt ever made for the key;
-- last_error is the latest failure reason (or the refused recipients of a delivered message);
-- message_id is the Message-ID header sent; times are Unix seconds.
CREATE TABLE IF NOT EXISTS app.report_emails (
    workspace_id TEXT NOT NULL REFERENCES app.workspaces (id) ON DELETE CASCADE,
    delivery_key TEXT NOT NULL, subject TEXT NOT NULL, recipients TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL, last_error TEXT, message_id TEXT,
    first_attempt_at BIGINT NOT NULL, last_attempt_at BIGINT NOT NULL, delivered_at BIGINT,
    PRIMARY KEY (workspace_id, delivery_key)
);

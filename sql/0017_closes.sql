-- The month-end close (design "Reports and the close"): a close freezes one workspace's month. Each
-- close is a version; reopening marks it 'reopened' and the next close run writes version N+1.
-- manifest_json is what the numbers were computed from (watermarks, FX rates, code version, checks),
-- the sha256 of every file of the report set and the as-closed figures. Instants are Unix seconds.
CREATE TABLE IF NOT EXISTS app.closes (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, month TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    status TEXT NOT NULL CHECK (status IN ('closed', 'reopened')),
    manifest_json JSONB NOT NULL, closed_at BIGINT NOT NULL, reopened_at BIGINT, reason TEXT,
    UNIQUE (workspace_id, month, version)
);

-- A closed month recomputed differently later (a late refund, a backdated cancellation): the
-- closed files stay as they are and the per-metric diff (restated versus as-closed) is kept here.
-- alert is the alert type raised ('close_restated'); the next month's close pack lists the row.
CREATE TABLE IF NOT EXISTS app.restatements (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, month TEXT NOT NULL,
    close_id TEXT NOT NULL REFERENCES app.closes (id), detected_at BIGINT NOT NULL,
    diff_json JSONB NOT NULL, figures_sha256 TEXT NOT NULL, alert TEXT NOT NULL DEFAULT 'close_restated'
);
CREATE INDEX IF NOT EXISTS restatements_month ON app.restatements (workspace_id, month, detected_at);

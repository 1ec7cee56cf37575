-- Requests the pipeline picks up (docs/requests.md): a refresh of the marts over a range of days, or
-- a Stripe sync of a workspace, written by the API and the CLI and run by the requests sensor (or
-- in-process when FP_REQUESTS_INLINE). Dates DATE, instants BIGINT Unix seconds.

-- status: queued (written) -> running (claimed for a run; run_id once the run exists) ->
-- succeeded | failed (error says why). first_day/last_day bound a refresh (local days, inclusive)
-- and are NULL for a sync.
CREATE TABLE IF NOT EXISTS app.pipeline_requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('refresh', 'stripe_sync')),
    workspace_id TEXT NOT NULL REFERENCES app.workspaces (id) ON DELETE CASCADE,
    first_day DATE, last_day DATE,
    reason TEXT NOT NULL, requested_by TEXT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    run_id TEXT, error TEXT,
    created_at BIGINT NOT NULL, started_at BIGINT, finished_at BIGINT, updated_at BIGINT NOT NULL,
    CHECK (kind <> 'refresh' OR (first_day IS NOT NULL AND last_day IS NOT NULL
        AND first_day <= last_day)),
    CHECK (kind <> 'stripe_sync' OR (first_day IS NULL AND last_day IS NULL))
);
-- The sensor's "queued or running, oldest first"; the API's "this workspace's requests".
CREATE INDEX IF NOT EXISTS pipeline_requests_pending ON app.pipeline_requests (status, created_at);
CREATE INDEX IF NOT EXISTS pipeline_requests_workspace
    ON app.pipeline_requests (workspace_id, created_at);

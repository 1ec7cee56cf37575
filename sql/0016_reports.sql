-- Report store catalogue and on-demand export requests (design "Reports and the close"; the
-- platform finance API "Export Financial Report"). Portable SQL like 0001; dates DATE, instants
-- BIGINT Unix seconds. Files live under the reports folder; `path` is relative to it.

-- One row per stored report file. A report is identified by its type, period, plan filter
-- (NULL = all plans) and format; a changed rendering of the same report is a new version, never
-- an overwrite. sha256/size_bytes are of the file's bytes. close_id is set by the month-end close,
-- export_id when an export request produced the file.
CREATE TABLE IF NOT EXISTS app.report_catalogue (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, report_type TEXT NOT NULL,
    date_start DATE NOT NULL, date_end DATE NOT NULL, plan_id TEXT,
    format TEXT NOT NULL CHECK (format IN ('csv', 'pdf', 'json')),
    version INTEGER NOT NULL CHECK (version >= 1), path TEXT NOT NULL UNIQUE,
    size_bytes BIGINT NOT NULL, sha256 TEXT NOT NULL, close_id TEXT, export_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, report_type, date_start, date_end, plan_id, format, version)
);
-- NULLs are distinct in a UNIQUE constraint: this index makes "all plans" (NULL) unique too.
CREATE UNIQUE INDEX IF NOT EXISTS report_catalogue_key ON app.report_catalogue
    (workspace_id, report_type, date_start, date_end, (COALESCE(plan_id, '')), format, version);
CREATE INDEX IF NOT EXISTS report_catalogue_period ON app.report_catalogue (workspace_id, date_start);

-- Export requests, written by the CLI (and the API) with status 'processing'; the export sensor
-- renders each one into the store and sets 'completed' (catalogue_id) or 'failed' (error).
CREATE TABLE IF NOT EXISTS app.report_exports (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, report_type TEXT NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('csv', 'pdf', 'json')),
    date_start DATE NOT NULL, date_end DATE NOT NULL, plan_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('processing', 'completed', 'failed')),
    error TEXT, catalogue_id TEXT REFERENCES app.report_catalogue (id), requested_by TEXT,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    CHECK (date_start <= date_end)
);
CREATE INDEX IF NOT EXISTS report_exports_status ON app.report_exports (status, created_at);

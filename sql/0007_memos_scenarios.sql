-- Advisory memos (v1 API advisory, docs/metrics.md §9 and §14 as grounding) and saved what-if
-- scenarios (docs/metrics.md §13, v1 API scenarios). Portable SQL like 0003/0004: layer-qualified
-- names, JSONB becomes TEXT on SQLite.

-- One memo per workspace and local day, replaced on every run. inputs_json is the grounding the
-- memo was written from (that day's mart.cfo_metrics_daily row as the v1 API metrics object and
-- that day's mart.alerts rows), so a memo can always be traced back to its numbers.
-- provider is the AI provider's name, or 'fallback' for the rule-based writer (then model is NULL,
-- ai_available is FALSE and ai_error_json says why the AI was not used).
CREATE TABLE IF NOT EXISTS mart.advisory_memos (
    workspace_id TEXT NOT NULL, day DATE NOT NULL,
    summary TEXT NOT NULL, suggestions_json JSONB NOT NULL, risks_json JSONB NOT NULL,
    provider TEXT NOT NULL, model TEXT, ai_available BOOLEAN NOT NULL, ai_error_json JSONB,
    inputs_json JSONB NOT NULL, created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, day)
);

-- Saved scenarios: a baseline forecast (mart.forecasts id, not a foreign key because the default
-- forecasts are restated in place) re-run with one delta. delta_json is the normalized delta,
-- impact_json the v1 API impact object, series_json {months, scenario: {...}}. The impact
-- numbers are also columns for listing and sorting. idempotency_key / request_hash implement the
-- v1 API Idempotency-Key contract for POST (same key and body: same scenario, else 409).
CREATE TABLE IF NOT EXISTS mart.scenarios (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES app.workspaces (id) ON DELETE CASCADE,
    name TEXT, baseline_forecast_id TEXT NOT NULL, delta_type TEXT NOT NULL,
    delta_json JSONB NOT NULL, impact_json JSONB NOT NULL, series_json JSONB NOT NULL,
    final_cash_delta_cents BIGINT NOT NULL, final_mrr_cents BIGINT NOT NULL,
    idempotency_key TEXT, request_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS scenarios_ws_created ON mart.scenarios (workspace_id, created_at, id);

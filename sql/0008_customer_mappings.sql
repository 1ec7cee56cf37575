-- Customer mapping workflow (docs/metrics.md §11, margins API customer mappings and unmatched lists).
-- match_reason: the signal of an auto match (exact_id, metadata, email, name, email_domain).
-- decided_at: when a person created the mapping or accepted the proposal (NULL while pending).
ALTER TABLE app.customer_mappings ADD COLUMN match_reason TEXT;
ALTER TABLE app.customer_mappings ADD COLUMN decided_at BIGINT;

-- Rejected auto-match proposals, remembered per (customer, tag key, tag) so that re-running the
-- matcher never proposes them again. id is the rejected proposal's (deterministic) id.
CREATE TABLE IF NOT EXISTS app.customer_mapping_rejections (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, stripe_customer_id TEXT NOT NULL,
    tag_key TEXT NOT NULL DEFAULT 'customer', tag_value TEXT NOT NULL,
    confidence TEXT, match_reason TEXT, rejected_at BIGINT NOT NULL,
    UNIQUE (workspace_id, stripe_customer_id, tag_key, tag_value)
);

-- Stripe webhooks (platform finance API, docs/api.md): each workspace's webhook signing secret,
-- Fernet-encrypted like its API key, and the events Stripe delivered, one row per event id so a
-- redelivery is a no-op. request_id is the Stripe sync request the event asked for; the event is
-- pending until that request has finished. Instants are BIGINT Unix seconds.
ALTER TABLE app.stripe_connections ADD COLUMN webhook_secret_ciphertext TEXT;

CREATE TABLE IF NOT EXISTS app.stripe_webhook_events (
    workspace_id TEXT NOT NULL REFERENCES app.workspaces (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    created BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    request_id TEXT,
    PRIMARY KEY (workspace_id, event_id)
);
CREATE INDEX IF NOT EXISTS stripe_webhook_events_received
    ON app.stripe_webhook_events (workspace_id, received_at);

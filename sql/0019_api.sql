-- Read API (docs/api.md): people and machines that act for an organization, and the request state
-- that must hold across API workers (idempotency keys, rate-limit windows). Instants are BIGINT
-- Unix seconds.

-- A person who signs in; the email is unique, the password is an argon2 hash (never the password).
CREATE TABLE IF NOT EXISTS app.users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A user's role in an organization (lib/access.py has the role matrix).
CREATE TABLE IF NOT EXISTS app.memberships (
    org_id TEXT NOT NULL REFERENCES app.organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'finance', 'member')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX IF NOT EXISTS memberships_user ON app.memberships (user_id);

-- Machine credentials: the key is shown once; stored are its lookup prefix and its sha256. A key
-- scoped to a workspace sees only that workspace; revoked_at set means it no longer authenticates.
CREATE TABLE IF NOT EXISTS app.api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES app.organizations (id) ON DELETE CASCADE,
    workspace_id TEXT REFERENCES app.workspaces (id) ON DELETE CASCADE,
    name TEXT,
    role TEXT NOT NULL CHECK (role IN ('owner', 'finance', 'member')),
    key_prefix TEXT NOT NULL UNIQUE,
    key_sha256 TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX IF NOT EXISTS api_keys_org ON app.api_keys (org_id);

-- One row per (principal, Idempotency-Key): inserted before the request runs (the row is the lock
-- across workers), completed with the response to replay; status_code NULL means in progress.
CREATE TABLE IF NOT EXISTS app.idempotency_keys (
    principal TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_method TEXT NOT NULL,
    request_path TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status_code INTEGER,
    response_content_type TEXT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, idempotency_key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON app.idempotency_keys (created_at);

-- Fixed one-minute rate-limit windows: hits counted by an atomic upsert, shared by all workers.
CREATE TABLE IF NOT EXISTS app.rate_limit_windows (
    bucket TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX IF NOT EXISTS rate_limit_windows_start ON app.rate_limit_windows (window_start);

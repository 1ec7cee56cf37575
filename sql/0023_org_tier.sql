-- The 003 margins API's tier gating (docs/api.md, 003 margins API): margins, customer mappings and
-- Stripe revenue sync need the pro tier or above; a new organization is free. Operators set the
-- tier with `finance-pipeline org set-tier ORG TIER`.
ALTER TABLE app.organizations ADD COLUMN tier TEXT NOT NULL DEFAULT 'free'
    CHECK (tier IN ('free', 'pro', 'enterprise'));

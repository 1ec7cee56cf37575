-- The Stripe objects a workspace held when its sync request was claimed (docs/requests.md, What a
-- sync did): invoices, charges, refunds and subscriptions in raw, counted in the claim's
-- transaction. The finish compares the count then with it, so the v1 Stripe ingest answers how many
-- objects the sync inserted and how many it read again (`inserted`, `duplicates`). NULL for a
-- refresh and for a request claimed before this migration (its counters stay null).
ALTER TABLE app.pipeline_requests ADD COLUMN stripe_objects_at_claim BIGINT;

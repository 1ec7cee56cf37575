-- What a finished pipeline request did (docs/requests.md): for a Stripe sync that succeeded, the
-- margins API's revenue-sync counters (invoicesFetched, customersProcessed, periodsUpdated,
-- invoicesSkipped, skippedCurrencies, autoMatchesCreated, durationMs), written with its outcome by
-- `finish`. NULL while queued or running, for a refresh, and for a failed request (error says why).
ALTER TABLE app.pipeline_requests ADD COLUMN result_json JSONB;

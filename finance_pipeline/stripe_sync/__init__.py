"""Incremental, checkpointed sync of Stripe objects into `raw.stripe_*` (no Dagster here)."""

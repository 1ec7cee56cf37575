"""The 003 margins API (`/api`): margins, unmatched customers and tags, customer mappings, the
Stripe connection and revenue sync, all gated to the pro tier and above (docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter


def router() -> APIRouter:
    """Every /api route of the margins API, under the family's prefix and error dialect."""
    # Imported here: api.families imports this package's dialect.
    from finance_pipeline.api.families import MARGINS
    from finance_pipeline.api.margins import mappings, margins, stripe

    root = MARGINS.router()
    root.include_router(margins.router)
    root.include_router(mappings.router)
    root.include_router(stripe.router)
    return root

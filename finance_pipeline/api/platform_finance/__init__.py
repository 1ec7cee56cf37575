"""The 000 platform finance API (`/api/v1/platform/finance`): MRR, MRR trend, Stripe sync status
and requests, Stripe webhooks, report exports with signed download links (docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter


def router() -> APIRouter:
    """Every route of the family, under its prefix and error dialect."""
    # Imported here: api.families imports this package's dialect, and the routes import it.
    from finance_pipeline.api.families import PLATFORM_FINANCE
    from finance_pipeline.api.platform_finance import exports, metrics, sync

    root = PLATFORM_FINANCE.router()
    root.include_router(metrics.router)
    root.include_router(sync.router)
    root.include_router(exports.router)
    return root

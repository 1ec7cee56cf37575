"""The 004 v1 API (`/v1`): auth, workspaces, members, API keys, ingest, metrics, alerts,
advisory memos, forecasts and scenarios (docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter

from finance_pipeline.api.families import V1


def router() -> APIRouter:
    """Every /v1 route, under the family's prefix and error dialect."""
    from finance_pipeline.api.v1 import access, auth, cfo, forecasts, ingest, workspaces

    root = V1.router()
    root.include_router(auth.router)
    root.include_router(workspaces.router)
    root.include_router(access.members)
    root.include_router(access.api_keys)
    root.include_router(ingest.router)
    root.include_router(cfo.router)
    root.include_router(forecasts.router)
    return root

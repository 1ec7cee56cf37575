"""The 004 v1 API (`/v1`): auth, workspaces, members and API keys so far (docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter

from finance_pipeline.api.families import V1


def router() -> APIRouter:
    """Every /v1 route, under the family's prefix and error dialect."""
    from finance_pipeline.api.v1 import access, auth, workspaces

    root = V1.router()
    root.include_router(auth.router)
    root.include_router(workspaces.router)
    root.include_router(access.members)
    root.include_router(access.api_keys)
    return root

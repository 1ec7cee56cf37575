"""What the family's routes share: dependencies, instants in the seed's `Z` form, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends

from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.scoping import request_workspace
from finance_pipeline.lib.access import Permission
from finance_pipeline.tenancy import Workspace

Ctx = Annotated[ApiContext, Depends(api_context)]
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Ingester = Annotated[Principal, Depends(require(Permission.INGEST))]
Exporter = Annotated[Principal, Depends(require(Permission.EXPORTS))]
StripeAdmin = Annotated[Principal, Depends(require(Permission.STRIPE_CONNECT))]
RequestWorkspace = Annotated[Workspace, Depends(request_workspace)]


def iso_z(ts: int | None) -> str | None:
    """A Unix instant as the seed writes it (`2025-12-04T12:05:00Z`)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_status(status: str) -> str:
    """A pipeline request's or export's status in the seed's words (processing, completed,
    failed)."""
    return {"succeeded": "completed", "completed": "completed", "failed": "failed"}.get(
        status, "processing"
    )

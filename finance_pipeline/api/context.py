"""What every request of the API works with: the settings, the warehouse, its request id."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from finance_pipeline.settings import Settings
from finance_pipeline.warehouse.db import Warehouse


@dataclass(frozen=True)
class ApiContext:
    """The app's settings and migrated warehouse (one per worker process)."""

    settings: Settings
    wh: Warehouse


def api_context(request: Request) -> ApiContext:
    """Dependency: the app's ApiContext."""
    return request.app.state.ctx


def request_id(request: Request) -> str:
    """The id of this request (the client's X-Request-Id when sane, else a generated `req_...`)."""
    return request.scope.get("state", {}).get("request_id", "")

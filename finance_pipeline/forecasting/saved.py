"""Forecasts people create (v1 API POST /forecasts), saved in mart.forecasts beside the pipeline's
default ones (is_default false), so scenarios can use either as their baseline (docs/metrics.md §12).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date
from typing import Any

import sqlalchemy as sa

from finance_pipeline.forecasting.assets import forecast_for
from finance_pipeline.lib.forecast import validate_forecast_request
from finance_pipeline.margins.assets import _plain
from finance_pipeline.tenancy import Workspace, new_id
from finance_pipeline.warehouse.db import Warehouse


def create_forecast(
    wh: Warehouse,
    ws: Workspace,
    body: Mapping[str, Any],
    *,
    today: date,
    now: int | None = None,
) -> dict[str, Any]:
    """Validate and run a forecast request from the marts at its as_of (default `today`), save
    it, and return the stored row. Raises lib.forecast.ForecastValidationError (422)."""
    request = validate_forecast_request(body, today)
    response = forecast_for(wh, ws, request, request.as_of)
    row = {
        "id": new_id("fc"),
        "workspace_id": ws.id,
        "name": request.name,
        "as_of": request.as_of,
        "horizon_months": request.horizon_months,
        "request_json": _plain(dict(body)),
        "response_json": None,
        "created_at": int(time.time()) if now is None else now,
        "is_default": False,
    }
    row["response_json"] = _plain({**response, "id": row["id"]})
    with wh.begin() as db:
        db.execute(sa.insert(wh.table("mart.forecasts")), [row])
    return get_forecast(wh, ws.id, row["id"]) or row


def get_forecast(wh: Warehouse, workspace_id: str, forecast_id: str) -> dict[str, Any] | None:
    """A stored forecast row of the workspace (default or saved), or None."""
    rows = wh.rows(
        "SELECT * FROM mart.forecasts WHERE workspace_id = :w AND id = :f",
        w=workspace_id,
        f=forecast_id,
    )
    return rows[0] if rows else None

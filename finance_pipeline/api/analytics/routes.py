"""The 002 workspace analytics API (`/api/v1/client/workspace/{workspaceId}/financial/analytics`):
revenue, expenses and net per bucket of a period, from mart.revenue_daily bucketed by
lib.revenue_analytics (docs/metrics.md §10), the seed's units (whole units, 2 places) and its 400s.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.exact import ExactNumber, exact_json
from finance_pipeline.api.families import WORKSPACE_ANALYTICS
from finance_pipeline.api.scoping import workspace_by_id
from finance_pipeline.lib.access import Permission
from finance_pipeline.lib.cfo_daily import revenue_entries
from finance_pipeline.lib.revenue_analytics import (
    PERIODS,
    AnalyticsParamError,
    resolve_range,
    revenue_analytics,
)

# Our workspace ids (ws_ + hex, or any id a deployment chose): letters, digits, "_" and "-".
_WORKSPACE_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


class Amounts(BaseModel):
    """Revenue (gross incl. manual, refunds excluded), expenses (incl. fees), net = revenue -
    expenses, and refunds (negative), whole units of the reporting currency, 2 places (§10)."""

    revenue: ExactNumber = Field(examples=[2000.00])
    expenses: ExactNumber = Field(examples=[500.00])
    net: ExactNumber = Field(examples=[1500.00])
    refunds: ExactNumber = Field(examples=[0.00])


class DataPoint(Amounts):
    """One bucket: its first day (clipped to startDate) and its amounts."""

    date: str = Field(examples=["2025-01-01"])


class Analytics(BaseModel):
    """The seed's response, plus the bucket size, currency and the entries left out for a
    missing FX rate (by currency)."""

    period: str = Field(examples=["monthly"])
    granularity: str = Field(examples=["monthly"])
    startDate: str = Field(examples=["2025-01-01"])
    endDate: str = Field(examples=["2025-01-31"])
    currency: str = Field(examples=["USD"])
    dataPoints: list[DataPoint]
    totals: Amounts
    skippedCurrencies: dict[str, int] = Field(examples=[{}])


Ctx = Annotated[ApiContext, Depends(api_context)]
_PERIOD_DOC = f"One of {', '.join(PERIODS)} (default monthly)"
_DATE_DOC = "YYYY-MM-DD; required with period custom"
# Declared for the schema only: the route checks them itself, to answer the seed's 400s.
_DATE_SCHEMA = {"pattern": r"^\d{4}-\d{2}-\d{2}$", "format": "date"}


def router() -> APIRouter:
    """The family's route, under its prefix and error dialect."""
    r = WORKSPACE_ANALYTICS.router()

    @r.get("/{workspaceId}/financial/analytics", response_model=Analytics)
    def analytics(
        workspaceId: Annotated[
            str,
            Path(description="Workspace id", json_schema_extra={"pattern": _WORKSPACE_ID.pattern}),
        ],
        ctx: Ctx,
        principal: Annotated[Principal, Depends(require(Permission.READ))],
        period: Annotated[
            str | None, Query(description=_PERIOD_DOC, json_schema_extra={"enum": list(PERIODS)})
        ] = None,
        startDate: Annotated[
            str | None, Query(description=_DATE_DOC, json_schema_extra=_DATE_SCHEMA)
        ] = None,
        endDate: Annotated[
            str | None, Query(description=_DATE_DOC, json_schema_extra=_DATE_SCHEMA)
        ] = None,
    ) -> Response:
        """Revenue, expenses and net per day, week (from the workspace's week start, Sunday by
        default), month or year of the period, in the workspace's time zone and currency."""
        if not _WORKSPACE_ID.match(workspaceId):
            raise ApiError(
                400, "invalid_workspace_id", "workspaceId is not a workspace id.", "workspaceId"
            )
        ws = workspace_by_id(ctx, principal, workspaceId, param="workspaceId")
        week_start = ws.settings.get("week_start", "sunday")
        try:
            rng = resolve_range(period, startDate, endDate, ws.time_zone, week_start)
            rows = _mart_days(ctx, ws.id, rng.start, rng.end)
            out = revenue_analytics(
                revenue_entries(rows), rng.period, rng.start, rng.end, ws.time_zone, week_start
            )
        except AnalyticsParamError as exc:
            raise ApiError(400, exc.code, exc.message, param=exc.param) from exc
        out["skippedCurrencies"] = _skipped(rows)
        out["currency"] = ws.reporting_currency.upper()
        return exact_json(Analytics.model_validate(out))

    return r


def _mart_days(ctx: ApiContext, workspace_id: str, start: date, end: date) -> list[dict[str, Any]]:
    return ctx.wh.rows(
        "SELECT * FROM mart.revenue_daily WHERE workspace_id = :w AND day >= :a AND day <= :b",
        w=workspace_id,
        a=start,
        b=end,
    )


def _skipped(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Entries left out for a missing FX rate over the range, by currency (the mart keeps them
    per day; the daily sums the analytics bucket are of converted entries only)."""
    total: Counter[str] = Counter()
    for r in rows:
        raw = r["skipped_currencies_json"] or {}
        for cur, n in (json.loads(raw) if isinstance(raw, str) else raw).items():
            total[cur] += int(n)
    return dict(sorted(total.items()))

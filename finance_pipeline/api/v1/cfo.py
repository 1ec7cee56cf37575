"""`/v1/workspaces/{id}/metrics`, `/alerts` and `/advisory-memo`: the CFO marts of one day, as the
004 v1 API shows them. Nothing is computed here: mart.cfo_metrics_daily (docs/metrics.md §9),
mart.alerts (§14) and mart.advisory_memos are read as the pipeline wrote them.

Which day: `as_of` (default: today in the workspace's time zone). The marts hold days up to
yesterday (a day's partition exists once it has ended), so when `as_of` has no row yet the latest
computed day before it is answered, its date in `as_of`, with a `not_computed` warning. Each read
first waits for a pending refresh of the workspace (freshness.py).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from finance_pipeline.advisory.memos import (
    alert_object,
    memo_for_day,
    metrics_object,
    provider_from_settings,
    stored_grounding,
)
from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.exact import ExactJSONResponse, ExactNumber, exact_json
from finance_pipeline.api.scoping import workspace_by_id
from finance_pipeline.api.v1.freshness import Freshness, wait_for_refresh
from finance_pipeline.lib.access import Permission
from finance_pipeline.lib.cfo_daily import SEED_CENTS_FIELDS, as_date
from finance_pipeline.lib.money import micros_to_cents
from finance_pipeline.lib.timeutil import iso_utc
from finance_pipeline.tenancy import Workspace

router = APIRouter(prefix="/workspaces/{id}")

Ctx = Annotated[ApiContext, Depends(api_context)]
WorkspaceId = Annotated[str, Path(max_length=255, description="Workspace id (ws_...)")]
AsOf = Annotated[
    date | None,
    Query(description="YYYY-MM-DD, the last day of the 30-day window (default: today)"),
]
_DECIMAL_TEXT = re.compile(r"^-?\d+(\.\d+)?$")


class MetricsWarning(BaseModel):
    """Something the figures do not cover: missing_cash, refresh_pending, not_computed, no_data."""

    code: str
    message: str


class Metrics(BaseModel):
    """CFO metrics over the 30 days ending as_of (docs/metrics.md §9), amounts in cents."""

    as_of: str = Field(examples=["2026-02-28"])
    currency: str = Field(examples=["USD"])
    gross_revenue_cents_30d: int
    refunds_cents_30d: int
    net_revenue_cents_30d: int
    mrr_cents: int
    arr_cents: int
    burn_cents_30d: int
    recurring_burn_cents_30d: int
    one_time_expenses_cents_30d: int
    cash_on_hand_cents: int | None
    runway_months: ExactNumber | None = Field(description="2 decimals; null without cash or burn")
    runway_days: ExactNumber | None
    total_expenses_cents_30d: int
    recurring_expenses_cents_30d: int
    warnings: list[MetricsWarning]


class Alert(BaseModel):
    """An alert active on the day (docs/metrics.md §14)."""

    id: str
    type: str
    severity: str
    message: str
    payload: dict[str, Any]
    workspace_id: str
    org_id: str
    created_at: str


class AlertList(BaseModel):
    """The alerts active on as_of."""

    data: list[Alert]


class AiError(BaseModel):
    """Why the AI provider was not used (the memo is then the rule-based fallback)."""

    type: str
    code: str
    message: str


class AdvisoryMemo(BaseModel):
    """A memo grounded only in the day's metrics and alerts; provider "fallback" without AI."""

    workspace_id: str
    as_of: str
    summary: str
    suggestions: list[str]
    risks: list[str]
    grounding: dict[str, Any]
    provider: str
    model: str | None
    ai_available: bool
    ai_error: AiError | None = None


def local_today(ws: Workspace) -> date:
    """Today in the workspace's time zone (its marts' days are local days)."""
    return datetime.now(UTC).astimezone(ZoneInfo(ws.time_zone)).date()


def metrics_row(ctx: ApiContext, ws_id: str, as_of: date) -> dict[str, Any] | None:
    """The mart.cfo_metrics_daily row of as_of, else of the latest day before it (or None)."""
    rows = ctx.wh.rows(
        "SELECT * FROM mart.cfo_metrics_daily WHERE workspace_id = :w AND day <= :d"
        " ORDER BY day DESC LIMIT 1",
        w=ws_id,
        d=as_of,
    )
    return rows[0] if rows else None


def _read(
    ctx: ApiContext, principal: Principal, ws_id: str, as_of: date | None
) -> tuple[Workspace, date, dict[str, Any] | None, Freshness, list[dict[str, str]]]:
    """The workspace, the day asked, its metrics row (or the latest before), the wait's outcome
    and the warnings about which day is answered."""
    ws = workspace_by_id(ctx, principal, ws_id)
    fresh = wait_for_refresh(ctx, ws.id)
    day = as_of or local_today(ws)
    row = metrics_row(ctx, ws.id, day)
    notes: list[dict[str, str]] = []
    if row is None:
        notes.append(
            {
                "code": "no_data",
                "message": f"No metrics have been computed for this workspace up to {day}.",
            }
        )
    elif as_date(row["day"]) != day:
        notes.append(
            {
                "code": "not_computed",
                "message": f"No metrics computed for {day} yet; figures are for "
                f"{as_date(row['day'])}, the latest day computed.",
            }
        )
    return ws, day, row, fresh, notes


@router.get("/metrics", response_model=Metrics, response_class=ExactJSONResponse)
def get_metrics(
    id: WorkspaceId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
    as_of: AsOf = None,
) -> Response:
    """CFO metrics for the 30 days ending as_of, from mart.cfo_metrics_daily."""
    ws, day, row, fresh, notes = _read(ctx, principal, id, as_of)
    if row is None:
        # Nothing ingested and computed yet: every total is zero, runway unknown.
        cash = ws.cash_on_hand_micros
        obj: dict[str, Any] = {
            "as_of": day.isoformat(),
            "currency": ws.reporting_currency.upper(),
            **dict.fromkeys(SEED_CENTS_FIELDS, 0),
            "cash_on_hand_cents": None if cash is None else micros_to_cents(cash),
            "runway_months": None,
            "runway_days": None,
            "total_expenses_cents_30d": 0,
            "recurring_expenses_cents_30d": 0,
            "warnings": [],
        }
        served = None
    else:
        obj = metrics_object(row)
        served = as_date(row["day"])
    obj["warnings"] = [*obj["warnings"], *notes, *fresh.warnings]
    out = exact_json(Metrics.model_validate(obj))
    fresh.headers(out, served)
    return out


def _exact_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Decimal strings of the stored payload (`"2.50"`) as exact JSON numbers."""
    return {
        k: Decimal(v) if isinstance(v, str) and _DECIMAL_TEXT.match(v) else v
        for k, v in payload.items()
    }


@router.get("/alerts", response_model=AlertList, response_class=ExactJSONResponse)
def get_alerts(
    id: WorkspaceId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
    as_of: AsOf = None,
) -> Response:
    """Alerts active on as_of, as the pipeline evaluated them into mart.alerts."""
    ws, _day, row, fresh, _notes = _read(ctx, principal, id, as_of)
    data: list[Alert] = []
    served = None if row is None else as_date(row["day"])
    if served is not None:
        for r in ctx.wh.rows(
            "SELECT * FROM mart.alerts WHERE workspace_id = :w AND day = :d"
            " ORDER BY CASE severity WHEN 'critical' THEN 0 ELSE 1 END, type, subject, alert_id",
            w=ws.id,
            d=served,
        ):
            obj = alert_object(r)
            obj.pop("day")
            obj["payload"] = _exact_payload(obj["payload"])
            data.append(Alert(**obj, org_id=ws.org_id, created_at=iso_utc(r["created_at"])))
    out = exact_json(AlertList(data=data))
    fresh.headers(out, served)
    return out


@router.get("/advisory-memo", response_model=AdvisoryMemo, response_class=ExactJSONResponse)
def get_advisory_memo(
    id: WorkspaceId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
    as_of: AsOf = None,
) -> Response:
    """The advisory memo of as_of: the pipeline's (mart.advisory_memos), else written now from the
    day's stored metrics and alerts (the AI provider when configured, else the rule-based one)."""
    ws, _day, row, fresh, _notes = _read(ctx, principal, id, as_of)
    if row is None:
        raise ApiError(
            404, "resource_missing", "No metrics computed for this workspace yet.", param="as_of"
        )
    served = as_date(row["day"])
    stored = ctx.wh.rows(
        "SELECT * FROM mart.advisory_memos WHERE workspace_id = :w AND day = :d",
        w=ws.id,
        d=served,
    )
    if stored:
        m = stored[0]
        memo: dict[str, Any] = {
            "workspace_id": ws.id,
            "as_of": served.isoformat(),
            "summary": m["summary"],
            "suggestions": m["suggestions_json"] or [],
            "risks": m["risks_json"] or [],
            "grounding": m["inputs_json"] or {},
            "provider": m["provider"],
            "model": m["model"],
            "ai_available": bool(m["ai_available"]),
            "ai_error": m["ai_error_json"],
        }
    else:
        grounding = stored_grounding(ctx.wh, ws.id, served, served)
        memo = memo_for_day(ws, served, grounding, provider_from_settings(ctx.settings)) or {}
    out = exact_json(AdvisoryMemo.model_validate(memo))
    fresh.headers(out, served)
    return out

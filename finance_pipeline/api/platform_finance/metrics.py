"""`GET /mrr` and `GET /mrr-trend`: the MRR marts as `metrics.mrr_queries` reads them (the
definitions are there and in docs/metrics.md §4-§6); this module only translates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.exact import ExactJSONResponse, exact_json
from finance_pipeline.api.platform_finance.common import Ctx, Reader, RequestWorkspace
from finance_pipeline.api.platform_finance.dialect import Envelope
from finance_pipeline.api.platform_finance.models import MrrData, TrendData, TrendMonth
from finance_pipeline.metrics.mrr_queries import (
    DEFAULT_MONTHS,
    MAX_MONTHS,
    MAX_PLAN_ID_CHARS,
    MrrQueryError,
    mrr_metrics,
    mrr_trend,
)

router = APIRouter()


def _api_error(exc: MrrQueryError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, param=exc.param)


@router.get("/mrr", response_model=Envelope[MrrData], response_class=ExactJSONResponse)
def get_mrr(ctx: Ctx, _: Reader, ws: RequestWorkspace) -> ExactJSONResponse:
    """Current MRR, 30-day growth, active subscriptions and 30-day logo churn on the latest day
    of mart.mrr_daily (all null before the marts hold a day)."""
    try:
        data = mrr_metrics(ctx.wh, ws.id, time_zone=ws.time_zone)
    except MrrQueryError as exc:
        raise _api_error(exc) from exc
    return exact_json(Envelope[MrrData](data=MrrData(**data)))


@router.get("/mrr-trend", response_model=Envelope[TrendData], response_class=ExactJSONResponse)
def get_mrr_trend(
    ctx: Ctx,
    _: Reader,
    ws: RequestWorkspace,
    months: Annotated[
        int, Query(ge=1, le=MAX_MONTHS, description="Months to return, ending with the current")
    ] = DEFAULT_MONTHS,
    plan_id: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_PLAN_ID_CHARS, description="Only this plan (price)"),
    ] = None,
) -> ExactJSONResponse:
    """Month-end MRR and subscriptions with month-over-month growth, oldest month first; with
    `plan_id`, one plan's (mart.mrr_plan_daily; 404 for a plan the workspace never had)."""
    try:
        data = mrr_trend(ctx.wh, ws.id, months=months, plan_id=plan_id, known_workspace=True)
    except MrrQueryError as exc:
        raise _api_error(exc) from exc
    trend = TrendData(months=[TrendMonth(**m) for m in data["months"]])
    return exact_json(Envelope[TrendData](data=trend))

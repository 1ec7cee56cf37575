"""`/v1/workspaces/{id}/forecasts` and `/scenarios`: month-by-month MRR, cash and runway
projections (docs/metrics.md §12) and what-if re-runs of a saved forecast (§13).

The arithmetic is `lib.forecast`'s; start values come from the marts (forecasting/assets.py), and
both are saved in mart.forecasts / mart.scenarios by forecasting/saved.py and scenarios.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, BeforeValidator, Field, StrictFloat, StrictInt, StringConstraints

from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import ApiError, not_found
from finance_pipeline.api.exact import ExactJSONResponse, ExactNumber, exact_json
from finance_pipeline.api.pagination import ListResponse, PageParams, fetch_page, page_params
from finance_pipeline.api.scoping import workspace_by_id
from finance_pipeline.api.v1.cfo import local_today
from finance_pipeline.api.v1.freshness import wait_for_refresh
from finance_pipeline.api.v1.models import Cents, Timestamp, _Request
from finance_pipeline.forecasting import scenarios as scenario_store
from finance_pipeline.forecasting.saved import create_forecast, get_forecast
from finance_pipeline.lib.access import Permission
from finance_pipeline.lib.cfo_daily import as_date
from finance_pipeline.lib.forecast import MAX_HORIZON_MONTHS, ForecastValidationError
from finance_pipeline.lib.timeutil import iso_utc

router = APIRouter(prefix="/workspaces/{id}")

Ctx = Annotated[ApiContext, Depends(api_context)]
WorkspaceId = Annotated[str, Path(max_length=255, description="Workspace id (ws_...)")]
ItemId = Annotated[str, Path(max_length=255)]
Number = StrictInt | StrictFloat


def _whole(value: object) -> object:
    # JSON Schema's integer includes 24.0; fractions, text and booleans are not a month count.
    if isinstance(value, bool | str) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be an integer")
    return int(value) if isinstance(value, float) else value


Months = Annotated[int, Field(ge=1, le=MAX_HORIZON_MONTHS), BeforeValidator(_whole)]
Label = Annotated[str, StringConstraints(max_length=200)]
# Codes of lib.forecast kept as they are (they say what to do); other problems are invalid_field.
_KEPT_CODES = {"missing_field", "missing_cash", "missing_assumption"}


class Assumptions(_Request):
    """Monthly percents (6 is 6 %); omitted ones come from the last 3 complete months."""

    mrr_growth_pct: Number | None = None
    monthly_logo_churn_pct: Number | None = None
    gross_margin_pct: Number | None = None


class ForecastCreate(_Request):
    """A forecast request: horizon and optional as_of, assumptions and named variants."""

    name: Label | None = None
    as_of: Annotated[str, Field(examples=["2026-02-28"])] | None = None
    horizon_months: Months
    assumptions: Assumptions | None = None
    variants: dict[str, Assumptions | None] | None = None


class VariantSeries(BaseModel):
    """One variant's monthly values: MRR and cash in cents, runway in months (2 decimals)."""

    mrr_cents: list[int]
    cash_cents: list[int]
    runway_months: list[ExactNumber | None]


class ForecastSummary(BaseModel):
    """A forecast as listed (no series or assumptions)."""

    id: str
    name: str | None
    as_of: str
    horizon_months: int
    created_at: Timestamp


class Forecast(ForecastSummary):
    """A saved forecast: merged assumptions and each variant's series."""

    workspace_id: str
    org_id: str
    assumptions: dict[str, ExactNumber]
    series: dict[str, list[str] | VariantSeries] = Field(
        description="`months` (YYYY-MM) and one series per variant (base, best, worst, ...)"
    )


class Delta(_Request):
    """One change: price_change {pct: 0.10 is +10 %}, churn_change {delta_pp}, or hire
    {monthly_cost_cents, start_month YYYY-MM}."""

    type: Literal["price_change", "churn_change", "hire"]
    pct: Number | None = None
    delta_pp: Number | None = None
    monthly_cost_cents: Cents | None = None
    start_month: str | None = None


class ScenarioCreate(_Request):
    """A what-if against a saved forecast."""

    name: Label | None = None
    baseline_forecast_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    delta: Delta


class Impact(BaseModel):
    """Final cash versus the baseline and final MRR of the scenario, in cents."""

    final_cash_delta_cents: int
    final_mrr_cents: int
    baseline_final_cash_cents: int | None = None
    baseline_final_mrr_cents: int | None = None


class ScenarioSummary(BaseModel):
    """A scenario as listed (delta and impact, no series)."""

    id: str
    name: str | None
    baseline_forecast_id: str
    delta: dict[str, Any]
    impact: Impact
    created_at: Timestamp


class ScenarioSeries(BaseModel):
    """The months and the scenario's series."""

    months: list[str]
    scenario: VariantSeries


class Scenario(ScenarioSummary):
    """A saved scenario with its projected series."""

    workspace_id: str
    org_id: str
    series: ScenarioSeries


def _invalid(exc: ForecastValidationError) -> ApiError:
    code = exc.code if exc.code in _KEPT_CODES else "invalid_field"
    return ApiError(422, code, exc.message, param=exc.param)


def _lookup_error(exc: scenario_store.NotFoundError) -> ApiError:
    return ApiError(404, "resource_missing", exc.message, param=exc.param)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _forecast_out(row: dict[str, Any], org_id: str) -> Forecast:
    """A mart.forecasts row as the v1 API forecast (decimal strings back to exact numbers)."""
    resp = row["response_json"]
    series: dict[str, Any] = {"months": list(resp["series"]["months"])}
    for name, s in resp["series"].items():
        if name != "months":
            series[name] = VariantSeries(
                mrr_cents=s["mrr_cents"],
                cash_cents=s["cash_cents"],
                runway_months=[_decimal(v) for v in s["runway_months"]],
            )
    return Forecast(
        id=row["id"],
        workspace_id=row["workspace_id"],
        org_id=org_id,
        name=row["name"],
        as_of=as_date(row["as_of"]).isoformat(),
        horizon_months=int(row["horizon_months"]),
        assumptions={k: Decimal(str(v)) for k, v in resp["assumptions"].items()},
        series=series,
        created_at=iso_utc(row["created_at"]),
    )


@router.post(
    "/forecasts", status_code=201, response_model=Forecast, response_class=ExactJSONResponse
)
def post_forecast(
    id: WorkspaceId,
    body: ForecastCreate,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.FORECASTS))],
) -> Response:
    """Compute and save a forecast from the marts at as_of (start MRR, recurring expenses) and
    the workspace's cash on hand."""
    ws = workspace_by_id(ctx, principal, id)
    fresh = wait_for_refresh(ctx, ws.id)
    request = body.model_dump(exclude_unset=True)
    try:
        row = create_forecast(ctx.wh, ws, request, today=local_today(ws))
    except ForecastValidationError as exc:
        raise _invalid(exc) from exc
    out = exact_json(_forecast_out(row, ws.org_id), status_code=201)
    fresh.headers(out, None)
    return out


@router.get("/forecasts", response_model=ListResponse[ForecastSummary])
def list_forecasts(
    id: WorkspaceId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
    page: Annotated[PageParams, Depends(page_params)],
) -> ListResponse[ForecastSummary]:
    """The workspace's forecasts, the pipeline's monthly default ones included (by id)."""
    ws = workspace_by_id(ctx, principal, id)
    rows, has_more = fetch_page(
        ctx.wh,
        "SELECT id, name, as_of, horizon_months, created_at FROM mart.forecasts"
        " WHERE workspace_id = :w",
        page,
        w=ws.id,
    )
    data = [
        ForecastSummary(
            id=r["id"],
            name=r["name"],
            as_of=as_date(r["as_of"]).isoformat(),
            horizon_months=int(r["horizon_months"]),
            created_at=iso_utc(r["created_at"]),
        )
        for r in rows
    ]
    return ListResponse[ForecastSummary](data=data, has_more=has_more)


@router.get("/forecasts/{forecast_id}", response_model=Forecast, response_class=ExactJSONResponse)
def get_one_forecast(
    id: WorkspaceId,
    forecast_id: ItemId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
) -> Response:
    """One forecast with its assumptions and every variant's series."""
    ws = workspace_by_id(ctx, principal, id)
    row = get_forecast(ctx.wh, ws.id, forecast_id)
    if row is None:
        raise not_found("forecast", param="forecast_id")
    return exact_json(_forecast_out(row, ws.org_id))


@router.post(
    "/scenarios", status_code=201, response_model=Scenario, response_class=ExactJSONResponse
)
def post_scenario(
    id: WorkspaceId,
    body: ScenarioCreate,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.FORECASTS))],
) -> Response:
    """Re-run the baseline forecast's base variant with one delta and save the result."""
    ws = workspace_by_id(ctx, principal, id)
    request = body.model_dump(exclude_unset=True)
    request["delta"] = body.delta.model_dump(exclude_none=True)
    try:
        obj = scenario_store.create_scenario(ctx.wh, ws.id, request, org_id=ws.org_id)
    except ForecastValidationError as exc:
        raise _invalid(exc) from exc
    except scenario_store.NotFoundError as exc:
        raise _lookup_error(exc) from exc
    return exact_json(Scenario.model_validate(obj), status_code=201)


@router.get("/scenarios", response_model=ListResponse[ScenarioSummary])
def list_scenarios(
    id: WorkspaceId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
    page: Annotated[PageParams, Depends(page_params)],
) -> ListResponse[ScenarioSummary]:
    """The workspace's scenarios, newest first (delta and impact, no series)."""
    ws = workspace_by_id(ctx, principal, id)
    try:
        result = scenario_store.list_scenarios(
            ctx.wh, ws.id, org_id=ws.org_id, limit=page.limit, starting_after=page.starting_after
        )
    except scenario_store.NotFoundError as exc:
        raise _lookup_error(exc) from exc
    return ListResponse[ScenarioSummary].model_validate(result)


@router.get("/scenarios/{scenario_id}", response_model=Scenario, response_class=ExactJSONResponse)
def get_one_scenario(
    id: WorkspaceId,
    scenario_id: ItemId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
) -> Response:
    """One scenario with its projected series."""
    ws = workspace_by_id(ctx, principal, id)
    try:
        obj = scenario_store.get_scenario(ctx.wh, ws.id, scenario_id, org_id=ws.org_id)
    except scenario_store.NotFoundError as exc:
        raise ApiError(404, "resource_missing", exc.message, param="scenario_id") from exc
    return exact_json(Scenario.model_validate(obj))

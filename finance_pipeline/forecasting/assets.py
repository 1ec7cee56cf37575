"""Each workspace's default forecast per month (docs/metrics.md §12, v1 API forecast shape).

For the month partition M, as_of is M's last day. Start values: MRR(as_of) from mart.mrr_daily, the
workspace's cash on hand, and the recurring expenses (expenses and fees that are not one-time) of
the 30 local days ending as_of from core.ledger. Assumptions come from history
(`lib.forecast.history_assumptions` over the trailing 3 complete months). A workspace without cash
or without enough history gets no default forecast; the reason is in the run's metadata.
"""

import time
import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from finance_pipeline.lib.forecast import (
    ForecastRequest,
    ForecastValidationError,
    MonthAggregate,
    forecast,
    history_assumptions,
    last_complete_month,
    month_label,
)
from finance_pipeline.lib.money import round_half_away
from finance_pipeline.margins.assets import RECOGNIZED_KEY, _plain
from finance_pipeline.partitions import monthly_partitions
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.tenancy import Workspace, scoped_workspaces
from finance_pipeline.warehouse.db import Warehouse

FORECASTS_KEY = dg.AssetKey(["mart", "forecasts"])
HORIZON_MONTHS = 12
DEFAULT_NAME = "Default forecast"
_ID_NS = uuid.UUID("0b7a4f52-9a3e-4c55-8f0e-2d6c1e7b9a41")


def _month_bounds(month: str) -> tuple[date, date]:
    first = date(int(month[:4]), int(month[5:]), 1)
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def _mrr_row(wh: Warehouse, ws_id: str, day: date) -> dict[str, Any] | None:
    rows = wh.rows(
        "SELECT mrr_micros, paying_customers FROM mart.mrr_daily WHERE workspace_id = :w"
        " AND day = (SELECT MAX(day) FROM mart.mrr_daily WHERE workspace_id = :w AND day <= :d)",
        w=ws_id,
        d=day,
    )
    return rows[0] if rows else None


def month_aggregate(wh: Warehouse, ws_id: str, month: str) -> MonthAggregate:
    """History of one month for the default assumptions (§12)."""
    first, last = _month_bounds(month)
    start = _mrr_row(wh, ws_id, first - timedelta(days=1)) or {}
    moves = wh.rows(
        "SELECT COALESCE(SUM(new_micros + expansion_micros + reactivation_micros), 0) AS up,"
        " COALESCE(SUM(churned_customers), 0) AS churned FROM mart.mrr_daily"
        " WHERE workspace_id = :w AND day >= :a AND day <= :b",
        w=ws_id,
        a=first,
        b=last,
    )[0]
    recognized = wh.scalar(
        "SELECT COALESCE(SUM(amount_reporting_micros), 0) FROM core.recognized_revenue_monthly"
        " WHERE workspace_id = :w AND month = :m AND amount_reporting_micros IS NOT NULL",
        w=ws_id,
        m=month,
    )
    cogs = wh.scalar(
        "SELECT COALESCE(SUM(amount_reporting_micros), 0) FROM core.ledger WHERE workspace_id = :w"
        " AND kind IN ('expense', 'fee') AND category = 'COGS' AND day >= :a AND day <= :b",
        w=ws_id,
        a=first,
        b=last,
    )
    return MonthAggregate(
        month=month,
        start_mrr_micros=int(start.get("mrr_micros") or 0),
        new_expansion_reactivation_micros=int(moves["up"]),
        customers_at_start=int(start.get("paying_customers") or 0),
        customers_churned=int(moves["churned"]),
        recognized_revenue_micros=int(recognized or 0),
        cogs_micros=int(cogs or 0),
    )


def recurring_expenses_30d(wh: Warehouse, ws_id: str, as_of: date) -> int:
    """Expenses and fees of the 30 local days ending as_of, one-time expenses excluded (§9)."""
    return int(
        wh.scalar(
            "SELECT COALESCE(SUM(amount_reporting_micros), 0) FROM core.ledger"
            " WHERE workspace_id = :w AND kind IN ('expense', 'fee')"
            " AND (subtype IS NULL OR subtype NOT IN ('one_time_expense', 'one_time'))"
            " AND day >= :a AND day <= :b",
            w=ws_id,
            a=as_of - timedelta(days=29),
            b=as_of,
        )
        or 0
    )


def forecast_for(
    wh: Warehouse, ws: Workspace, request: Mapping[str, Any] | ForecastRequest, as_of: date
) -> dict[str, Any]:
    """Run a forecast request for `ws` from the marts at as_of (the request's own as_of): MRR,
    cash on hand, 30-day recurring expenses and history assumptions (§12). Raises
    ForecastValidationError (missing cash, an assumption history cannot give, a bad request)."""
    last = last_complete_month(as_of)
    first = date(int(last[:4]), int(last[5:]), 1)
    history = history_assumptions(
        [month_aggregate(wh, ws.id, month_label(first, -k)) for k in range(3)], as_of
    )
    mrr = _mrr_row(wh, ws.id, as_of) or {}
    cash_cents = (
        None
        if ws.cash_on_hand_micros is None
        else round_half_away(ws.cash_on_hand_micros, 10_000) // 10_000
    )
    return forecast(
        request,
        start_mrr_micros=int(mrr.get("mrr_micros") or 0),
        cash_on_hand_cents=cash_cents,
        monthly_recurring_expenses_micros=recurring_expenses_30d(wh, ws.id, as_of),
        history=history,
        today=as_of,
    )


def default_forecast(wh: Warehouse, ws: Workspace, as_of: date) -> dict[str, Any]:
    """The request and response of a workspace's default forecast at as_of (raises on no data)."""
    request = {"as_of": as_of.isoformat(), "horizon_months": HORIZON_MONTHS, "name": DEFAULT_NAME}
    return {"request": request, "response": forecast_for(wh, ws, request, as_of)}


@dg.multi_asset(
    name="forecasts",
    specs=[
        dg.AssetSpec(
            FORECASTS_KEY,
            deps=[
                dg.AssetKey(["mart", "mrr_daily"]),
                dg.AssetKey(["mart", "mrr_movements"]),
                dg.AssetKey(["core", "ledger"]),
                RECOGNIZED_KEY,
            ],
            partitions_def=monthly_partitions,
            group_name="forecasts",
            kinds={"sql", "python"},
            description="Each workspace's default 12-month forecast (base/best/worst) as of the "
            "month's last day, with history-derived assumptions (docs/metrics.md §12).",
        )
    ],
    # Same policy as the margins it runs with, so a monthly job has one backfill policy.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def forecasts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Compute and store the default forecast of every workspace, replacing the month's default."""
    wh = warehouse.get()
    window = context.partition_time_window
    written: dict[str, str] = {}
    skipped: dict[str, str] = {}
    now = int(time.time())
    rows = []
    months: list[tuple[date, date]] = []
    cursor = window.start.date()
    while cursor < window.end.date():
        nxt = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
        months.append((cursor, nxt - timedelta(days=1)))  # (month start, as_of = last day)
        cursor = nxt
    for _month_start, as_of in months:
        month = f"{as_of.year:04d}-{as_of.month:02d}"
        for ws in scoped_workspaces(wh):
            try:
                fc = default_forecast(wh, ws, as_of)
            except ForecastValidationError as exc:
                skipped[f"{ws.id} {month}"] = f"{exc.code}: {exc.message}"
                continue
            fid = "fc_" + uuid.uuid5(_ID_NS, f"{ws.id}\x1f{month}").hex
            fc["response"]["id"] = fid
            rows.append(
                {
                    "id": fid,
                    "workspace_id": ws.id,
                    "name": DEFAULT_NAME,
                    "as_of": as_of,
                    "horizon_months": HORIZON_MONTHS,
                    "request_json": fc["request"],
                    "response_json": _plain(fc["response"]),
                    "created_at": now,
                    "is_default": True,
                }
            )
            written[f"{ws.id} {month}"] = fid
    first, last = months[0][0], months[-1][1]
    workspaces = scoped_workspaces(wh)
    with wh.begin() as db:
        wh.lock_windows(db, ("mart.forecasts",), [ws.id for ws in workspaces])
        for ws in workspaces:
            db.execute(
                wh.text(
                    "DELETE FROM mart.forecasts WHERE workspace_id = :w AND is_default = :t"
                    " AND as_of >= :a AND as_of <= :b"
                ),
                {"w": ws.id, "t": True, "a": first, "b": last},
            )
        if rows:
            db.execute(sa.insert(wh.table("mart.forecasts")), rows)
    as_of = last
    return dg.MaterializeResult(
        asset_key=FORECASTS_KEY,
        metadata={
            "as_of": as_of.isoformat(),
            "forecasts_written": len(rows),
            **table_metadata(FORECASTS_KEY, len(rows)),
            "written": dg.MetadataValue.json(written),
            "skipped": dg.MetadataValue.json(skipped),
        },
    )

"""`/api/margins`: the month's margin table (JSON or the reports' CSV), one customer's detail and
the unmatched customers and tags. Figures are read from mart.customer_margins_monthly and
mart.customer_margins_summary_monthly (docs/metrics.md §11), never recomputed here."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from finance_pipeline.api.auth import Principal
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import not_found
from finance_pipeline.api.exact import ExactJSONResponse, exact_json, exact_number
from finance_pipeline.api.margins.gate import gated
from finance_pipeline.api.margins.models import (
    CustomerMargin,
    Envelope,
    MarginsData,
    MarginsSummary,
    UnmatchedData,
)
from finance_pipeline.api.scoping import request_workspace
from finance_pipeline.lib.access import Permission
from finance_pipeline.lib.margins import customer_detail, shift_month
from finance_pipeline.lib.recognition import month_key
from finance_pipeline.lib.report_csv import margins_file_name
from finance_pipeline.lib.timeutil import local_day
from finance_pipeline.margins import mappings
from finance_pipeline.reports.render import build_csv
from finance_pipeline.tenancy import Workspace

router = APIRouter()

Ctx = Annotated[ApiContext, Depends(api_context)]
Reader = Annotated[Principal, Depends(gated(Permission.READ))]
Ws = Annotated[Workspace, Depends(request_workspace)]
# Years 1900-2099: a month the marts can hold (year 0 is no date at all).
PERIOD_PATTERN = r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])$"
Period = Annotated[
    str | None,
    Query(pattern=PERIOD_PATTERN, description="Calendar month YYYY-MM (default: current month)"),
]
# The months the detail's revenueOverTime covers, ending with the period (the margins API's 3).
DETAIL_MONTHS = 3


def _period(ws: Workspace, period: str | None) -> str:
    """The asked month, else the current month in the workspace's time zone."""
    return period or month_key(local_day(time.time(), ws.time_zone))


def _month_days(period: str) -> tuple[date, date]:
    """First and last day of a "YYYY-MM" month."""
    first = date(int(period[:4]), int(period[5:]), 1)
    nxt = shift_month(period, 1)
    return first, date(int(nxt[:4]), int(nxt[5:]), 1) - timedelta(days=1)


def iso_ms(epoch: int | None) -> str | None:
    """Unix seconds as the margins API writes instants: `2026-04-05T10:00:00.000Z`."""
    if epoch is None:
        return None
    at = datetime.fromtimestamp(int(epoch), UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sync_state(ctx: ApiContext, ws_id: str) -> tuple[str | None, str | None]:
    """(lastSyncAt, syncStatus): the last successful Stripe sync and the connection's status; the
    mart leaves both null since they change between materializations."""
    conn = ctx.wh.rows("SELECT status FROM app.stripe_connections WHERE workspace_id = :w", w=ws_id)
    last = ctx.wh.scalar(
        "SELECT MAX(last_success_at) FROM raw.sync_state WHERE workspace_id = :w", w=ws_id
    )
    return iso_ms(last), conn[0]["status"] if conn else None


def _empty_summary() -> dict[str, Any]:
    # A month the margins job has not built (yet): zeros, nothing skipped.
    return {
        "blendedMarginPercent": None,
        "totalRevenueMicrodollars": 0,
        "totalCostMicrodollars": 0,
        "criticalCount": 0,
        "atRiskCount": 0,
        "lastSyncAt": None,
        "syncStatus": None,
        "skippedCurrencies": {},
        "untaggedCostMicrodollars": 0,
        "unmappedCostMicrodollars": 0,
    }


@router.get(
    "/margins",
    response_model=Envelope[MarginsData],
    responses={
        200: {
            "description": "The margin table (JSON), or with format=csv the margins CSV file",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
def get_margins(
    ctx: Ctx,
    principal: Reader,
    ws: Ws,
    period: Period = None,
    fmt: Annotated[
        Literal["json", "csv"], Query(alias="format", description="json (default) or csv")
    ] = "json",
) -> Response:
    """The month's customer margins: summary and customers by revenue (docs/metrics.md §11); with
    `format=csv` the same margins CSV the reports produce, as a download."""
    month = _period(ws, period)
    if fmt == "csv":
        first, last = _month_days(month)
        body = build_csv(ctx.wh, ws, "margins", first, last).render()
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{margins_file_name(month)}"'},
        )
    summaries = ctx.wh.rows(
        "SELECT summary_json, write_id FROM mart.customer_margins_summary_monthly"
        " WHERE workspace_id = :w AND month = :m",
        w=ws.id,
        m=month,
    )
    summary = dict(summaries[0]["summary_json"]) if summaries else _empty_summary()
    last_sync, status = _sync_state(ctx, ws.id)
    # The answer is decided by the month's stored write and the sync state, both read above: the
    # same key is the same bytes (no write id: rows from before 0027, never cached).
    write_id = summaries[0]["write_id"] if summaries else None
    key = (ws.id, month, write_id, last_sync, status) if write_id else None
    cached = ANSWERS.get(key) if key else None
    if cached is not None:
        return Response(cached, media_type=ExactJSONResponse.media_type)
    summary["lastSyncAt"] = summary.get("lastSyncAt") or last_sync
    summary["syncStatus"] = summary.get("syncStatus") or status
    customers = _stored_customers(ctx, ws.id, month)
    dumped = dumped_customers(customers)
    if dumped is None:
        data = MarginsData.model_validate({"summary": summary, "customers": customers})
        response: Response = exact_json(Envelope[MarginsData](data=data))
    else:
        head = MarginsSummary.model_validate(summary).model_dump(mode="python")
        response = ExactJSONResponse({"data": {"summary": head, "customers": dumped}})
    if key:
        ANSWERS.put(key, bytes(response.body))
    return response


class EncodedAnswers:
    """This worker's recently served month answers (encoded JSON), least recently used out first
    once they hold more than `max_bytes`. A month of 5,624 customers encodes to 3 MB and costs a
    quarter of a second of CPU to build; served again it costs the two small reads of its key."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        """The body stored under `key`, now the most recently used; None if there is none."""
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: tuple[Any, ...], body: bytes) -> None:
        """Keep `body` under `key`, dropping the least recently used beyond the budget."""
        if len(body) > self.max_bytes:
            return
        with self._lock:
            old = self._bodies.pop(key, None)
            self._size += len(body) - (len(old) if old is not None else 0)
            self._bodies[key] = body
            while self._size > self.max_bytes:
                _, dropped = self._bodies.popitem(last=False)
                self._size -= len(dropped)


# 64 MiB per API worker: about twenty months of a 5,000-customer workspace.
ANSWERS = EncodedAnswers(64 * 1024 * 1024)


def _stored_customers(ctx: ApiContext, ws_id: str, month: str) -> list[Any]:
    """The month's stored customer rows (row_json), in the table's order."""
    sql = " FROM mart.customer_margins_monthly WHERE workspace_id = :w AND month = :m"
    if ctx.wh.is_sqlite:
        rows = ctx.wh.rows("SELECT row_json" + sql + " ORDER BY sort_order", w=ws_id, m=month)
        return [r["row_json"] for r in rows]
    # PostgreSQL joins the rows into one JSON array, decoded in one call: one decode per row
    # (thousands in a month) cost twice the CPU. The documents are the same jsonb texts.
    text = ctx.wh.scalar(
        "SELECT string_agg(row_json::text, ',' ORDER BY sort_order)" + sql, w=ws_id, m=month
    )
    return json.loads(f"[{text or ''}]")


def _exact_percent(value: Any, seen: dict[str, str]) -> str | None:
    """A stored percent ("42.50") as `exact_number` text; raises ValueError unless it is the
    text of its own Decimal (what validating it as ExactNumber and writing it would give).
    `seen` holds the texts already converted: a month's percents repeat a lot."""
    if value is None:
        return None
    if type(value) is not str:
        raise ValueError(value)
    marked = seen.get(value)
    if marked is None:
        number = Decimal(value)
        if str(number) != value:
            raise ValueError(value)
        marked = seen[value] = exact_number(number)
    return marked


def _optional_str(value: Any) -> bool:
    return value is None or type(value) is str


def dumped_customers(rows: list[Any]) -> list[dict[str, Any]] | None:
    """The margin table's customers exactly as MarginCustomer would validate and dump them, built
    directly from the stored rows: a month of thousands of customers is one response, and
    validating every row cost most of its time. None when a row is not in the shape the margins
    job writes (the caller then validates them all, with the same result or the same error)."""
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    try:
        for r in rows:
            tags = r.get("tagValues", [])
            name, avatar, tag = r["customerName"], r["avatarUrl"], r["tagValue"]
            revenue, cost = r["revenueMicrodollars"], r["costMicrodollars"]
            margin, budget = r["marginMicrodollars"], r["budgetSuggestionMicrodollars"]
            if not (
                type(r["stripeCustomerId"]) is str
                and _optional_str(name)
                and _optional_str(avatar)
                and _optional_str(tag)
                and type(tags) is list
                and (not tags or all(type(t) is str for t in tags))
                and type(revenue) is int
                and type(cost) is int
                and type(margin) is int
                and (budget is None or type(budget) is int)
                and type(r["healthTier"]) is str
                and type(r["projectedTierWorsening"]) is bool
                and type(r["sparkline"]) is list
            ):
                return None
            spark: list[dict[str, Any]] = []
            for point in r["sparkline"]:
                projected = point.get("projected")
                if type(point["period"]) is not str or projected not in (None, False, True):
                    return None
                item = {
                    "period": point["period"],
                    "marginPercent": _exact_percent(point["marginPercent"], seen),
                }
                if projected:
                    # The margins API writes `projected` only on the projected point.
                    item["projected"] = True
                spark.append(item)
            out.append(
                {
                    "stripeCustomerId": r["stripeCustomerId"],
                    "customerName": name,
                    "avatarUrl": avatar,
                    "tagValue": tag,
                    "tagValues": list(tags),
                    "revenueMicrodollars": revenue,
                    "costMicrodollars": cost,
                    "marginMicrodollars": margin,
                    "marginPercent": _exact_percent(r["marginPercent"], seen),
                    "healthTier": r["healthTier"],
                    "sparkline": spark,
                    "projectedTierWorsening": r["projectedTierWorsening"],
                    "budgetSuggestionMicrodollars": budget,
                }
            )
    except (KeyError, TypeError, AttributeError, ValueError, ArithmeticError):
        return None
    return out


@router.get("/margins/unmatched", response_model=Envelope[UnmatchedData])
def get_unmatched(
    ctx: Ctx,
    principal: Reader,
    ws: Ws,
    period: Annotated[
        str | None,
        Query(pattern=PERIOD_PATTERN, description="Only this month's totals (default: all)"),
    ] = None,
) -> Envelope[UnmatchedData]:
    """Stripe customers with revenue but no cost mapping, cost tags with no customer, and pending
    auto matches, for mapping management (live: a new mapping shows at once)."""
    data = mappings.unmatched(ctx.wh, ws.id, period)
    return Envelope[UnmatchedData](data=UnmatchedData.model_validate(data))


@router.get("/margins/{customer}", response_model=Envelope[CustomerMargin])
def get_customer_margin(
    ctx: Ctx,
    principal: Reader,
    ws: Ws,
    customer: Annotated[
        str, Path(min_length=1, max_length=500, description="URL-encoded tag value (acme-corp)")
    ],
    period: Period = None,
) -> Response:
    """One mapped customer's margin in the month, its last 3 months and its cost by model."""
    month = _period(ws, period)
    first, last = _month_days(month)
    with ctx.wh.engine.connect() as conn:
        stored = mappings.stored_mappings(conn, ctx.wh, ws.id)
        customers = mappings.stripe_customers(conn, ctx.wh, ws.id)
        costs, _ = mappings.cost_records(conn, ctx.wh, ws.id, first, last + timedelta(days=1))
    # Resolves the tag through the decided mappings and groups the month's cost by model.
    detail = customer_detail(customer, month, {}, costs, customers, stored)
    if detail is None:
        raise not_found("customer mapping", param="customer")
    months = [shift_month(month, -k) for k in range(DETAIL_MONTHS - 1, -1, -1)]
    rows = {
        r["month"]: r
        for r in ctx.wh.rows(
            "SELECT month, row_json FROM mart.customer_margins_monthly WHERE workspace_id = :w"
            " AND customer_key = :c AND month >= :a AND month <= :b",
            w=ws.id,
            c=detail["stripeCustomerId"],
            a=months[0],
            b=month,
        )
    }
    this = rows[month]["row_json"] if month in rows else None
    data = CustomerMargin.model_validate(
        {
            **detail,
            "customerName": (this or {}).get("customerName") or detail["customerName"],
            "healthTier": this["healthTier"] if this else None,
            "marginPercent": this["marginPercent"] if this else None,
            "revenueMicrodollars": this["revenueMicrodollars"] if this else 0,
            "costMicrodollars": this["costMicrodollars"] if this else 0,
            "marginMicrodollars": this["marginMicrodollars"] if this else 0,
            "revenueOverTime": [
                {
                    "period": m,
                    "revenue": rows[m]["row_json"]["revenueMicrodollars"] if m in rows else 0,
                    "cost": rows[m]["row_json"]["costMicrodollars"] if m in rows else 0,
                }
                for m in months
            ],
        }
    )
    return exact_json(Envelope[CustomerMargin](data=data))

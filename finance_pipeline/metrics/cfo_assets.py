"""CFO metrics (docs/metrics.md §9) and daily revenue (§10) marts, partitioned by day.

A run covers a range of days (a backfill is one run). For every workspace the window's daily ledger
totals and rolling 30-day metrics are computed exactly, then the window of both marts is replaced in
one transaction; inside it the stored revenue totals are compared with core.ledger and any
difference rolls everything back, so a re-run restates and never duplicates.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

import dagster as dg

from finance_pipeline.lib.cfo_daily import (
    EXTRA_CENTS_FIELDS,
    SEED_CENTS_FIELDS,
    as_date,
    entries_by_day,
    metrics_on,
    revenue_day,
)
from finance_pipeline.lib.cfo_metrics import WINDOW_DAYS
from finance_pipeline.lib.money import MICROS_PER_CENT, foot, micros_to_decimal
from finance_pipeline.partitions import daily_partitions
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.tenancy import Workspace, scoped_workspaces
from finance_pipeline.warehouse.db import Warehouse

CFO_KEY = dg.AssetKey(["mart", "cfo_metrics_daily"])
REVENUE_KEY = dg.AssetKey(["mart", "revenue_daily"])
UPSTREAM = [dg.AssetKey(["core", "ledger"]), dg.AssetKey(["mart", "mrr_daily"])]

# Unconverted entries are grouped per currency (to count them); converted ones per kind/subtype.
_LEDGER_GROUPS = """
SELECT day, kind, subtype,
       CASE WHEN amount_reporting_micros IS NULL THEN currency END AS currency,
       COUNT(*) AS n, SUM(amount_reporting_micros) AS amount
FROM core.ledger
WHERE workspace_id = :w AND day >= :a AND day <= :b
GROUP BY day, kind, subtype, CASE WHEN amount_reporting_micros IS NULL THEN currency END
"""
_LEDGER_KIND_TOTALS = """
SELECT kind, SUM(amount_reporting_micros) AS amount FROM core.ledger
WHERE workspace_id = :w AND day >= :a AND day <= :b AND amount_reporting_micros IS NOT NULL
GROUP BY kind
"""
_MART_TOTALS = """
SELECT SUM(gross_revenue_micros) AS gross, SUM(refunds_micros) AS refunds,
       SUM(expenses_micros) AS expenses
FROM mart.revenue_daily WHERE workspace_id = :w AND day >= :a AND day <= :b
"""


def days_between(start: date, end: date) -> list[date]:
    """Every local day from start to end inclusive."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def mrr_exact_by_day(
    wh: Warehouse, workspace_id: str, start: date, end: date
) -> dict[date, Fraction]:
    """Exact end-of-day MRR (reporting micro-units) stored in mart.mrr_daily; a missing day is absent."""
    return {
        as_date(r["day"]): stored_exact_mrr(r)
        for r in wh.rows(
            "SELECT day, mrr_micros, exact_json FROM mart.mrr_daily"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b",
            w=workspace_id,
            a=start,
            b=end,
        )
    }


def stored_exact_mrr(row: dict[str, Any]) -> Fraction:
    """A mart.mrr_daily row's exact MRR (exact_json's `mrr`; its micros when that is absent)."""
    exact = row["exact_json"]
    if isinstance(exact, str):
        exact = json.loads(exact)
    value = (exact or {}).get("mrr")
    return Fraction(value) if value is not None else Fraction(row["mrr_micros"])


@dataclass
class CfoWindow:
    """One workspace's computed rows for a window, ready to replace the stored window."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    revenue: list[dict[str, Any]] = field(default_factory=list)
    days_without_mrr: int = 0


def metrics_for_days(wh: Warehouse, ws: Workspace, days: Iterable[date]) -> dict[date, dict]:
    """The cfo_metrics object of each given day, computed from core.ledger and mart.mrr_daily."""
    wanted = sorted(set(days))
    if not wanted:
        return {}
    lo, hi = wanted[0] - timedelta(days=WINDOW_DAYS - 1), wanted[-1]
    by_day = entries_by_day(wh.rows(_LEDGER_GROUPS, w=ws.id, a=lo, b=hi))
    mrr = mrr_exact_by_day(wh, ws.id, wanted[0], hi)
    return {
        d: metrics_on(d, by_day, mrr.get(d, 0), ws.cash_on_hand_micros, ws.reporting_currency)
        for d in wanted
    }


def compute_cfo_window(wh: Warehouse, ws: Workspace, start: date, end: date) -> CfoWindow:
    """Daily revenue rows and rolling CFO metric rows of `ws` for start..end (local days)."""
    lo = start - timedelta(days=WINDOW_DAYS - 1)
    by_day = entries_by_day(wh.rows(_LEDGER_GROUPS, w=ws.id, a=lo, b=end))
    mrr = mrr_exact_by_day(wh, ws.id, start, end)
    out = CfoWindow()
    for d in days_between(start, end):
        out.revenue.append(
            {
                "workspace_id": ws.id,
                "currency": ws.reporting_currency,
                **revenue_day(d, by_day.get(d, ())),
            }
        )
        if d not in mrr:
            out.days_without_mrr += 1
        m = metrics_on(d, by_day, mrr.get(d, 0), ws.cash_on_hand_micros, ws.reporting_currency)
        out.metrics.append(metrics_row(ws, d, m))
    return out


def metrics_row(ws: Workspace, day: date, m: dict[str, Any]) -> dict[str, Any]:
    """A mart.cfo_metrics_daily row from a cfo_metrics object (runway as exact decimal text)."""
    return {
        "workspace_id": ws.id,
        "day": day,
        "currency": ws.reporting_currency,
        **{k: m[k] for k in (*SEED_CENTS_FIELDS, *EXTRA_CENTS_FIELDS)},
        "runway_months": None if m["runway_months"] is None else str(m["runway_months"]),
        "runway_days": None if m["runway_days"] is None else str(m["runway_days"]),
        "warnings_json": m["warnings"],
        "skipped_currencies_json": m["skipped_currencies"],
    }


class _TotalsMismatch(Exception):
    """Raised inside the write transaction to roll it back when the check fails."""


def _cents(cents: int | None) -> str:
    return "-" if cents is None else _money(cents * MICROS_PER_CENT)


def _money(micros: int) -> str:
    """Money in whole units with 2 decimals and thousands separators, rounded half away."""
    return f"{micros_to_decimal(micros):,}"


@dg.multi_asset(
    name="cfo_marts",
    specs=[
        dg.AssetSpec(
            CFO_KEY,
            description="v1 API CFO metrics per workspace and local day over the rolling 30 days "
            "ending that day: revenue, refunds, MRR/ARR, burn, recurring burn, runway (§9).",
            group_name="cfo",
            kinds={"sql", "python"},
            deps=UPSTREAM,
            partitions_def=daily_partitions,
        ),
        dg.AssetSpec(
            REVENUE_KEY,
            description="Ledger totals per workspace and local day: gross revenue (manual "
            "included), refunds, expenses (fees included), net = revenue - expenses (§10).",
            group_name="cfo",
            kinds={"sql", "python"},
            deps=UPSTREAM,
            partitions_def=daily_partitions,
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "revenue_matches_ledger",
            asset=REVENUE_KEY,
            blocking=True,
            description="Stored revenue_daily gross, refunds and expenses over the window equal "
            "core.ledger's converted totals exactly, per workspace.",
        )
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def cfo_marts(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Compute the partition window for every workspace and replace it in both marts."""
    wh = warehouse.get()
    window = context.partition_time_window
    start = window.start.date()
    end = window.end.date() - timedelta(days=1)
    workspaces = scoped_workspaces(wh)
    results = {ws.id: compute_cfo_window(wh, ws, start, end) for ws in workspaces}
    mismatches: list[str] = []
    try:
        with wh.begin() as db:
            wh.lock_windows(db, ("mart.cfo_metrics_daily", "mart.revenue_daily"), results)
            for ws_id, res in results.items():
                for table, rows in (
                    ("mart.cfo_metrics_daily", res.metrics),
                    ("mart.revenue_daily", res.revenue),
                ):
                    db.execute(
                        wh.text(
                            f"DELETE FROM {table}"
                            " WHERE workspace_id = :w AND day >= :a AND day <= :b"
                        ),
                        {"w": ws_id, "a": start, "b": end},
                    )
                    if rows:
                        db.execute(wh.table(table).insert(), rows)
            for ws_id in results:
                params = {"w": ws_id, "a": start, "b": end}
                kinds = {
                    r.kind: int(r.amount) for r in db.execute(wh.text(_LEDGER_KIND_TOTALS), params)
                }
                ledger = (
                    kinds.get("gross_revenue", 0) + kinds.get("manual_revenue", 0),
                    kinds.get("refund", 0),
                    kinds.get("expense", 0) + kinds.get("fee", 0),
                )
                m = db.execute(wh.text(_MART_TOTALS), params).one()
                mart = tuple(int(v or 0) for v in (m.gross, m.refunds, m.expenses))
                if mart != ledger:
                    mismatches.append(
                        f"{ws_id}: revenue_daily (gross, refunds, expenses) = {mart}, "
                        f"core.ledger = {ledger}"
                    )
            if mismatches:
                raise _TotalsMismatch
    except _TotalsMismatch:
        yield dg.AssetCheckResult(
            check_name="revenue_matches_ledger",
            passed=False,
            asset_key=REVENUE_KEY,
            metadata={"mismatches": dg.MetadataValue.md("\n".join(mismatches[:50]))},
        )
        raise dg.Failure(
            f"revenue_daily does not match core.ledger for {len(mismatches)} workspace(s); "
            "nothing written"
        ) from None

    days = (end - start).days + 1
    lines = [
        "| workspace | MRR | net revenue 30d | burn 30d | recurring burn 30d | cash | runway (months) |",
        "|---|---|---|---|---|---|---|",
    ]
    cfo_meta: dict[str, Any] = {"days": days, "window": f"{start}..{end}"}
    for ws_id, res in results.items():
        if not res.metrics:
            continue
        last = res.metrics[-1]
        lines.append(
            f"| {ws_id} | {_cents(last['mrr_cents'])} | {_cents(last['net_revenue_cents_30d'])} | "
            f"{_cents(last['burn_cents_30d'])} | {_cents(last['recurring_burn_cents_30d'])} | "
            f"{_cents(last['cash_on_hand_cents'])} | {last['runway_months'] or '-'} |"
        )
        # Integer cents, never floats: Dagster still plots them, and they are the stored figures.
        for name, column in (
            ("mrr", "mrr_cents"),
            ("net_revenue_30d", "net_revenue_cents_30d"),
            ("burn_30d", "burn_cents_30d"),
        ):
            cfo_meta[f"{ws_id}_{name}_cents"] = dg.MetadataValue.int(last[column])
        if last["runway_months"] is not None:
            cfo_meta[f"{ws_id}_runway_months"] = dg.MetadataValue.text(str(last["runway_months"]))
    cfo_meta["last_day"] = dg.MetadataValue.md("\n".join(lines))
    cfo_meta["rows_written"] = sum(len(r.metrics) for r in results.values())
    cfo_meta.update(table_metadata(CFO_KEY, cfo_meta["rows_written"]))
    cfo_meta["days_without_mrr_row"] = sum(r.days_without_mrr for r in results.values())
    yield dg.MaterializeResult(asset_key=CFO_KEY, metadata=cfo_meta)

    # net = revenue - expenses (§10), footed so the displayed columns subtract to the cent;
    # refunds are not part of net and are rounded on their own.
    rev_lines = ["| workspace | revenue | expenses | net | refunds |", "|---|---|---|---|---|"]
    for ws_id, res in results.items():
        tot = {
            k: sum(r[k] for r in res.revenue)
            for k in ("gross_revenue_micros", "refunds_micros", "expenses_micros", "net_micros")
        }
        revenue, minus_expenses = foot(
            [tot["gross_revenue_micros"], -tot["expenses_micros"]],
            MICROS_PER_CENT,
            total=tot["net_micros"],
        )
        rev_lines.append(
            f"| {ws_id} | {_money(revenue)} | {_money(-minus_expenses)} | "
            f"{_money(revenue + minus_expenses)} | {_money(tot['refunds_micros'])} |"
        )
    yield dg.MaterializeResult(
        asset_key=REVENUE_KEY,
        metadata={
            "days": days,
            "window": f"{start}..{end}",
            "rows_written": sum(len(r.revenue) for r in results.values()),
            **table_metadata(REVENUE_KEY, sum(len(r.revenue) for r in results.values())),
            "window_totals": dg.MetadataValue.md("\n".join(rev_lines)),
        },
    )
    yield dg.AssetCheckResult(
        check_name="revenue_matches_ledger",
        passed=True,
        asset_key=REVENUE_KEY,
        metadata={"workspaces_checked": len(results)},
    )

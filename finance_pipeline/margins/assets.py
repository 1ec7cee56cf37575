"""Recognized revenue (docs/metrics.md §8) and monthly customer margins (§11, margins API).

`core/recognized_revenue_monthly` is rebuilt from raw on every run:
- each line of a *paid* invoice, net of its discounts and of inclusive tax (`amount` excludes
  exclusive tax already), is spread over its service period by `lib.recognition.month_split`
  (largest remainder over in-force days); a line without a period lands on the paid day;
- succeeded refunds are taken from core.ledger (already tax-exclusive, on their own day);
- post-payment credit notes add only their part that is *not* a refund (credit to the customer's
  balance, out of band), so a refund a credit note created is counted once; tax-exclusive share.
Reporting amounts convert at the rate of the paid day (refund / credit note day); a line without a
rate is kept in native currency only and counted in `skipped_lines`.

`mart/customer_margins_monthly` is partitioned by month: each workspace's margin table is computed
with `lib.margins.margin_table` and the month is replaced in one transaction, after checking that
its revenue equals the recognized revenue of the month. Each run first stores the current auto-match
proposals (`margins.mappings.refresh_auto_matches`, pending until a person accepts them); costs are
attributed through decided mappings only (manual, or auto and accepted).
"""

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import date
from fractions import Fraction
from typing import Any

import dagster as dg
import sqlalchemy as sa

from finance_pipeline.lib.ledger import fx_lookup
from finance_pipeline.lib.margins import (
    MarginThresholds,
    margin_table,
    shift_month,
    unmatched_report,
)
from finance_pipeline.lib.money import (
    MICROS_PER_CENT,
    foot,
    micros_to_decimal,
    minor_to_micros,
    round_half_away,
)
from finance_pipeline.lib.recognition import month_key, month_split
from finance_pipeline.lib.timeutil import local_day
from finance_pipeline.margins.mappings import (
    cost_records,
    refresh_auto_matches,
    rejected_pairs,
    stored_mappings,
    stripe_customers,
)
from finance_pipeline.partitions import monthly_partitions
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.tenancy import Workspace, scoped_workspaces
from finance_pipeline.warehouse.db import Warehouse

RECOGNIZED_KEY = dg.AssetKey(["core", "recognized_revenue_monthly"])
MARGINS_KEY = dg.AssetKey(["mart", "customer_margins_monthly"])
# Months before the partition month read for the sparkline projection (§11: up to 6 months).
HISTORY_MONTHS = 5


def _line_net_minor(line: Mapping[str, Any]) -> int:
    """Invoice line amount after discounts and without inclusive tax, in minor units."""
    payload = line["payload"] or {}
    net = int(line["amount"] or 0)
    for d in payload.get("discount_amounts") or []:
        net -= int(d.get("amount") or 0)
    for t in payload.get("taxes") or []:
        if t.get("tax_behavior") == "inclusive":
            net -= int(t.get("amount") or 0)
    return net


class _Acc:
    """Accumulates (customer, month, currency) -> [native, reporting, skipped lines]."""

    def __init__(self, ws: Workspace, rate: Any) -> None:
        self.ws = ws
        self.rate = rate
        self.cells: dict[tuple[str, str, str], list[int]] = {}

    def add(
        self,
        customer: str,
        native_micros: int | Fraction,
        currency: str,
        rate_day: date,
        start_ts: int | None = None,
        end_ts: int | None = None,
    ) -> None:
        """Recognize one amount: spread over its period (or on `rate_day`), FX of `rate_day`."""
        cur = currency.lower()
        native = round_half_away(Fraction(native_micros))
        rate = self.rate(cur, rate_day)
        tz = self.ws.time_zone
        native_split = month_split(native, start_ts, end_ts, tz, rate_day)
        rep_split = (
            month_split(round_half_away(native * rate), start_ts, end_ts, tz, rate_day)
            if rate is not None
            else {}
        )
        for month, micros in native_split.items():
            cell = self.cells.setdefault((customer, month, cur), [0, 0, 0])
            cell[0] += micros
            if rate is None:
                cell[2] += 1
            else:
                cell[1] += rep_split[month]

    def rows(self) -> list[dict[str, Any]]:
        """The core.recognized_revenue_monthly rows of this workspace."""
        return [
            {
                "workspace_id": self.ws.id,
                "customer_id": c,
                "month": m,
                "currency": cur,
                "amount_micros": v[0],
                "amount_reporting_micros": None if v[2] else v[1],
                "reporting_currency": self.ws.reporting_currency,
                "skipped_lines": v[2],
            }
            for (c, m, cur), v in sorted(self.cells.items())
        ]


def recognized_rows(wh: Warehouse, ws: Workspace) -> list[dict[str, Any]]:
    """Recognized revenue per customer, month and currency for one workspace (§8)."""
    rate = fx_lookup(
        wh.rows(
            "SELECT base, currency, date, rate FROM core.fx_rates WHERE base = :b",
            b=ws.reporting_currency,
        ),
        ws.reporting_currency,
    )
    acc = _Acc(ws, rate)
    lines = wh.rows(
        "SELECT l.id, l.amount, l.currency, l.period_start, l.period_end, l.payload,"
        " i.customer, i.paid_at, i.created"
        " FROM raw.stripe_invoice_lines l JOIN raw.stripe_invoices i"
        " ON i.workspace_id = l.workspace_id AND i.id = l.invoice"
        " WHERE l.workspace_id = :w AND i.status = 'paid' ORDER BY l.id",
        w=ws.id,
    )
    for ln in lines:
        paid_day = local_day(int(ln["paid_at"] or ln["created"]), ws.time_zone)
        acc.add(
            ln["customer"] or "unknown",
            minor_to_micros(_line_net_minor(ln), ln["currency"]),
            ln["currency"],
            paid_day,
            ln["period_start"],
            ln["period_end"],
        )
    for rf in wh.rows(
        "SELECT customer_id, day, amount_micros, currency FROM core.ledger"
        " WHERE workspace_id = :w AND kind = 'refund' ORDER BY entry_id",
        w=ws.id,
    ):
        acc.add(rf["customer_id"] or "unknown", rf["amount_micros"], rf["currency"], rf["day"])
    for cn in wh.rows(
        "SELECT customer, currency, post_payment_amount, refund_amount, total,"
        " total_excluding_tax, effective_at, created FROM raw.stripe_credit_notes"
        " WHERE workspace_id = :w AND (status IS NULL OR status <> 'void') ORDER BY id",
        w=ws.id,
    ):
        non_refund = int(cn["post_payment_amount"] or 0) - int(cn["refund_amount"] or 0)
        if non_refund <= 0:
            continue
        total, excl = cn["total"], cn["total_excluding_tax"]
        ratio = Fraction(int(excl), int(total)) if total and excl is not None else Fraction(1)
        day = local_day(int(cn["effective_at"] or cn["created"]), ws.time_zone)
        acc.add(
            cn["customer"] or "unknown",
            -minor_to_micros(non_refund, cn["currency"]) * ratio,
            cn["currency"],
            day,
        )
    return acc.rows()


@dg.asset(
    key=RECOGNIZED_KEY,
    deps=[
        dg.AssetKey(["raw", "stripe_invoices"]),
        dg.AssetKey(["raw", "stripe_credit_notes"]),
        dg.AssetKey(["core", "ledger"]),
        dg.AssetKey(["core", "fx_rates"]),
    ],
    group_name="margins",
    kinds={"sql", "python"},
    description="Recognized revenue by customer/month/currency (docs/metrics.md §8): paid invoice "
    "lines spread over their service days, refunds and post-payment credit notes on their own day.",
)
def recognized_revenue_monthly(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Rebuild recognized revenue for every workspace in one transaction."""
    wh = warehouse.get()
    total_rows = 0
    skipped = 0
    workspaces = scoped_workspaces(wh)
    with wh.begin() as db:
        wh.lock_windows(db, ("core.recognized_revenue_monthly",), [ws.id for ws in workspaces])
        for ws in workspaces:
            rows = recognized_rows(wh, ws)
            db.execute(
                wh.text("DELETE FROM core.recognized_revenue_monthly WHERE workspace_id = :w"),
                {"w": ws.id},
            )
            if rows:
                db.execute(sa.insert(wh.table("core.recognized_revenue_monthly")), rows)
            total_rows += len(rows)
            skipped += sum(r["skipped_lines"] for r in rows)
    return dg.MaterializeResult(
        metadata={
            "rows": total_rows,
            "skipped_lines": skipped,
            **table_metadata(RECOGNIZED_KEY, total_rows),
        }
    )


# --- margins -------------------------------------------------------------------------------------


def _thresholds(ws: Workspace) -> MarginThresholds:
    tiers = ws.settings.get("margin_tiers") or {}
    return MarginThresholds(
        Fraction(str(tiers.get("healthy", 50))), Fraction(str(tiers.get("at_risk", 20)))
    )


def compute_margins(wh: Warehouse, ws: Workspace, month: str) -> dict[str, Any]:
    """The margin table, unmatched report and recognized total of one workspace and month."""
    first = shift_month(month, -HISTORY_MONTHS)
    rev_rows = wh.rows(
        "SELECT customer_id, month, currency, amount_reporting_micros, skipped_lines"
        " FROM core.recognized_revenue_monthly"
        " WHERE workspace_id = :w AND month >= :a AND month <= :b",
        w=ws.id,
        a=first,
        b=month,
    )
    revenue: dict[tuple[str, str], int] = {}
    skipped: dict[str, int] = {}
    for r in rev_rows:
        if r["amount_reporting_micros"] is None:
            if r["month"] == month:
                skipped[r["currency"]] = skipped.get(r["currency"], 0) + int(r["skipped_lines"])
            continue
        key = (r["customer_id"], r["month"])
        revenue[key] = revenue.get(key, 0) + int(r["amount_reporting_micros"])
    y, m = int(first[:4]), int(first[5:])
    last_y, last_m = int(month[:4]), int(month[5:])
    end_excl = date(last_y + (last_m == 12), last_m % 12 + 1, 1)
    with wh.engine.connect() as conn:
        costs, skipped_costs = cost_records(conn, wh, ws.id, date(y, m, 1), end_excl)
        customers = stripe_customers(conn, wh, ws.id)
        # Only decided mappings (manual, accepted auto) attribute cost; pending ones wait (§11).
        mappings = stored_mappings(conn, wh, ws.id)
        rejected = rejected_pairs(conn, wh, ws.id)
    for cur, n in skipped_costs.get(month, {}).items():
        skipped[cur] = skipped.get(cur, 0) + n
    table = margin_table(
        month, revenue, costs, customers, mappings, _thresholds(ws), skipped_currencies=skipped
    )
    month_revenue = {k: v for k, v in revenue.items() if k[1] == month}
    month_costs = [c for c in costs if c.period == month]
    unmatched = unmatched_report(
        customers, month_revenue, month_costs, mappings, rejected, scope=ws.id
    )
    recognized_total = sum(month_revenue.values())
    return {"table": table, "unmatched": unmatched, "recognized_total": recognized_total}


def _dec(value: Any) -> str | None:
    return None if value is None else str(value)


def _money(micros: int) -> str:
    """Money in whole units with 2 decimals and thousands separators, rounded half away."""
    return f"{micros_to_decimal(micros):,}"


def margin_rows(ws_id: str, month: str, table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """mart.customer_margins_monthly rows of one margin_table result."""
    rows = []
    for i, c in enumerate(table["customers"]):
        projected = next((p for p in c["sparkline"] if p.get("projected")), None)
        rows.append(
            {
                "workspace_id": ws_id,
                "month": month,
                "customer_key": c["stripeCustomerId"],
                "stripe_customer_id": c["stripeCustomerId"],
                "customer_name": c["customerName"],
                "tag_value": c["tagValue"],
                "revenue_micros": c["revenueMicrodollars"],
                "cost_micros": c["costMicrodollars"],
                "margin_micros": c["marginMicrodollars"],
                "margin_percent": _dec(c["marginPercent"]),
                "health_tier": c["healthTier"],
                "projected_margin_percent": _dec(projected["marginPercent"]) if projected else None,
                "projected_tier_worsening": bool(c["projectedTierWorsening"]),
                "budget_suggestion_micros": c["budgetSuggestionMicrodollars"],
                "sort_order": i,
                "sparkline_json": c["sparkline"],
                "row_json": c,
            }
        )
    return rows


def _plain(doc: Any) -> Any:
    """Decimals as exact strings, so JSON columns store the same text on both dialects."""
    return json.loads(json.dumps(doc, default=str))


@dg.multi_asset(
    name="customer_margins_monthly",
    specs=[
        dg.AssetSpec(
            MARGINS_KEY,
            deps=[
                RECOGNIZED_KEY,
                dg.AssetKey(["core", "ledger"]),
                dg.AssetKey(["raw", "usage_costs"]),
                dg.AssetKey(["raw", "cost_records"]),
                dg.AssetKey(["raw", "stripe_customers"]),
            ],
            partitions_def=monthly_partitions,
            group_name="margins",
            kinds={"sql", "python"},
            description="Customer margins per month (docs/metrics.md §11): revenue, tagged "
            "cost, margin, health tier, sparkline with projection and budget suggestion; plus a "
            "per-month summary.",
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "margin_revenue_equals_recognized",
            asset=MARGINS_KEY,
            blocking=True,
            description="Revenue of the margin rows equals the month's recognized revenue, exactly.",
        )
    ],
    # A multi-asset takes a backfill policy without the beta warning @asset raises in 1.13.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def customer_margins_monthly(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator:
    """Compute every workspace's margin table for each month of the run; replace the months."""
    wh = warehouse.get()
    window = context.partition_time_window
    months: list[str] = []
    cur = month_key(window.start.date())
    end = month_key(window.end.date())
    while cur < end:
        months.append(cur)
        cur = shift_month(cur, 1)
    workspaces = scoped_workspaces(wh)
    # Auto-match proposals first (margins API revenue sync "autoMatchesCreated"): stored as pending,
    # they show in the unmatched lists and count only once a person accepts them.
    refreshed = {ws.id: refresh_auto_matches(wh, ws) for ws in workspaces}
    results = {(ws.id, m): compute_margins(wh, ws, m) for ws in workspaces for m in months}
    mismatches = [
        f"{ws_id} {m}: margins {r['table']['summary']['totalRevenueMicrodollars']}"
        f" != recognized {r['recognized_total']}"
        for (ws_id, m), r in results.items()
        if r["table"]["summary"]["totalRevenueMicrodollars"] != r["recognized_total"]
    ]
    if mismatches:
        yield dg.AssetCheckResult(
            check_name="margin_revenue_equals_recognized",
            passed=False,
            metadata={"mismatches": dg.MetadataValue.md("\n".join(mismatches[:50]))},
        )
        raise dg.Failure("margin revenue does not equal recognized revenue; nothing written")
    now = int(time.time())
    with wh.begin() as db:
        wh.lock_windows(
            db,
            ("mart.customer_margins_monthly", "mart.customer_margins_summary_monthly"),
            [ws_id for ws_id, _ in results],
        )
        for (ws_id, m), r in results.items():
            for table in ("mart.customer_margins_monthly", "mart.customer_margins_summary_monthly"):
                db.execute(
                    wh.text(f"DELETE FROM {table} WHERE workspace_id = :w AND month = :m"),
                    {"w": ws_id, "m": m},
                )
            rows = [_plain(x) for x in margin_rows(ws_id, m, r["table"])]
            if rows:
                db.execute(sa.insert(wh.table("mart.customer_margins_monthly")), rows)
            s = r["table"]["summary"]
            db.execute(
                sa.insert(wh.table("mart.customer_margins_summary_monthly")),
                [
                    {
                        "workspace_id": ws_id,
                        "month": m,
                        "revenue_micros": s["totalRevenueMicrodollars"],
                        "cost_micros": s["totalCostMicrodollars"],
                        "blended_margin_percent": _dec(s["blendedMarginPercent"]),
                        "critical_count": s["criticalCount"],
                        "at_risk_count": s["atRiskCount"],
                        "untagged_cost_micros": s["untaggedCostMicrodollars"],
                        "unmapped_cost_micros": s["unmappedCostMicrodollars"],
                        "summary_json": _plain(s),
                        "unmatched_json": _plain(r["unmatched"]),
                        "computed_at": now,
                        # Two writes in one second must still differ: the API caches on it.
                        "write_id": uuid.uuid4().hex,
                    }
                ],
            )
    # margin = revenue - cost, footed so the displayed columns subtract to the cent.
    lines = [
        "| workspace | month | revenue | cost | margin | blended % | critical | at risk |",
        "|---|---|---|---|---|---|---|---|",
    ]
    meta: dict[str, Any] = {"months": len(months)}
    for (ws_id, m), r in results.items():
        s = r["table"]["summary"]
        revenue, minus_cost = foot(
            [s["totalRevenueMicrodollars"], -s["totalCostMicrodollars"]], MICROS_PER_CENT
        )
        lines.append(
            f"| {ws_id} | {m} | {_money(revenue)} | {_money(-minus_cost)} |"
            f" {_money(revenue + minus_cost)} | {s['blendedMarginPercent']} | {s['criticalCount']}"
            f" | {s['atRiskCount']} |"
        )
        meta[f"{ws_id}_{m}_blended_margin_percent"] = _dec(s["blendedMarginPercent"]) or "n/a"
    meta["critical_count"] = sum(r["table"]["summary"]["criticalCount"] for r in results.values())
    meta["at_risk_count"] = sum(r["table"]["summary"]["atRiskCount"] for r in results.values())
    meta["rows_written"] = sum(len(r["table"]["customers"]) for r in results.values())
    meta.update(table_metadata(MARGINS_KEY, meta["rows_written"]))
    meta["auto_matches_created"] = sum(r.created for r in refreshed.values())
    meta["auto_matches_pending"] = sum(r.pending for r in refreshed.values())
    meta["margins"] = dg.MetadataValue.md("\n".join(lines))
    yield dg.MaterializeResult(asset_key=MARGINS_KEY, metadata=meta)
    yield dg.AssetCheckResult(
        check_name="margin_revenue_equals_recognized",
        passed=True,
        metadata={"workspace_months_checked": len(results)},
    )

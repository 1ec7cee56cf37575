"""What the CSV reports read: marts and core tables, returned as plain rows for lib.report_csv.

The raw layer is read only where no mart or core table holds the data: invoices (invoice_summary)
and failed charges (failed_payments) have no mart, customer names live only on the Stripe
customer objects, and the Stripe event and invoice line ids behind a movement (mrr_movements) are
provenance kept only in raw. Amounts are exact micro-units; days are local to the workspace (§1).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.cfo_daily import as_date
from finance_pipeline.lib.ledger import fx_lookup
from finance_pipeline.lib.money import minor_to_micros
from finance_pipeline.lib.plan_movements import (
    ChangeRow,
    PlanBalance,
    StoredMovement,
    customer_days,
    movements_by_plan,
)
from finance_pipeline.lib.recognition import month_key
from finance_pipeline.lib.report_csv import TrendMonth
from finance_pipeline.lib.timeutil import day_start_ts, local_day
from finance_pipeline.metrics.cfo_assets import mrr_exact_by_day
from finance_pipeline.tenancy import Workspace
from finance_pipeline.warehouse.db import Warehouse


class ReportDataMissing(RuntimeError):
    """The marts do not cover the report's period (backfill them first)."""

    def __init__(self, message: str, days_found: int = 0) -> None:
        super().__init__(message)
        self.days_found = days_found


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _range_ts(ws: Workspace, start: date, end: date) -> tuple[int, int]:
    """[S(start), S(end + 1)): the instants of the local days start..end."""
    return day_start_ts(start, ws.time_zone), day_start_ts(end + timedelta(days=1), ws.time_zone)


def customer_names(wh: Warehouse, ws: Workspace, ids: Sequence[str]) -> dict[str, str | None]:
    """Customer display names by id (raw: no mart holds Stripe customer names)."""
    rows = wh.rows_in(
        "SELECT id, name, email FROM raw.stripe_customers WHERE workspace_id = :w",
        "id",
        [i for i in ids if i],
        w=ws.id,
    )
    return {r["id"]: r["name"] or r["email"] for r in rows}


# --- mrr_breakdown -------------------------------------------------------------------------------


def mrr_roll_forward(
    wh: Warehouse, ws: Workspace, start: date, end: date
) -> tuple[Fraction, dict[str, Fraction], Fraction]:
    """(opening MRR, movements as stored: positive amounts, closing MRR) of start..end from
    mart.mrr_daily's exact values; every day of the range must be materialized."""
    rows = wh.rows(
        "SELECT day, exact_json FROM mart.mrr_daily WHERE workspace_id = :w"
        " AND day >= :a AND day <= :b ORDER BY day",
        w=ws.id,
        a=start,
        b=end,
    )
    expected = (end - start).days + 1
    if len(rows) != expected:
        raise ReportDataMissing(
            f"mart.mrr_daily of {ws.id} has {len(rows)} of the {expected} days {start}..{end};"
            " backfill the MRR marts first",
            days_found=len(rows),
        )
    exact = [_json(r["exact_json"]) for r in rows]
    moves = {
        k: sum((Fraction(e[k]) for e in exact), Fraction(0))
        for k in ("new", "expansion", "reactivation", "contraction", "churn", "fx")
    }
    return Fraction(exact[0]["previous_mrr"]), moves, Fraction(exact[-1]["mrr"])


def plan_balances(
    wh: Warehouse, ws: Workspace, start: date, end: date, plan_id: str | None = None
) -> list[PlanBalance]:
    """Each plan's exact MRR on start - 1 and on end (mart.mrr_plan_daily; no row = 0), by plan."""
    sql = (
        "SELECT day, plan_id, mrr_exact FROM mart.mrr_plan_daily WHERE workspace_id = :w"
        " AND (day = :a OR day = :b)"
    )
    params: dict[str, Any] = {"w": ws.id, "a": start - timedelta(days=1), "b": end}
    if plan_id is not None:
        sql += " AND plan_id = :p"
        params["p"] = plan_id
    opening: dict[str, Fraction] = {}
    closing: dict[str, Fraction] = {}
    for r in wh.rows(sql, **params):
        side = closing if r["day"] == end else opening
        side[r["plan_id"]] = Fraction(r["mrr_exact"])
    plans = sorted(set(opening) | set(closing) | ({plan_id} if plan_id else set()))
    return [PlanBalance(p, opening.get(p, Fraction(0)), closing.get(p, Fraction(0))) for p in plans]


def plan_movements(
    wh: Warehouse, ws: Workspace, start: date, end: date, plan_id: str | None = None
) -> dict[str, dict[str, Fraction]]:
    """The customer movements of start..end by plan and kind, signed and exact (docs/metrics.md
    §5, "Movements by plan"): mart.mrr_movements split by the plan changes in mart.mrr_changes.

    Batched: the range's movements and change days, the change rows up to `end` of the customers
    they name, and the rates of those rows' foreign currencies. With `plan_id` only that plan's
    movements are returned (the split itself needs every plan of the customer).
    """
    moves = [
        StoredMovement(r["customer_id"], as_date(r["day"]), r["kind"], Fraction(r["amount_exact"]))
        for r in wh.rows(
            "SELECT customer_id, day, kind, amount_exact FROM mart.mrr_movements"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b AND kind <> 'fx'",
            w=ws.id,
            a=start,
            b=end,
        )
    ]
    customers = {m.customer_id for m in moves} | {
        r["customer_id"]
        for r in wh.rows(
            "SELECT DISTINCT customer_id FROM mart.mrr_changes"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b",
            w=ws.id,
            a=start,
            b=end,
        )
    }
    changes = [
        ChangeRow(
            r["customer_id"],
            r["currency"],
            as_date(r["day"]),
            {p: Fraction(v) for p, v in (_json(r["by_plan_json"]) or {}).items()},
        )
        for r in wh.rows_in(
            "SELECT customer_id, currency, day, by_plan_json FROM mart.mrr_changes"
            " WHERE workspace_id = :w AND day <= :b",
            "customer_id",
            customers,
            w=ws.id,
            b=end,
        )
    ]
    foreign = {c.currency for c in changes} - {ws.reporting_currency}
    rate = fx_lookup(
        wh.rows_in(
            "SELECT base, currency, date, rate FROM core.fx_rates"
            " WHERE base = :r AND date >= :a AND date <= :b",
            "currency",
            foreign,
            r=ws.reporting_currency,
            a=start,
            b=end,
        ),
        ws.reporting_currency,
    )
    split = movements_by_plan(customer_days(moves, changes, start, end), rate)
    if plan_id is not None:
        return {plan_id: split[plan_id]} if plan_id in split else {}
    return split


# --- invoice_summary -----------------------------------------------------------------------------


def _plan_invoices(wh: Warehouse, ws: Workspace, plan_id: str) -> set[str]:
    """Invoices with a line of this plan (price)."""
    return {
        r["invoice"]
        for r in wh.rows(
            "SELECT DISTINCT invoice FROM raw.stripe_invoice_lines"
            " WHERE workspace_id = :w AND price = :p",
            w=ws.id,
            p=plan_id,
        )
    }


def invoices(
    wh: Warehouse, ws: Workspace, start: date, end: date, plan_id: str | None = None
) -> list[dict[str, Any]]:
    """Finalized invoices created on local days start..end (drafts can still change: left out).

    Raw layer: no mart holds invoices. Discount is the sum of `total_discount_amounts`; tax is
    total - total_excluding_tax (exclusive tax; inclusive tax is part of the subtotal already).
    """
    a, b = _range_ts(ws, start, end)
    rows = wh.rows(
        "SELECT id, customer, status, currency, created, paid_at, period_start, period_end,"
        " subtotal, total, total_excluding_tax, amount_paid, payload FROM raw.stripe_invoices"
        " WHERE workspace_id = :w AND created >= :a AND created < :b AND status <> 'draft'"
        " ORDER BY created, id",
        w=ws.id,
        a=a,
        b=b,
    )
    if plan_id is not None:
        keep = _plan_invoices(wh, ws, plan_id)
        rows = [r for r in rows if r["id"] in keep]
    names = customer_names(wh, ws, [r["customer"] for r in rows])
    tz = ws.time_zone
    out = []
    for r in rows:
        payload = _json(r["payload"]) or {}
        cur = r["currency"]
        discount = sum(
            int(d.get("amount") or 0) for d in payload.get("total_discount_amounts") or []
        )
        total = int(r["total"] or 0)
        excl = r["total_excluding_tax"]
        tax = total - int(excl) if excl is not None else 0
        out.append(
            {
                "id": r["id"],
                "number": payload.get("number"),
                "customer_id": r["customer"],
                "customer_name": names.get(r["customer"]),
                "status": r["status"],
                "created": local_day(int(r["created"]), tz),
                "paid": local_day(int(r["paid_at"]), tz) if r["paid_at"] else None,
                "period_start": local_day(int(r["period_start"]), tz)
                if r["period_start"]
                else None,
                "period_end": local_day(int(r["period_end"]), tz) if r["period_end"] else None,
                "subtotal": minor_to_micros(int(r["subtotal"] or 0), cur),
                "discount": minor_to_micros(discount, cur),
                "tax": minor_to_micros(tax, cur),
                "total": minor_to_micros(total, cur),
                "amount_paid": minor_to_micros(int(r["amount_paid"] or 0), cur),
                "currency": cur,
            }
        )
    return out


# --- revenue_trend -------------------------------------------------------------------------------


def revenue_months(wh: Warehouse, ws: Workspace, start: date, end: date) -> list[TrendMonth]:
    """Per month of start..end (clipped): sums of mart.revenue_daily and the MRR on the month's
    last day in range (mart.mrr_daily, a balance; None when that day is not materialized)."""
    sums: dict[str, list[int]] = {}
    for r in wh.rows(
        "SELECT day, gross_revenue_micros, refunds_micros, expenses_micros FROM mart.revenue_daily"
        " WHERE workspace_id = :w AND day >= :a AND day <= :b",
        w=ws.id,
        a=start,
        b=end,
    ):
        cell = sums.setdefault(month_key(r["day"]), [0, 0, 0])
        cell[0] += int(r["gross_revenue_micros"])
        cell[1] += int(r["refunds_micros"])
        cell[2] += int(r["expenses_micros"])
    month_ends: dict[str, date] = {}
    day = start
    while day <= end:
        month_ends[month_key(day)] = day  # ends as the month's last day in range
        day += timedelta(days=1)
    mrr = mrr_exact_by_day(wh, ws.id, start, end)
    return [
        TrendMonth(m, *sums.get(m, [0, 0, 0]), mrr=mrr.get(last))
        for m, last in sorted(month_ends.items())
    ]


# --- failed_payments -----------------------------------------------------------------------------


def failed_charges(
    wh: Warehouse, ws: Workspace, start: date, end: date, plan_id: str | None = None
) -> list[dict[str, Any]]:
    """Failed charges created on local days start..end with their invoice (raw: no mart holds
    failed payments; the invoice comes from the invoice payment, else the charge's payload)."""
    a, b = _range_ts(ws, start, end)
    rows = wh.rows(
        "SELECT id, customer, amount, currency, created, failure_code, payment_intent, payload"
        " FROM raw.stripe_charges WHERE workspace_id = :w AND status = 'failed'"
        " AND created >= :a AND created < :b ORDER BY created, id",
        w=ws.id,
        a=a,
        b=b,
    )
    invoice_of = {
        r["charge"]: r["invoice"]
        for r in wh.rows_in(
            "SELECT charge, invoice FROM raw.stripe_invoice_payments WHERE workspace_id = :w",
            "charge",
            [r["id"] for r in rows],
            w=ws.id,
        )
    }
    names = customer_names(wh, ws, [r["customer"] for r in rows])
    keep = _plan_invoices(wh, ws, plan_id) if plan_id is not None else None
    out = []
    for r in rows:
        payload = _json(r["payload"]) or {}
        invoice = invoice_of.get(r["id"]) or payload.get("invoice")
        if keep is not None and invoice not in keep:
            continue
        out.append(
            {
                "day": local_day(int(r["created"]), ws.time_zone),
                "customer_id": r["customer"],
                "customer_name": names.get(r["customer"]),
                "amount": minor_to_micros(int(r["amount"] or 0), r["currency"]),
                "currency": r["currency"],
                "failure_code": r["failure_code"] or payload.get("failure_code"),
                "failure_message": payload.get("failure_message"),
                "invoice_id": invoice,
                "charge_id": r["id"],
                "payment_intent_id": r["payment_intent"],
            }
        )
    return out


# --- margins -------------------------------------------------------------------------------------


def margin_rows(wh: Warehouse, ws: Workspace, month: str) -> tuple[list[dict[str, Any]], Any]:
    """The month's mart.customer_margins_monthly rows in the API's order, and the blended percent."""
    rows = wh.rows(
        "SELECT customer_name, stripe_customer_id, tag_value, revenue_micros, cost_micros,"
        " margin_micros, margin_percent, health_tier FROM mart.customer_margins_monthly"
        " WHERE workspace_id = :w AND month = :m ORDER BY sort_order",
        w=ws.id,
        m=month,
    )
    blended = wh.scalar(
        "SELECT blended_margin_percent FROM mart.customer_margins_summary_monthly"
        " WHERE workspace_id = :w AND month = :m",
        w=ws.id,
        m=month,
    )
    return rows, blended


# --- mrr_movements -------------------------------------------------------------------------------


def customer_movements(
    wh: Warehouse, ws: Workspace, start: date, end: date
) -> list[dict[str, Any]]:
    """Each mart.mrr_movements row of start..end with what it traces back to: the customer's MRR
    after the day and its plans (mart.mrr_changes), the subscriptions and items whose history
    changed that day (core.subscription_history), and the Stripe events and invoice lines of those
    subscriptions behind the change (raw, read for provenance only: see `_stripe_sources`).

    Workspace fx is kept per currency and day in mart.mrr_daily, not per customer: no fx rows here.
    """
    moves = wh.rows(
        "SELECT customer_id, day, kind, amount_exact, reason FROM mart.mrr_movements"
        " WHERE workspace_id = :w AND day >= :a AND day <= :b ORDER BY day, customer_id, kind",
        w=ws.id,
        a=start,
        b=end,
    )
    customers = sorted({m["customer_id"] for m in moves})
    changes: dict[str, list[dict[str, Any]]] = {}
    for r in wh.rows_in(
        "SELECT customer_id, currency, day, mrr_exact, by_plan_json FROM mart.mrr_changes"
        " WHERE workspace_id = :w AND day <= :b",
        "customer_id",
        customers,
        w=ws.id,
        b=end,
    ):
        changes.setdefault(r["customer_id"], []).append(r)
    for rows in changes.values():
        rows.sort(key=lambda r: (r["day"], r["currency"]))
    history: dict[str, list[dict[str, Any]]] = {}
    for r in wh.rows_in(
        "SELECT customer_id, subscription_id, item_id, valid_from, valid_to"
        " FROM core.subscription_history WHERE workspace_id = :w",
        "customer_id",
        customers,
        w=ws.id,
    ):
        history.setdefault(r["customer_id"], []).append(r)
    names = customer_names(wh, ws, customers)
    traced = [(m, as_date(m["day"])) for m in moves]
    changed = [_subscriptions_changed(history.get(m["customer_id"], []), ws, d) for m, d in traced]
    sources = _stripe_sources(wh, ws, start, end, {s for subs, _ in changed for s in subs})
    out = []
    for (m, day), (subs, items) in zip(traced, changed, strict=True):
        after, before = _change_around(changes.get(m["customer_id"], []), day)
        plans_from = after if after is not None and _json(after["by_plan_json"]) else before
        out.append(
            {
                "day": day,
                "customer_id": m["customer_id"],
                "customer_name": names.get(m["customer_id"]),
                "kind": m["kind"],
                "reason": m["reason"],
                "amount_exact": Fraction(m["amount_exact"]),
                "mrr_after": None if after is None else Fraction(after["mrr_exact"]),
                "mrr_currency": None if after is None else after["currency"],
                "plans": sorted(_json(plans_from["by_plan_json"])) if plans_from else [],
                "subscription_ids": subs,
                "item_ids": items,
                "event_ids": sources.event_ids(subs, day),
                "invoice_line_ids": sources.line_ids(subs, items, day, m["kind"] == "churn"),
            }
        )
    return out


@dataclass(frozen=True)
class _StripeSources:
    """The synced Stripe events and invoice lines of some subscriptions over a report's range."""

    time_zone: str
    # (subscription, local day) -> [(created, event id)]
    events: Mapping[tuple[str, date], Sequence[tuple[int, str]]]
    # subscription -> its lines overlapping the range: (period_start, id, item, proration)
    lines: Mapping[str, Sequence[tuple[int, str, str | None, bool]]]

    def event_ids(self, subs: Sequence[str], day: date) -> list[str]:
        """The events about `subs` created on local day `day`, oldest first."""
        found = {e for s in subs for e in self.events.get((s, day), ())}
        return [eid for _, eid in sorted(found)]

    def line_ids(
        self, subs: Sequence[str], items: Sequence[str], day: date, churn: bool
    ) -> list[str]:
        """The lines of these subscription items whose service period starts on local day `day`
        (the lines that bill the new state: a first period, a renewal, proration credit and
        charge); for a churn also each item's last recurring line that started before `day` (the
        billing of the MRR that was lost). By period start, then id."""
        a = day_start_ts(day, self.time_zone)
        wanted = set(items)
        found: set[tuple[int, str]] = set()
        for s in subs:
            last: dict[str, tuple[int, str]] = {}
            for start, lid, item, proration in self.lines.get(s, ()):
                if item is None or item not in wanted:
                    continue  # a one-off invoice item bills no subscription state
                if local_day(start, self.time_zone) == day:
                    found.add((start, lid))
                elif churn and start < a and not proration:
                    last[item] = max(last.get(item, (start, lid)), (start, lid))
            found.update(last.values())
        return [lid for _, lid in sorted(found)]


def _stripe_sources(
    wh: Warehouse, ws: Workspace, start: date, end: date, subs: Collection[str]
) -> _StripeSources:
    """The raw Stripe events and invoice lines of `subs` behind the movements of start..end, for
    provenance only (no number is computed from them). Read in batches by indexed columns.

    Events: those whose data object is one of the subscriptions, or one of their invoices
    (raw.stripe_invoices.subscription), created on a local day of the range. Lines: those of the
    subscriptions whose service period overlaps the range (a churned item's last billed period
    reaches at least to the churn, so ends in the range or after it).
    """
    a, b = _range_ts(ws, start, end)
    tz = ws.time_zone
    wanted = sorted(subs)
    found = [
        (r["object_id"], r)
        for r in wh.rows_in(
            "SELECT id, created, object_id FROM raw.stripe_events WHERE workspace_id = :w"
            " AND object_type = 'subscription' AND created >= :a AND created < :b",
            "object_id",
            wanted,
            w=ws.id,
            a=a,
            b=b,
        )
    ]
    # An invoice's events can come long after it was created (paid late, marked uncollectible):
    # every invoice created before the range ends may have one in it.
    invoice_sub = {
        r["id"]: r["subscription"]
        for r in wh.rows_in(
            "SELECT id, subscription FROM raw.stripe_invoices WHERE workspace_id = :w"
            " AND created < :b",
            "subscription",
            wanted,
            w=ws.id,
            b=b,
        )
    }
    found += [
        (invoice_sub[r["object_id"]], r)
        for r in wh.rows_in(
            "SELECT id, created, object_id FROM raw.stripe_events WHERE workspace_id = :w"
            " AND object_type = 'invoice' AND created >= :a AND created < :b",
            "object_id",
            sorted(invoice_sub),
            w=ws.id,
            a=a,
            b=b,
        )
    ]
    events: dict[tuple[str, date], list[tuple[int, str]]] = {}
    for sub, r in found:
        created = int(r["created"])
        events.setdefault((sub, local_day(created, tz)), []).append((created, r["id"]))
    lines: dict[str, list[tuple[int, str, str | None, bool]]] = {}
    for r in wh.rows_in(
        "SELECT id, subscription, subscription_item, period_start, proration"
        " FROM raw.stripe_invoice_lines WHERE workspace_id = :w"
        " AND period_start < :b AND period_end >= :a",
        "subscription",
        wanted,
        w=ws.id,
        a=a,
        b=b,
    ):
        lines.setdefault(r["subscription"], []).append(
            (int(r["period_start"]), r["id"], r["subscription_item"] or None, bool(r["proration"]))
        )
    return _StripeSources(tz, events, lines)


def _change_around(
    rows: Sequence[Mapping[str, Any]], day: date
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """The customer's latest change row on or before `day` and the one before it."""
    upto = [r for r in rows if r["day"] <= day]
    on_day = [r for r in upto if r["day"] == day]
    after = on_day[-1] if on_day else (upto[-1] if upto else None)
    earlier = [r for r in upto if r["day"] < day]
    return after, earlier[-1] if earlier else None


def _subscriptions_changed(
    rows: Sequence[Mapping[str, Any]], ws: Workspace, day: date
) -> tuple[list[str], list[str]]:
    """Subscriptions and items whose history interval starts or ends on local day `day`; else
    those in force that day (an fx-free movement always has one or the other)."""
    a, b = _range_ts(ws, day, day)
    changed = [
        r
        for r in rows
        if a <= int(r["valid_from"]) < b
        or (r["valid_to"] is not None and a <= int(r["valid_to"]) < b)
    ]
    if not changed:
        changed = [
            r
            for r in rows
            if int(r["valid_from"]) < b and (r["valid_to"] is None or int(r["valid_to"]) >= b)
        ]
    subs = sorted({r["subscription_id"] for r in changed})
    items = sorted({r["item_id"] for r in changed if r["item_id"]})
    return subs, items

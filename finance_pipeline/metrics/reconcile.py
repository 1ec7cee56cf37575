"""Reconciliation of invoices with MRR (metrics.md §4): each period's non-proration subscription
lines, normalized to a month, should equal that subscription's MRR at the period's start."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from finance_pipeline.core.history_io import states_from_rows
from finance_pipeline.lib.money import minor_to_micros
from finance_pipeline.lib.mrr import Settings, evaluate_at, monthly_factor
from finance_pipeline.warehouse.db import Warehouse


@dataclass(frozen=True)
class LineMismatch:
    """A billing period whose invoiced amount disagrees with the reconstructed MRR."""

    subscription_id: str
    period_start: int
    invoiced_monthly_micros: Fraction
    mrr_micros: Fraction


def invoice_mrr_mismatches(
    wh: Warehouse,
    workspace_id: str,
    settings: Settings,
    periods_from: int | None = None,
    periods_to: int | None = None,
) -> tuple[int, list[LineMismatch]]:
    """(periods compared, mismatches) over the non-proration, non-metered subscription periods
    starting in [periods_from, periods_to) (epoch seconds; every period when omitted), so a daily
    run checks its window's renewals, not the whole history."""
    window = ""
    params: dict[str, Any] = {"w": workspace_id, "f": False}
    if periods_from is not None:
        window += " AND l.period_start >= :pa"
        params["pa"] = periods_from
    if periods_to is not None:
        window += " AND l.period_start < :pb"
        params["pb"] = periods_to
    lines = wh.rows(
        "SELECT l.subscription, l.price, l.amount, l.currency, l.period_start, i.status, "
        f"{wh.json_field('l.payload', 'discount_amounts')} AS discount_amounts_json, "
        f"{wh.json_field('l.payload', 'taxes')} AS taxes_json"
        " FROM raw.stripe_invoice_lines l JOIN raw.stripe_invoices i"
        " ON i.workspace_id = l.workspace_id AND i.id = l.invoice"
        " WHERE l.workspace_id = :w AND l.subscription IS NOT NULL AND l.proration = :f" + window,
        **params,
    )
    subscriptions = {ln["subscription"] for ln in lines}
    if not subscriptions:
        return 0, []
    states = defaultdict(list)
    for st in states_from_rows(
        wh.rows_in(
            "SELECT * FROM core.subscription_history WHERE workspace_id = :w",
            "subscription_id",
            subscriptions if window else None,
            w=workspace_id,
        )
    ):
        states[st.subscription_id].append(st)
    prices = {
        r["id"]: r
        for r in wh.rows(
            "SELECT id, recurring_interval, recurring_interval_count, usage_type, tax_behavior"
            " FROM raw.stripe_prices WHERE workspace_id = :w",
            w=workspace_id,
        )
    }
    periods: dict[tuple[str, int], Fraction] = defaultdict(Fraction)
    for ln in lines:
        price = prices.get(ln["price"])
        if price is None or price["usage_type"] == "metered" or ln["status"] in ("void", "draft"):
            continue
        net = int(ln["amount"]) - sum(int(d["amount"]) for d in ln["discount_amounts_json"] or ())
        net -= sum(
            int(t.get("amount") or 0)
            for t in ln["taxes_json"] or ()
            if t.get("tax_behavior") == "inclusive"
        )
        factor = monthly_factor(
            price["recurring_interval"] or "month", int(price["recurring_interval_count"] or 1)
        )
        periods[(ln["subscription"], int(ln["period_start"]))] += (
            minor_to_micros(net, ln["currency"]) * factor
        )
    # A subscription's intervals do not overlap: the one in force just after an instant is the
    # last starting before it, found by bisection instead of evaluating every interval.
    starts = {}
    for sub, seq in states.items():
        seq.sort(key=lambda st: st.valid_from)
        starts[sub] = [st.valid_from for st in seq]
    mismatches = []
    for (sub, start), invoiced in sorted(periods.items()):
        # The state in force just after the period starts (the renewal's own instant).
        i = bisect.bisect_left(starts.get(sub, ()), start + 1) - 1
        value = evaluate_at(states[sub][i], start + 1, settings).mrr if i >= 0 else Fraction(0)
        if abs(value - invoiced) > 1:  # within a micro-unit: per-line rounding of Stripe cents
            mismatches.append(LineMismatch(sub, start, invoiced, value))
    return len(periods), mismatches

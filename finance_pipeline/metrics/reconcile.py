"""Reconciliation of invoices with MRR (metrics.md §4): each period's non-proration subscription
lines, normalized to a month, should equal that subscription's MRR at the period's start."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction

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
    wh: Warehouse, workspace_id: str, settings: Settings
) -> tuple[int, list[LineMismatch]]:
    """(periods compared, mismatches) over every non-proration, non-metered subscription period."""
    states = defaultdict(list)
    for st in states_from_rows(
        wh.rows("SELECT * FROM core.subscription_history WHERE workspace_id = :w", w=workspace_id)
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
    for ln in wh.rows(
        "SELECT l.subscription, l.price, l.amount, l.currency, l.period_start, l.payload,"
        " i.status FROM raw.stripe_invoice_lines l JOIN raw.stripe_invoices i"
        " ON i.workspace_id = l.workspace_id AND i.id = l.invoice"
        " WHERE l.workspace_id = :w AND l.subscription IS NOT NULL AND l.proration = :f",
        w=workspace_id,
        f=False,
    ):
        price = prices.get(ln["price"])
        if price is None or price["usage_type"] == "metered" or ln["status"] in ("void", "draft"):
            continue
        payload = ln["payload"] if isinstance(ln["payload"], dict) else json.loads(ln["payload"])
        net = int(ln["amount"]) - sum(
            int(d["amount"]) for d in payload.get("discount_amounts") or ()
        )
        net -= sum(
            int(t.get("amount") or 0)
            for t in payload.get("taxes") or ()
            if t.get("tax_behavior") == "inclusive"
        )
        factor = monthly_factor(
            price["recurring_interval"] or "month", int(price["recurring_interval_count"] or 1)
        )
        periods[(ln["subscription"], int(ln["period_start"]))] += (
            minor_to_micros(net, ln["currency"]) * factor
        )
    mismatches = []
    for (sub, start), invoiced in sorted(periods.items()):
        # The state in force just after the period starts (the renewal's own instant).
        value = sum(
            (evaluate_at(st, start + 1, settings).mrr for st in states.get(sub, ())), Fraction(0)
        )
        if abs(value - invoiced) > 1:  # within a micro-unit: per-line rounding of Stripe cents
            mismatches.append(LineMismatch(sub, start, invoiced, value))
    return len(periods), mismatches

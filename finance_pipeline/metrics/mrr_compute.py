"""MRR marts for one workspace and a window of days, computed from core tables (no Dagster)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from finance_pipeline.core.history_io import HISTORY_SELECT, states_from_rows
from finance_pipeline.lib.ledger import fx_lookup
from finance_pipeline.lib.money import round_half_away
from finance_pipeline.lib.mrr import Settings, SubscriptionState
from finance_pipeline.lib.mrr_timeline import (
    MANUAL_CUSTOMER,
    CompanyDay,
    CompanyTotals,
    FxLookup,
    ManualRecurring,
    Movement,
    PlanTotals,
    company_days,
    company_totals,
    customer_mrr_window,
    customers_with_mrr_before,
    daily_movements,
    plan_days,
    plan_totals,
)
from finance_pipeline.lib.timeutil import day_start_ts
from finance_pipeline.tenancy import Workspace
from finance_pipeline.warehouse.db import Warehouse

MONEY_FIELDS = ("mrr", "cmrr", "new", "expansion", "reactivation", "contraction", "churn", "fx")


def _exact(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def mrr_settings(ws: Workspace) -> Settings:
    """The workspace's metric switches (docs/metrics.md §3-4) as engine settings."""
    s = ws.settings
    return Settings(
        discount_mode=s.get("discount_mode", "all_active"),
        count_paused=bool(s.get("count_paused", False)),
        past_due_grace_days=s.get("past_due_grace_days"),
        tz=ws.time_zone,
        week_start=s.get("week_start", "sunday"),
    )


@dataclass
class MrrWindow:
    """Rows of every MRR mart for one workspace and days [start, end]."""

    changes: list[dict[str, Any]] = field(default_factory=list)
    movements: list[dict[str, Any]] = field(default_factory=list)
    daily: list[dict[str, Any]] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)
    counting: list[dict[str, Any]] = field(default_factory=list)
    identity_failures: list[str] = field(default_factory=list)
    company: list[CompanyDay] = field(default_factory=list)


# Customers whose MRR window is computed at once: the marts' memory is bounded by a batch, not by
# the workspace (the company and plan summaries are summed over batches, exactly).
MRR_BATCH_CUSTOMERS = 2000

# Receives one batch's mart rows (changes, movements, counting) to write them; they are then
# dropped instead of being held in the returned window.
RowSink = Callable[[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]], None]


def compute_mrr_window(
    wh: Warehouse,
    ws: Workspace,
    start: date,
    end: date,
    *,
    batch_customers: int | None = None,
    sink: RowSink | None = None,
) -> MrrWindow:
    """Change rows, movements, daily and per-plan summaries and the subscriptions' counting changes
    for days start..end (exact, then rounded).

    Customers are computed `batch_customers` (default MRR_BATCH_CUSTOMERS) at a time: each one's
    rows depend on its own history only, and the daily and per-plan summaries add up the batches'
    native totals, exactly. With `sink`, each batch's change, movement and counting rows go to it
    instead of into the result."""
    if batch_customers is None:
        batch_customers = MRR_BATCH_CUSTOMERS
    if batch_customers < 1:
        raise ValueError("batch_customers must be at least 1")
    manual = [
        ManualRecurring(
            ws.id,
            r["customer_id"],
            r["day"] if isinstance(r["day"], date) else date.fromisoformat(str(r["day"])),
            r["currency"],
            int(r["amount_micros"]),
        )
        for r in wh.rows(
            "SELECT customer_id, day, currency, amount_micros FROM core.ledger WHERE workspace_id = :w"
            " AND kind = 'manual_revenue' AND subtype = 'recurring'",
            w=ws.id,
        )
    ]
    fx = fx_lookup(
        wh.rows(
            "SELECT base, currency, date, rate FROM core.fx_rates WHERE base = :b",
            b=ws.reporting_currency,
        ),
        ws.reporting_currency,
    )
    settings = mrr_settings(ws)
    # Each customer is evaluated on the window's days from its state on start-1, so a daily run
    # costs the window's changes, not a replay of every customer's history: only intervals still
    # in force at the start of start-1 are read.
    in_force = " WHERE workspace_id = :w AND (valid_to IS NULL OR valid_to > :t)"
    params = {"w": ws.id, "t": day_start_ts(start - timedelta(days=1), ws.time_zone)}
    customers = sorted(
        {
            r["customer_id"]
            for r in wh.rows(
                "SELECT DISTINCT customer_id FROM core.subscription_history" + in_force, **params
            )
        }
        | {m.customer_id or MANUAL_CUSTOMER for m in manual}
    )
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    company = CompanyTotals(sorted(days))
    plans = PlanTotals(sorted(days))
    out = MrrWindow()
    for lo in range(0, max(len(customers), 1), batch_customers):
        batch = customers[lo : lo + batch_customers]
        # One batch holding every customer reads without a list of ids.
        ids = None if len(batch) == len(customers) else batch
        rows = wh.rows_in(HISTORY_SELECT + in_force, "customer_id", ids, **params)
        wanted = set(batch)
        batch_manual = (
            manual
            if ids is None
            else [m for m in manual if (m.customer_id or MANUAL_CUSTOMER) in wanted]
        )
        changes, movements, counting = _window_batch(
            wh, ws, settings, fx, states_from_rows(rows), batch_manual, start, end, company, plans
        )
        del rows
        if sink is not None:
            sink(changes, movements, counting)
        else:
            out.changes += changes
            out.movements += movements
            out.counting += counting
    out.company = company_days(company, fx, ws.reporting_currency)
    for d in out.company:
        if not d.identity_holds():
            out.identity_failures.append(
                f"{ws.id} {d.day}: MRR {_exact(d.mrr)} != previous {_exact(d.previous_mrr)} + "
                f"movements {_exact(d.net_movement)}"
            )
        out.daily.append(
            {
                "workspace_id": ws.id,
                "day": d.day,
                "currency": ws.reporting_currency,
                **{f"{f}_micros": round_half_away(getattr(d, f)) for f in MONEY_FIELDS},
                "arr_micros": round_half_away(d.arr),
                "active_subscriptions": d.active_subscriptions,
                "paying_customers": d.paying_customers,
                "new_customers": d.new_customers,
                "reactivated_customers": d.reactivated_customers,
                "churned_customers": d.churned_customers,
                "delinquent_churned_customers": d.delinquent_churned_customers,
                "skipped_currencies_json": list(d.skipped_currencies),
                "fx_by_currency_json": {
                    f.currency: {
                        "previous_mrr_native": _exact(f.previous_native),
                        "previous_rate": None
                        if f.previous_rate is None
                        else _exact(f.previous_rate),
                        "rate": None if f.rate is None else _exact(f.rate),
                        "fx": _exact(f.amount),
                        "fx_micros": round_half_away(f.amount),
                    }
                    for f in d.fx_by_currency
                },
                "exact_json": {
                    **{f: _exact(getattr(d, f)) for f in MONEY_FIELDS},
                    "previous_mrr": _exact(d.previous_mrr),
                },
            }
        )
    for p in plan_days(plans, fx, ws.reporting_currency):
        out.plans.append(
            {
                "workspace_id": ws.id,
                "day": p.day,
                "plan_id": p.plan,
                "currency": ws.reporting_currency,
                "mrr_micros": round_half_away(p.mrr),
                "subscriptions": p.subscriptions,
                "mrr_exact": _exact(p.mrr),
            }
        )
    return out


def _window_batch(
    wh: Warehouse,
    ws: Workspace,
    settings: Settings,
    fx: FxLookup,
    states: list[SubscriptionState],
    manual: list[ManualRecurring],
    start: date,
    end: date,
    company: CompanyTotals,
    plans: PlanTotals,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """One batch of customers: its change, movement and counting rows; its native daily and
    per-plan totals are added into `company` and `plans`."""
    window = customer_mrr_window(states, manual, settings, start, end)
    del states
    # The full history only of customers who gain MRR in the window without having it on
    # start-1, to tell a reactivation from a new customer (§5).
    gaining = {
        r.customer_id
        for r in window.rows
        if r.mrr > 0 and (ws.id, r.customer_id) not in window.had_mrr_before
    }
    if gaining:
        window.had_mrr_before |= customers_with_mrr_before(
            states_from_rows(
                wh.rows_in(
                    HISTORY_SELECT + " WHERE workspace_id = :w", "customer_id", gaining, w=ws.id
                )
            ),
            [m for m in manual if (m.customer_id or MANUAL_CUSTOMER) in gaining],
            settings,
            start - timedelta(days=1),
        )
    changes = window.opening + window.rows
    # Customers' fx movements are customers x days: the marts keep fx per currency and day in
    # mart.mrr_daily (fx_by_currency_json), which sums to the same amount exactly (§5).
    movements = daily_movements(
        changes,
        fx,
        ws.reporting_currency,
        start=start,
        end=end,
        include_fx=False,
        had_mrr_before=window.had_mrr_before,
    )
    company.add(company_totals(changes, movements, company.days))
    plans.add(plan_totals(changes, plans.days))
    change_rows = [
        {
            "workspace_id": ws.id,
            "customer_id": c.customer_id,
            "currency": c.currency,
            "day": c.day,
            "mrr_micros": round_half_away(c.mrr),
            "cmrr_micros": round_half_away(c.cmrr),
            "active_subscriptions": c.active_subscriptions,
            "mrr_exact": _exact(c.mrr),
            "cmrr_exact": _exact(c.cmrr),
            "by_plan_json": {k: _exact(v) for k, v in sorted(c.by_plan.items())},
            "churn_reason": c.churn_reason,
        }
        for c in window.rows
        if start <= c.day <= end
    ]
    counting = [
        {
            "workspace_id": ws.id,
            "subscription_id": c.subscription_id,
            "customer_id": c.customer_id,
            "day": c.day,
            "counts": c.counts,
        }
        for c in window.counting
    ]
    del window, changes
    # One row per customer, day and kind; the first movement's reason names it. Movements come
    # sorted by day, customer and kind, so a repeated key is adjacent and is merged in one pass
    # (no dict of every key). Each movement is released once its row is built.
    movement_rows: list[dict[str, Any]] = []
    pending: list[Any] | None = None  # [first movement, exact sum]
    for i, m in enumerate(movements):
        movements[i] = None  # type: ignore[call-overload]
        if pending is not None:
            first = pending[0]
            if first.day == m.day and first.customer_id == m.customer_id and first.kind == m.kind:
                pending[1] += m.amount
                continue
            movement_rows.append(_movement_row(ws.id, first, pending[1]))
        pending = [m, m.amount]
    if pending is not None:
        movement_rows.append(_movement_row(ws.id, pending[0], pending[1]))
    return change_rows, movement_rows, counting


def _movement_row(workspace_id: str, m: Movement, exact: Fraction) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "customer_id": m.customer_id,
        "day": m.day,
        "kind": m.kind,
        "reason": m.reason,
        "amount_micros": round_half_away(exact),
        "amount_exact": _exact(exact),
    }


def exact(text: str) -> Fraction:
    """Parse a stored "num/den" exact value."""
    return Fraction(text)


def identity_holds_in_table(wh: Warehouse, workspace_id: str, start: date, end: date) -> list[str]:
    """Re-verify the roll-forward identity from the stored exact values (used by checks and tests)."""
    bad = []
    for r in wh.rows(
        "SELECT day, exact_json FROM mart.mrr_daily WHERE workspace_id = :w AND day >= :a"
        " AND day <= :b ORDER BY day",
        w=workspace_id,
        a=start,
        b=end,
    ):
        e = r["exact_json"] if isinstance(r["exact_json"], dict) else json.loads(r["exact_json"])
        net = (
            sum(Fraction(e[k]) for k in ("new", "expansion", "reactivation", "fx"))
            - Fraction(e["contraction"])
            - Fraction(e["churn"])
        )
        if Fraction(e["mrr"]) != Fraction(e["previous_mrr"]) + net:
            bad.append(f"{workspace_id} {r['day']}")
    return bad

"""Per-workspace switches through Dagster assets (docs/metrics.md §3): the same Stripe account synced
into workspaces with different discount_mode, count_paused and past_due_grace_days gives, per
customer and day, exactly what an independent oracle over the simulator's timelines says."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from finance_pipeline_dev.simulator.model import SubState, SubTimeline
from finance_pipeline_dev.simulator.truth import (
    COUNTING_STATUSES,
    discounts_at,
    state_at,
    state_mrr_micros,
)

from finance_pipeline.core.assets import fx_rates, ledger, subscription_history
from finance_pipeline.lib.timeutil import day_start_ts
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.metrics.mrr_compute import exact
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.core.replay import END, replay, value_on
from finance_pipeline_tests.dagster_runs import check_results, materialize_days

GRACE_DAYS = 3
WORKSPACES: dict[str, dict[str, Any]] = {
    "ws_default": {},
    "ws_no_discounts": {"discount_mode": "none"},
    "ws_forever_only": {"discount_mode": "forever_only"},
    "ws_count_paused": {"count_paused": True},
    "ws_grace": {"past_due_grace_days": GRACE_DAYS},
}


def _past_due_since(tl: SubTimeline, state: SubState) -> int:
    """When the unbroken run of past_due states that `state` belongs to began."""
    since = state.start
    for prev in reversed([s for s in tl.states if s.start < state.start]):
        if prev.status != "past_due" or prev.end != since:
            break
        since = prev.start
    return since


def oracle_mrr(tl: SubTimeline, day: date, settings: dict[str, Any]) -> Fraction:
    """sub_MRR on day D (UTC end of day) under the workspace switches, from the timeline alone."""
    ts = day_start_ts(day + timedelta(days=1)) - 1
    st = state_at(tl, ts)
    if st is None or st.status not in COUNTING_STATUSES:
        return Fraction(0)
    if st.paused and not settings.get("count_paused", False):
        return Fraction(0)
    grace = settings.get("past_due_grace_days")
    past_grace = grace is not None and ts >= _past_due_since(tl, st) + grace * 86400
    if st.status == "past_due" and past_grace:
        return Fraction(0)
    mode = settings.get("discount_mode", "all_active")
    spans = discounts_at(tl, ts)
    if mode == "none":
        spans = []
    elif mode == "forever_only":
        spans = [d for d in spans if d.coupon.duration == "forever"]
    return state_mrr_micros(dataclasses.replace(st, paused=False), spans)


def _stored_series(wh: Warehouse, ws_id: str) -> dict[str, list[tuple[date, Fraction]]]:
    series: dict[str, list[tuple[date, Fraction]]] = {}
    for r in wh.rows(
        "SELECT customer_id, day, mrr_exact FROM mart.mrr_changes WHERE workspace_id = :w"
        " ORDER BY day",
        w=ws_id,
    ):
        day = r["day"] if isinstance(r["day"], date) else date.fromisoformat(r["day"])
        series.setdefault(r["customer_id"], []).append((day, exact(r["mrr_exact"])))
    return series


def test_switches_change_the_marts_exactly_as_metrics_md_says(warehouse: Warehouse) -> None:
    run = replay(warehouse, seed=3, customers=40, workspaces=WORKSPACES)
    assets = [fx_rates, ledger, subscription_history, mrr_marts]
    result = materialize_days(assets, warehouse, run.first, END)
    assert result.success
    # Every switch compares invoices with its own MRR: no line disagrees in any workspace.
    assert check_results(result)["invoices_reconcile_with_mrr"]
    timelines = [
        tl for tl in run.sim.ground_truth.timelines.values() if tl.account_id == run.account
    ]
    days = [run.first + timedelta(days=i) for i in range((END - run.first).days + 1)]
    # Each switch must matter on this dataset, or the comparison below proves nothing about it.
    differs = {ws: 0 for ws in WORKSPACES}
    for ws_id, settings in WORKSPACES.items():
        stored = _stored_series(warehouse, ws_id)
        expected: dict[tuple[str, date], Fraction] = {}
        for tl in timelines:
            for day in days:
                value = oracle_mrr(tl, day, settings)
                default = oracle_mrr(tl, day, {})
                if value != default:
                    differs[ws_id] += 1
                key = (tl.customer_id, day)
                expected[key] = expected.get(key, Fraction(0)) + value
        customers = {c for c, _ in expected} | set(stored)
        mismatches = [
            (ws_id, c, d)
            for c in customers
            for d in days
            if value_on(stored.get(c, []), d) != expected.get((c, d), Fraction(0))
        ]
        assert mismatches[:5] == [], f"{len(mismatches)} customer-days differ in {ws_id}"
    assert differs["ws_default"] == 0
    assert all(differs[ws] > 0 for ws in WORKSPACES if ws != "ws_default"), differs

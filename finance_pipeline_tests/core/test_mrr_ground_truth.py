"""The heart of the product (docs/metrics.md §3-5): a pipeline that synced Stripe regularly (every
25 days, so no event ever expires unseen) reproduces the simulator's independent ground truth, per
customer and day, to the fraction of a micro-unit, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

import pytest
import sqlalchemy as sa

from finance_pipeline.core.history_io import history_rows, load_history_inputs
from finance_pipeline.lib.ledger import fx_lookup
from finance_pipeline.lib.mrr_timeline import MrrChange, daily_movements
from finance_pipeline.lib.subscription_history import build_history
from finance_pipeline.metrics.mrr_compute import MrrWindow, compute_mrr_window
from finance_pipeline.tenancy import list_workspaces
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.core.replay import END, replay, value_on


def _replay(wh: Warehouse, seed: int, customers: int):
    run = replay(wh, seed, customers, {"ws1": {}})
    rows = [
        r
        for inp in load_history_inputs(wh, "ws1")
        for r in history_rows(build_history(inp, run.clock))
    ]
    with wh.begin() as db:
        db.execute(sa.insert(wh.table("core.subscription_history")), rows)
        db.execute(
            wh.text(
                "INSERT INTO core.fx_rates (base, currency, date, rate)"
                " SELECT base, currency, date, rate FROM raw.fx_rates"
            )
        )
    window = compute_mrr_window(wh, list_workspaces(wh)[0], run.first, END)
    return run.sim, run.account, run.first, window


@pytest.mark.parametrize("seed", [3, 11])
def test_replayed_pipeline_equals_ground_truth_every_customer_every_day(
    warehouse: Warehouse, seed: int
) -> None:
    sim, acct, first, window = _replay(warehouse, seed, customers=40)
    got: dict[str, list[tuple[date, Fraction]]] = {}
    for r in sorted(window.changes, key=lambda r: r["day"]):
        got.setdefault(r["customer_id"], []).append((r["day"], Fraction(r["mrr_exact"])))
    expected: dict[str, list[tuple[date, Fraction]]] = {}
    for account, customer, day, _cur, value in sim.ground_truth.mrr_changes:
        if account == acct:
            expected.setdefault(customer, []).append((day, Fraction(value)))
    assert len(expected) >= 35  # the comparison covers real customers, not an empty set
    mismatches = [
        (c, first + timedelta(days=i))
        for c in set(expected) | set(got)
        for i in range((END - first).days + 1)
        if value_on(expected.get(c, []), first + timedelta(days=i))
        != value_on(got.get(c, []), first + timedelta(days=i))
    ]
    assert mismatches == []
    # Movements per customer and day (reporting currency, exact). The marts store fx per currency
    # and day; each customer's fx comes from the library on the same change rows.
    want: dict[tuple[str, date, str], Fraction] = {}
    for account, customer, day, kind, amount, _tag in sim.ground_truth.movements:
        if account == acct and first <= day <= END:
            key = (customer, day, kind)
            want[key] = want.get(key, Fraction(0)) + Fraction(amount)
    have = {
        (m["customer_id"], m["day"], m["kind"]): Fraction(m["amount_exact"])
        for m in window.movements
    }
    assert not any(kind == "fx" for _c, _d, kind in have)
    changes = [
        MrrChange("ws1", r["customer_id"], r["currency"], r["day"], Fraction(r["mrr_exact"]),
                  Fraction(r["cmrr_exact"]), r["active_subscriptions"])
        for r in window.changes
    ]  # fmt: skip
    rate = fx_lookup(
        warehouse.rows("SELECT base, currency, date, rate FROM core.fx_rates WHERE base = 'usd'"),
        "usd",
    )
    for m in daily_movements(changes, rate, "usd", start=first, end=END):
        if m.kind == "fx":
            have[(m.customer_id, m.day, m.kind)] = m.amount
    want = {k: v for k, v in want.items() if v}
    have = {k: v for k, v in have.items() if v}
    assert len(want) > 100 and sum(k[2] == "fx" for k in want) > 100 and have == want
    # The company's fx per day (stored per currency) equals the truth's, and the identity holds.
    fx_days = 0
    for d in window.company:
        assert d.fx == sum((f.amount for f in d.fx_by_currency), Fraction(0))
        assert d.fx == sim.ground_truth.fx_total(d.day), d.day
        fx_days += bool(d.fx)
    assert fx_days > 100
    assert window.identity_failures == []


def test_mrr_window_is_the_same_whatever_the_customer_batch(warehouse: Warehouse) -> None:
    """Customers computed 1, 7 or all at a time give the same rows and summaries, exactly."""
    _sim, _acct, first, whole = _replay(warehouse, 3, customers=40)
    ws = list_workspaces(warehouse)[0]

    def rows(w: MrrWindow) -> tuple[list, ...]:
        def key(r: dict) -> str:
            return repr(sorted(r.items()))

        return (
            sorted(w.changes, key=key),
            sorted(w.movements, key=key),
            sorted(w.counting, key=key),
            w.daily,
            w.plans,
            w.company,
            w.identity_failures,
        )

    # A window from the first day, and one starting mid-history (opening states, reactivations).
    for start in (first, END - timedelta(days=75)):
        one = compute_mrr_window(warehouse, ws, start, END, batch_customers=10**6)
        if start == first:
            assert rows(one) == rows(whole)
        assert len(one.changes) > (100 if start == first else 10) and one.movements and one.plans
        for batch in (1, 7):
            assert rows(compute_mrr_window(warehouse, ws, start, END, batch_customers=batch)) == (
                rows(one)
            ), batch
    # With a sink, the batches' rows go to it and not into the result.
    parked: list[list] = [[], [], []]

    def sink(*batch_rows: list) -> None:
        for into, got in zip(parked, batch_rows, strict=True):
            into += got

    sunk = compute_mrr_window(warehouse, ws, first, END, batch_customers=7, sink=sink)
    assert (sunk.changes, sunk.movements, sunk.counting) == ([], [], [])
    assert sorted(map(repr, parked[0])) == sorted(map(repr, whole.changes))
    assert sorted(map(repr, parked[1])) == sorted(map(repr, whole.movements))
    assert sorted(map(repr, parked[2])) == sorted(map(repr, whole.counting))
    assert (sunk.daily, sunk.plans) == (whole.daily, whole.plans)

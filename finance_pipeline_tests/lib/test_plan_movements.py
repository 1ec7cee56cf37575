"""Movements by plan (docs/metrics.md §5): customer movements split by plan, plan roll-forwards."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib import report_csv
from finance_pipeline.lib.mrr_timeline import (
    MOVEMENT_SIGNS,
    MrrChange,
    company_daily,
    daily_movements,
    plan_daily,
)
from finance_pipeline.lib.plan_movements import (
    UNATTRIBUTED,
    ChangeRow,
    CustomerDay,
    PlanBalance,
    StoredMovement,
    customer_days,
    movements_by_plan,
    plan_roll_forwards,
    split_customer_day,
)

D0, D1, D2 = date(2026, 9, 30), date(2026, 10, 1), date(2026, 10, 2)
EUR_RATES = {D0: Fraction(11, 10), D1: Fraction(11, 10), D2: Fraction(12, 10)}
M = 1_000_000


def rate(currency: str, day: date) -> Fraction | None:
    return Fraction(1) if currency == "usd" else EUR_RATES.get(day)


def parse(table: report_csv.CsvTable) -> list[list[str]]:
    return list(csv.reader(io.StringIO(table.render().decode("utf-8"), newline="")))


def test_hand_worked_example() -> None:
    """cus_x (USD) switches from plan A (100/3) to the dearer B (50) on D1 and churns on D2;
    cus_y (EUR, 1.1 then 1.2) is new on D1 in A with 20 EUR, so A has 2.00 of FX on D2."""
    moves = [
        StoredMovement("cus_x", D1, "expansion", Fraction(50 * M) - Fraction(100 * M, 3)),
        StoredMovement("cus_y", D1, "new", Fraction(22 * M)),
        StoredMovement("cus_x", D2, "churn", Fraction(50 * M)),
    ]
    changes = [
        ChangeRow("cus_x", "usd", date(2026, 8, 1), {"A": Fraction(100 * M, 3)}),
        ChangeRow("cus_x", "usd", D1, {"B": Fraction(50 * M)}),
        ChangeRow("cus_x", "usd", D2, {}),
        ChangeRow("cus_y", "eur", D1, {"A": Fraction(20 * M)}),
    ]
    by_plan = movements_by_plan(customer_days(moves, changes, D1, D2), rate)
    # The expansion column shows A negative and B positive; they add up to cus_x's expansion.
    assert by_plan == {
        "A": {"new": Fraction(22 * M), "expansion": -Fraction(100 * M, 3)},
        "B": {"expansion": Fraction(50 * M), "churn": -Fraction(50 * M)},
    }
    opening, closing = Fraction(100 * M, 3), Fraction(24 * M)  # closing: 20 EUR x 1.2
    company = {
        "new": Fraction(22 * M),
        "expansion": Fraction(50 * M, 3),
        "reactivation": Fraction(0),
        "contraction": Fraction(0),
        "churn": -Fraction(50 * M),
        "fx": Fraction(2 * M),  # 20 EUR x (1.2 - 1.1)
    }
    balances = [PlanBalance("A", opening, closing), PlanBalance("B", Fraction(0), Fraction(0))]
    rows = plan_roll_forwards(balances, by_plan, (opening, company, closing))
    assert [(r.plan_id, r.movements) for r in rows] == [
        ("A", {"new": Fraction(22 * M), "expansion": -Fraction(100 * M, 3),
               "reactivation": 0, "contraction": 0, "churn": 0, "fx": Fraction(2 * M)}),
        ("B", {"new": 0, "expansion": Fraction(50 * M), "reactivation": 0, "contraction": 0,
               "churn": -Fraction(50 * M), "fx": 0}),
    ]  # fmt: skip
    assert all(r.holds() for r in rows)
    stored = {k: abs(v) for k, v in company.items()}
    csv_rows = parse(report_csv.mrr_breakdown("usd", opening, stored, closing, balances, by_plan))
    assert csv_rows[1:] == [
        ["A", "33.33", "22.00", "-33.33", "0.00", "0.00", "0.00", "2.00", "-9.33", "24.00", "USD"],
        ["B", "0.00", "0.00", "50.00", "0.00", "0.00", "-50.00", "0.00", "0.00", "0.00", "USD"],
        ["All plans", "33.33", "22.00", "16.67", "0.00", "0.00", "-50.00", "2.00", "-9.33",
         "24.00", "USD"],
    ]  # fmt: skip
    # With the plan filter (queries return that plan's movements), the plan row alone.
    filtered = report_csv.mrr_breakdown("usd", None, None, None, balances[1:], {"B": by_plan["B"]})
    assert parse(filtered)[1:] == [
        ["B", "0.00", "0.00", "50.00", "0.00", "0.00", "-50.00", "0.00", "0.00", "0.00", "USD"],
    ]


def test_a_customer_without_plan_information_is_unattributed() -> None:
    cd = CustomerDay("cus_z", D1, {"new": Fraction(5 * M)}, {}, {"usd": {}})
    assert split_customer_day(cd, rate) == {UNATTRIBUTED: {"new": Fraction(5 * M)}}
    # The company row counts its MRR, no plan does: the (unattributed) row carries it.
    company = {k: Fraction(0) for k in MOVEMENT_SIGNS} | {"new": Fraction(5 * M)}
    rows = plan_roll_forwards(
        [PlanBalance("A", Fraction(M), Fraction(M))],
        movements_by_plan([cd], rate),
        (Fraction(M), company, Fraction(6 * M)),
    )
    assert [r.plan_id for r in rows] == ["A", UNATTRIBUTED]
    assert (rows[1].opening, rows[1].movements["new"], rows[1].closing) == (0, 5 * M, 5 * M)
    assert rows[1].movements["fx"] == 0 and all(r.holds() for r in rows)


def test_a_switch_between_plans_of_equal_mrr_is_a_zero_expansion() -> None:
    cd = CustomerDay("cus_x", D1, {}, {"usd": {"A": Fraction(9 * M)}}, {"usd": {"B": 9 * M}})
    assert split_customer_day(cd, rate) == {
        "A": {"expansion": -Fraction(9 * M)},
        "B": {"expansion": Fraction(9 * M)},
    }


def test_a_movement_whose_plan_changes_net_to_zero() -> None:
    # Plan data that does not explain the movement: the changes show in the movement's column,
    # the movement itself in (unattributed), so the column still adds up to the customer's.
    cd = CustomerDay(
        "cus_x", D1, {"contraction": Fraction(M)}, {"usd": {"A": 4 * M}}, {"usd": {"B": 4 * M}}
    )
    assert split_customer_day(cd, rate) == {
        "A": {"contraction": -Fraction(4 * M)},
        "B": {"contraction": Fraction(4 * M)},
        UNATTRIBUTED: {"contraction": -Fraction(M)},
    }


def test_a_plan_in_a_currency_without_a_rate_is_left_out_as_the_movement_is() -> None:
    # EUR has no rate on D1 + 3: the movement (USD part only) is split over the USD plans only.
    day = D2 + timedelta(days=1)
    cd = CustomerDay(
        "cus_m", day, {"expansion": Fraction(2 * M)},
        {"usd": {"A": Fraction(M)}, "eur": {"E": Fraction(M)}},
        {"usd": {"A": Fraction(3 * M)}, "eur": {"E": Fraction(7 * M)}},
    )  # fmt: skip
    assert split_customer_day(cd, rate) == {"A": {"expansion": Fraction(2 * M)}}


# --- property: with the engine's marts, the plan rows add up to the company row --------------

PLANS = ("A", "B", "C")
DAYS = [date(2026, 10, 1) + timedelta(days=i) for i in range(6)]  # opening on DAYS[1]
START, END = DAYS[2], DAYS[-1]
plan_amounts = st.dictionaries(
    st.sampled_from(PLANS),
    st.fractions(min_value=0, max_value=500, max_denominator=3).map(lambda x: x * M),
    max_size=3,
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[MrrChange], dict[date, Fraction | None]]:
    """Random customers (USD or EUR) with a plan mix per day, and EUR rates (some missing)."""
    rows = []
    for n in range(draw(st.integers(1, 4))):
        cur = draw(st.sampled_from(("usd", "eur")))
        previous: dict[str, Fraction] | None = {}
        for day in DAYS:
            mix = {p: v for p, v in draw(plan_amounts).items() if v}
            if draw(st.booleans()) or mix == previous:
                continue  # unchanged that day
            mrr = sum(mix.values(), Fraction(0))
            rows.append(
                MrrChange(
                    "ws", f"cus_{n}", cur, day, mrr, mrr, len(mix), mix, dict.fromkeys(mix, 1)
                )
            )
            previous = mix
    rates = {
        d: draw(st.none() | st.sampled_from((Fraction(1), Fraction(11, 10), Fraction(6, 7))))
        for d in DAYS
    }
    return rows, rates


@settings(max_examples=150, deadline=None)
@given(histories())
def test_plan_rows_add_up_to_the_company_row(
    data: tuple[list[MrrChange], dict[date, Fraction | None]],
) -> None:
    changes, eur = data

    def fx(currency: str, day: date) -> Fraction | None:
        return Fraction(1) if currency == "usd" else eur.get(day)

    moves = daily_movements(changes, fx, "usd", start=START, end=END, include_fx=False)
    window = [d for d in DAYS if START <= d <= END]
    company_days = company_daily(changes, moves, window, fx, "usd")
    assert all(d.identity_holds() for d in company_days)
    company = {
        k: MOVEMENT_SIGNS[k] * sum((getattr(d, k) for d in company_days), Fraction(0))
        for k in MOVEMENT_SIGNS
    }
    opening, closing = company_days[0].previous_mrr, company_days[-1].mrr
    plan_mrr = {(p.day, p.plan): p.mrr for p in plan_daily(changes, [DAYS[1], END], fx, "usd")}
    balances = [
        PlanBalance(p, plan_mrr.get((DAYS[1], p), Fraction(0)), plan_mrr.get((END, p), Fraction(0)))
        for p in PLANS
    ]
    stored = [StoredMovement(m.customer_id, m.day, m.kind, m.amount) for m in moves]
    rows_in = [ChangeRow(c.customer_id, c.currency, c.day, c.by_plan) for c in changes]
    by_plan = movements_by_plan(customer_days(stored, rows_in, START, END), fx)
    assert UNATTRIBUTED not in by_plan
    rows = plan_roll_forwards(balances, by_plan, (opening, company, closing))
    # The engine's plans explain every movement: no (unattributed) row; each row rolls forward.
    assert [r.plan_id for r in rows] == list(PLANS)
    assert all(r.holds() for r in rows)
    for k in MOVEMENT_SIGNS:
        assert sum((r.movements[k] for r in rows), Fraction(0)) == company[k]
    # Each plan's FX is the true FX of its MRR: yesterday's native plan MRR x (r - r'), a
    # missing rate counting 0; plan switches without a customer movement never land there.
    for r in rows:
        true_fx = Fraction(0)
        for day in window:
            for c in {c.customer_id for c in changes}:
                for cur in ("usd", "eur"):
                    before = [x for x in changes if (x.customer_id, x.currency) == (c, cur)]
                    before = [x for x in before if x.day < day]
                    native = before[-1].by_plan.get(r.plan_id, 0) if before else 0
                    r_now, r_prev = fx(cur, day), fx(cur, day - timedelta(days=1))
                    true_fx += native * ((r_now or 0) - (r_prev or 0))
        assert r.movements["fx"] == true_fx
    # Displayed: every column of the plan rows adds up to the company row, every row rolls forward.
    positive = {k: abs(v) for k, v in company.items()}
    positive["fx"] = company["fx"]
    table = parse(report_csv.mrr_breakdown("usd", opening, positive, closing, balances, by_plan))
    plans_shown, total = table[1:-1], table[-1]
    for col in range(1, 10):
        assert sum(Decimal(x[col]) for x in plans_shown) == Decimal(total[col])
    for x in table[1:]:
        assert sum(Decimal(v) for v in x[1:8]) == Decimal(x[9])
        assert Decimal(x[9]) - Decimal(x[1]) == Decimal(x[8])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("new", "expansion", "contraction", "churn", "reactivation")),
            st.fractions(min_value=0, max_value=10**4, max_denominator=7).map(lambda x: x * M),
            plan_amounts,
            plan_amounts,
        ),
        max_size=6,
    ),
    st.lists(st.fractions(min_value=0, max_value=10**3, max_denominator=9), min_size=6, max_size=6),
)
def test_any_movements_and_plan_maps_foot(
    days: list[tuple[str, Fraction, dict[str, Fraction], dict[str, Fraction]]],
    plan_balances: list[Fraction],
) -> None:
    """Movements and plan maps that need not agree (hand-edited marts): the (unattributed) row
    takes the difference, so columns still add up to the company row and rows roll forward."""
    cds = [
        CustomerDay(f"cus_{i}", D1, {k: a}, {"usd": b}, {"usd": q})
        for i, (k, a, b, q) in enumerate(days)
    ]
    split = movements_by_plan(cds, rate)
    for k in MOVEMENT_SIGNS:
        expected = sum((MOVEMENT_SIGNS[k] * a for kk, a, _, _ in days if kk == k), Fraction(0))
        assert sum((m.get(k, 0) for m in split.values()), Fraction(0)) == expected
    stored = {k: Fraction(0) for k in MOVEMENT_SIGNS}
    for k, a, _, _ in days:
        stored[k] += a
    stored["fx"] = plan_balances[0] * M / 3
    opening = sum(plan_balances[1:], Fraction(0)) * M
    closing = opening + sum(MOVEMENT_SIGNS[k] * v for k, v in stored.items())
    balances = [
        PlanBalance(p, plan_balances[i + 1] * M, plan_balances[i + 4] * M)
        for i, p in enumerate(PLANS[:2])
    ]
    table = parse(report_csv.mrr_breakdown("usd", opening, stored, closing, balances, split))
    plans_shown, total = table[1:-1], table[-1]
    for col in range(1, 10):
        assert sum(Decimal(x[col]) for x in plans_shown) == Decimal(total[col])
    for x in table[1:]:
        assert sum(Decimal(v) for v in x[1:8]) == Decimal(x[9])

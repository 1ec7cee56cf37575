"""Churn, retention and growth rates (docs/metrics.md §6), exact."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.mrr_timeline import MrrChange, company_daily, daily_movements
from finance_pipeline.lib.retention import (
    balances_on_days,
    churn_rate_percent,
    customer_balances,
    growth_percent,
    logo_churn_rate,
    mrr_growth_percent,
    period_retention,
)

CENT = 10_000
A, B = date(2024, 3, 1), date(2024, 3, 31)
ONE = timedelta(days=1)


def row(customer: str, day: date, cents: int, currency: str = "usd") -> MrrChange:
    amount = Fraction(cents * CENT)
    return MrrChange("ws", customer, currency, day, amount, amount, 1 if cents else 0)


def usd_only(currency: str, day: date) -> Fraction | None:
    return None


def scenario() -> list[MrrChange]:
    """Cohort A-D on 02-29; E is new and F reactivates inside March."""
    feb = date(2024, 2, 1)
    return [
        row("A", feb, 1000),
        row("B", feb, 2000),
        row("B", date(2024, 3, 10), 0),  # churn 2000
        row("C", feb, 3000),
        row("C", date(2024, 3, 12), 1000),  # contraction 2000
        row("D", feb, 1000),
        row("D", date(2024, 3, 20), 4000),  # expansion 3000
        row("E", date(2024, 3, 5), 500),  # new 500
        row("F", feb, 700),
        row("F", date(2024, 2, 20), 0),  # churned before the period
        row("F", date(2024, 3, 25), 1500),  # reactivation 1500
    ]


def test_period_rates_exact_metrics_6() -> None:
    """§6: every rate for [03-01, 03-31] from a hand-computed cohort (S = A, B, C, D; 7000)."""
    changes = scenario()
    movements = daily_movements(changes, usd_only, "usd", end=B)
    rates = period_retention(changes, movements, usd_only, "usd", A, B)
    assert (rates.starting_customers, rates.churned_customers) == (4, 1)
    assert rates.mrr_start == 7000 * CENT
    assert rates.logo_churn_rate == Fraction(1, 4)
    assert rates.grr == Fraction(3, 7)  # (1000 + 0 + 1000 + 1000) / 7000
    assert rates.revenue_churn_rate == Fraction(4, 7)
    assert rates.nrr == Fraction(6, 7)  # (1000 + 0 + 1000 + 4000) / 7000: E and F are not in S
    assert rates.net_revenue_churn_rate == Fraction(1, 7)
    assert rates.gross_mrr_churn_rate == Fraction(4, 7)  # (2000 churn + 2000 contraction) / 7000
    assert rates.net_mrr_churn_rate == Fraction(-1, 14)  # (4000 - 3000 - 1500) / 7000
    assert (rates.churn, rates.contraction, rates.expansion, rates.reactivation) == (
        2000 * CENT, 2000 * CENT, 3000 * CENT, 1500 * CENT,
    )  # fmt: skip
    assert rates.as_percent() == {
        "logo_churn_rate": Decimal("25.00"),
        "grr": Decimal("42.86"),
        "revenue_churn_rate": Decimal("57.14"),
        "nrr": Decimal("85.71"),
        "net_revenue_churn_rate": Decimal("14.29"),
        "gross_mrr_churn_rate": Decimal("57.14"),
        "net_mrr_churn_rate": Decimal("-7.14"),
    }


def test_zero_denominator_is_null_metrics_6() -> None:
    """§6: with no paying customer on a-1 every rate is None, never 0 or an error."""
    changes = [row("E", date(2024, 3, 5), 500)]
    movements = daily_movements(changes, usd_only, "usd", end=B)
    rates = period_retention(changes, movements, usd_only, "usd", A, B)
    assert all(v is None for v in rates.as_percent().values())
    assert churn_rate_percent(changes, date(2024, 3, 10)) is None
    assert growth_percent(100, 0) is None


def test_both_ends_converted_at_rate_of_a_minus_1_metrics_6() -> None:
    """§6: cohort balances use rate(a-1) on both ends, so FX moves do not look like retention; a
    currency without that rate is skipped and listed (§2)."""
    rates = {A - ONE: Fraction(11, 10), B: Fraction(15, 10)}

    def fx(currency: str, day: date) -> Fraction | None:
        if currency == "eur":
            return rates.get(day, Fraction(12, 10))
        return None  # gbp never has a rate

    changes = [
        row("EU", date(2024, 2, 1), 1000, "eur"),
        row("US", date(2024, 2, 1), 1000),
        row("UK", date(2024, 2, 1), 1000, "gbp"),
    ]
    movements = daily_movements(changes, fx, "usd", end=B)
    result = period_retention(changes, movements, fx, "usd", A, B)
    assert result.mrr_start == (1100 + 1000) * CENT
    assert result.nrr == 1 and result.grr == 1
    assert result.starting_customers == 3  # UK pays natively; only its amount is skipped
    assert result.skipped_currencies == ("gbp",)


def test_churn_rate_percent_is_logo_churn_of_30_days_ending_d_metrics_6() -> None:
    """§6: `churn_rate_percent` is the logo churn of D-29..D (cohort paying on D-30)."""
    day = date(2024, 4, 30)  # window 04-01 .. 04-30, cohort on 03-31
    changes = [
        row("A", date(2024, 1, 1), 100),
        row("B", date(2024, 1, 1), 100),
        row("C", date(2024, 1, 1), 100),
        row("C", date(2024, 3, 31), 0),  # churned on 03-31: not in the cohort
        row("A", date(2024, 4, 1), 0),  # churned on the window's first day
        row("D", date(2024, 1, 1), 100),
        row("D", date(2024, 4, 10), 0),
        row("D", date(2024, 4, 20), 50),  # back by D: not churned
    ]
    assert logo_churn_rate(changes, date(2024, 4, 1), day) == Fraction(1, 3)
    assert churn_rate_percent(changes, day) == Decimal("33.33")
    assert customer_balances(changes, day) == {
        ("ws", "B"): {"usd": 100 * CENT},
        ("ws", "D"): {"usd": 50 * CENT},
    }


def test_mrr_growth_percent_compares_d_with_d_minus_30_metrics_6() -> None:
    """§6: `mrr_growth_percent` compares MRR(D) with MRR(D-30) (2 decimals, half away)."""
    changes = [row("A", date(2024, 3, 1), 40120), row("A", date(2024, 3, 31), 45230)]
    days = company_daily(changes, [], [date(2024, 3, 1), date(2024, 3, 31)], usd_only, "usd")
    mrr = {d.day: d.mrr for d in days}
    assert mrr_growth_percent(mrr, date(2024, 3, 31)) == Decimal("12.74")
    assert growth_percent(38450, 40120) == Decimal("-4.16")


@st.composite
def histories(draw: st.DrawFn) -> list[MrrChange]:
    """Random per-customer step functions of MRR in usd and eur over Feb-Apr 2024."""
    rows: list[MrrChange] = []
    for i in range(draw(st.integers(1, 6))):
        currency = draw(st.sampled_from(["usd", "eur"]))
        offsets = sorted(set(draw(st.lists(st.integers(0, 89), min_size=1, max_size=6))))
        previous = 0
        for offset in offsets:
            cents = draw(st.sampled_from([0, 0, 100, 250, 1000]))
            if cents != previous:
                rows.append(
                    row(f"c{i}", date(2024, 2, 1) + timedelta(days=offset), cents, currency)
                )
                previous = cents
    return rows


@settings(max_examples=150, deadline=None)
@given(
    changes=histories(),
    bounds=st.lists(st.integers(0, 89), min_size=2, max_size=2),
    eur_rate=st.sampled_from([Fraction(11, 10), Fraction(9, 10), None]),
)
def test_rates_match_definitions_on_random_histories_metrics_6(
    changes: list[MrrChange], bounds: list[int], eur_rate: Fraction | None
) -> None:
    """§6 recomputed literally from daily balances; GRR <= 1, GRR <= NRR, logo churn in [0, 1]."""

    def fx(currency: str, day: date) -> Fraction | None:
        if currency == "eur" and eur_rate is not None:
            return eur_rate + Fraction(day.day, 100)  # a rate that changes every day
        return None

    first, last = sorted(date(2024, 2, 1) + timedelta(days=b) for b in bounds)
    movements = daily_movements(changes, fx, "usd", end=last)
    got = period_retention(changes, movements, fx, "usd", first, last)

    def balance(customer: str, day: date) -> tuple[str, Fraction]:
        rows = [r for r in changes if r.customer_id == customer and r.day <= day]
        rows.sort(key=lambda r: r.day)
        return (rows[-1].currency, rows[-1].mrr) if rows else ("usd", Fraction(0))

    customers = sorted({r.customer_id for r in changes})
    cohort = [c for c in customers if balance(c, first - ONE)[1] > 0]
    rate0 = {"usd": Fraction(1), "eur": fx("eur", first - ONE)}
    start_total = end_total = retained = Fraction(0)
    for c in cohort:
        cur, p = balance(c, first - ONE)
        q = balance(c, last)[1]
        if rate0[cur] is None:
            continue
        start_total += p * rate0[cur]
        end_total += q * rate0[cur]
        retained += min(p, q) * rate0[cur]
    churned = sum(1 for c in cohort if balance(c, last)[1] == 0)
    assert got.starting_customers == len(cohort)
    assert got.logo_churn_rate == (Fraction(churned, len(cohort)) if cohort else None)
    assert got.mrr_start == start_total
    assert got.grr == (retained / start_total if start_total else None)
    assert got.nrr == (end_total / start_total if start_total else None)
    if got.grr is not None and got.nrr is not None:
        assert 0 <= got.grr <= 1 and got.grr <= got.nrr
        assert got.revenue_churn_rate == 1 - got.grr
    # The MRR-churn rates divide by MRR(a-1), which is the cohort's opening MRR.
    (opening,) = company_daily(changes, movements, [first - ONE], fx, "usd")
    assert opening.mrr == got.mrr_start
    if got.mrr_start:
        lost = sum(
            (m.amount for m in movements
             if first <= m.day <= last and m.kind in ("churn", "contraction")),
            Fraction(0),
        )  # fmt: skip
        assert got.gross_mrr_churn_rate == lost / got.mrr_start


@settings(max_examples=150, deadline=None)
@given(
    changes=histories(),
    offsets=st.lists(st.integers(-3, 92), min_size=0, max_size=6),
)
def test_balances_on_days_is_customer_balances_of_each_day(
    changes: list[MrrChange], offsets: list[int]
) -> None:
    """One ordered pass gives each asked day's balances exactly as `customer_balances` does,
    days before the first row and after the last included."""
    days = [date(2024, 2, 1) + timedelta(days=o) for o in offsets]
    rows = sorted(
        (((r.workspace_id, r.customer_id), r.currency, r.day, r.mrr) for r in changes),
        key=lambda t: t[2],
    )
    got = balances_on_days(rows, days)
    assert sorted(got) == sorted(set(days))
    for day in days:
        assert got[day] == customer_balances(changes, day)

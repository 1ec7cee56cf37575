"""Churn, retention and growth rates for a period [a, b] (docs/metrics.md §6).

Rates are exact `Fraction` ratios (0.25 = 25 %); a zero denominator gives None. Use `as_percent`
or `money.percent` to report them with 2 decimals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from finance_pipeline.lib.money import normalize_currency, percent
from finance_pipeline.lib.mrr_timeline import Movement, MrrChange, period_movements

FxLookup = Callable[[str, date], Fraction | None]
CustomerKey = tuple[str, str]
ONE_DAY = timedelta(days=1)

RATE_NAMES = (
    "logo_churn_rate",
    "grr",
    "revenue_churn_rate",
    "nrr",
    "net_revenue_churn_rate",
    "gross_mrr_churn_rate",
    "net_mrr_churn_rate",
)


@dataclass(frozen=True)
class RetentionRates:
    """§6 rates for [start, end] with the cohort figures behind them (reporting micro-units).

    The cohort S is the customers with MRR on start-1; `mrr_start` and `mrr_end_cohort` are both
    converted at the rates of start-1; currencies without a rate then are `skipped_currencies`.
    """

    start: date
    end: date
    starting_customers: int
    churned_customers: int
    mrr_start: Fraction
    mrr_end_cohort: Fraction
    mrr_retained: Fraction
    churn: Fraction
    contraction: Fraction
    expansion: Fraction
    reactivation: Fraction
    logo_churn_rate: Fraction | None
    grr: Fraction | None
    revenue_churn_rate: Fraction | None
    nrr: Fraction | None
    net_revenue_churn_rate: Fraction | None
    gross_mrr_churn_rate: Fraction | None
    net_mrr_churn_rate: Fraction | None
    skipped_currencies: tuple[str, ...]

    def as_percent(self) -> dict[str, Decimal | None]:
        """Every rate as a percentage with 2 decimals (half away from zero), None stays None."""
        out: dict[str, Decimal | None] = {}
        for name in RATE_NAMES:
            value = getattr(self, name)
            out[name] = None if value is None else percent(value, 1)
        return out


def customer_balances(
    changes: Iterable[MrrChange], day: date
) -> dict[CustomerKey, dict[str, Fraction]]:
    """Each customer's native MRR per currency on `day` (only non-zero balances)."""
    latest: dict[tuple[str, str, str], MrrChange] = {}
    for row in changes:
        if row.day > day:
            continue
        key = (row.workspace_id, row.customer_id, row.currency)
        if key not in latest or latest[key].day < row.day:
            latest[key] = row
    out: dict[CustomerKey, dict[str, Fraction]] = defaultdict(dict)
    for (ws, customer, currency), row in latest.items():
        if row.mrr:
            out[(ws, customer)][currency] = row.mrr
    return dict(out)


Balances = dict[CustomerKey, dict[str, Fraction]]


def balances_on_days(
    rows: Iterable[tuple[CustomerKey, str, date, Fraction]], days: Iterable[date]
) -> dict[date, Balances]:
    """`customer_balances` on each of `days` in one pass over (customer, currency, day, mrr)
    change rows sorted by day: a key's balance is its latest row on or before the day."""
    wanted = sorted(set(days))
    out: dict[date, Balances] = {}
    latest: dict[tuple[CustomerKey, str], Fraction] = {}
    index = 0

    def snapshot(day: date) -> None:
        shot: Balances = defaultdict(dict)
        for (customer, currency), mrr in latest.items():
            if mrr:
                shot[customer][currency] = mrr
        out[day] = dict(shot)

    for customer, currency, day, mrr in rows:
        while index < len(wanted) and wanted[index] < day:
            snapshot(wanted[index])
            index += 1
        latest[(customer, currency)] = mrr
    for day in wanted[index:]:
        snapshot(day)
    return out


def _ratio(numerator: Fraction, denominator: Fraction | int) -> Fraction | None:
    return None if denominator == 0 else Fraction(numerator) / denominator


def period_retention(
    changes: Iterable[MrrChange],
    movements: Iterable[Movement],
    fx: FxLookup,
    reporting_currency: str,
    start: date,
    end: date,
) -> RetentionRates:
    """All §6 rates for [start, end]: logo churn, GRR/NRR (cohort at start-1) and MRR churn rates.

    `movements` must cover [start, end]; they are summed at their own daily rates (§5), while the
    cohort balances use the rates of start-1 on both ends (§6).
    """
    rows = list(changes)
    opening = customer_balances(rows, start - ONE_DAY)
    closing = customer_balances(rows, end)
    return retention_from_balances(opening, closing, movements, fx, reporting_currency, start, end)


def retention_from_balances(
    opening: Mapping[CustomerKey, Mapping[str, Fraction]],
    closing: Mapping[CustomerKey, Mapping[str, Fraction]],
    movements: Iterable[Movement],
    fx: FxLookup,
    reporting_currency: str,
    start: date,
    end: date,
) -> RetentionRates:
    """`period_retention` from the customers' balances on start-1 (`opening`) and on `end`."""
    if end < start:
        raise ValueError(f"period end {end} is before its start {start}")
    reporting = normalize_currency(reporting_currency)
    before = start - ONE_DAY
    rates: dict[str, Fraction | None] = {}
    skipped: set[str] = set()

    def convert(amounts: Mapping[str, Fraction]) -> Fraction:
        total = Fraction(0)
        for currency, amount in amounts.items():
            if currency == reporting:
                total += amount  # rate 1: skip a Fraction product per customer
                continue
            if currency not in rates:
                rate = fx(currency, before)
                rates[currency] = None if rate is None else Fraction(rate)
            rate = rates[currency]
            if rate is None:
                skipped.add(currency)
            else:
                total += amount * rate
        return total

    cohort = [c for c, amounts in opening.items() if any(v > 0 for v in amounts.values())]
    churned = sum(1 for c in cohort if not closing.get(c))
    mrr_start = Fraction(0)
    mrr_end = Fraction(0)
    retained = Fraction(0)
    for customer in cohort:
        first = convert(opening[customer])
        last = convert(closing.get(customer, {}))
        mrr_start += first
        mrr_end += last
        retained += min(first, last)
    sums = period_movements(movements, start, end)
    grr = _ratio(retained, mrr_start)
    nrr = _ratio(mrr_end, mrr_start)
    lost = sums["churn"] + sums["contraction"]
    won_back = sums["expansion"] + sums["reactivation"]
    return RetentionRates(
        start=start,
        end=end,
        starting_customers=len(cohort),
        churned_customers=churned,
        mrr_start=mrr_start,
        mrr_end_cohort=mrr_end,
        mrr_retained=retained,
        churn=sums["churn"],
        contraction=sums["contraction"],
        expansion=sums["expansion"],
        reactivation=sums["reactivation"],
        logo_churn_rate=_ratio(Fraction(churned), len(cohort)),
        grr=grr,
        revenue_churn_rate=None if grr is None else 1 - grr,
        nrr=nrr,
        net_revenue_churn_rate=None if nrr is None else 1 - nrr,
        gross_mrr_churn_rate=_ratio(lost, mrr_start),
        net_mrr_churn_rate=_ratio(lost - won_back, mrr_start),
        skipped_currencies=tuple(sorted(skipped)),
    )


def logo_churn_rate(changes: Iterable[MrrChange], start: date, end: date) -> Fraction | None:
    """Share of customers paying on start-1 who pay nothing on `end` (None if nobody paid)."""
    rows = list(changes)
    opening = customer_balances(rows, start - ONE_DAY)
    closing = customer_balances(rows, end)
    cohort = [c for c, amounts in opening.items() if any(v > 0 for v in amounts.values())]
    return _ratio(Fraction(sum(1 for c in cohort if not closing.get(c))), len(cohort))


def churn_rate_percent(changes: Iterable[MrrChange], day: date) -> Decimal | None:
    """Seed `churn_rate_percent`: logo churn of the 30 days ending `day`, 2 decimals (§6)."""
    rate = logo_churn_rate(changes, day - timedelta(days=29), day)
    return None if rate is None else percent(rate, 1)


def growth_percent(current: Fraction | int, previous: Fraction | int) -> Decimal | None:
    """(current - previous) / previous as a percentage with 2 decimals; None when previous is 0."""
    return percent(Fraction(current) - Fraction(previous), previous)


def mrr_growth_percent(mrr_by_day: Mapping[date, Fraction], day: date) -> Decimal | None:
    """Seed `mrr_growth_percent`: company MRR(D) vs MRR(D-30), 2 decimals (§6)."""
    return growth_percent(mrr_by_day[day], mrr_by_day[day - timedelta(days=30)])

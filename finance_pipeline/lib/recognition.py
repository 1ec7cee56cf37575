"""Recognized revenue (docs/metrics.md §8): invoice lines spread evenly over their local days.

A line's service period [start, end) covers the local days on which it is in force (§1:
start < S(D+1) <= end), and each of those days gets an equal share. Whole micro-units are handed
out by largest remainder, so the parts always sum exactly to the line. A line with no period is
recognized on its paid day, and a period shorter than one in-force day on its start day. Refunds and
post-payment credit notes are passed as negative lines with no period, on their own day.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import TypeVar

from finance_pipeline.lib.timeutil import last_day_in_force, local_day

K = TypeVar("K", bound=Hashable)


def largest_remainder(amount: int, weights: Mapping[K, int | Fraction]) -> dict[K, int]:
    """Split integer `amount` proportionally to non-negative `weights` into integers summing to it.

    Each key gets the floor of its exact share; the leftover units go to the largest fractional
    parts, ties to the earlier key (insertion order). Negative amounts split symmetrically.
    """
    if not weights:
        raise ValueError("largest_remainder needs at least one weight")
    total_w = sum((Fraction(w) for w in weights.values()), Fraction(0))
    if total_w <= 0 or any(Fraction(w) < 0 for w in weights.values()):
        raise ValueError("weights must be non-negative with a positive sum")
    sign = -1 if amount < 0 else 1
    mag = abs(amount)
    exact = {k: Fraction(mag) * Fraction(w) / total_w for k, w in weights.items()}
    floors = {k: v.numerator // v.denominator for k, v in exact.items()}
    left = mag - sum(floors.values())
    position = {k: i for i, k in enumerate(weights)}
    rank = sorted(position, key=lambda k: (-(exact[k] - floors[k]), position[k]))
    for k in rank[:left]:
        floors[k] += 1
    return {k: sign * v for k, v in floors.items()}


def service_days(period_start_ts: int, period_end_ts: int, tz: str) -> list[date]:
    """The local days on which a period [start, end) is in force (§1); empty if under one day."""
    first = local_day(period_start_ts, tz)
    last = last_day_in_force(period_end_ts, tz)
    if last < first:
        return []
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _days_or_paid_day(
    period_start_ts: int | None, period_end_ts: int | None, tz: str, paid_day: date | None
) -> list[date]:
    days: list[date] = []
    if period_start_ts is not None and period_end_ts is not None:
        days = service_days(period_start_ts, period_end_ts, tz)
        if not days:
            # A sub-day period (or end <= start) has no fully owned day: recognize on its start day.
            days = [local_day(period_start_ts, tz)]
    if not days:
        if paid_day is None:
            raise ValueError("a line without a service period needs paid_day")
        days = [paid_day]
    return days


def spread_line(
    amount_micros: int,
    period_start_ts: int | None,
    period_end_ts: int | None,
    tz: str = "UTC",
    paid_day: date | None = None,
) -> dict[date, int]:
    """Recognized micro-units per local day for one line: equal per in-force day, exact sum."""
    days = _days_or_paid_day(period_start_ts, period_end_ts, tz, paid_day)
    return largest_remainder(int(amount_micros), dict.fromkeys(days, 1))


def month_key(day: date) -> str:
    """The calendar month "YYYY-MM" of a local day."""
    return f"{day.year:04d}-{day.month:02d}"


def month_split(
    amount_micros: int,
    period_start_ts: int | None,
    period_end_ts: int | None,
    tz: str = "UTC",
    paid_day: date | None = None,
) -> dict[str, int]:
    """Recognized micro-units per month "YYYY-MM" for one line, by largest remainder over months.

    Months are weighted by their in-force days, so the result is the exact monthly share rounded by
    largest remainder (it may differ by a few micros from summing `spread_line` days).
    """
    days = _days_or_paid_day(period_start_ts, period_end_ts, tz, paid_day)
    weights: dict[str, int] = {}
    for d in days:
        weights[month_key(d)] = weights.get(month_key(d), 0) + 1
    return largest_remainder(int(amount_micros), weights)


@dataclass(frozen=True, slots=True)
class RecognitionLine:
    """An invoice line (excl. tax, after discounts), refund or credit note to recognize (§8).

    `amount_micros` is in the reporting currency, or None when the FX rate was missing (skipped).
    Refunds / post-payment credit notes: negative amount, no period, `paid_day` = their own day.
    """

    customer_id: str
    amount_micros: int | None
    period_start_ts: int | None
    period_end_ts: int | None
    paid_day: date | None
    currency: str = "usd"


def recognized_by_customer_month(
    lines: Iterable[RecognitionLine], tz: str = "UTC"
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Recognized revenue per (customer_id, "YYYY-MM") and the skipped-currency counts (§2, §8)."""
    out: dict[tuple[str, str], int] = {}
    skipped: dict[str, int] = {}
    for line in lines:
        if line.amount_micros is None:
            cur = line.currency.lower()
            skipped[cur] = skipped.get(cur, 0) + 1
            continue
        for month, micros in month_split(
            line.amount_micros, line.period_start_ts, line.period_end_ts, tz, line.paid_day
        ).items():
            key = (line.customer_id, month)
            out[key] = out.get(key, 0) + micros
    return out, dict(sorted(skipped.items()))

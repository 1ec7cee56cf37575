"""Revenue analytics buckets (docs/metrics.md §10, workspace analytics API shape).

Ledger entries carry their local day (workspace time zone), so buckets are calendar buckets of local
days: DST never moves an entry between buckets once its day is assigned (LedgerEntry.from_instant).

Decisions (documented for the API):
- `period` defaults to monthly. Without dates, daily/weekly/monthly cover the current local calendar
  month and yearly the current calendar year. Dates may be given for any period (both or neither);
  they are required for custom.
- custom buckets by day for ranges up to 31 days, by week up to 26 weeks (182 days), else by month.
  The chosen bucket size is returned as `granularity`.
- A bucket's `date` is its calendar start, clipped to startDate (the first week/month may be
  partial; only days inside startDate..endDate are counted).
- revenue = gross + manual revenue (refunds excluded), expenses = expenses + fees, `net = revenue -
  expenses` (§10), refunds reported separately and negative. Amounts are whole units with 2 places.
- Each bucket is rounded from its exact micros, and totals are the rounding of the exact totals, so
  a total may differ from the sum of the rounded buckets by a cent or so (§2).
- Entries whose FX rate was missing are left out and counted in `skippedCurrencies`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from finance_pipeline.lib.cfo_metrics import EXPENSE_KINDS, REFUND_KINDS, REVENUE_KINDS, LedgerRow
from finance_pipeline.lib.money import micros_to_decimal
from finance_pipeline.lib.timeutil import zone

PERIODS = ("daily", "weekly", "monthly", "yearly", "custom")
GRANULARITIES = ("daily", "weekly", "monthly", "yearly")
DEFAULT_PERIOD = "monthly"
MAX_DATA_POINTS = 366
CUSTOM_DAILY_MAX_DAYS = 31
CUSTOM_WEEKLY_MAX_DAYS = 26 * 7
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WEEK_START = {"monday": 0, "sunday": 6}  # date.weekday() of the first day of a week


class AnalyticsParamError(ValueError):
    """An invalid analytics request parameter; maps to a 400 with the seed's error envelope."""

    def __init__(self, code: str, param: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.message = message


def parse_date_param(value: str | date | None, param: str) -> date | None:
    """A YYYY-MM-DD query parameter as a date (None stays None); raises invalid_date otherwise."""
    if value is None or isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise AnalyticsParamError(
            "invalid_date", param, f"{param} must be a date in YYYY-MM-DD format."
        )
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise AnalyticsParamError("invalid_date", param, f"{param} is not a valid date.") from exc


def bucket_start(day: date, granularity: str, week_start: str = "sunday") -> date:
    """The first calendar day of the bucket containing `day` (weeks start on `week_start`)."""
    if granularity == "daily":
        return day
    if granularity == "weekly":
        return day - timedelta(days=(day.weekday() - _WEEK_START[week_start]) % 7)
    if granularity == "monthly":
        return day.replace(day=1)
    if granularity == "yearly":
        return date(day.year, 1, 1)
    raise ValueError(f"unknown granularity {granularity!r}")


def _next_bucket(start: date, granularity: str) -> date:
    if granularity == "daily":
        return start + timedelta(days=1)
    if granularity == "weekly":
        return start + timedelta(days=7)
    if granularity == "monthly":
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return date(start.year + 1, 1, 1)


def _month_end(day: date) -> date:
    return _next_bucket(day.replace(day=1), "monthly") - timedelta(days=1)


def custom_granularity(start: date, end: date) -> str:
    """Bucket size for a custom range: daily <= 31 days, weekly <= 26 weeks, else monthly."""
    n = (end - start).days + 1
    if n <= CUSTOM_DAILY_MAX_DAYS:
        return "daily"
    if n <= CUSTOM_WEEKLY_MAX_DAYS:
        return "weekly"
    return "monthly"


def bucket_labels(
    start: date, end: date, granularity: str, week_start: str = "sunday"
) -> list[date]:
    """Bucket dates covering start..end: each bucket's calendar start, the first one clipped."""
    labels = [start]
    b = bucket_start(start, granularity, week_start)
    while True:
        try:
            b = _next_bucket(b, granularity)
        except (OverflowError, ValueError):  # past date.max
            break
        if b > end:
            break
        labels.append(b)
    return labels


def bucket_count(start: date, end: date, granularity: str, week_start: str = "sunday") -> int:
    """How many buckets cover start..end, computed without enumerating them."""
    if granularity == "daily":
        return (end - start).days + 1
    if granularity == "weekly":
        first, last = (bucket_start(d, "weekly", week_start) for d in (start, end))
        return (last - first).days // 7 + 1
    if granularity == "monthly":
        return (end.year - start.year) * 12 + end.month - start.month + 1
    return end.year - start.year + 1


@dataclass(frozen=True, slots=True)
class AnalyticsRange:
    """A validated analytics request: the requested period, its bucket size and inclusive range."""

    period: str
    granularity: str
    start: date
    end: date
    week_start: str


def resolve_range(
    period: str | None,
    start_date: str | date | None,
    end_date: str | date | None,
    tz: str = "UTC",
    week_start: str = "sunday",
    today: date | None = None,
    max_data_points: int = MAX_DATA_POINTS,
) -> AnalyticsRange:
    """Validate the analytics API query parameters, resolve defaults; raises AnalyticsParamError."""
    period = DEFAULT_PERIOD if period is None or period == "" else period
    if period not in PERIODS:
        raise AnalyticsParamError(
            "invalid_period", "period", f"period must be one of {', '.join(PERIODS)}."
        )
    if week_start not in _WEEK_START:
        raise AnalyticsParamError(
            "invalid_week_start", "week_start", "week_start must be sunday or monday."
        )
    start = parse_date_param(start_date, "startDate")
    end = parse_date_param(end_date, "endDate")
    if period == "custom" or (start is None) != (end is None):
        for value, name in ((start, "startDate"), (end, "endDate")):
            if value is None:
                raise AnalyticsParamError(
                    "missing_field",
                    name,
                    f"{name} is required when period is custom or the other date is given.",
                )
    if start is None or end is None:
        local_today = today or datetime.now(UTC).astimezone(zone(tz)).date()
        if period == "yearly":
            start, end = date(local_today.year, 1, 1), date(local_today.year, 12, 31)
        else:
            start, end = local_today.replace(day=1), _month_end(local_today)
    if start > end:
        raise AnalyticsParamError(
            "invalid_date_range", "startDate", "startDate must be on or before endDate."
        )
    granularity = custom_granularity(start, end) if period == "custom" else period
    try:
        points = bucket_count(start, end, granularity, week_start)
    except OverflowError as exc:  # a week starting before 0001-01-01
        raise AnalyticsParamError(
            "invalid_date", "startDate", "startDate is outside the supported range."
        ) from exc
    if points > max_data_points:
        raise AnalyticsParamError(
            "range_too_large",
            "endDate",
            f"The range gives {points} {granularity} data points; "
            f"the maximum is {max_data_points}.",
        )
    return AnalyticsRange(period, granularity, start, end, week_start)


def _amounts(rev: int, exp: int, ref: int) -> dict[str, Any]:
    return {
        "revenue": micros_to_decimal(rev),
        "expenses": micros_to_decimal(exp),
        "net": micros_to_decimal(rev - exp),
        "refunds": micros_to_decimal(ref),
    }


def revenue_analytics(
    ledger: Iterable[LedgerRow],
    period: str | None = DEFAULT_PERIOD,
    start_date: str | date | None = None,
    end_date: str | date | None = None,
    tz: str = "UTC",
    week_start: str = "sunday",
    today: date | None = None,
) -> dict[str, Any]:
    """Revenue, expenses, net and refunds per bucket and in total, in the analytics API response.

    Amounts are Decimals in whole units with 2 places. `today` (local) only sets default ranges.
    """
    rng = resolve_range(period, start_date, end_date, tz, week_start, today)
    labels = bucket_labels(rng.start, rng.end, rng.granularity, rng.week_start)
    sums: dict[date, list[int]] = {d: [0, 0, 0] for d in labels}
    skipped: dict[str, int] = {}
    for e in ledger:
        if not (rng.start <= e.day <= rng.end):
            continue
        if e.amount_micros_reporting is None:
            cur = (e.currency or "").lower()
            skipped[cur] = skipped.get(cur, 0) + 1
            continue
        label = max(bucket_start(e.day, rng.granularity, rng.week_start), rng.start)
        if e.kind in REVENUE_KINDS:
            sums[label][0] += e.amount_micros_reporting
        elif e.kind in EXPENSE_KINDS:
            sums[label][1] += e.amount_micros_reporting
        elif e.kind in REFUND_KINDS:
            sums[label][2] += e.amount_micros_reporting
        else:
            raise ValueError(f"unknown ledger kind {e.kind!r}")
    totals = [sum(v[i] for v in sums.values()) for i in range(3)]
    return {
        "period": rng.period,
        "granularity": rng.granularity,
        "startDate": rng.start.isoformat(),
        "endDate": rng.end.isoformat(),
        "dataPoints": [{"date": d.isoformat(), **_amounts(*sums[d])} for d in labels],
        "totals": _amounts(*totals),
        "skippedCurrencies": dict(sorted(skipped.items())),
    }

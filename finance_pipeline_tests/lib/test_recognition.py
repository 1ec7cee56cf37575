"""Recognized revenue spreading (docs/metrics.md §8): exact days and months, largest remainder."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.recognition import (
    RecognitionLine,
    largest_remainder,
    month_split,
    recognized_by_customer_month,
    service_days,
    spread_line,
)

NY = "America/New_York"


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_largest_remainder_exact_values() -> None:
    # 100 x 10/31, 10/31, 11/31 = 32.26, 32.26, 35.48 -> floors 99, the extra unit goes to c.
    assert largest_remainder(100, {"a": 10, "b": 10, "c": 11}) == {"a": 32, "b": 32, "c": 36}
    assert largest_remainder(-100, {"a": 10, "b": 10, "c": 11}) == {"a": -32, "b": -32, "c": -36}
    # Ties go to the earlier key.
    assert largest_remainder(10, {"x": 1, "y": 1, "z": 1}) == {"x": 4, "y": 3, "z": 3}
    assert largest_remainder(0, {"x": 1}) == {"x": 0}
    with pytest.raises(ValueError):
        largest_remainder(1, {})
    with pytest.raises(ValueError):
        largest_remainder(1, {"x": 0})


def test_monthly_period_utc_days_and_months() -> None:
    # [Jan 15 10:00, Feb 15 10:00) is in force Jan 15 .. Feb 14: 31 days.
    days = spread_line(31_000_001, ts(2024, 1, 15, 10), ts(2024, 2, 15, 10), "UTC")
    assert len(days) == 31
    assert min(days) == date(2024, 1, 15) and max(days) == date(2024, 2, 14)
    assert days[date(2024, 1, 15)] == 1_000_001
    assert all(v == 1_000_000 for d, v in days.items() if d != date(2024, 1, 15))
    # Months: 17/31 and 14/31 of 31_000_001 = 17_000_000.55 and 14_000_000.45.
    assert month_split(31_000_001, ts(2024, 1, 15, 10), ts(2024, 2, 15, 10), "UTC") == {
        "2024-01": 17_000_001,
        "2024-02": 14_000_000,
    }


def test_period_ending_at_midnight_excludes_that_day() -> None:
    assert list(spread_line(2, ts(2024, 1, 1), ts(2024, 1, 3), "UTC")) == [
        date(2024, 1, 1),
        date(2024, 1, 2),
    ]


def test_utc_month_seen_from_new_york_shifts_one_day() -> None:
    # UTC March is Feb 29 19:00 EST .. Mar 31 20:00 EDT in New York: in force Feb 29 .. Mar 30.
    days = service_days(ts(2024, 3, 1), ts(2024, 4, 1), NY)
    assert days[0] == date(2024, 2, 29) and days[-1] == date(2024, 3, 30) and len(days) == 31
    assert month_split(3_100, ts(2024, 3, 1), ts(2024, 4, 1), NY) == {
        "2024-02": 100,
        "2024-03": 3_000,
    }


@pytest.mark.parametrize(
    ("start", "end", "first", "last", "n"),
    [
        # Local midnights across spring-forward (23-hour Mar 10) and fall-back (25-hour Nov 3).
        (ts(2024, 3, 1, 5), ts(2024, 4, 1, 4), date(2024, 3, 1), date(2024, 3, 31), 31),
        (ts(2024, 11, 1, 4), ts(2024, 12, 1, 5), date(2024, 11, 1), date(2024, 11, 30), 30),
    ],
)
def test_local_month_across_dst_is_whole_month(
    start: int, end: int, first: date, last: date, n: int
) -> None:
    days = spread_line(n * 7, start, end, NY)
    assert (min(days), max(days), len(days)) == (first, last, n)
    assert set(days.values()) == {7}  # every day gets the same share, 23- or 25-hour day alike
    assert month_split(n * 7, start, end, NY) == {f"{first:%Y-%m}": n * 7}


def test_line_without_period_is_recognized_on_paid_day() -> None:
    assert spread_line(500, None, None, "UTC", paid_day=date(2024, 5, 6)) == {date(2024, 5, 6): 500}
    assert month_split(-500, None, None, "UTC", paid_day=date(2024, 5, 6)) == {"2024-05": -500}
    with pytest.raises(ValueError, match="paid_day"):
        spread_line(500, None, None, "UTC")


def test_sub_day_period_is_recognized_on_start_day() -> None:
    assert spread_line(9, ts(2024, 5, 6, 10), ts(2024, 5, 6, 12), "UTC") == {date(2024, 5, 6): 9}
    assert spread_line(9, ts(2024, 5, 6, 10), ts(2024, 5, 6, 10), NY) == {date(2024, 5, 6): 9}


def test_recognized_by_customer_month_with_refund_and_missing_fx() -> None:
    lines = [
        RecognitionLine("cus_a", 3_100, ts(2024, 1, 16), ts(2024, 2, 16), date(2024, 1, 16)),
        RecognitionLine("cus_a", -1_000, None, None, date(2024, 2, 20)),  # refund, own day
        RecognitionLine("cus_b", 700, None, None, date(2024, 1, 31)),
        RecognitionLine("cus_b", None, None, None, date(2024, 1, 31), "EUR"),
    ]
    revenue, skipped = recognized_by_customer_month(lines, "UTC")
    # cus_a: Jan 16..31 = 16 days, Feb 1..15 = 15 days of 3100 -> 1600 / 1500, then -1000 in Feb.
    assert revenue == {
        ("cus_a", "2024-01"): 1_600,
        ("cus_a", "2024-02"): 500,
        ("cus_b", "2024-01"): 700,
    }
    assert skipped == {"eur": 1}


@settings(max_examples=150, deadline=None)
@given(
    amount=st.integers(min_value=-(10**12), max_value=10**12),
    start=st.integers(min_value=ts(2023, 1, 1), max_value=ts(2026, 1, 1)),
    length=st.integers(min_value=0, max_value=800 * 86_400),
    tz=st.sampled_from(["UTC", NY, "Asia/Kolkata", "Pacific/Auckland"]),
)
def test_parts_always_sum_exactly(amount: int, start: int, length: int, tz: str) -> None:
    days = spread_line(amount, start, start + length, tz)
    months = month_split(amount, start, start + length, tz)
    assert sum(days.values()) == amount
    assert sum(months.values()) == amount
    n = len(days)
    assert all(abs(v - Fraction(amount, n)) < 1 for v in days.values())
    for month, value in months.items():
        share = Fraction(amount * sum(1 for d in days if f"{d:%Y-%m}" == month), n)
        assert abs(value - share) < 1
    assert sorted(days) == [min(days) + timedelta(days=i) for i in range(n)]

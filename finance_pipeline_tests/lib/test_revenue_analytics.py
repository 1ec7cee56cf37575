"""Revenue analytics buckets (docs/metrics.md §10): periods, weeks, time zones, errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.cfo_metrics import LedgerEntry
from finance_pipeline.lib.revenue_analytics import AnalyticsParamError, revenue_analytics

U = 1_000_000  # micros per unit
NY = "America/New_York"


def e(
    day: date, kind: str, micros: int, currency: str = "usd", converted: bool = True
) -> LedgerEntry:
    return LedgerEntry(
        "ws", f"{kind}-{day}-{micros}", day, kind, micros, currency, micros if converted else None
    )


def at(
    instant: datetime, tz: str, kind: str = "gross_revenue", micros: int = 10 * U
) -> LedgerEntry:
    return LedgerEntry.from_instant(
        instant,
        tz,
        workspace_id="ws",
        entry_id=str(instant),
        kind=kind,
        amount_micros_native=micros,
        currency="usd",
        amount_micros_reporting=micros,
    )


def D(text: str) -> Decimal:
    return Decimal(text)


def point(day: str, rev: str, exp: str, net: str, ref: str = "0.00") -> dict[str, object]:
    return {"date": day, "revenue": D(rev), "expenses": D(exp), "net": D(net), "refunds": D(ref)}


JAN = [
    e(date(2025, 1, 1), "gross_revenue", 1500 * U),
    e(date(2025, 1, 5), "manual_revenue", 500 * U),  # a Sunday
    e(date(2025, 1, 6), "gross_revenue", 2500 * U),  # a Monday
    e(date(2025, 1, 6), "expense", 800 * U),
    e(date(2025, 1, 20), "fee", 700 * U),
    e(date(2025, 1, 31), "gross_revenue", 5500 * U),
    e(date(2025, 1, 31), "expense", 1500 * U),
    e(date(2025, 1, 15), "refund", -250 * U),
    e(date(2024, 12, 31), "gross_revenue", 999 * U),  # outside
    e(date(2025, 2, 1), "expense", 999 * U),  # outside
]


def test_default_is_monthly_current_local_month() -> None:
    out = revenue_analytics(JAN, None, today=date(2025, 1, 20))
    assert out == {
        "period": "monthly",
        "granularity": "monthly",
        "startDate": "2025-01-01",
        "endDate": "2025-01-31",
        "dataPoints": [point("2025-01-01", "10000.00", "3000.00", "7000.00", "-250.00")],
        "totals": {
            "revenue": D("10000.00"),
            "expenses": D("3000.00"),
            "net": D("7000.00"),
            "refunds": D("-250.00"),
        },
        "skippedCurrencies": {},
    }


def test_default_today_uses_workspace_time_zone() -> None:
    # Whatever "now" is, the default range is a whole local month containing it.
    out = revenue_analytics([], "daily", tz="Pacific/Kiritimati")
    start, end = date.fromisoformat(out["startDate"]), date.fromisoformat(out["endDate"])
    assert start.day == 1 and (end + timedelta(days=1)).day == 1 and start.month == end.month


def test_weekly_sunday_vs_monday() -> None:
    sunday = revenue_analytics(JAN, "weekly", "2025-01-01", "2025-01-31")
    monday = revenue_analytics(JAN, "weekly", "2025-01-01", "2025-01-31", week_start="monday")
    assert [p["date"] for p in sunday["dataPoints"]] == [
        "2025-01-01",
        "2025-01-05",
        "2025-01-12",
        "2025-01-19",
        "2025-01-26",
    ]
    assert [p["date"] for p in monday["dataPoints"]] == [
        "2025-01-01",
        "2025-01-06",
        "2025-01-13",
        "2025-01-20",
        "2025-01-27",
    ]
    # Sunday Jan 5 opens a Sunday week, but belongs to the (clipped) week of Mon Dec 30.
    assert sunday["dataPoints"][0] == point("2025-01-01", "1500.00", "0.00", "1500.00")
    assert sunday["dataPoints"][1] == point("2025-01-05", "3000.00", "800.00", "2200.00")
    assert monday["dataPoints"][0] == point("2025-01-01", "2000.00", "0.00", "2000.00")
    assert monday["dataPoints"][1] == point("2025-01-06", "2500.00", "800.00", "1700.00")
    assert monday["dataPoints"][2] == point("2025-01-13", "0.00", "0.00", "0.00", "-250.00")
    assert sunday["totals"] == monday["totals"]


def test_weekly_buckets_in_new_york_across_dst_end() -> None:
    # Fall back on Sun 2024-11-03 at 06:00Z. 03:30Z is Sat 23:30 EDT, 04:30Z is Sun 00:30 EDT and
    # 06:30Z is Sun 01:30 EST (the repeated hour).
    instants = [datetime(2024, 11, 3, h, 30, tzinfo=UTC) for h in (3, 4, 6)]
    ny = revenue_analytics([at(i, NY) for i in instants], "weekly", "2024-10-27", "2024-11-09", NY)
    assert [(p["date"], p["revenue"]) for p in ny["dataPoints"]] == [
        ("2024-10-27", D("10.00")),
        ("2024-11-03", D("20.00")),
    ]
    utc = revenue_analytics([at(i, "UTC") for i in instants], "weekly", "2024-10-27", "2024-11-09")
    assert [(p["date"], p["revenue"]) for p in utc["dataPoints"]] == [
        ("2024-10-27", D("0.00")),
        ("2024-11-03", D("30.00")),
    ]


def test_daily_and_monthly_buckets_in_new_york_across_dst_start() -> None:
    # Spring forward on Sun 2024-03-10: 04:30Z is Sat 23:30 EST;
    # 2024-04-01T03:30Z is Mar 31 23:30 EDT.
    entries = [
        at(datetime(2024, 3, 10, 4, 30, tzinfo=UTC), NY),
        at(datetime(2024, 3, 10, 5, 30, tzinfo=UTC), NY),  # Sun 00:30 EST
        at(datetime(2024, 4, 1, 3, 30, tzinfo=UTC), NY),
    ]
    daily = revenue_analytics(entries, "daily", "2024-03-09", "2024-03-10", NY)
    assert [p["revenue"] for p in daily["dataPoints"]] == [D("10.00"), D("10.00")]
    monthly = revenue_analytics(entries, "monthly", "2024-03-01", "2024-04-30", NY)
    assert [(p["date"], p["revenue"]) for p in monthly["dataPoints"]] == [
        ("2024-03-01", D("30.00")),
        ("2024-04-01", D("0.00")),
    ]


def test_yearly_buckets_clip_first_year() -> None:
    ledger = [e(date(2023, 6, 1), "gross_revenue", U), e(date(2024, 12, 31), "expense", 2 * U)]
    out = revenue_analytics(ledger, "yearly", "2023-06-01", "2025-02-10")
    assert [p["date"] for p in out["dataPoints"]] == ["2023-06-01", "2024-01-01", "2025-01-01"]
    assert out["dataPoints"][1]["net"] == D("-2.00")
    default = revenue_analytics([], "yearly", today=date(2025, 7, 4))
    assert (default["startDate"], default["endDate"]) == ("2025-01-01", "2025-12-31")
    assert len(default["dataPoints"]) == 1


@pytest.mark.parametrize(
    ("end", "granularity", "points"),
    [
        ("2025-01-31", "daily", 31),  # 31 days
        ("2025-02-01", "weekly", 5),  # 32 days: Jan 1 and Sundays Jan 5 .. Jan 26, Feb 1 in Jan 26
        ("2025-07-01", "weekly", 27),  # 182 days = 26 weeks
        ("2025-07-02", "monthly", 7),  # 183 days
    ],
)
def test_custom_granularity(end: str, granularity: str, points: int) -> None:
    out = revenue_analytics(JAN, "custom", "2025-01-01", end)
    assert (out["period"], out["granularity"], len(out["dataPoints"])) == (
        "custom",
        granularity,
        points,
    )
    assert out["totals"]["revenue"] == D("10000.00")


@pytest.mark.parametrize(
    ("kwargs", "code", "param"),
    [
        ({"period": "hourly"}, "invalid_period", "period"),
        ({"period": "Monthly"}, "invalid_period", "period"),
        ({"period": "custom", "end_date": "2025-01-31"}, "missing_field", "startDate"),
        ({"period": "custom", "start_date": "2025-01-01"}, "missing_field", "endDate"),
        ({"period": "monthly", "start_date": "2025-01-01"}, "missing_field", "endDate"),
        ({"start_date": "2025-1-01", "end_date": "2025-01-31"}, "invalid_date", "startDate"),
        ({"start_date": "2025-01-01", "end_date": "2025-02-30"}, "invalid_date", "endDate"),
        ({"start_date": "01/01/2025", "end_date": "2025-02-01"}, "invalid_date", "startDate"),
        ({"start_date": "2025-02-01", "end_date": "2025-01-31"}, "invalid_date_range", "startDate"),
        (
            {"period": "daily", "start_date": "2024-01-01", "end_date": "2025-01-01"},
            "range_too_large",
            "endDate",
        ),
        ({"week_start": "tuesday"}, "invalid_week_start", "week_start"),
    ],
)
def test_parameter_errors(kwargs: dict[str, str], code: str, param: str) -> None:
    with pytest.raises(AnalyticsParamError) as info:
        revenue_analytics([], today=date(2025, 1, 1), **kwargs)
    assert (info.value.code, info.value.param) == (code, param)


def test_limits_are_inclusive() -> None:
    # 366 daily points is allowed (a leap year), start == end is allowed.
    assert len(revenue_analytics([], "daily", "2024-01-01", "2024-12-31")["dataPoints"]) == 366
    one = revenue_analytics([], "custom", "2024-02-29", "2024-02-29")
    assert one["dataPoints"] == [point("2024-02-29", "0.00", "0.00", "0.00")]
    assert one["totals"] == {k: D("0.00") for k in ("revenue", "expenses", "net", "refunds")}


def test_totals_round_exact_sums_not_rounded_buckets() -> None:
    # Three half-cent revenues: each bucket rounds to 0.01, the exact total 0.015 rounds to 0.02.
    ledger = [e(date(2025, 1, d), "gross_revenue", 5_000) for d in (1, 2, 3)]
    out = revenue_analytics(ledger, "daily", "2025-01-01", "2025-01-03")
    assert [p["revenue"] for p in out["dataPoints"]] == [D("0.01")] * 3
    assert out["totals"]["revenue"] == D("0.02")


def test_missing_fx_is_skipped_and_counted() -> None:
    ledger = [
        e(date(2025, 1, 2), "gross_revenue", U),
        e(date(2025, 1, 2), "gross_revenue", U, "EUR", False),
    ]
    out = revenue_analytics(ledger, "monthly", "2025-01-01", "2025-01-31")
    assert out["totals"]["revenue"] == D("1.00")
    assert out["skippedCurrencies"] == {"eur": 1}


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=120),
            st.sampled_from(["gross_revenue", "expense", "refund", "fee", "manual_revenue"]),
            st.integers(min_value=0, max_value=10**7),
        ),
        max_size=40,
    ),
    period=st.sampled_from(["daily", "weekly", "monthly", "yearly", "custom"]),
    week_start=st.sampled_from(["sunday", "monday"]),
)
def test_whole_cent_buckets_sum_to_totals(
    rows: list[tuple[int, str, int]], period: str, week_start: str
) -> None:
    start = date(2024, 12, 20)
    ledger = [
        e(start + timedelta(days=off), kind, (-c if kind == "refund" else c) * 10_000)
        for off, kind, c in rows
    ]
    end = start + timedelta(days=100)
    out = revenue_analytics(ledger, period, start, end, week_start=week_start)
    for key in ("revenue", "expenses", "net", "refunds"):
        assert sum((p[key] for p in out["dataPoints"]), D("0")) == out["totals"][key]
    dates = [date.fromisoformat(p["date"]) for p in out["dataPoints"]]
    assert dates == sorted(dates) and dates[0] == start and dates[-1] <= end

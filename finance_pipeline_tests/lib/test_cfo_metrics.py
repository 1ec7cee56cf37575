"""CFO metrics (docs/metrics.md §9) with exact expected values from the v1 API example."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.cfo_metrics import LedgerEntry, cfo_metrics, ledger_totals, window_days

AS_OF = date(2026, 2, 28)
C = 10_000  # micros per cent


def entry(
    day: date,
    kind: str,
    cents: int,
    subtype: str | None = None,
    currency: str = "usd",
    converted: bool = True,
) -> LedgerEntry:
    micros = cents * C
    return LedgerEntry(
        workspace_id="ws_1",
        entry_id=f"{kind}-{day}-{cents}",
        day=day,
        kind=kind,
        subtype=subtype,
        amount_micros_native=micros,
        currency=currency,
        amount_micros_reporting=micros if converted else None,
    )


def seed_ledger() -> list[LedgerEntry]:
    """Ledger reproducing the v1 API metrics example exactly, with out-of-window noise."""
    return [
        entry(date(2026, 1, 29), "gross_revenue", 999_999),  # the day before the window
        entry(date(2026, 1, 29), "expense", 777, "recurring_expense"),
        entry(date(2026, 1, 30), "gross_revenue", 500_000),  # first day of the window (D-29)
        entry(date(2026, 2, 1), "manual_revenue", 400_000, "recurring"),
        entry(date(2026, 2, 10), "gross_revenue", 1_500_000),
        entry(date(2026, 2, 20), "refund", -80_000),
        entry(date(2026, 2, 1), "expense", 2_600_000, "recurring_expense"),
        entry(date(2026, 2, 5), "fee", 70_000, "payment_fees"),
        entry(date(2026, 2, 15), "expense", 130_000, "one_time_expense"),
        entry(date(2026, 3, 1), "refund", -5_000),  # after as_of
    ]


def test_window_is_30_local_days_ending_as_of() -> None:
    assert window_days(AS_OF) == (date(2026, 1, 30), date(2026, 2, 28))


def test_seed_example_exact() -> None:
    m = cfo_metrics(AS_OF, seed_ledger(), 21_500_000_000, 5_000_000, "usd")
    assert m == {
        "as_of": "2026-02-28",
        "currency": "USD",
        "gross_revenue_cents_30d": 2_400_000,
        "refunds_cents_30d": -80_000,
        "net_revenue_cents_30d": 2_320_000,
        "mrr_cents": 2_150_000,
        "arr_cents": 25_800_000,
        "burn_cents_30d": 480_000,
        "recurring_burn_cents_30d": 350_000,
        "one_time_expenses_cents_30d": 130_000,
        "cash_on_hand_cents": 5_000_000,
        "runway_months": Decimal("14.29"),
        "runway_days": Decimal("428.57"),
        "warnings": [],
        "total_expenses_cents_30d": 2_800_000,
        "recurring_expenses_cents_30d": 2_670_000,
        "skipped_currencies": {},
    }


def test_missing_cash_gives_null_runway_and_warning() -> None:
    m = cfo_metrics(AS_OF, seed_ledger(), 21_500_000_000, None, "USD")
    assert m["runway_months"] is None and m["runway_days"] is None
    assert m["cash_on_hand_cents"] is None
    assert [w["code"] for w in m["warnings"]] == ["missing_cash"]


def test_no_positive_recurring_burn_gives_null_runway_without_warning() -> None:
    ledger = [
        entry(date(2026, 2, 10), "gross_revenue", 100_000),
        entry(date(2026, 2, 11), "expense", 100_000, "recurring_expense"),  # burn exactly 0
        entry(date(2026, 2, 12), "expense", 900_000, "one_time_expense"),  # not in runway burn
    ]
    m = cfo_metrics(AS_OF, ledger, 0, 1_000_000, "USD")
    assert m["recurring_burn_cents_30d"] == 0
    assert m["burn_cents_30d"] == 900_000
    assert m["runway_months"] is None
    assert m["warnings"] == []


def test_empty_ledger_is_all_zero_and_null_runway() -> None:
    m = cfo_metrics(AS_OF, [], {}, 123, "EUR")
    assert m["currency"] == "EUR"
    for key in (
        "gross_revenue_cents_30d",
        "refunds_cents_30d",
        "net_revenue_cents_30d",
        "mrr_cents",
        "arr_cents",
        "burn_cents_30d",
        "recurring_burn_cents_30d",
        "one_time_expenses_cents_30d",
        "total_expenses_cents_30d",
    ):
        assert m[key] == 0, key
    assert m["runway_months"] is None
    assert m["warnings"] == []


def test_missing_fx_rate_skips_and_counts_currency() -> None:
    ledger = [
        entry(date(2026, 2, 10), "gross_revenue", 100_000),
        entry(date(2026, 2, 11), "gross_revenue", 55_555, currency="EUR", converted=False),
        entry(
            date(2026, 2, 12), "expense", 10, "recurring_expense", currency="eur", converted=False
        ),
        entry(date(2026, 2, 12), "refund", -10, currency="gbp", converted=False),
        entry(date(2026, 1, 1), "refund", -10, currency="jpy", converted=False),  # out of window
    ]
    m = cfo_metrics(AS_OF, ledger, 0, None, "USD")
    assert m["gross_revenue_cents_30d"] == 100_000
    assert m["total_expenses_cents_30d"] == 0
    assert m["skipped_currencies"] == {"eur": 2, "gbp": 1}
    assert [w["code"] for w in m["warnings"]] == ["missing_cash", "missing_fx_rate"]
    assert "EUR (2)" in m["warnings"][1]["message"]


def test_arr_is_rounded_once_from_exact_mrr() -> None:
    # MRR 123.4567 cents: mrr_cents 123, ARR = 1481.4804 cents -> 1481 (not 12 x 123 = 1476).
    m = cfo_metrics(AS_OF, [], 1_234_567, None, "USD")
    assert (m["mrr_cents"], m["arr_cents"]) == (123, 1481)


def test_mrr_sources_mapping_and_callable() -> None:
    mapping = {AS_OF: 50_000 * C, AS_OF - timedelta(days=1): 1}
    assert cfo_metrics(AS_OF, [], mapping, None, "USD")["mrr_cents"] == 50_000
    assert cfo_metrics(AS_OF, [], lambda d: d.day * C, None, "USD")["mrr_cents"] == 28


def test_runway_is_computed_from_exact_micros() -> None:
    # Recurring burn 299.5 cents exactly: reported as 300 cents, but runway uses the exact value:
    # 1000 / 299.5 = 3.3389 -> 3.34 (1000 / 300 would give 3.33).
    ledger = [
        LedgerEntry(
            "ws",
            "e1",
            date(2026, 2, 1),
            "expense",
            2_995_000,
            "usd",
            2_995_000,
            "recurring_expense",
        )
    ]
    m = cfo_metrics(AS_OF, ledger, 0, 1000, "USD")
    assert m["recurring_burn_cents_30d"] == 300
    assert m["runway_months"] == Decimal("3.34")
    assert m["runway_days"] == Decimal("100.17")  # 30 x 1000 / 299.5 = 100.1669...


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown ledger kind"):
        cfo_metrics(AS_OF, [entry(AS_OF, "bonus", 1)], 0, None, "USD")


def test_from_instant_uses_local_day_across_dst() -> None:
    # 2024-03-10 04:30Z is 23:30 EST on the 9th (DST starts later that night in New York).
    ts = int(datetime(2024, 3, 10, 4, 30, tzinfo=UTC).timestamp())
    e = LedgerEntry.from_instant(
        ts,
        "America/New_York",
        workspace_id="ws",
        entry_id="x",
        kind="gross_revenue",
        amount_micros_native=1,
        currency="usd",
        amount_micros_reporting=1,
    )
    assert e.day == date(2024, 3, 9)
    assert LedgerEntry.from_instant(
        ts,
        "UTC",
        workspace_id="ws",
        entry_id="x",
        kind="gross_revenue",
        amount_micros_native=1,
        currency="usd",
        amount_micros_reporting=1,
    ).day == date(2024, 3, 10)


cents_st = st.integers(min_value=0, max_value=10**9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-40, max_value=5),
            st.sampled_from(["gross_revenue", "manual_revenue", "refund", "expense", "fee"]),
            cents_st,
            st.sampled_from(["recurring_expense", "one_time_expense", None]),
        ),
        max_size=30,
    )
)
def test_identities_hold_for_whole_cent_amounts(
    rows: list[tuple[int, str, int, str | None]],
) -> None:
    ledger = [
        entry(AS_OF + timedelta(days=off), kind, -c if kind == "refund" else c, sub)
        for off, kind, c, sub in rows
    ]
    m = cfo_metrics(AS_OF, ledger, 0, 10**6, "USD")
    assert m["net_revenue_cents_30d"] == m["gross_revenue_cents_30d"] + m["refunds_cents_30d"]
    assert m["burn_cents_30d"] == m["total_expenses_cents_30d"] - m["net_revenue_cents_30d"]
    assert m["recurring_burn_cents_30d"] == (
        m["recurring_expenses_cents_30d"] - m["net_revenue_cents_30d"]
    )
    assert m["total_expenses_cents_30d"] == (
        m["recurring_expenses_cents_30d"] + m["one_time_expenses_cents_30d"]
    )
    inside = [e for e in ledger if date(2026, 1, 30) <= e.day <= AS_OF]
    t = ledger_totals(inside, date.min, date.max)
    assert m["gross_revenue_cents_30d"] * C == t.gross_revenue
    assert m["refunds_cents_30d"] <= 0

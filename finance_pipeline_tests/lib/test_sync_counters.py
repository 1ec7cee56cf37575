"""The revenue-sync counters of the invoices one Stripe sync wrote (lib.sync_counters)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction

from finance_pipeline.lib.sync_counters import SyncCounters, rate_day, sync_counters


def _ts(y: int, m: int, d: int, h: int = 12) -> int:
    return int(datetime(y, m, d, h, tzinfo=UTC).timestamp())


def _rate(currency: str, day: date) -> Fraction | None:
    """USD reporting: EUR has a rate on 2026-03-01 only; GBP never."""
    if currency == "usd":
        return Fraction(1)
    if currency == "eur" and day == date(2026, 3, 1):
        return Fraction(108, 100)
    return None


def _inv(i: str, customer: str | None, currency: str, created: int, paid: int | None = None):
    return {"id": i, "customer": customer, "currency": currency, "created": created,
            "paid_at": paid}  # fmt: skip


def test_counts_invoices_customers_periods_and_skipped_currencies() -> None:
    invoices = [
        _inv("in_1", "cus_a", "usd", _ts(2026, 2, 27), _ts(2026, 3, 2)),  # paid in March
        _inv("in_2", "cus_a", "usd", _ts(2026, 3, 5)),  # same customer and month
        _inv("in_3", "cus_a", "usd", _ts(2026, 4, 1)),  # another month
        _inv("in_4", "cus_b", "EUR", _ts(2026, 3, 1)),  # EUR with a rate that day
        _inv("in_5", "cus_b", "eur", _ts(2026, 3, 2)),  # EUR without: skipped
        _inv("in_6", "cus_c", "gbp", _ts(2026, 3, 3)),  # GBP: skipped
        _inv("in_7", None, "gbp", _ts(2026, 3, 3)),  # no customer: no customer, no period
        _inv("in_2", "cus_a", "usd", _ts(2026, 3, 5)),  # refreshed after being listed: once
    ]
    got = sync_counters(invoices, _rate, "UTC", auto_matches_created=0, duration_ms=4521)
    assert got == SyncCounters(
        invoices_fetched=7,
        customers_processed=3,
        periods_updated=4,  # (a, 03), (a, 04), (b, 03), (c, 03)
        invoices_skipped=3,
        skipped_currencies={"eur": 1, "gbp": 2},
        auto_matches_created=0,
        duration_ms=4521,
    )
    assert got.as_api() == {
        "customersProcessed": 3, "periodsUpdated": 4, "autoMatchesCreated": 0,
        "invoicesFetched": 7, "invoicesSkipped": 3, "skippedCurrencies": {"eur": 1, "gbp": 2},
        "durationMs": 4521,
    }  # fmt: skip


def test_the_rate_day_is_the_local_paid_day_else_the_creation_day() -> None:
    # 2026-03-01 03:00 UTC is still February 28 in New York.
    assert rate_day(_inv("in", "c", "usd", _ts(2026, 3, 1, 3)), "America/New_York") == date(
        2026, 2, 28
    )
    assert rate_day(_inv("in", "c", "usd", _ts(2026, 1, 1), _ts(2026, 3, 1, 3)), "UTC") == date(
        2026, 3, 1
    )
    # The month of a period follows the zone: one customer, two local months.
    invoices = [
        _inv("in_1", "cus_a", "usd", _ts(2026, 3, 1, 3)),
        _inv("in_2", "cus_a", "usd", _ts(2026, 3, 1, 12)),
    ]
    assert sync_counters(invoices, _rate, "America/New_York", auto_matches_created=0,
                         duration_ms=0).periods_updated == 2  # fmt: skip
    assert sync_counters(invoices, _rate, "UTC", auto_matches_created=0,
                         duration_ms=0).periods_updated == 1  # fmt: skip


def test_nothing_written_counts_zero() -> None:
    got = sync_counters([], _rate, "UTC", auto_matches_created=2, duration_ms=7)
    assert got.as_api() == {
        "customersProcessed": 0, "periodsUpdated": 0, "autoMatchesCreated": 2,
        "invoicesFetched": 0, "invoicesSkipped": 0, "skippedCurrencies": {}, "durationMs": 7,
    }  # fmt: skip

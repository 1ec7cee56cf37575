"""docs/metrics.md §7 cash ledger rules, exact."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

from finance_pipeline.lib.ledger import LedgerBuilder, fx_lookup, tax_exclusive_ratio

JAN15 = 1705334400  # 2024-01-15T16:00:00Z
RATES = [
    {"base": "usd", "currency": "eur", "date": date(2024, 1, 15), "rate": "1.0875"},
    {"base": "usd", "currency": "jpy", "date": date(2024, 1, 15), "rate": "0.0068"},
]


def _builder(tz: str = "UTC") -> LedgerBuilder:
    return LedgerBuilder("ws", "usd", tz, fx_lookup(RATES, "usd"))


def test_gross_revenue_is_tax_exclusive_and_converted_on_its_day() -> None:
    b = _builder()
    invoice = {"total": 12000, "total_excluding_tax": 10000}
    b.stripe(
        [
            {
                "id": "ch_1",
                "created": JAN15,
                "amount": 12000,
                "currency": "eur",
                "status": "succeeded",
                "customer": "cus_1",
            }
        ],
        [],
        {"ch_1": invoice},
        [],
    )
    [row] = b.rows
    assert (row.kind, row.day, row.amount_micros, row.currency) == (
        "gross_revenue",
        date(2024, 1, 15),
        100_000_000,
        "eur",
    )
    assert row.amount_reporting_micros == 108_750_000 and row.fx_rate == "1.0875"


def test_failed_charges_are_excluded_and_refunds_fall_on_their_own_day_scaled_like_the_charge() -> (
    None
):
    b = _builder()
    charges = [
        {
            "id": "ch_ok",
            "created": JAN15,
            "amount": 12000,
            "currency": "usd",
            "status": "succeeded",
        },
        {"id": "ch_bad", "created": JAN15, "amount": 5000, "currency": "usd", "status": "failed"},
    ]
    refunds = [
        {
            "id": "re_1",
            "created": JAN15 + 40 * 86400,
            "amount": 6000,
            "currency": "usd",
            "status": "succeeded",
            "charge": "ch_ok",
        },
        {
            "id": "re_2",
            "created": JAN15,
            "amount": 10,
            "currency": "usd",
            "status": "pending",
            "charge": "ch_ok",
        },
    ]
    b.stripe(charges, refunds, {"ch_ok": {"total": 12000, "total_excluding_tax": 10000}}, [])
    assert [(r.kind, r.day, r.amount_micros) for r in b.rows] == [
        ("gross_revenue", date(2024, 1, 15), 100_000_000),
        (
            "refund",
            date(2024, 2, 24),
            -50_000_000,
        ),  # half of the tax-exclusive charge, never backdated
    ]


def test_fees_are_expenses_and_jpy_is_zero_decimal() -> None:
    b = _builder()
    b.stripe([], [], {}, [{"id": "txn_1", "created": JAN15, "fee": 36, "currency": "jpy"}])
    [fee] = b.rows
    assert (fee.kind, fee.category, fee.amount_micros) == ("fee", "PAYMENT_FEES", 36_000_000)
    assert fee.amount_reporting_micros == 244_800  # 36 yen x 0.0068


def test_local_day_follows_the_workspace_time_zone() -> None:
    b = _builder("America/New_York")
    b.stripe(
        [
            {
                "id": "ch",
                "created": 1705294800,
                "amount": 100,
                "currency": "usd",
                "status": "succeeded",
            }
        ],
        [],
        {},
        [],
    )
    assert b.rows[0].day == date(2024, 1, 15)  # 05:00Z is 00:00 in New York
    b2 = _builder("America/New_York")
    b2.stripe(
        [
            {
                "id": "ch",
                "created": 1705294799,
                "amount": 100,
                "currency": "usd",
                "status": "succeeded",
            }
        ],
        [],
        {},
        [],
    )
    assert b2.rows[0].day == date(2024, 1, 14)


def test_manual_revenue_refund_is_negative_and_missing_rate_is_skipped_not_assumed() -> None:
    b = _builder()
    b.manual(
        [
            {
                "external_id": "r1",
                "type": "refund",
                "subtype": "one_time",
                "amount_micros": -5_000_000,
                "currency": "gbp",
                "date": date(2024, 1, 15),
            }
        ],
        [
            {
                "external_id": "c1",
                "is_recurring": True,
                "category": "TOOLS",
                "amount_micros": 20_000_000,
                "currency": "usd",
                "date": date(2024, 1, 15),
                "name": "Vercel",
            }
        ],
        [
            {
                "external_id": "e1",
                "subtype": "one_time_expense",
                "amount_micros": 1_200_000_000,
                "currency": "usd",
                "occurred_on": date(2024, 1, 16),
            }
        ],
        [],
    )
    refund, cost, expense = b.rows
    assert (refund.kind, refund.amount_micros, refund.amount_reporting_micros) == (
        "refund",
        -5_000_000,
        None,
    )
    assert (cost.kind, cost.subtype, cost.amount_reporting_micros) == (
        "expense",
        "recurring_expense",
        20_000_000,
    )
    assert (expense.subtype, expense.day) == ("one_time_expense", date(2024, 1, 16))


def test_tax_ratio_without_tax_or_invoice_is_one() -> None:
    assert tax_exclusive_ratio(None) == 1
    assert tax_exclusive_ratio({"total": 0, "total_excluding_tax": 0}) == 1
    assert tax_exclusive_ratio({"total": 11900, "total_excluding_tax": 10000}) == Fraction(100, 119)

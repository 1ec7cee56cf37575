"""Tests for finance_pipeline.lib.ingest_validation: field rules, messages, dedup, CSV files."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.ingest_validation import (
    AUTO_ID_PREFIX,
    COST_CATEGORIES,
    CSV_HEADERS,
    KINDS,
    MAX_DATE,
    MAX_ROWS,
    MIN_DATE,
    REVENUE_TYPES,
    CostRecord,
    DuplicateRow,
    ExpenseEvent,
    FxRate,
    KindDetectionError,
    ManualRevenue,
    RowError,
    UsageCostEvent,
    ValidationResult,
    canonical_column,
    content_external_id,
    csv_header,
    detect_kind,
    error_report,
    format_csv,
    format_units,
    parse_csv,
    parse_landing_file,
    record_to_row,
    validate_rows,
)
from finance_pipeline.lib.money import micros_per_minor

HEADERS = {kind: ",".join(cols) for kind, cols in CSV_HEADERS.items()}
D = dt.date


def csv_text(kind: str, *lines: str) -> str:
    return HEADERS[kind] + "\n" + "".join(line + "\n" for line in lines)


def one(kind: str, row: dict[str, object]) -> ValidationResult:
    return validate_rows(kind, [row])


def only_error(result: ValidationResult) -> RowError:
    assert result.records == []
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


COST = {"name": "Vercel Pro", "amount": "20.00", "category": "INFRASTRUCTURE", "date": "2024-01-15"}
EXPENSE = {"subtype": "recurring_expense", "amount_cents": "120000", "occurred_at": "2026-02-01"}
USAGE = {
    "customer_tag": "acme-corp",
    "model": "gpt-4o",
    "cost_microdollars": "1500000",
    "occurred_at": "2026-04-05",
}
REVENUE = {"type": "subscription", "amount": "99.00", "date": "2024-01-15"}
FX = {"date": "2026-01-01", "currency": "EUR", "rate": "1.0842", "base": "USD"}


# --------------------------------------------------------------------------------------------------
# The simulator's exact headers parse with zero errors
# --------------------------------------------------------------------------------------------------


def test_simulator_costs_file() -> None:
    result = parse_csv(
        "costs",
        csv_text(
            "costs",
            "vercel-2024-01,Vercel Pro,20.00,USD,INFRASTRUCTURE,true,,2024-01-15,",
            "gpu-acme,GPU hours,1500,JPY,third_party,false,for Acme,2024-01-16,acme-corp",
        ),
    )
    assert result.ok and result.errors == [] and result.rows_read == 2
    assert result.records == [
        CostRecord(
            external_id="vercel-2024-01",
            name="Vercel Pro",
            amount_micros=20_000_000,
            currency="usd",
            category="INFRASTRUCTURE",
            is_recurring=True,
            date=D(2024, 1, 15),
            note=None,
            customer_tag=None,
        ),
        CostRecord(
            external_id="gpu-acme",
            name="GPU hours",
            amount_micros=1_500_000_000,
            currency="jpy",
            category="THIRD_PARTY",
            is_recurring=False,
            date=D(2024, 1, 16),
            note="for Acme",
            customer_tag="acme-corp",
        ),
    ]


def test_simulator_expenses_file() -> None:
    result = parse_csv(
        "expenses",
        csv_text(
            "expenses",
            "aws-feb-2026,recurring_expense,120000,USD,2026-02-01,AWS",
            "design-1,one_time_expense,500000,,2026-02-15,",
        ),
    )
    assert result.ok
    # 120000 cents = 1200.00 units = 1_200_000_000 micros
    assert result.records == [
        ExpenseEvent(
            "aws-feb-2026", "recurring_expense", 1_200_000_000, "usd", D(2026, 2, 1), "AWS"
        ),
        ExpenseEvent("design-1", "one_time_expense", 5_000_000_000, "usd", D(2026, 2, 15), None),
    ]
    assert result.records[0].is_recurring and not result.records[1].is_recurring


def test_simulator_usage_costs_file() -> None:
    result = parse_csv(
        "usage_costs",
        csv_text(
            "usage_costs",
            "u1,acme-corp,gpt-4o,20000000,150,2026-04-05,USD",
            "u2,acme-corp,gpt-4o-mini,0,,2026-04-05T23:30:00-02:00,",
        ),
    )
    assert result.ok
    assert result.records == [
        UsageCostEvent("u1", "acme-corp", "gpt-4o", 20_000_000, "usd", 150, D(2026, 4, 5), None),
        UsageCostEvent(
            "u2",
            "acme-corp",
            "gpt-4o-mini",
            0,
            "usd",
            1,  # request_count defaults to 1
            D(2026, 4, 6),  # the UTC day of 23:30 at -02:00
            dt.datetime(2026, 4, 6, 1, 30, tzinfo=dt.UTC),
        ),
    ]


def test_simulator_revenue_file() -> None:
    result = parse_csv(
        "revenue",
        csv_text(
            "revenue",
            "r1,subscription,,99.00,USD,2024-01-15,cus_1,stripe,",
            "r2,refund,one_time,10.50,eur,2024-01-20,cus_1,stripe,partial refund",
            "r3,enterprise,,5000,USD,2024-01-31,,,",
            "r4,subscription,recurring,1,USD,2024-01-31,,,",
        ),
    )
    assert result.ok, result.errors
    assert result.records == [
        ManualRevenue(
            "r1", "subscription", "recurring", 99_000_000, "usd", D(2024, 1, 15), "cus_1", "stripe"
        ),
        ManualRevenue(
            "r2",
            "refund",
            "one_time",
            -10_500_000,
            "eur",
            D(2024, 1, 20),
            "cus_1",
            "stripe",
            "partial refund",
        ),
        ManualRevenue("r3", "enterprise", "one_time", 5_000_000_000, "usd", D(2024, 1, 31)),
        ManualRevenue("r4", "subscription", "recurring", 1_000_000, "usd", D(2024, 1, 31)),
    ]


def test_simulator_fx_rates_file() -> None:
    result = parse_csv(
        "fx_rates", csv_text("fx_rates", "2026-01-01,EUR,1.0842,USD", "2026-01-01,JPY,0.0066,usd")
    )
    assert result.ok
    assert result.records == [
        FxRate(D(2026, 1, 1), "eur", "usd", Decimal("1.0842")),
        FxRate(D(2026, 1, 1), "jpy", "usd", Decimal("0.0066")),
    ]


# --------------------------------------------------------------------------------------------------
# Costs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "micros"),
    [
        ("20.00", "USD", 20_000_000),
        ("20", "usd", 20_000_000),
        ("20.5", "usd", 20_500_000),
        (" 0.01 ", "usd", 10_000),
        ("20.000", "usd", 20_000_000),  # trailing zeros are not extra precision
        ("+7", "usd", 7_000_000),
        (".5", "eur", 500_000),
        ("1500", "JPY", 1_500_000_000),
        ("1.234", "kwd", 1_234_000),
        ("999999999999.99", "usd", 999_999_999_999_990_000),
        (20, "usd", 20_000_000),
        (Decimal("99.00"), "usd", 99_000_000),
    ],
)
def test_cost_amounts_in_micros(amount: object, currency: str, micros: int) -> None:
    result = one("costs", {**COST, "amount": amount, "currency": currency})
    assert result.errors == []
    assert result.records[0].amount_micros == micros


def test_cost_defaults_and_normalization() -> None:
    record = one(
        "costs",
        {"name": "  Vercel Pro ", "amount": "20.00", "category": "tools", "date": " 2024-01-15 "},
    ).records[0]
    assert record == CostRecord(
        external_id=record.external_id,
        name="Vercel Pro",
        amount_micros=20_000_000,
        currency="usd",
        category="TOOLS",
        is_recurring=False,
        date=D(2024, 1, 15),
    )
    assert record.external_id.startswith(AUTO_ID_PREFIX) and len(record.external_id) == 37


@pytest.mark.parametrize(
    ("given", "category"),
    [
        ("INFRASTRUCTURE", "INFRASTRUCTURE"),
        ("third_party", "THIRD_PARTY"),
        ("Third-Party", "THIRD_PARTY"),
        ("third party", "THIRD_PARTY"),
        ("Marketing", "MARKETING"),
        ("TOOLS", "TOOLS"),
        ("other", "OTHER"),
        ("payment_fees", "PAYMENT_FEES"),
        ("COGS", "COGS"),
        ("cogs", "COGS"),
    ],
)
def test_cost_categories(given: str, category: str) -> None:
    assert one("costs", {**COST, "category": given}).records[0].category == category


def test_cost_category_enum_is_extended_seed_enum() -> None:
    assert COST_CATEGORIES == (
        "INFRASTRUCTURE",
        "THIRD_PARTY",
        "MARKETING",
        "TOOLS",
        "OTHER",
        "PAYMENT_FEES",
        "COGS",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("", False),
        (None, False),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_cost_is_recurring(given: object, expected: bool) -> None:
    result = one("costs", {**COST, "is_recurring": given})
    assert result.errors == []
    assert result.records[0].is_recurring is expected


def test_cost_camel_case_api_body_from_seed() -> None:
    body = {
        "name": "Vercel Pro",
        "amount": Decimal("20.00"),
        "currency": "USD",
        "category": "INFRASTRUCTURE",
        "isRecurring": True,
        "date": "2024-01-15",
        "customerTag": "acme",
    }
    record = validate_rows("costs", [body], start_line=0).records[0]
    assert (record.is_recurring, record.customer_tag, record.amount_micros) == (
        True,
        "acme",
        20_000_000,
    )


def test_cost_note_keeps_inner_line_breaks() -> None:
    record = one("costs", {**COST, "note": " first\r\nsecond\tthird "}).records[0]
    assert record.note == "first\nsecond\tthird"


# --------------------------------------------------------------------------------------------------
# Error messages: exact line, field, code and text
# --------------------------------------------------------------------------------------------------

AMOUNT_EXPECT = "a positive decimal number in whole currency units, like 20.00"

ERROR_CASES = [
    # costs
    (
        "costs",
        {**COST, "amount": "12,50"},
        "amount",
        "invalid_value",
        "amount '12,50' is not a number; use a decimal point like 12.50",
    ),
    (
        "costs",
        {**COST, "amount": "1,234.56"},
        "amount",
        "invalid_value",
        "amount '1,234.56' contains a thousands separator; write it without separators like "
        "1234.56 (if the comma is a decimal separator, use a decimal point)",
    ),
    (
        "costs",
        {**COST, "amount": "$12"},
        "amount",
        "invalid_value",
        "amount '$12' is not a number; write the bare number (like 12.50) and put the currency in "
        "the currency column",
    ),
    (
        "costs",
        {**COST, "amount": "12.50 USD"},
        "amount",
        "invalid_value",
        "amount '12.50 USD' is not a number; write the bare number (like 12.50) and put the "
        "currency in the currency column",
    ),
    (
        "costs",
        {**COST, "amount": "1e3"},
        "amount",
        "invalid_value",
        "amount '1e3' uses exponent notation; write it as a plain number like 1000",
    ),
    (
        "costs",
        {**COST, "amount": "NaN"},
        "amount",
        "invalid_value",
        f"amount 'NaN' is not a finite number; expected {AMOUNT_EXPECT}",
    ),
    (
        "costs",
        {**COST, "amount": "abc"},
        "amount",
        "invalid_value",
        f"amount 'abc' is not a number; expected {AMOUNT_EXPECT}",
    ),
    (
        "costs",
        {**COST, "amount": "-5"},
        "amount",
        "invalid_value",
        "amount '-5' must be greater than 0; give the cost as a positive amount",
    ),
    (
        "costs",
        {**COST, "amount": "0.00"},
        "amount",
        "invalid_value",
        "amount '0.00' must be greater than 0; give the cost as a positive amount",
    ),
    (
        "costs",
        {**COST, "amount": "1000000000000"},
        "amount",
        "invalid_value",
        "amount '1000000000000' is too large; amounts must be below 1,000,000,000,000 units",
    ),
    (
        "costs",
        {**COST, "amount": "12.345"},
        "amount",
        "invalid_value",
        "amount '12.345' has 3 decimal places but USD allows at most 2",
    ),
    (
        "costs",
        {**COST, "amount": "1500.5", "currency": "JPY"},
        "amount",
        "invalid_value",
        "amount '1500.5' has 1 decimal place but JPY has no minor unit; give a whole number",
    ),
    (
        "costs",
        {**COST, "amount": 12.5},
        "amount",
        "invalid_type",
        "amount 12.5 is a floating-point JSON number, which cannot hold money exactly; send it as "
        'a string like "12.5" or as an integer',
    ),
    (
        "costs",
        {**COST, "amount": True},
        "amount",
        "invalid_type",
        f"amount must be {AMOUNT_EXPECT}; got the boolean true",
    ),
    (
        "costs",
        {**COST, "amount": ""},
        "amount",
        "missing_field",
        f"amount is required: give {AMOUNT_EXPECT}",
    ),
    (
        "costs",
        {k: v for k, v in COST.items() if k != "name"},
        "name",
        "missing_field",
        "name is required: give the cost item's name, like Vercel Pro",
    ),
    (
        "costs",
        {**COST, "name": 5},
        "name",
        "invalid_type",
        "name must be a string; got the number 5",
    ),
    (
        "costs",
        {**COST, "name": "x" * 256},
        "name",
        "invalid_value",
        "name is 256 characters long; at most 255 are allowed",
    ),
    (
        "costs",
        {**COST, "name": "Vercel\nPro"},
        "name",
        "invalid_value",
        "name contains the control character U+000A; line breaks and tabs are not allowed",
    ),
    (
        "costs",
        {**COST, "currency": "US$"},
        "currency",
        "invalid_value",
        "currency 'US$' is not a currency code; use a three-letter ISO 4217 code like USD or EUR",
    ),
    (
        "costs",
        {**COST, "category": "servers"},
        "category",
        "invalid_value",
        "category 'servers' is not a cost category; use one of INFRASTRUCTURE, THIRD_PARTY, "
        "MARKETING, TOOLS, OTHER, PAYMENT_FEES, COGS",
    ),
    (
        "costs",
        {**COST, "is_recurring": "maybe"},
        "is_recurring",
        "invalid_value",
        "is_recurring 'maybe' is not a yes/no value; use true or false (1/0 and yes/no also work)",
    ),
    (
        "costs",
        {**COST, "date": "15/01/2024"},
        "date",
        "invalid_value",
        "date '15/01/2024' is not a date in YYYY-MM-DD form; write it like 2024-01-15",
    ),
    (
        "costs",
        {**COST, "date": "20240115"},
        "date",
        "invalid_value",
        "date '20240115' is not a date in YYYY-MM-DD form; write it like 2024-01-15",
    ),
    (
        "costs",
        {**COST, "date": "2024-02-30"},
        "date",
        "invalid_value",
        "date '2024-02-30' is not a real calendar day",
    ),
    (
        "costs",
        {**COST, "date": "2024-01-15T10:30:00Z"},
        "date",
        "invalid_value",
        "date '2024-01-15T10:30:00Z' has a time; give only the day in YYYY-MM-DD form, like "
        "2024-01-15",
    ),
    (
        "costs",
        {**COST, "date": "1999-12-31"},
        "date",
        "invalid_value",
        "date '1999-12-31' is outside the accepted range 2000-01-01 to 2100-12-31",
    ),
    (
        "costs",
        {**COST, "date": "2101-01-01"},
        "date",
        "invalid_value",
        "date '2101-01-01' is outside the accepted range 2000-01-01 to 2100-12-31",
    ),
    (
        "costs",
        {**COST, "date": 20240115},
        "date",
        "invalid_type",
        "date must be a string in YYYY-MM-DD form; got the number 20240115",
    ),
    (
        "costs",
        {**COST, "color": "red"},
        "color",
        "unknown_field",
        "unknown field 'color'; costs rows take amount, category, currency, customer_tag, date, "
        "external_id, is_recurring, name, note",
    ),
    (
        "costs",
        {**COST, "is_recurring": "true", "isRecurring": "true"},
        "is_recurring",
        "duplicate",
        "both 'is_recurring' and 'isRecurring' are given; they mean the same field, give only one",
    ),
    (
        "costs",
        {**COST, "external_id": "auto_123"},
        "external_id",
        "invalid_value",
        "external_id 'auto_123' starts with the reserved prefix 'auto_' but is not this row's "
        "content id; leave external_id empty to derive it, or use your own id",
    ),
    # expenses
    (
        "expenses",
        {**EXPENSE, "subtype": "recurring"},
        "subtype",
        "invalid_value",
        "subtype 'recurring' is not an expense subtype; use one of recurring_expense, "
        "one_time_expense",
    ),
    (
        "expenses",
        {**EXPENSE, "amount_cents": "1200.00"},
        "amount_cents",
        "invalid_value",
        "amount_cents '1200.00' has a decimal point but counts whole cents; expected a positive "
        "whole number of cents, like 120000 for 1200.00",
    ),
    (
        "expenses",
        {**EXPENSE, "amount_cents": "120,000"},
        "amount_cents",
        "invalid_value",
        "amount_cents '120,000' contains a thousands separator; write it without separators like "
        "120000; expected a positive whole number of cents, like 120000 for 1200.00",
    ),
    (
        "expenses",
        {**EXPENSE, "amount_cents": 0},
        "amount_cents",
        "invalid_value",
        "amount_cents 0 must be greater than 0; expected a positive whole number of cents, like "
        "120000 for 1200.00",
    ),
    (
        "expenses",
        {**EXPENSE, "amount_cents": 120000.0},
        "amount_cents",
        "invalid_type",
        "amount_cents must be an integer, not the floating-point number 120000.0; expected a "
        "positive whole number of cents, like 120000 for 1200.00",
    ),
    (
        "expenses",
        {**EXPENSE, "amount_cents": "150", "currency": "JPY"},
        "amount_cents",
        "invalid_value",
        "amount_cents '150' is 1.50 JPY, finer than JPY's smallest unit; use a multiple of 100 "
        "(amount_cents counts hundredths of a unit)",
    ),
    (
        "expenses",
        {**EXPENSE, "amount_cents": str(10**14)},
        "amount_cents",
        "invalid_value",
        "amount_cents '100000000000000' is too large; it must be below 100,000,000,000,000",
    ),
    (
        "expenses",
        {k: v for k, v in EXPENSE.items() if k != "occurred_at"},
        "occurred_at",
        "missing_field",
        "occurred_at is required: give a date in YYYY-MM-DD form, like 2026-02-01",
    ),
    # usage costs
    (
        "usage_costs",
        {**USAGE, "cost_microdollars": "-1"},
        "cost_microdollars",
        "invalid_value",
        "cost_microdollars '-1' must be at least 0; expected a whole number of micro-units "
        "(millionths) of the currency, 0 or more, like 1500000 for 1.50",
    ),
    (
        "usage_costs",
        {**USAGE, "request_count": "many"},
        "request_count",
        "invalid_value",
        "request_count 'many' is not a whole number; expected a whole number of requests, "
        "0 or more",
    ),
    (
        "usage_costs",
        {**USAGE, "occurred_at": "2026-04-05T10:00:00"},
        "occurred_at",
        "invalid_value",
        "occurred_at '2026-04-05T10:00:00' has no time zone; add Z for UTC (like "
        "2026-04-05T10:00:00Z) or an offset like +02:00",
    ),
    (
        "usage_costs",
        {**USAGE, "occurred_at": "yesterday"},
        "occurred_at",
        "invalid_value",
        "occurred_at 'yesterday' is neither a date (YYYY-MM-DD) nor an ISO 8601 timestamp with a "
        "time zone like 2026-04-05T10:00:00Z",
    ),
    (
        "usage_costs",
        {**USAGE, "occurred_at": "2026-04-05T25:00:00Z"},
        "occurred_at",
        "invalid_value",
        "occurred_at '2026-04-05T25:00:00Z' is not a real date and time",
    ),
    (
        "usage_costs",
        {k: v for k, v in USAGE.items() if k != "customer_tag"},
        "customer_tag",
        "missing_field",
        "customer_tag is required: give the customer's cost tag value, like acme-corp",
    ),
    (
        "usage_costs",
        {k: v for k, v in USAGE.items() if k != "model"},
        "model",
        "missing_field",
        "model is required: give the model name, like gpt-4o",
    ),
    # revenue
    (
        "revenue",
        {**REVENUE, "type": "donation"},
        "type",
        "invalid_value",
        "type 'donation' is not a revenue type; use one of subscription, one_time, lifetime, "
        "advertising, enterprise, affiliate, refund, other",
    ),
    (
        "revenue",
        {**REVENUE, "type": "enterprise", "subtype": "recurring"},
        "subtype",
        "conflicting_fields",
        "subtype 'recurring' contradicts type 'enterprise': only type subscription is recurring, "
        "so type enterprise needs subtype one_time; leave subtype empty to derive it",
    ),
    (
        "revenue",
        {**REVENUE, "amount_cents": "9900"},
        "amount_cents",
        "conflicting_fields",
        "both amount and amount_cents are given; give only one of them",
    ),
    (
        "revenue",
        {**REVENUE, "occurred_at": "2024-01-15"},
        "occurred_at",
        "conflicting_fields",
        "both date and occurred_at are given; give only one of them",
    ),
    (
        "revenue",
        {**REVENUE, "note": "a", "description": "b"},
        "description",
        "conflicting_fields",
        "both note and description are given; give only one of them",
    ),
    (
        "revenue",
        {"amount": "5", "date": "2024-01-15"},
        "type",
        "missing_field",
        "type is required: give one of subscription, one_time, lifetime, advertising, enterprise, "
        "affiliate, refund, other (or subtype recurring|one_time)",
    ),
    (
        "revenue",
        {**REVENUE, "type": "refund", "amount": "-10"},
        "amount",
        "invalid_value",
        "amount '-10' must be greater than 0; give the positive amount; type refund is stored as "
        "negative",
    ),
    (
        "revenue",
        {"subtype": "monthly", "amount_cents": 100, "occurred_at": "2026-02-01"},
        "subtype",
        "invalid_value",
        "subtype 'monthly' is not a revenue subtype; use one of recurring, one_time",
    ),
    # fx rates
    (
        "fx_rates",
        {**FX, "rate": "0"},
        "rate",
        "invalid_value",
        "rate '0' must be greater than 0",
    ),
    (
        "fx_rates",
        {**FX, "rate": "-1.08"},
        "rate",
        "invalid_value",
        "rate '-1.08' must be greater than 0",
    ),
    (
        "fx_rates",
        {**FX, "rate": "Infinity"},
        "rate",
        "invalid_value",
        "rate 'Infinity' is not a finite number; expected a positive decimal number with at most "
        "12 significant digits, like 1.0842",
    ),
    (
        "fx_rates",
        {**FX, "rate": "1.08420000000001"},
        "rate",
        "invalid_value",
        "rate '1.08420000000001' has 15 significant digits; at most 12 are allowed",
    ),
    (
        "fx_rates",
        {**FX, "rate": "2000000000"},
        "rate",
        "invalid_value",
        "rate '2000000000' is outside the plausible range 0.000000001 to 1000000000",
    ),
    (
        "fx_rates",
        {**FX, "currency": "usd"},
        "base",
        "invalid_value",
        "base 'USD' is the same as currency 'USD'; a rate converts one currency into a "
        "different one",
    ),
    (
        "fx_rates",
        {k: v for k, v in FX.items() if k != "base"},
        "base",
        "missing_field",
        "base is required: give the reporting currency as a three-letter ISO 4217 code like USD",
    ),
]


@pytest.mark.parametrize(("kind", "row", "field", "code", "message"), ERROR_CASES)
def test_error_messages(
    kind: str, row: dict[str, object], field: str, code: str, message: str
) -> None:
    error = only_error(validate_rows(kind, [row], start_line=7))
    assert (error.line, error.field, error.code, error.message) == (7, field, code, message)


def test_several_errors_in_one_row_are_all_reported() -> None:
    result = one("costs", {"name": "", "amount": "12,50", "category": "x", "date": "2024-13-01"})
    assert [(e.line, e.field, e.code) for e in result.errors] == [
        (2, "name", "missing_field"),
        (2, "amount", "invalid_value"),
        (2, "category", "invalid_value"),
        (2, "date", "invalid_value"),
    ]


def test_bad_currency_does_not_also_blame_the_amount() -> None:
    result = one("costs", {**COST, "amount": "12.345", "currency": "dollars"})
    assert [e.field for e in result.errors] == ["currency"]


def test_row_error_text_and_api_shape() -> None:
    error = only_error(validate_rows("costs", [{**COST, "amount": "12,50"}], start_line=7))
    assert str(error) == "line 7: amount '12,50' is not a number; use a decimal point like 12.50"
    assert error.value == "12,50"
    assert error.as_api_error() == {
        "type": "invalid_request",
        "code": "invalid_value",
        "message": "amount '12,50' is not a number; use a decimal point like 12.50",
        "param": "amount",
    }


def test_non_object_item_is_invalid_type() -> None:
    error = only_error(validate_rows("costs", [["a", "b"]], start_line=0))  # type: ignore[list-item]
    assert (error.line, error.field, error.code, error.message) == (
        0,
        None,
        "invalid_type",
        "each row must be an object; got a list",
    )


def test_dictreader_surplus_cells_are_an_error() -> None:
    reader = csv.DictReader(io.StringIO("name,amount,category,date\nA,1,TOOLS,2024-01-01,extra\n"))
    error = only_error(validate_rows("costs", reader))
    assert (error.line, error.code) == (2, "invalid_value")
    assert error.message == (
        "the row has 1 more value(s) than the header has columns; quote values that contain commas"
    )


def test_created_at_and_id_aliases_from_seed_exports() -> None:
    row = {**COST, "id": "clxdef456", "createdAt": "2024-01-15T10:30:00Z"}
    assert one("costs", row).records[0].external_id == "clxdef456"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("isRecurring", "is_recurring"),
        ("amountCents", "amount_cents"),
        ("occurredAt", "occurred_at"),
        ("costMicrodollars", "cost_microdollars"),
        ("requestCount", "request_count"),
        ("externalId", "external_id"),
        ("externalID", "external_id"),
        ("tagValue", "customer_tag"),
        ("id", "external_id"),
        (" Customer Tag ", "customer_tag"),
        ("\ufeffexternal_id", "external_id"),
        ("created_at", "created_at"),
    ],
)
def test_canonical_column(given: str, expected: str) -> None:
    assert canonical_column(given) == expected


# --------------------------------------------------------------------------------------------------
# Expenses, usage, revenue, FX specifics
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "currency", "micros"),
    [
        ("120000", "USD", 1_200_000_000),
        (120000, "usd", 1_200_000_000),
        (Decimal("1"), "eur", 10_000),
        ("1500", "jpy", 15_000_000),  # 1500 hundredths of a yen = 15 yen
        ("1", "kwd", 10_000),
    ],
)
def test_expense_amount_cents(cents: object, currency: str, micros: int) -> None:
    result = one("expenses", {**EXPENSE, "amount_cents": cents, "currency": currency})
    assert result.errors == []
    assert result.records[0].amount_micros == micros


def test_expense_seed_body() -> None:
    body = {
        "subtype": "recurring_expense",
        "amount_cents": 120000,
        "currency": "USD",
        "occurred_at": "2026-02-01",
        "vendor": "AWS",
        "external_id": "aws-feb-2026",
    }
    assert validate_rows("expenses", [body], start_line=0).records == [
        ExpenseEvent(
            "aws-feb-2026", "recurring_expense", 1_200_000_000, "usd", D(2026, 2, 1), "AWS"
        )
    ]


@pytest.mark.parametrize(
    ("given", "day", "instant"),
    [
        ("2026-04-05", D(2026, 4, 5), None),
        ("2026-04-05T10:00:00Z", D(2026, 4, 5), dt.datetime(2026, 4, 5, 10, tzinfo=dt.UTC)),
        ("2026-04-05 10:00Z", D(2026, 4, 5), dt.datetime(2026, 4, 5, 10, tzinfo=dt.UTC)),
        (
            "2026-04-05T00:30:00.25+02:00",
            D(2026, 4, 4),
            dt.datetime(2026, 4, 4, 22, 30, 0, 250000, tzinfo=dt.UTC),
        ),
        (D(2026, 4, 5), D(2026, 4, 5), None),
        (
            dt.datetime(2026, 4, 5, 10, tzinfo=dt.UTC),
            D(2026, 4, 5),
            dt.datetime(2026, 4, 5, 10, tzinfo=dt.UTC),
        ),
    ],
)
def test_usage_occurred_at(given: object, day: dt.date, instant: dt.datetime | None) -> None:
    record = one("usage_costs", {**USAGE, "occurred_at": given}).records[0]
    assert (record.date, record.occurred_at) == (day, instant)
    assert record.occurred_at is None or record.occurred_at.utcoffset() == dt.timedelta(0)


def test_usage_cost_is_micro_units_of_its_currency() -> None:
    record = one("usage_costs", {**USAGE, "currency": "EUR", "request_count": 800}).records[0]
    assert (record.amount_micros, record.currency, record.request_count) == (1_500_000, "eur", 800)


def test_revenue_seed_004_vocabulary() -> None:
    body = {
        "subtype": "recurring",
        "amount_cents": 250000,
        "currency": "USD",
        "occurred_at": "2026-02-01",
        "description": "Feb subscription",
        "external_id": "sub-feb-2026",
    }
    one_time = {"subtype": "one_time", "amount_cents": "5000", "occurred_at": "2026-02-03"}
    result = validate_rows("revenue", [body, one_time], start_line=0)
    assert result.errors == []
    assert result.records[0] == ManualRevenue(
        "sub-feb-2026",
        "subscription",
        "recurring",
        2_500_000_000,
        "usd",
        D(2026, 2, 1),
        note="Feb subscription",
    )
    assert result.records[1].type == "one_time" and result.records[1].subtype == "one_time"
    assert result.records[1].amount_micros == 50_000_000


@pytest.mark.parametrize("rtype", REVENUE_TYPES)
def test_revenue_types_sign_and_subtype(rtype: str) -> None:
    record = one("revenue", {**REVENUE, "type": rtype.upper()}).records[0]
    assert record.type == rtype
    assert record.subtype == ("recurring" if rtype == "subscription" else "one_time")
    assert record.amount_micros == (-99_000_000 if rtype == "refund" else 99_000_000)


def test_refund_via_amount_cents_is_negative() -> None:
    row = {"type": "refund", "amount_cents": "8000", "occurred_at": "2026-02-10"}
    assert one("revenue", row).records[0].amount_micros == -80_000_000


def test_fx_float_rate_read_through_repr() -> None:
    assert one("fx_rates", {**FX, "rate": 1.0842}).records[0].rate == Decimal("1.0842")
    assert one("fx_rates", {**FX, "rate": "1.084200"}).records[0].rate == Decimal("1.0842")


# --------------------------------------------------------------------------------------------------
# Duplicates and content ids
# --------------------------------------------------------------------------------------------------


def test_identical_duplicate_is_counted_not_an_error() -> None:
    row = {**COST, "external_id": "c1"}
    result = validate_rows("costs", [row, {**row, "amount": "20.0"}, {**row, "amount": "21"}])
    assert len(result.records) == 1
    assert result.duplicates == [DuplicateRow(line=3, key="c1", first_line=2)]
    assert result.duplicate_count == 1
    assert result.errors == [
        RowError(
            4,
            "external_id",
            "duplicate",
            "external_id 'c1' is already used on line 2 by a row with different content (differs "
            "in: amount); each external_id must be unique within a file",
            "c1",
        )
    ]
    assert not result.ok


def test_identical_rows_without_external_id_collapse() -> None:
    result = validate_rows(
        "costs", [COST, {**COST, "category": "infrastructure"}, {**COST, "note": "x"}]
    )
    assert result.errors == []
    assert len(result.records) == 2
    assert result.duplicates == [DuplicateRow(3, result.records[0].external_id, 2)]


def test_fx_duplicates_by_date_currency_base() -> None:
    result = validate_rows("fx_rates", [FX, {**FX, "rate": "1.08420"}, {**FX, "rate": "1.09"}])
    assert result.duplicates == [DuplicateRow(3, "2026-01-01/eur/usd", 2)]
    assert result.errors == [
        RowError(
            4,
            "rate",
            "duplicate",
            "the EUR->USD rate for 2026-01-01 is already given on line 2 with a different rate; "
            "give one rate per currency, base and day",
            "1.09",
        )
    ]


def test_content_external_id_is_pinned_and_ignores_formatting() -> None:
    a = one("costs", COST).records[0]
    b = one(
        "costs", {**COST, "amount": "20", "category": "infrastructure", "currency": "usd"}
    ).records[0]
    assert a.external_id == b.external_id == content_external_id(a)
    # The documented recipe: sha256 of the sorted, compact JSON of the normalized fields plus kind.
    # Changing it re-keys every stored row without an id, so it is pinned.
    payload = (
        '{"amount_micros":20000000,"category":"INFRASTRUCTURE","currency":"usd",'
        '"customer_tag":null,"date":"2024-01-15","is_recurring":false,"kind":"costs",'
        '"name":"Vercel Pro","note":null}'
    )
    assert a.external_id == "auto_" + hashlib.sha256(payload.encode()).hexdigest()[:32]


def test_content_external_id_changes_with_content_and_kind() -> None:
    base = one("costs", COST).records[0]
    ids = {
        content_external_id(base),
        content_external_id(one("costs", {**COST, "amount": "20.01"}).records[0]),
        content_external_id(one("costs", {**COST, "date": "2024-01-16"}).records[0]),
        content_external_id(one("costs", {**COST, "note": "x"}).records[0]),
        content_external_id(one("costs", {**COST, "is_recurring": "true"}).records[0]),
    }
    assert len(ids) == 5
    # the given external_id does not enter the hash
    given = one("costs", {**COST, "external_id": "mine"}).records[0]
    assert given.external_id == "mine" and content_external_id(given) == content_external_id(base)


def test_exported_auto_id_round_trips() -> None:
    record = one("costs", COST).records[0]
    again = one("costs", {**COST, "external_id": record.external_id})
    assert again.errors == [] and again.records == [record]


def test_reingesting_same_file_gives_same_records() -> None:
    text = csv_text(
        "costs", ",AWS,12.50,usd,TOOLS,false,,2024-01-15,", ",GCP,3,usd,TOOLS,,,2024-01-15,"
    )
    assert parse_csv("costs", text).records == parse_csv("costs", text).records
    assert len({r.external_id for r in parse_csv("costs", text).records}) == 2


# --------------------------------------------------------------------------------------------------
# CSV files: header, encoding, layout
# --------------------------------------------------------------------------------------------------


def test_bom_and_crlf_and_blank_lines() -> None:
    text = (
        "\ufeff"
        + HEADERS["fx_rates"]
        + "\r\n\r\n2026-01-01,EUR,1.0842,USD\r\n ,  ,,\r\n2026-01-02,EUR,1.09,USD\r\n"
    )
    result = parse_csv("fx_rates", text)
    assert result.ok and result.rows_read == 2
    assert [r.date for r in result.records] == [D(2026, 1, 1), D(2026, 1, 2)]
    bad = parse_csv("fx_rates", text.replace("1.09", "x"))
    assert [e.line for e in bad.errors] == [5]  # blank lines are skipped but still counted


def test_bytes_with_bom_are_decoded() -> None:
    data = ("\ufeff" + csv_text("fx_rates", "2026-01-01,EUR,1.0842,USD")).encode("utf-8")
    assert parse_csv("fx_rates", data).records == [
        FxRate(D(2026, 1, 1), "eur", "usd", Decimal("1.0842"))
    ]


def test_invalid_utf8_reports_the_line() -> None:
    data = (HEADERS["costs"] + "\nc1,Caf").encode() + b"\xe9" + b",1,usd,TOOLS,,,2024-01-01,\n"
    error = only_error(parse_csv("costs", data))
    assert (error.line, error.code, error.message) == (
        2,
        "invalid_file",
        "the file is not valid UTF-8 (byte 0xe9 on line 2); save it as UTF-8 (in Excel: CSV UTF-8)",
    )


def test_utf16_is_rejected_clearly() -> None:
    error = only_error(parse_csv("fx_rates", csv_text("fx_rates").encode("utf-16")))
    assert error.message == "the file is UTF-16; save it as UTF-8 (in Excel: CSV UTF-8)"


def test_empty_file() -> None:
    error = only_error(parse_csv("fx_rates", "\n\n"))
    assert (error.line, error.code, error.message) == (
        1,
        "invalid_file",
        "the file is empty; it needs a header line like date,currency,rate,base",
    )


def test_header_only_is_ok_and_empty() -> None:
    result = parse_csv("costs", HEADERS["costs"] + "\n")
    assert result.ok and result.records == [] and result.rows_read == 0


def test_unknown_column_is_an_error_but_rows_are_still_checked() -> None:
    text = "name,amount,category,date,colour\nA,1,TOOLS,2024-01-01,red\nB,x,TOOLS,2024-01-01,blue\n"
    result = parse_csv("costs", text)
    assert [(e.line, e.field, e.code) for e in result.errors] == [
        (1, "colour", "unknown_field"),
        (3, "amount", "invalid_value"),
    ]
    assert result.errors[0].message == (
        "unknown column 'colour'; a costs file has the columns "
        "external_id,name,amount,currency,category,is_recurring,note,date,customer_tag"
    )
    assert len(result.records) == 1


def test_missing_required_column_stops_before_rows() -> None:
    result = parse_csv("costs", "name,category,date\nA,TOOLS,2024-01-01\n")
    error = only_error(result)
    assert (error.line, error.field, error.code, error.message) == (
        1,
        "amount",
        "missing_field",
        "the header has no 'amount' column; a costs file has the columns "
        "external_id,name,amount,currency,category,is_recurring,note,date,customer_tag",
    )
    assert result.rows_read == 0


def test_revenue_header_alternatives() -> None:
    error = only_error(parse_csv("revenue", "type,currency,date\nsubscription,usd,2024-01-01\n"))
    assert error.message.startswith("the header has no 'amount' or 'amount_cents' column;")
    seed4 = "external_id,subtype,amount_cents,currency,occurred_at,description\n"
    result = parse_csv("revenue", seed4 + "s1,recurring,250000,USD,2026-02-01,Feb\n")
    assert result.records == [
        ManualRevenue(
            "s1", "subscription", "recurring", 2_500_000_000, "usd", D(2026, 2, 1), note="Feb"
        )
    ]


def test_duplicate_and_camel_case_columns() -> None:
    text = (
        "name,amount,category,date,isRecurring,createdAt\n"
        "A,1,TOOLS,2024-01-01,yes,2024-01-01T00:00:00Z\n"
    )
    assert parse_csv("costs", text).records[0].is_recurring is True
    dup = parse_csv(
        "costs",
        "name,amount,category,date,isRecurring,is_recurring\nA,1,TOOLS,2024-01-01,yes,yes\n",
    )
    assert [(e.line, e.field, e.code, e.message) for e in dup.errors] == [
        (
            1,
            "is_recurring",
            "duplicate",
            "column 'is_recurring' (column 6) repeats column 5; each column may appear once",
        )
    ]


def test_wrong_number_of_cells() -> None:
    text = csv_text("fx_rates", "2026-01-01,EUR,1,08,USD", "2026-01-02,EUR,1.08")
    result = parse_csv("fx_rates", text)
    assert [(e.line, e.message) for e in result.errors] == [
        (2, "the row has 5 values but the header has 4 columns; quote values that contain commas"),
        (3, "the row has 3 values but the header has 4 columns; quote values that contain commas"),
    ]


def test_quoted_commas_and_line_breaks() -> None:
    text = csv_text(
        "costs", 'c1,"Vercel, Pro","1000.00",usd,TOOLS,false,"line one\nline two",2024-01-15,'
    )
    text += "c2,B,1,usd,TOOLS,,,2024-01-15,x y\n"
    result = parse_csv("costs", text)
    assert result.ok
    assert (
        result.records[0].name == "Vercel, Pro" and result.records[0].note == "line one\nline two"
    )
    bad = parse_csv("costs", text.replace("c2,B,1", "c2,B,x"))
    assert [e.line for e in bad.errors] == [4]  # the physical line where the row starts


def test_malformed_quotes() -> None:
    result = parse_csv(
        "fx_rates", csv_text("fx_rates", "2026-01-01,EUR,1.08,USD", '2026-01-02,"EUR"x,1,USD')
    )
    assert len(result.records) == 1
    error = result.errors[0]
    assert (error.line, error.code) == (3, "invalid_file")
    assert error.message.startswith("the CSV cannot be read from here on (")


def test_row_limit_default() -> None:
    lines = [f"c{i},A,1,usd,TOOLS,,,2024-01-01," for i in range(MAX_ROWS + 1)]
    result = parse_csv("costs", csv_text("costs", *lines))
    assert len(result.records) == MAX_ROWS == 100_000
    assert result.errors == [
        RowError(
            100_002,
            None,
            "too_many_rows",
            "more than 100,000 rows; split the data into files (or requests) of at most "
            "100,000 rows",
        )
    ]


def test_row_limit_parameter_for_requests() -> None:
    result = validate_rows(
        "fx_rates", ({**FX, "date": f"2026-01-0{i}"} for i in range(1, 6)), max_rows=3, start_line=0
    )
    assert result.rows_read == 3 and len(result.records) == 3
    assert [(e.line, e.code) for e in result.errors] == [(3, "too_many_rows")]


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown kind 'cost'"):
        validate_rows("cost", [])
    with pytest.raises(ValueError, match="unknown kind"):
        parse_csv("invoices", "a\n")


# --------------------------------------------------------------------------------------------------
# Kind detection, landing files, reports
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("costs_2026-04.csv", "costs"),
        ("/landing/Costs_april.CSV", "costs"),
        ("expenses_x.csv", "expenses"),
        ("usage_costs_2026.csv", "usage_costs"),
        ("revenue_q1.csv", "revenue"),
        ("fx_rates_2026.csv", "fx_rates"),
        ("fx_rates.csv", "fx_rates"),
    ],
)
def test_detect_kind_from_filename(filename: str, kind: str) -> None:
    assert detect_kind(filename, ["whatever"]) == kind


@pytest.mark.parametrize("kind", KINDS)
def test_detect_kind_from_simulator_header(kind: str) -> None:
    assert detect_kind("upload.csv", list(CSV_HEADERS[kind])) == kind


def test_detect_kind_from_seed_header() -> None:
    header = [
        "id",
        "name",
        "amount",
        "currency",
        "category",
        "isRecurring",
        "note",
        "date",
        "createdAt",
    ]
    assert detect_kind("export.csv", header) == "costs"


def test_detect_kind_failures() -> None:
    with pytest.raises(KindDetectionError) as ambiguous:
        detect_kind("data.csv", ["subtype", "amount_cents", "occurred_at"])
    assert str(ambiguous.value) == (
        "cannot tell what 'data.csv' contains (its columns fit expenses and revenue); name it "
        "costs_*.csv, expenses_*.csv, usage_costs_*.csv, revenue_*.csv, fx_rates_*.csv"
    )
    with pytest.raises(KindDetectionError, match=r"\(its columns fit no kind\)"):
        detect_kind("costs2026.csv", ["a", "b"])
    with pytest.raises(KindDetectionError, match=r"\(it has no header\)"):
        detect_kind("x.csv", [])


def test_csv_header() -> None:
    assert csv_header("\ufeff\n a ,b\n1,2\n") == [" a ", "b"]
    assert csv_header(b"") == []


def test_parse_landing_file() -> None:
    data = csv_text("expenses", "aws,recurring_expense,120000,USD,2026-02-01,AWS").encode()
    result = parse_landing_file("/landing/expenses_2026-02.csv", data)
    assert result.kind == "expenses" and result.ok and len(result.records) == 1
    unknown = parse_landing_file("stuff.csv", b"a,b\n1,2\n")
    assert unknown.kind is None
    assert [(e.line, e.code) for e in unknown.errors] == [(1, "unknown_kind")]


def test_error_report_rejected() -> None:
    text = csv_text(
        "costs",
        "c1,Vercel Pro,20.00,USD,INFRASTRUCTURE,true,,2024-01-15,",
        "c1,Vercel Pro,20.0,USD,INFRASTRUCTURE,true,,2024-01-15,",
        'c2,AWS,"12,50",USD,TOOLS,false,,2024-02-30,',
    )
    report = error_report(parse_csv("costs", text), "/landing/costs_2024-01.csv")
    assert report == (
        "costs_2024-01.csv: REJECTED (costs): 2 error(s); 1 of 3 row(s) valid, 1 duplicate row(s) "
        "skipped. Fix the lines below and drop the corrected file again.\n"
        "line 4, field amount, value '12,50': amount '12,50' is not a number; use a decimal point "
        "like 12.50 [invalid_value]\n"
        "line 4, field date, value '2024-02-30': date '2024-02-30' is not a real calendar day "
        "[invalid_value]\n"
        "line 3: repeats line 2 (c1); skipped\n"
    )


def test_error_report_accepted() -> None:
    result = parse_csv("fx_rates", csv_text("fx_rates", "2026-01-01,EUR,1.0842,USD"))
    assert error_report(result, "fx_rates_1.csv") == (
        "fx_rates_1.csv: accepted (fx_rates): 1 record(s) from 1 row(s)\n"
    )


# --------------------------------------------------------------------------------------------------
# Formatting and round trips (hypothesis)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("micros", "currency", "text"),
    [
        (20_000_000, "usd", "20.00"),
        (20_500_000, "usd", "20.50"),
        (1_500_000_000, "jpy", "1500"),
        (1_234_000, "kwd", "1.234"),
        (1, "usd", "0.000001"),  # finer than the currency: written exactly, so parsing rejects it
    ],
)
def test_format_units(micros: int, currency: str, text: str) -> None:
    assert format_units(micros, currency) == text


CURRENCIES = ["usd", "eur", "gbp", "jpy", "krw", "kwd", "chf"]
single_line = (
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)
multi_line = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from('\n\t,"'),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(bool)
)
days = st.dates(min_value=MIN_DATE, max_value=MAX_DATE)
given_ids = single_line.filter(lambda s: not s.startswith(AUTO_ID_PREFIX))


@st.composite
def money(draw: st.DrawFn, *, cents: bool = False) -> tuple[int, str]:
    currency = draw(st.sampled_from(CURRENCIES))
    step = micros_per_minor(currency)
    if cents:
        step = max(step, 10_000)
    units = draw(st.integers(min_value=1, max_value=(10**18 - 1) // step))
    return units * step, currency


def finish(draw: st.DrawFn, record: object) -> object:
    """Give the record either a user id or its derived content id (as validation would)."""
    if draw(st.booleans()):
        return dataclasses.replace(record, external_id=draw(given_ids))  # type: ignore[type-var]
    return dataclasses.replace(record, external_id=content_external_id(record))  # type: ignore[type-var,arg-type]


@st.composite
def cost_records(draw: st.DrawFn) -> CostRecord:
    micros, currency = draw(money())
    record = CostRecord(
        external_id="",
        name=draw(single_line),
        amount_micros=micros,
        currency=currency,
        category=draw(st.sampled_from(COST_CATEGORIES)),
        is_recurring=draw(st.booleans()),
        date=draw(days),
        note=draw(st.none() | multi_line),
        customer_tag=draw(st.none() | single_line),
    )
    return finish(draw, record)  # type: ignore[return-value]


@st.composite
def expense_records(draw: st.DrawFn) -> ExpenseEvent:
    micros, currency = draw(money(cents=True))
    record = ExpenseEvent(
        external_id="",
        subtype=draw(st.sampled_from(["recurring_expense", "one_time_expense"])),
        amount_micros=micros,
        currency=currency,
        date=draw(days),
        vendor=draw(st.none() | single_line),
    )
    return finish(draw, record)  # type: ignore[return-value]


@st.composite
def usage_records(draw: st.DrawFn) -> UsageCostEvent:
    instant = draw(
        st.none()
        | st.datetimes(
            min_value=dt.datetime(2000, 1, 1),
            max_value=dt.datetime(2100, 12, 31, 23, 59, 59),
            timezones=st.just(dt.UTC),
        )
    )
    record = UsageCostEvent(
        external_id="",
        customer_tag=draw(single_line),
        model=draw(single_line),
        amount_micros=draw(st.integers(min_value=0, max_value=10**18 - 1)),
        currency=draw(st.sampled_from(CURRENCIES)),
        request_count=draw(st.integers(min_value=0, max_value=10**12 - 1)),
        date=instant.date() if instant else draw(days),
        occurred_at=instant,
    )
    return finish(draw, record)  # type: ignore[return-value]


@st.composite
def revenue_records(draw: st.DrawFn) -> ManualRevenue:
    micros, currency = draw(money())
    rtype = draw(st.sampled_from(REVENUE_TYPES))
    record = ManualRevenue(
        external_id="",
        type=rtype,
        subtype="recurring" if rtype == "subscription" else "one_time",
        amount_micros=-micros if rtype == "refund" else micros,
        currency=currency,
        date=draw(days),
        customer_id=draw(st.none() | single_line),
        source=draw(st.none() | single_line),
        note=draw(st.none() | multi_line),
    )
    return finish(draw, record)  # type: ignore[return-value]


@st.composite
def fx_records(draw: st.DrawFn) -> FxRate:
    currency, base = draw(
        st.lists(st.sampled_from(CURRENCIES), min_size=2, max_size=2, unique=True)
    )
    mantissa = draw(st.integers(min_value=1, max_value=10**12 - 1))
    exponent = draw(st.integers(min_value=-20, max_value=9))
    rate = Decimal(mantissa).scaleb(exponent)
    if not Decimal("1e-9") <= rate <= Decimal("1e9"):
        rate = Decimal(mantissa).scaleb(-len(str(mantissa)) + 1)  # 1 <= rate < 10
    return FxRate(date=draw(days), currency=currency, base=base, rate=rate.normalize())


STRATEGIES = {
    "costs": cost_records(),
    "expenses": expense_records(),
    "usage_costs": usage_records(),
    "revenue": revenue_records(),
    "fx_rates": fx_records(),
}


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_format_then_parse(kind: str, data: st.DataObject) -> None:
    record = data.draw(STRATEGIES[kind])
    text = format_csv(kind, [record])
    result = parse_csv(kind, text)
    assert result.errors == [] and result.records == [record]
    # the same row as an API item (all strings) validates to the same record
    assert validate_rows(kind, [record_to_row(record)]).records == [record]


@pytest.mark.parametrize("kind", ["costs", "expenses", "usage_costs", "revenue"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_blank_external_id_derives_the_content_id(kind: str, data: st.DataObject) -> None:
    record = data.draw(STRATEGIES[kind])
    row = {**record_to_row(record), "external_id": ""}
    (parsed,) = validate_rows(kind, [row]).records
    assert parsed.external_id == content_external_id(record)
    assert content_external_id(parsed) == content_external_id(record)


@settings(max_examples=40, deadline=None)
@given(records=st.lists(cost_records(), min_size=1, max_size=8, unique_by=lambda r: r.external_id))
def test_round_trip_many_rows_with_repeats(records: list[CostRecord]) -> None:
    text = format_csv("costs", records + records[:1])
    result = parse_csv("costs", text)
    assert result.errors == [] and result.records == records
    # the repeat starts on the physical line after all rows (notes may span several lines)
    repeat_line = 2 + sum(1 + (r.note or "").count("\n") for r in records)
    assert result.duplicates == [DuplicateRow(repeat_line, records[0].external_id, 2)]

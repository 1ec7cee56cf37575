"""Pure CSV building: spreadsheet-safe text cells, footed amounts, stable columns."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from finance_pipeline.lib import report_csv
from finance_pipeline.lib.money import MICROS_PER_CENT, foot_roll_forward
from finance_pipeline.lib.report_csv import FORMULA_PREFIXES, CsvTable, PlanBalance, neutralize


def parse(table: CsvTable) -> list[list[str]]:
    return list(csv.reader(io.StringIO(table.render().decode("utf-8"), newline="")))


@given(st.text())
def test_text_cells_are_never_formulas(text: str) -> None:
    table = CsvTable(
        ["Name", "Amount"], [[text, report_csv.amount_cell(-1_230_000, MICROS_PER_CENT)]]
    )
    [_header, [cell, amount]] = parse(table)
    assert not cell.startswith(FORMULA_PREFIXES)
    # Only the apostrophe is added; the text is otherwise kept as is.
    assert cell == (("'" + text) if text.startswith(FORMULA_PREFIXES) else text)
    assert amount == "-1.23"  # numbers are not text cells: a negative amount stays a number


def test_neutralize_examples() -> None:
    assert neutralize("=1+2") == "'=1+2"
    assert neutralize("@SUM(A1)") == "'@SUM(A1)"
    assert neutralize("\tx") == "'\tx"
    assert neutralize("-5") == "'-5"
    assert neutralize("Acme = best") == "Acme = best"


@given(
    st.lists(
        st.tuples(
            st.fractions(min_value=-(10**9), max_value=10**9, max_denominator=7),
            st.fractions(min_value=0, max_value=10**9, max_denominator=7),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([("usd", 2), ("jpy", 0), ("kwd", 3)]),
)
def test_revenue_trend_foots(
    values: list[tuple[Fraction, Fraction]], currency: tuple[str, int]
) -> None:
    months = [
        report_csv.TrendMonth(f"2026-{i + 1:02d}", int(r), -int(abs(e)), int(e), None)
        for i, (r, e) in enumerate(values)
    ]
    rows = parse(report_csv.revenue_trend(currency[0], months))[1:]
    lines, total = rows[:-1], rows[-1]
    for col in (1, 2, 3, 4):
        assert sum(Decimal(r[col]) for r in lines) == Decimal(total[col])
        # Every amount has the currency's decimals: none for yen, 3 for dinar.
        assert all(len(r[col].partition(".")[2]) == currency[1] for r in rows)
    for r in rows:
        assert Decimal(r[1]) - Decimal(r[3]) == Decimal(r[4])  # net = revenue - expenses


def test_mrr_breakdown_rows_and_columns_foot() -> None:
    opening = Fraction(300_000_001, 3)  # 100.0000003...
    moves = {
        "new": Fraction(49_995_000),
        "expansion": Fraction(10_004_000),
        "reactivation": 0,
        "contraction": 0,
        "churn": Fraction(50_000_000),
        "fx": Fraction(1, 3),
    }
    closing = opening + moves["new"] + moves["expansion"] - moves["churn"] + moves["fx"]
    plans = [
        PlanBalance("price_basic", Fraction(50_000_000), Fraction(49_995_000)),
        PlanBalance("price_pro", opening - 50_000_000, closing - 49_995_000),
    ]
    table = report_csv.mrr_breakdown("usd", opening, moves, closing, plans)
    rows = parse(table)
    assert rows[0] == report_csv.MRR_BREAKDOWN_COLUMNS
    company = rows[-1]
    signed = {k: report_csv.MOVEMENT_SIGNS[k] * Fraction(v) for k, v in moves.items()}
    o, m, c = foot_roll_forward(opening, signed, closing, MICROS_PER_CENT)
    assert company[0] == report_csv.ALL_PLANS
    assert [Decimal(x) for x in company[1:8] + company[9:10]] == [
        Decimal(v) / 1_000_000 for v in (o, *m.values(), c)
    ]
    assert sum(Decimal(x) for x in company[1:8]) == Decimal(company[9])
    # Plan rows: each row foots across, and the plan column sums equal the company row.
    for r in rows[1:-1]:
        assert Decimal(r[1]) + Decimal(r[8]) == Decimal(r[9])
    for col in (1, 8, 9):
        assert sum(Decimal(r[col]) for r in rows[1:-1]) == Decimal(company[col])


def test_invoice_totals_per_currency() -> None:
    base = {
        "customer_id": "cus_1", "customer_name": "+cmd", "status": "paid", "created": None,
        "paid": None, "period_start": None, "period_end": None, "number": "INV-1",
    }  # fmt: skip
    inv = [
        {**base, "id": "in_1", "subtotal": 10_000_000, "discount": 1_000_000, "tax": 900_000,
         "total": 9_900_000, "amount_paid": 9_900_000, "currency": "usd"},
        {**base, "id": "in_2", "subtotal": 5_005_000, "discount": 0, "tax": 0,
         "total": 5_005_000, "amount_paid": 0, "currency": "usd"},
        {**base, "id": "in_3", "subtotal": 1_000_000_000, "discount": 0, "tax": 0,
         "total": 1_000_000_000, "amount_paid": 0, "currency": "jpy"},
    ]  # fmt: skip
    rows = parse(report_csv.invoice_summary(inv))[1:]
    assert [r[0] for r in rows] == ["INV-1", "Total", "INV-1", "INV-1", "Total"]
    assert rows[0][2] == "'+cmd"
    jpy_total, usd_total = rows[1], rows[4]
    assert jpy_total[13] == "JPY" and jpy_total[11] == "1000"  # whole yen, no decimals
    assert usd_total[13] == "USD"
    for col in range(8, 13):
        assert Decimal(rows[2][col]) + Decimal(rows[3][col]) == Decimal(usd_total[col])
    assert usd_total[11] == "14.91"  # 9.90 + 5.005 exact = 14.905 -> 14.91; lines footed to it

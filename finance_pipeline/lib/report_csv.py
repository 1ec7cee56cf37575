"""CSV reports as people read them: stable columns, footed amounts, safe in a spreadsheet.

Pure functions (no Dagster, no I/O): each builder takes rows read from the marts and returns a
`CsvTable` whose `render()` is the file's bytes. Columns, order and formats are documented in
docs/reports.md and must not change without a new report type. Rules (docs/metrics.md §2):
- amounts are whole units rounded once at their currency's minor unit (its grain: the cent for
  USD, the yen for JPY, a thousandth for KWD) with that many decimals (2, 0, 3), no thousands
  separators, '-' for negatives; the lines of a table are footed (largest remainder) at that grain
  so a total row is the sum of its lines; percentages always have 2 decimals;
- dates are ISO 8601 (YYYY-MM-DD), currencies upper-case ISO codes;
- a text cell that a spreadsheet would run as a formula (starting with =, +, -, @, tab or CR) gets a
  leading apostrophe; amounts and counts are numbers, never text, and are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.money import (
    foot,
    foot_grid,
    foot_roll_forward,
    micros_per_minor,
    round_half_away,
    shown_units,
)
from finance_pipeline.lib.mrr_timeline import MOVEMENT_SIGNS
from finance_pipeline.lib.plan_movements import PlanBalance, plan_roll_forwards

# Characters that make a spreadsheet treat a cell as a formula (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
TOTAL = "Total"

Cell = str | int | Decimal | date | None


class Amount(Decimal):
    """A number cell written as is (never neutralized): money with its currency's decimals, or a
    percentage with 2."""


def neutralize(text: str) -> str:
    """A text cell made inert for spreadsheets: a leading `'` before a formula character."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def amount_cell(rounded_micros: int, grain: int) -> Amount:
    """An amount already rounded to `grain` (its currency's minor unit, `micros_per_minor`) as a
    cell with the grain's decimals: 2 for cents, none for yen."""
    return Amount(shown_units(rounded_micros, grain))


def to_grain(exact_micros: Fraction | int, grain: int) -> int:
    """Exact micros rounded once to `grain` (half away from zero), still in micros."""
    return round_half_away(Fraction(exact_micros), grain)


def percent_cell(value: str | Decimal | Fraction | None) -> Amount | None:
    """A percentage rounded independently to 2 decimals (not footed, §2); None stays empty."""
    if value is None:
        return None
    scaled = round_half_away(Fraction(str(value)) * 100)
    return Amount(Decimal(scaled).scaleb(-2))


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return neutralize(str(value))


@dataclass
class CsvTable:
    """A report table: its header, its rows (total rows included) and totals for metadata."""

    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    # Headline totals for the asset's metadata: name -> rounded micros, and the grain (micros,
    # its currency's minor unit) each was rounded to.
    totals: dict[str, int] = field(default_factory=dict)
    grains: dict[str, int] = field(default_factory=dict)
    line_count: int = 0

    def render(self) -> bytes:
        """The CSV file: UTF-8, comma separated, RFC 4180 quoting, CRLF line ends."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow([neutralize(c) for c in self.columns])
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"row has {len(row)} cells for {len(self.columns)} columns")
            writer.writerow([_cell(c) for c in row])
        return buf.getvalue().encode("utf-8")


def _upper(currency: str | None) -> str | None:
    return currency.upper() if currency else None


def _footed_column(values: Sequence[Fraction | int], grain: int) -> tuple[list[int], int]:
    """Lines rounded to `grain` so they add up to the rounded exact total; (lines, total)."""
    lines = foot(list(values), grain) if values else []
    return lines, sum(lines)


# --- mrr_breakdown -------------------------------------------------------------------------------

MRR_BREAKDOWN_COLUMNS = [
    "Plan",
    "Opening MRR",
    "New",
    "Expansion",
    "Reactivation",
    "Contraction",
    "Churn",
    "FX",
    "Net Change",
    "Closing MRR",
    "Currency",
]
ALL_PLANS = "All plans"


def mrr_breakdown(
    currency: str,
    opening: Fraction | int | None,
    movements: Mapping[str, Fraction | int] | None,
    closing: Fraction | int | None,
    plans: Sequence[PlanBalance],
    plan_movements: Mapping[str, Mapping[str, Fraction]] | None = None,
) -> CsvTable:
    """The MRR roll-forward of a range: one row per plan (docs/metrics.md §5, "Movements by
    plan"), then the company row (opening, §5 movements signed, closing).

    `movements` are the company's as stored (positive); `plan_movements` the plans' customer
    movements, signed (lib.plan_movements.movements_by_plan); each plan's fx is its remainder.
    The company row is footed with foot_roll_forward; the plan rows' balances are footed down to
    it and their movements with foot_grid, so every column adds up to the company row and every
    row rolls forward to the cent. An `(unattributed)` row holds what no plan accounts for.
    Without `movements` (a plan filter) only plan rows show, each footed on its own.
    """
    table = CsvTable(MRR_BREAKDOWN_COLUMNS)
    cur = _upper(currency)
    grain = micros_per_minor(currency)

    def cell(micros: int) -> Amount:
        return amount_cell(micros, grain)

    kinds = list(MOVEMENT_SIGNS)
    company_exact = None
    if movements is not None and opening is not None and closing is not None:
        signed = {k: MOVEMENT_SIGNS[k] * Fraction(movements.get(k, 0)) for k in kinds}
        company_exact = (Fraction(opening), signed, Fraction(closing))
    rows = plan_roll_forwards(plans, plan_movements or {}, company_exact)
    displayed: list[tuple[int, list[int], int]] = []
    if company_exact is not None:
        o, moves, c = foot_roll_forward(*company_exact, grain)
        if rows:
            # The rows add up to the company row exactly (the unattributed row sees to it).
            open_r = foot([r.opening for r in rows], grain, total=o)
            close_r = foot([r.closing for r in rows], grain, total=c)
            grid = foot_grid(
                [[r.movements[k] for k in kinds] for r in rows],
                [b - a for a, b in zip(open_r, close_r, strict=True)],
                [moves[k] for k in kinds],
                grain,
            )
            displayed = list(zip(open_r, grid, close_r, strict=True))
    else:
        for r in rows:
            ro, rm, rc = foot_roll_forward(r.opening, r.movements, r.closing, grain)
            displayed.append((ro, [rm[k] for k in kinds], rc))
    for r, (ro, rm, rc) in zip(rows, displayed, strict=True):
        table.rows.append(
            [r.plan_id, cell(ro), *map(cell, rm), cell(rc - ro),
             cell(rc), cur]
        )  # fmt: skip
    if company_exact is not None:
        table.rows.append(
            [ALL_PLANS, cell(o), *(cell(moves[k]) for k in kinds),
             cell(c - o), cell(c), cur]
        )  # fmt: skip
        table.totals = {"opening_mrr": o, "closing_mrr": c, **moves}
    else:
        table.totals = {
            "opening_mrr": sum(d[0] for d in displayed),
            "closing_mrr": sum(d[2] for d in displayed),
            **{k: sum(d[1][i] for d in displayed) for i, k in enumerate(kinds)},
        }
    table.grains = dict.fromkeys(table.totals, grain)
    table.line_count = len(rows)
    return table


# --- invoice_summary -----------------------------------------------------------------------------

INVOICE_SUMMARY_COLUMNS = [
    "Invoice Number",
    "Customer ID",
    "Customer Name",
    "Status",
    "Created Date",
    "Paid Date",
    "Period Start",
    "Period End",
    "Subtotal",
    "Discount",
    "Tax",
    "Total",
    "Amount Paid",
    "Currency",
    "Stripe Invoice ID",
]
_INVOICE_MONEY = ("subtotal", "discount", "tax", "total", "amount_paid")


def _per_currency_totals(
    table: CsvTable,
    lines: Sequence[Mapping[str, Any]],
    money: Sequence[str],
    make_row: Any,
    total_row: Any,
) -> None:
    """Rows grouped by currency, each currency followed by its total row; amounts footed at the
    currency's own grain (the row builders print them with `amount_cell(..., micros_per_minor(cur))`)."""
    by_cur: dict[str, list[Mapping[str, Any]]] = {}
    for line in lines:
        by_cur.setdefault(str(line["currency"]).upper(), []).append(line)
    for cur in sorted(by_cur):
        group = by_cur[cur]
        cols = {m: _footed_column([g[m] for g in group], micros_per_minor(cur)) for m in money}
        for i, g in enumerate(group):
            table.rows.append(make_row(g, {m: cols[m][0][i] for m in money}, cur))
        table.rows.append(total_row({m: cols[m][1] for m in money}, cur, len(group)))
        for m in money:
            table.totals[f"{m}_{cur.lower()}"] = cols[m][1]
            table.grains[f"{m}_{cur.lower()}"] = micros_per_minor(cur)
    table.line_count = len(lines)


def invoice_summary(invoices: Sequence[Mapping[str, Any]]) -> CsvTable:
    """One row per invoice (amounts in the invoice's currency), then a total row per currency.

    Each invoice mapping has: number, customer_id, customer_name, status, created, paid, period_start,
    period_end (dates or None), subtotal, discount, tax, total, amount_paid (exact micros),
    currency, id.
    """
    table = CsvTable(INVOICE_SUMMARY_COLUMNS)

    def row(g: Mapping[str, Any], m: Mapping[str, int], cur: str) -> list[Cell]:
        return [
            g["number"],
            g["customer_id"],
            g["customer_name"],
            g["status"],
            g["created"],
            g["paid"],
            g["period_start"],
            g["period_end"],
            *(amount_cell(m[k], micros_per_minor(cur)) for k in _INVOICE_MONEY),
            cur,
            g["id"],
        ]

    def total(m: Mapping[str, int], cur: str, n: int) -> list[Cell]:
        money = [amount_cell(m[k], micros_per_minor(cur)) for k in _INVOICE_MONEY]
        return [TOTAL, None, f"{n} invoices", *([None] * 5), *money, cur, None]

    _per_currency_totals(table, invoices, _INVOICE_MONEY, row, total)
    return table


# --- revenue_trend -------------------------------------------------------------------------------

REVENUE_TREND_COLUMNS = ["Month", "Revenue", "Refunds", "Expenses", "Net", "MRR", "Currency"]


@dataclass(frozen=True)
class TrendMonth:
    """One month of docs/metrics.md §10 (reporting micros): sums of the days, MRR a balance."""

    month: str
    revenue: int
    refunds: int
    expenses: int
    mrr: Fraction | None  # end-of-month (or end-of-range) MRR; None when not materialized


def revenue_trend(currency: str, months: Sequence[TrendMonth]) -> CsvTable:
    """Per month: revenue, refunds (negative), expenses, net = revenue - expenses, MRR at the end.

    Revenue, refunds and expenses are footed down their columns; net is revenue - expenses of the
    displayed figures, so it foots across and down. MRR is a balance: no total.
    """
    table = CsvTable(REVENUE_TREND_COLUMNS)
    cur = _upper(currency)
    grain = micros_per_minor(currency)
    rev, rev_t = _footed_column([m.revenue for m in months], grain)
    ref, ref_t = _footed_column([m.refunds for m in months], grain)
    exp, exp_t = _footed_column([m.expenses for m in months], grain)
    for i, m in enumerate(months):
        table.rows.append(
            [
                m.month,
                amount_cell(rev[i], grain),
                amount_cell(ref[i], grain),
                amount_cell(exp[i], grain),
                amount_cell(rev[i] - exp[i], grain),
                None if m.mrr is None else amount_cell(to_grain(m.mrr, grain), grain),
                cur,
            ]
        )
    table.rows.append(
        [
            TOTAL,
            amount_cell(rev_t, grain),
            amount_cell(ref_t, grain),
            amount_cell(exp_t, grain),
            amount_cell(rev_t - exp_t, grain),
            None,
            cur,
        ]
    )
    table.totals = {"revenue": rev_t, "refunds": ref_t, "expenses": exp_t, "net": rev_t - exp_t}
    table.grains = dict.fromkeys(table.totals, grain)
    table.line_count = len(months)
    return table


# --- failed_payments -----------------------------------------------------------------------------

FAILED_PAYMENTS_COLUMNS = [
    "Date",
    "Customer ID",
    "Customer Name",
    "Amount",
    "Currency",
    "Failure Code",
    "Failure Message",
    "Invoice ID",
    "Stripe Charge ID",
    "Stripe Payment Intent ID",
]


def failed_payments(charges: Sequence[Mapping[str, Any]]) -> CsvTable:
    """One row per failed charge (amount in its currency), then a total row per currency.

    Each mapping has: day, customer_id, customer_name, amount (exact micros), currency,
    failure_code, failure_message, invoice_id, charge_id, payment_intent_id.
    """
    table = CsvTable(FAILED_PAYMENTS_COLUMNS)

    def row(g: Mapping[str, Any], m: Mapping[str, int], cur: str) -> list[Cell]:
        return [
            g["day"],
            g["customer_id"],
            g["customer_name"],
            amount_cell(m["amount"], micros_per_minor(cur)),
            cur,
            g["failure_code"],
            g["failure_message"],
            g["invoice_id"],
            g["charge_id"],
            g["payment_intent_id"],
        ]

    def total(m: Mapping[str, int], cur: str, n: int) -> list[Cell]:
        amount = amount_cell(m["amount"], micros_per_minor(cur))
        return [TOTAL, None, f"{n} failed payments", amount, cur, *[None] * 5]

    _per_currency_totals(table, charges, ("amount",), row, total)
    return table


# --- margins (margins API CSV) ---------------------------------------------------------------------

MARGINS_COLUMNS = [
    "Customer",
    "Stripe ID",
    "Tag Value",
    "Revenue ($)",
    "Cost ($)",
    "Margin (%)",
    "Margin ($)",
    "Health Tier",
]


def margins_file_name(month: str) -> str:
    """The margins API's download name, `margins-YYYY-MM.csv`."""
    return f"margins-{month}.csv"


def margins(
    rows: Sequence[Mapping[str, Any]],
    blended_percent: str | Decimal | None = None,
    *,
    currency: str,
    with_total: bool = True,
) -> CsvTable:
    """The margins API CSV of a month, in the mart's order (docs/metrics.md §11), amounts in the
    workspace's reporting `currency`.

    Each mapping has customer_name, stripe_customer_id, tag_value, revenue_micros, cost_micros,
    margin_percent (exact decimal text or None), health_tier. Revenue and cost are footed down
    their columns; Margin ($) is revenue - cost of the displayed figures. The total row (Customer
    "Total", blended percent) follows the lines unless `with_total` is False.
    """
    table = CsvTable(MARGINS_COLUMNS)
    grain = micros_per_minor(currency)
    rev, rev_t = _footed_column([r["revenue_micros"] for r in rows], grain)
    cost, cost_t = _footed_column([r["cost_micros"] for r in rows], grain)
    for i, r in enumerate(rows):
        table.rows.append(
            [
                r["customer_name"] or r["stripe_customer_id"],
                r["stripe_customer_id"],
                r["tag_value"],
                amount_cell(rev[i], grain),
                amount_cell(cost[i], grain),
                percent_cell(r["margin_percent"]),
                amount_cell(rev[i] - cost[i], grain),
                r["health_tier"],
            ]
        )
    if with_total:
        table.rows.append(
            [
                TOTAL,
                None,
                None,
                amount_cell(rev_t, grain),
                amount_cell(cost_t, grain),
                percent_cell(blended_percent),
                amount_cell(rev_t - cost_t, grain),
                None,
            ]
        )
    table.totals = {"revenue": rev_t, "cost": cost_t, "margin": rev_t - cost_t}
    table.grains = dict.fromkeys(table.totals, grain)
    table.line_count = len(rows)
    return table


# --- mrr_movements -------------------------------------------------------------------------------

MRR_MOVEMENTS_COLUMNS = [
    "Date",
    "Customer ID",
    "Customer Name",
    "Type",
    "Reason",
    "Amount",
    "Currency",
    "MRR After",
    "MRR Currency",
    "Plans",
    "Stripe Subscription IDs",
    "Stripe Subscription Item IDs",
    "Stripe Event IDs",
    "Stripe Invoice Line IDs",
]


def mrr_movements(currency: str, movements: Sequence[Mapping[str, Any]]) -> CsvTable:
    """One row per customer movement (docs/metrics.md §5), signed like the roll-forward (churn and
    contraction negative), in the reporting currency; then the total (the net customer movement).

    Each mapping has: day, customer_id, customer_name, kind, reason, amount_exact (positive, as
    stored), mrr_after (exact native micros or None), mrr_currency, plans, subscription_ids,
    item_ids, event_ids, invoice_line_ids (lists of ids; the Stripe facts the row came from, an
    empty list when none was synced). MRR After is a balance in the customer's own currency:
    rounded on its own at that currency's grain (whole yen for a JPY customer), not footed.
    """
    table = CsvTable(MRR_MOVEMENTS_COLUMNS)
    cur = _upper(currency)
    grain = micros_per_minor(currency)
    signed = [MOVEMENT_SIGNS[m["kind"]] * Fraction(m["amount_exact"]) for m in movements]
    amounts, total = _footed_column(signed, grain)
    for i, m in enumerate(movements):
        after = m["mrr_after"]
        native = micros_per_minor(m["mrr_currency"] or currency)
        table.rows.append(
            [
                m["day"],
                m["customer_id"],
                m["customer_name"],
                m["kind"],
                m["reason"],
                amount_cell(amounts[i], grain),
                cur,
                None if after is None else amount_cell(to_grain(after, native), native),
                _upper(m["mrr_currency"]),
                " ".join(m["plans"]) or None,
                " ".join(m["subscription_ids"]) or None,
                " ".join(m["item_ids"]) or None,
                " ".join(m["event_ids"]) or None,
                " ".join(m["invoice_line_ids"]) or None,
            ]
        )
    total_row: list[Cell] = [
        TOTAL,
        None,
        f"{len(movements)} movements",
        None,
        None,
        amount_cell(total, grain),
        cur,
    ]
    table.rows.append(total_row + [None] * (len(MRR_MOVEMENTS_COLUMNS) - len(total_row)))
    table.totals = {"net_movement": total}
    for kind in MOVEMENT_SIGNS:
        table.totals[kind] = sum(
            a for a, m in zip(amounts, movements, strict=True) if m["kind"] == kind
        )
    table.grains = dict.fromkeys(table.totals, grain)
    table.line_count = len(movements)
    return table

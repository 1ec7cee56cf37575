"""The demo's print-outs as pure functions of exact figures: each table foots to the cent.

Lines are rounded for display with `money.foot_roll_forward`, so the printed lines add up to the
printed totals while balances (opening, closing, net revenue, burn) are their own exact roundings.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from fractions import Fraction

from finance_pipeline.lib.money import MICROS_PER_CENT, foot_roll_forward, micros_to_decimal
from finance_pipeline.lib.mrr_timeline import MOVEMENT_SIGNS


def _amount(micros: int, currency: str) -> str:
    return f"{micros_to_decimal(micros):>14,} {currency}"


def roll_forward_lines(
    *,
    workspace_id: str,
    currency: str,
    opening_day: date,
    opening: Fraction | int,
    movements: Mapping[str, Fraction | int],
    closing_day: date,
    closing: Fraction | int,
    paying_customers: int,
) -> list[str]:
    """The MRR roll-forward of a period as printed lines; movements are the stored (positive)
    amounts by kind, contraction and churn reducing MRR. Raises ValueError if it does not hold."""
    signed = {k: s * Fraction(movements.get(k, 0)) for k, s in MOVEMENT_SIGNS.items()}
    opening_r, moves_r, closing_r = foot_roll_forward(opening, signed, closing, MICROS_PER_CENT)
    cur = currency.upper()
    first = opening_day.toordinal() + 1
    out = [
        f"MRR roll-forward {date.fromordinal(first):%B %Y} to {closing_day}, {workspace_id}",
        f"  opening MRR ({opening_day})  {_amount(opening_r, cur)}",
    ]
    for k, v in moves_r.items():
        sign = "-" if MOVEMENT_SIGNS[k] < 0 else "+"
        out.append(f"  {sign} {k:<24}{_amount(MOVEMENT_SIGNS[k] * v, cur)}")
    out.append(
        f"  closing MRR ({closing_day})  {_amount(closing_r, cur)}"
        f"   ARR {micros_to_decimal(12 * Fraction(closing)):,} {cur},"
        f" {paying_customers} paying customers"
    )
    return out


def cfo_lines(
    *,
    workspace_id: str,
    currency: str,
    day: date,
    gross_revenue: int,
    refunds: int,
    expenses: int,
    runway_months: str | None,
) -> list[str]:
    """The CFO headline of the 30 days ending `day` (docs/metrics.md §9) as printed lines.

    net revenue = gross revenue + refunds (negative), burn = expenses - net revenue; both foot.
    """
    cur = currency.upper()
    net_revenue = gross_revenue + refunds
    burn = expenses - net_revenue
    gross_r, refunds_r, net_r = foot_roll_forward(
        gross_revenue, {"refunds": refunds}, net_revenue, MICROS_PER_CENT
    )
    # Net revenue rounds as a balance on both tables (half away from zero is symmetric).
    minus_net_r, expenses_r, burn_r = foot_roll_forward(
        -net_revenue, {"expenses": expenses}, burn, MICROS_PER_CENT
    )
    assert minus_net_r == -net_r
    return [
        f"CFO metrics {day} (30 days ending that day), {workspace_id}",
        f"  gross revenue               {_amount(gross_r, cur)}",
        f"  + refunds                   {_amount(refunds_r['refunds'], cur)}",
        f"  = net revenue               {_amount(net_r, cur)}",
        f"  expenses and fees           {_amount(expenses_r['expenses'], cur)}",
        f"  - net revenue               {_amount(net_r, cur)}",
        f"  = burn                      {_amount(burn_r, cur)}",
        f"  runway {runway_months or 'n/a'} months",
    ]

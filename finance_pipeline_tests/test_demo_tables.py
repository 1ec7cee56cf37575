"""The demo's print-outs foot: printed lines add up to printed totals, to the cent (docs/metrics.md §2)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
import sqlalchemy as sa
from finance_pipeline_dev.demo import _print_cfo, _print_roll_forward
from finance_pipeline_dev.demo_tables import MOVEMENT_SIGNS, cfo_lines, roll_forward_lines
from hypothesis import given
from hypothesis import strategies as st

from finance_pipeline.lib.money import round_half_away
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse, apply_migrations

NUMBER = re.compile(r"(-?[\d,]+\.\d\d) [A-Z]{3}")

# The demo once printed lines adding to 59,758.69 under a closing MRR of 59,758.70.
OPENING = 50_000_000_000
MOVES = {
    "new": 12_345_674_500,
    "expansion": 2_000_004_000,
    "reactivation": 500_003_500,
    "contraction": 1_000_000_000,
    "churn": 4_086_984_000,
    "fx": 0,
}
CLOSING = OPENING + sum(MOVEMENT_SIGNS[k] * v for k, v in MOVES.items())


def _amount(line: str) -> Decimal:
    return Decimal(NUMBER.search(line).group(1).replace(",", ""))  # type: ignore[union-attr]


def _roll_forward_foots(lines: list[str]) -> tuple[Decimal, Decimal]:
    """Check opening +/- printed movements == printed closing; returns (sum, closing)."""
    total = _amount(lines[1])
    for line in lines[2:-1]:
        sign = -1 if line.strip().startswith("-") else 1
        total += sign * _amount(line)
    closing = _amount(lines[-1])
    assert total == closing, "\n".join(lines)
    return total, closing


def test_roll_forward_lines_foot_the_demo_case() -> None:
    lines = roll_forward_lines(
        workspace_id="ws_demo",
        currency="usd",
        opening_day=date(2026, 10, 31),
        opening=OPENING,
        movements=MOVES,
        closing_day=date(2026, 11, 30),
        closing=CLOSING,
        paying_customers=42,
    )
    assert lines[0] == "MRR roll-forward November 2026 to 2026-11-30, ws_demo"
    assert _roll_forward_foots(lines) == (Decimal("59758.70"), Decimal("59758.70"))
    assert "+ new" in lines[2] and _amount(lines[2]) == Decimal("12345.68")
    assert "- churn" in lines[6] and _amount(lines[6]) == Decimal("4086.98")
    assert "ARR 717,104.38 USD, 42 paying customers" in lines[-1]
    with pytest.raises(ValueError):
        roll_forward_lines(
            workspace_id="ws_demo",
            currency="usd",
            opening_day=date(2026, 10, 31),
            opening=OPENING,
            movements=MOVES,
            closing_day=date(2026, 11, 30),
            closing=CLOSING + 1,
            paying_customers=42,
        )


exact = st.fractions(min_value=0, max_value=10**11, max_denominator=10**5)


@given(exact, st.fixed_dictionaries({k: exact for k in MOVEMENT_SIGNS}))
def test_roll_forward_lines_always_foot(opening: Fraction, moves: dict) -> None:
    closing = opening + sum(MOVEMENT_SIGNS[k] * v for k, v in moves.items())
    lines = roll_forward_lines(
        workspace_id="w",
        currency="eur",
        opening_day=date(2026, 1, 31),
        opening=opening,
        movements=moves,
        closing_day=date(2026, 2, 28),
        closing=closing,
        paying_customers=1,
    )
    _, printed_closing = _roll_forward_foots(lines)
    # The closing balance is the rounding of the exact closing MRR, not a sum of rounded lines.
    assert Fraction(printed_closing) * 1_000_000 == round_half_away(closing, 10_000)


def _cfo_foots(lines: list[str]) -> None:
    gross, refunds, net, expenses, minus_net, burn = (_amount(x) for x in lines[1:7])
    assert gross + refunds == net and expenses - minus_net == burn and minus_net == net


@given(
    st.integers(0, 10**13),
    st.integers(-(10**12), 0),
    st.integers(0, 10**13),
)
def test_cfo_lines_always_foot(gross: int, refunds: int, expenses: int) -> None:
    lines = cfo_lines(
        workspace_id="w",
        currency="usd",
        day=date(2026, 3, 1),
        gross_revenue=gross,
        refunds=refunds,
        expenses=expenses,
        runway_months="4.20",
    )
    _cfo_foots(lines)
    # Net revenue and burn are the roundings of their exact values, as in mart.cfo_metrics_daily.
    assert _amount(lines[3]) * 100 == round_half_away(gross + refunds, 10_000) // 10_000
    assert _amount(lines[6]) * 100 == round_half_away(expenses - gross - refunds, 10_000) // 10_000
    assert lines[-1] == "  runway 4.20 months"


def test_demo_print_outs_foot_on_a_small_warehouse(capsys: pytest.CaptureFixture[str]) -> None:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    wh = Warehouse(settings.resolved_warehouse_url)
    apply_migrations(wh)
    org = create_organization(wh, "Demo org")
    create_workspace(wh, org, "Demo", workspace_id="ws_demo")
    last = date(2026, 11, 30)
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(30)]
    rows, previous = [], Fraction(OPENING)
    for i, day in enumerate(days):
        # The month's movements spread unevenly over three days, exact to a fraction of a micro.
        share = {0: Fraction(1, 3), 10: Fraction(1, 3), 29: Fraction(1, 3)}.get(i, Fraction(0))
        moves = {k: v * share for k, v in MOVES.items()}
        mrr = previous + sum(MOVEMENT_SIGNS[k] * v for k, v in moves.items())
        rows.append(
            {
                "workspace_id": "ws_demo",
                "day": day,
                "currency": "usd",
                "mrr_micros": round_half_away(mrr),
                "cmrr_micros": round_half_away(mrr),
                "arr_micros": round_half_away(12 * mrr),
                "active_subscriptions": 3,
                "paying_customers": 3,
                **{f"{k}_micros": round_half_away(v) for k, v in moves.items()},
                "new_customers": 0,
                "reactivated_customers": 0,
                "churned_customers": 0,
                "delinquent_churned_customers": 0,
                "skipped_currencies_json": [],
                "exact_json": {
                    **{k: str(v) for k, v in moves.items()},
                    "mrr": str(mrr),
                    "previous_mrr": str(previous),
                },
            }
        )
        previous = mrr
    revenue = [
        {
            "workspace_id": "ws_demo",
            "day": day,
            "currency": "usd",
            "gross_revenue_micros": gross,
            "manual_revenue_micros": 0,
            "refunds_micros": refunds,
            "expenses_micros": 2_000_004_999,
            "fees_micros": 0,
            "one_time_expenses_micros": 0,
            "net_micros": gross - 2_000_004_999,
            "net_revenue_micros": gross + refunds,
            "skipped_currencies_json": {},
        }
        for day in days
        # 30,000.154 of gross and -0.149 of refunds on the first day: net 30,000.005 -> .01.
        for gross, refunds in [(30_000_154_000, -149_000) if day == days[0] else (0, 0)]
    ]
    cfo = {
        "workspace_id": "ws_demo",
        "day": last,
        "currency": "usd",
        **{
            k: 0
            for k in (
                "gross_revenue_cents_30d",
                "refunds_cents_30d",
                "net_revenue_cents_30d",
                "mrr_cents",
                "arr_cents",
                "burn_cents_30d",
                "recurring_burn_cents_30d",
                "one_time_expenses_cents_30d",
                "total_expenses_cents_30d",
                "recurring_expenses_cents_30d",
            )
        },
        "runway_months": "7.50",
        "warnings_json": [],
        "skipped_currencies_json": {},
    }
    with wh.begin() as db:
        db.execute(sa.insert(wh.table("mart.mrr_daily")), rows)
        db.execute(sa.insert(wh.table("mart.revenue_daily")), revenue)
        db.execute(sa.insert(wh.table("mart.cfo_metrics_daily")), [cfo])
    _print_roll_forward(settings, last)
    _print_cfo(settings, last)
    wh.dispose()
    out = capsys.readouterr().out.strip().splitlines()
    start = out.index("MRR roll-forward November 2026 to 2026-11-30, ws_demo")
    assert _roll_forward_foots(out[start : start + 9]) == (Decimal("59758.70"),) * 2
    cfo_start = out.index("CFO metrics 2026-11-30 (30 days ending that day), ws_demo")
    _cfo_foots(out[cfo_start : cfo_start + 8])
    # Own roundings 30,000.15 - 0.15 would print 30,000.00 over a net revenue of 30,000.01;
    # expenses 30 x 2,000.004999 = 60,000.15 less net revenue 30,000.01 is a burn of 30,000.14.
    assert [_amount(x) for x in out[cfo_start + 1 : cfo_start + 7]] == [
        Decimal("30000.15"),
        Decimal("-0.14"),
        Decimal("30000.01"),
        Decimal("60000.15"),
        Decimal("30000.01"),
        Decimal("30000.14"),
    ]

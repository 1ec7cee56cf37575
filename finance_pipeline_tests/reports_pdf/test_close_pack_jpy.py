"""A JPY workspace's close pack: every figure rounded and footed at the whole yen and printed
without decimals (docs/metrics.md §2, docs/reports.md number formats); percentages keep 2."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from finance_pipeline.reports.close import figures
from finance_pipeline.reports.pdf.pack_data import close_pack_data
from finance_pipeline.reports.pdf.render import money, render_close_pack
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.pdf_pages import needs_poppler, pdf_text

YEN = 1_000_000
WS = "yen"
MONTH, END = date(2026, 10, 1), date(2026, 10, 31)
GENERATED = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
OPENING = Fraction(12_345_500_000)  # 12,345.5 yen on 09-30
NEW, CHURN, FX = Fraction(1_000_400_000), Fraction(500_400_000), Fraction(600_000)


def _s(x: Fraction) -> str:
    return f"{x.numerator}/{x.denominator}"


def _insert(wh: Warehouse, table: str, rows: list[dict[str, Any]]) -> None:
    keys = {k: None for r in rows for k in r}
    with wh.begin() as db:
        db.execute(sa.insert(wh.table(table)), [{**keys, **r} for r in rows])


def _seed(wh: Warehouse) -> None:
    """October 2026 of a JPY workspace: MRR 12,345.5 -> 12,846.1 yen, revenue in half yen."""
    create_organization(wh, "o", org_id="o")
    create_workspace(wh, "o", "Yen KK", workspace_id=WS, reporting_currency="jpy")
    zero = dict.fromkeys(("new", "expansion", "reactivation", "contraction", "churn", "fx"), "0")
    mid = OPENING + NEW
    days = (
        (MONTH, OPENING, mid, {**zero, "new": _s(NEW)}),
        (END, mid, mid - CHURN + FX, {**zero, "churn": _s(CHURN), "fx": _s(FX)}),
    )
    _insert(
        wh,
        "mart.mrr_daily",
        [
            {"workspace_id": WS, "day": d, "currency": "jpy", "mrr_micros": round(m),
             "cmrr_micros": round(m), "arr_micros": 12 * round(m), "active_subscriptions": 2,
             "paying_customers": 2, **{f"{k}_micros": round(Fraction(v)) for k, v in mv.items()},
             "new_customers": 0, "reactivated_customers": 0, "churned_customers": 0,
             "delinquent_churned_customers": 0, "skipped_currencies_json": [],
             "exact_json": {**mv, "mrr": _s(m), "cmrr": _s(m), "previous_mrr": _s(p)}}
            for d, p, m, mv in days
        ],
    )  # fmt: skip
    _insert(
        wh,
        "mart.mrr_plan_daily",
        [
            {"workspace_id": WS, "day": END, "plan_id": p, "currency": "jpy",
             "mrr_micros": round(v), "subscriptions": 1, "mrr_exact": _s(v)}
            for p, v in (
                ("price_basic", Fraction(6_000_650_000)),
                ("price_pro", OPENING + NEW - CHURN + FX - 6_000_650_000),  # 6,845.45
            )
        ],
    )  # fmt: skip
    _insert(
        wh,
        "mart.revenue_daily",
        [
            {"workspace_id": WS, "day": d, "currency": "jpy", "gross_revenue_micros": g,
             "manual_revenue_micros": 0, "refunds_micros": r, "expenses_micros": e,
             "fees_micros": 0, "one_time_expenses_micros": 0, "net_micros": g - e,
             "net_revenue_micros": g + r, "skipped_currencies_json": {}}
            for d, g, r, e in (
                (date(2026, 9, 15), 7_000_500_000, 0, 1_000_500_000),
                (date(2026, 10, 2), 100_500_000, -5_500_000, 30_500_000),
                (date(2026, 10, 3), 20_400_000, 0, 4_400_000),
            )
        ],
    )  # fmt: skip
    cents = dict.fromkeys(
        (
            "gross_revenue_cents_30d", "refunds_cents_30d", "mrr_cents", "arr_cents",
            "burn_cents_30d", "recurring_burn_cents_30d", "one_time_expenses_cents_30d",
            "total_expenses_cents_30d", "recurring_expenses_cents_30d",
        ),
        0,
    )  # fmt: skip
    _insert(
        wh,
        "mart.cfo_metrics_daily",
        [
            {"workspace_id": WS, "day": END, "currency": "jpy", **cents,
             "net_revenue_cents_30d": 312_345, "warnings_json": [],
             "skipped_currencies_json": {}}
        ],
    )  # fmt: skip


@needs_poppler
def test_a_jpy_pack_prints_whole_yen(sqlite_warehouse: Warehouse, tmp_path: Path) -> None:
    _seed(sqlite_warehouse)
    d = close_pack_data(sqlite_warehouse, WS, MONTH, generated_at=GENERATED)
    assert d.grain == YEN
    # Opening 12,345.5 -> 12,346 and closing 12,846.1 -> 12,846 on their own; the movements
    # (1,000.4, -500.4, 0.6) footed to the 500 between them, so FX's own 1 gives way.
    assert [line.shown // YEN for line in d.roll_forward] == [12346, 1000, 0, 0, 0, -500, 0, 12846]
    assert d.plan_totals[-1] == 12_846 * YEN  # 6,000.65 + 6,845.45 shown as 6,001 + 6,845
    assert [(m.month, m.revenue // YEN) for m in d.money_months[-2:]] == [
        ("2026-09", 7000),  # 7,000.5 gives way so the column foots to 7,121.4 -> 7,121
        ("2026-10", 121),
    ]
    assert d.money_total.revenue == 7_121 * YEN
    kpi = {k.key: k for k in d.kpis}
    assert kpi["mrr"].current_shown == Decimal("12846")
    assert kpi["arr"].current_shown == Decimal("154153")  # 12 x 12,846.1 = 154,153.2
    assert figures(d)["MRR roll-forward: Closing MRR (2026-10-31)"] == "12846"
    assert money(12_846 * YEN, d.grain) == "12,846"

    path = tmp_path / "yen.pdf"
    path.write_bytes(render_close_pack(d, {}))
    text = pdf_text(path)
    whole = r"(?![.\d])"  # no decimals after the figure
    for line in d.roll_forward:
        assert re.search(
            rf"{re.escape(line.label)}\s+{re.escape(money(line.shown, YEN))}{whole}", text
        )
    assert re.search(rf"Opening MRR \(2026-09-30\)\s+12,346{whole}", text)
    assert re.search(rf"Closing MRR\s+JPY 12,846{whole}", text)  # the cover
    assert re.search(rf"Total\s+7,121{whole}\s+-6{whole}\s+1,035{whole}\s+6,086{whole}", text)
    assert re.search(rf"Net revenue \(30 days\)\s+3,123{whole}", text)  # 3,123.45 yen in cents
    assert re.search(rf"Total MRR\s+(?:0\s+)*12,846{whole}", text)
    assert "Amounts are in JPY with no decimals" in " ".join(text.split())
    for wrong in ("12,846.1", "12,846.00", "12,346.00", "7,121.00", "3,123.45"):
        assert wrong not in text

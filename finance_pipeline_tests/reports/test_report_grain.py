"""Reports round and foot at the currency's minor unit (docs/metrics.md §2): whole yen for a JPY
workspace and for a JPY customer's native MRR, cents (unchanged) for USD."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from finance_pipeline.reports import pdf_tables
from finance_pipeline.reports.render import build_csv, workspace
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse, apply_migrations

YEN = 1_000_000  # micros in one yen
JPY_WS, USD_WS = "ws_jpy", "ws_usd"
SEP1, SEP3 = date(2026, 9, 1), date(2026, 9, 3)
# Exact reporting-currency MRR (yen micros) of the JPY workspace: a half-yen opening, three moves.
OPENING = Fraction(12_345_500_000)  # 12,345.5 yen
NEW = Fraction(1_000_400_000)  # 09-01
CHURN = Fraction(500_400_000)  # 09-02
FX = Fraction(600_000)  # 09-03: 0.6 yen
CLOSING = OPENING + NEW - CHURN + FX  # 12,846.1 yen


def _s(x: Fraction) -> str:
    return f"{x.numerator}/{x.denominator}"


def _ts(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, 12, tzinfo=UTC).timestamp())


def _insert(wh: Warehouse, table: str, rows: list[dict[str, Any]]) -> None:
    keys = {k: None for r in rows for k in r}
    with wh.begin() as db:
        db.execute(sa.insert(wh.table(table)), [{**keys, **r} for r in rows])


def _stripe(ws: str, **kw: Any) -> dict[str, Any]:
    return {"workspace_id": ws, "account_id": "acct_1", "livemode": False, "synced_at": 0, **kw}


def _seed_jpy(wh: Warehouse) -> None:
    daily, mrr = [], OPENING
    for d, (kind, amount) in zip(
        (SEP1, SEP1 + timedelta(days=1), SEP3),
        (("new", NEW), ("churn", CHURN), ("fx", FX)),
        strict=True,
    ):
        prev, mrr = mrr, mrr + (-amount if kind == "churn" else amount)
        moves = dict.fromkeys(("new", "expansion", "reactivation", "contraction", "churn"), "0")
        moves["fx"] = "0"
        moves[kind] = _s(amount)
        daily.append(
            {"workspace_id": JPY_WS, "day": d, "currency": "jpy", "mrr_micros": round(mrr),
             "cmrr_micros": round(mrr), "arr_micros": 12 * round(mrr), "active_subscriptions": 2,
             "paying_customers": 2, **{f"{k}_micros": round(Fraction(v)) for k, v in moves.items()},
             "new_customers": 0, "reactivated_customers": 0, "churned_customers": 0,
             "delinquent_churned_customers": 0, "skipped_currencies_json": [],
             "exact_json": {**moves, "mrr": _s(mrr), "cmrr": _s(mrr), "previous_mrr": _s(prev)}}
        )  # fmt: skip
    _insert(wh, "mart.mrr_daily", daily)
    plans = (
        (SEP1 - timedelta(days=1), "price_basic", Fraction(5_000_250_000)),  # 5,000.25
        (SEP1 - timedelta(days=1), "price_pro", OPENING - 5_000_250_000),  # 7,345.25
        (SEP3, "price_basic", 5_000_250_000 + NEW),  # 6,000.65
        (SEP3, "price_pro", OPENING - 5_000_250_000 - CHURN + FX),  # 6,845.45
    )
    _insert(
        wh,
        "mart.mrr_plan_daily",
        [
            {"workspace_id": JPY_WS, "day": d, "plan_id": p, "currency": "jpy",
             "mrr_micros": round(v), "subscriptions": 1, "mrr_exact": _s(Fraction(v))}
            for d, p, v in plans
        ],
    )  # fmt: skip
    _insert(
        wh,
        "mart.revenue_daily",
        [
            {"workspace_id": JPY_WS, "day": d, "currency": "jpy", "gross_revenue_micros": g,
             "manual_revenue_micros": 0, "refunds_micros": r, "expenses_micros": e,
             "fees_micros": 0, "one_time_expenses_micros": 0, "net_micros": g - e,
             "net_revenue_micros": g + r, "skipped_currencies_json": {}}
            for d, g, r, e in (
                (date(2026, 8, 15), 7_000_500_000, 0, 1_000_500_000),
                (date(2026, 9, 2), 100_500_000, -5_500_000, 30_500_000),
                (SEP3, 20_400_000, 0, 4_400_000),
            )
        ],
    )  # fmt: skip
    invoices = (
        ("in_1", "jpy", 12000, 11880, 10800, 11880, {"number": "INV-1",
         "total_discount_amounts": [{"amount": 1200}]}),
        ("in_2", "jpy", 4999, 4999, 4999, 0, {"number": "INV-2"}),
        ("in_3", "usd", 4999, 4999, 4999, 4999, {"number": "INV-3"}),  # 49.99 USD
    )  # fmt: skip
    _insert(
        wh,
        "raw.stripe_invoices",
        [
            _stripe(JPY_WS, id=i, customer="cus_1", status="paid", currency=c, created=_ts(SEP1),
                    subtotal=sub, total=tot, total_excluding_tax=excl, amount_paid=paid,
                    payload=payload)
            for i, c, sub, tot, excl, paid, payload in invoices
        ],
    )  # fmt: skip


def _seed_usd(wh: Warehouse) -> None:
    """A USD workspace with a JPY customer (native MRR in yen) and a USD one."""
    day = SEP1 + timedelta(days=1)
    _insert(
        wh,
        "mart.mrr_movements",
        [
            {"workspace_id": USD_WS, "customer_id": c, "day": day, "kind": "new",
             "amount_micros": round(a), "amount_exact": _s(a), "reason": None}
            for c, a in (("cus_j", Fraction(66_674_999)), ("cus_u", Fraction(49_995_000)))
        ],
    )  # fmt: skip
    _insert(
        wh,
        "mart.mrr_changes",
        [
            {"workspace_id": USD_WS, "customer_id": c, "currency": cur, "day": day,
             "mrr_micros": round(v), "cmrr_micros": round(v), "active_subscriptions": 1,
             "mrr_exact": _s(v), "cmrr_exact": _s(v), "by_plan_json": {p: _s(v)},
             "churn_reason": None}
            for c, cur, v, p in (
                ("cus_j", "jpy", Fraction(9_999_500_000), "price_yen"),  # 9,999.5 yen
                ("cus_u", "usd", Fraction(49_995_000), "price_usd"),  # 49.995 USD
            )
        ],
    )  # fmt: skip


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """A JPY reporting-currency workspace and a USD one with a JPY customer, on SQLite."""
    wh = Warehouse(f"sqlite:///{tmp_path_factory.mktemp('grain') / 'warehouse.sqlite'}")
    apply_migrations(wh)
    org = create_organization(wh, "Org", org_id="org1")
    create_workspace(wh, org, "Yen KK", workspace_id=JPY_WS, reporting_currency="jpy")
    create_workspace(wh, org, "Dollar Inc", workspace_id=USD_WS)
    _seed_jpy(wh)
    _seed_usd(wh)
    yield wh
    wh.dispose()


def _rows(wh: Warehouse, ws: str, report_type: str, start: date, end: date) -> list[list[str]]:
    table = build_csv(wh, workspace(wh, ws), report_type, start, end)
    return list(csv.reader(io.StringIO(table.render().decode(), newline="")))[1:]


def test_jpy_mrr_breakdown_is_whole_yen_and_foots(wh: Warehouse) -> None:
    rows = _rows(wh, JPY_WS, "mrr_breakdown", SEP1, SEP3)
    # Opening 12,345.5 -> 12,346 and closing 12,846.1 -> 12,846, each rounded once; the moves
    # (1,000.4, -500.4, 0.6) are footed to the 500 between them: fx's own 1 gives way.
    # The plans foot to the company row: 5,000.25 + 7,345.25 shows as 5,001 + 7,345 = 12,346.
    # The seed has no per-customer plan changes, so the movements are unattributed and each
    # plan's change is its FX remainder; every column and row still foots in whole yen.
    assert rows == [
        ["price_basic", "5001", "0", "0", "0", "0", "0", "1000", "1000", "6001", "JPY"],
        ["price_pro", "7345", "0", "0", "0", "0", "0", "-500", "-500", "6845", "JPY"],
        ["(unattributed)", "0", "1000", "0", "0", "0", "-500", "-500", "0", "0", "JPY"],
        ["All plans", "12346", "1000", "0", "0", "0", "-500", "0", "500", "12846", "JPY"],
    ]


def test_jpy_revenue_trend_is_whole_yen_and_foots(wh: Warehouse) -> None:
    rows = _rows(wh, JPY_WS, "revenue_trend", date(2026, 8, 1), SEP3)
    # Revenue 7,000.5 + 120.9 = 7,121.4 -> 7,121: August's half yen gives way (7,001 -> 7,000).
    assert rows == [
        ["2026-08", "7000", "0", "1000", "6000", "", "JPY"],
        ["2026-09", "121", "-6", "35", "86", "12846", "JPY"],
        ["Total", "7121", "-6", "1035", "6086", "", "JPY"],
    ]


def test_jpy_invoice_summary_is_whole_yen_and_usd_keeps_cents(wh: Warehouse) -> None:
    rows = _rows(wh, JPY_WS, "invoice_summary", SEP1, SEP3)
    money = [[r[0], *r[8:14]] for r in rows]
    assert money == [
        ["INV-1", "12000", "1200", "1080", "11880", "11880", "JPY"],
        ["INV-2", "4999", "0", "0", "4999", "0", "JPY"],
        ["Total", "16999", "1200", "1080", "16879", "11880", "JPY"],
        ["INV-3", "49.99", "0.00", "0.00", "49.99", "49.99", "USD"],
        ["Total", "49.99", "0.00", "0.00", "49.99", "49.99", "USD"],
    ]


def test_mrr_after_of_a_jpy_customer_is_whole_yen(wh: Warehouse) -> None:
    rows = _rows(wh, USD_WS, "mrr_movements", SEP1, SEP3)
    # Amount is in the workspace's USD (cents); MRR After in the customer's own currency.
    assert [r[:2] + r[3:9] for r in rows[:2]] == [
        ["2026-09-02", "cus_j", "new", "", "66.67", "USD", "10000", "JPY"],
        ["2026-09-02", "cus_u", "new", "", "50.00", "USD", "50.00", "USD"],
    ]
    assert rows[2][5] == "116.67"  # 66.674999 + 49.995 = 116.669999


def test_jpy_table_pdf_prints_whole_yen(wh: Warehouse, tmp_path: Path) -> None:
    ws = workspace(wh, JPY_WS)
    table = build_csv(wh, ws, "mrr_breakdown", SEP1, SEP3)
    html = pdf_tables.render_html(
        pdf_tables.table_report(ws, "mrr_breakdown", SEP1, SEP3, None, table)
    )
    assert ">12,346<" in html and ">12,846<" in html and "Amounts in JPY" in html
    assert "12,346.00" not in html and "Amounts have no decimals" in html
    assert Decimal("12346") == Decimal(table.rows[-1][1])  # type: ignore[arg-type]
    # Invoices in yen and in dollars: the note names neither's decimals alone.
    invoices = build_csv(wh, ws, "invoice_summary", SEP1, SEP3)
    html = pdf_tables.render_html(
        pdf_tables.table_report(ws, "invoice_summary", SEP1, SEP3, None, invoices)
    )
    assert ">16,999<" in html and ">49.99<" in html
    assert "Amounts have the decimals of their currency" in html

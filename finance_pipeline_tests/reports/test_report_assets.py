"""Report assets and exports end to end on both databases: the CSVs equal the marts they read."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from finance_pipeline.lib.money import MICROS_PER_CENT, foot, foot_roll_forward
from finance_pipeline.reports import exports, pdf_tables
from finance_pipeline.reports.assets import report_assets
from finance_pipeline.reports.exports import (
    EXPORT_TAG,
    MAX_EXPORT_RUNS,
    create_export,
    get_export,
    render_export,
    report_export_job,
    report_export_sensor,
)
from finance_pipeline.reports.render import REPORT_TYPES, ReportRequestError
from finance_pipeline.reports.store import list_entries
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.conftest import fresh_warehouse
from finance_pipeline_tests.dagster_runs import warehouse_resources

WS = "ws1"
SEPT = [date(2026, 9, 1) + timedelta(days=i) for i in range(30)]
AUG31 = date(2026, 8, 31)
# Exact MRR (reporting micros): an opening that is not a whole micro-unit, three movements.
OPENING = Fraction(450_000_001, 3)  # 150.000000333...
NEW_C = Fraction(49_995_000)  # cus_c new on 09-05 (49.995: a half cent)
EXP_A = Fraction(10_004_000)  # cus_a expansion on 09-10
CHURN_B = Fraction(50_000_000)  # cus_b churn on 09-20
MOVES = {5: ("new", NEW_C), 10: ("expansion", EXP_A), 20: ("churn", CHURN_B)}
EVIL = '=HYPERLINK("http://x","y")'


def ts(d: date, hour: int = 12) -> int:
    return int(datetime(d.year, d.month, d.day, hour, tzinfo=UTC).timestamp())


def _insert(wh: Warehouse, table: str, rows: list[dict[str, Any]]) -> None:
    # Every row gets every column any row has (absent ones NULL): one executemany statement.
    keys = {k: None for r in rows for k in r}
    rows = [{**keys, **r} for r in rows]
    with wh.begin() as db:
        db.execute(sa.insert(wh.table(table)), rows)


def _stripe(**kw: Any) -> dict[str, Any]:
    return {"workspace_id": WS, "account_id": "acct_1", "livemode": False, "synced_at": 0, **kw}


def _s(x: Fraction) -> str:
    return f"{x.numerator}/{x.denominator}"


def seed(wh: Warehouse) -> None:
    """ws1 (usd, UTC) with September 2026 in every mart the reports read; ws2 has nothing."""
    org = create_organization(wh, "Org", org_id="org1")
    create_workspace(wh, org, "One", workspace_id=WS)
    create_workspace(wh, org, "Two", workspace_id="ws2")
    daily, mrr = [], OPENING
    for d in SEPT:
        kind, amount = MOVES.get(d.day, (None, Fraction(0)))
        prev = mrr
        mrr = prev + (-amount if kind == "churn" else amount)
        moves = dict.fromkeys(("new", "expansion", "reactivation", "contraction", "churn"), "0")
        moves["fx"] = "0"
        if kind:
            moves[kind] = _s(amount)
        daily.append(
            {"workspace_id": WS, "day": d, "currency": "usd", "mrr_micros": round(mrr),
             "cmrr_micros": round(mrr), "arr_micros": 12 * round(mrr), "active_subscriptions": 2,
             "paying_customers": 2, **{f"{k}_micros": round(Fraction(v)) for k, v in moves.items()},
             "new_customers": 0, "reactivated_customers": 0, "churned_customers": 0,
             "delinquent_churned_customers": 0, "skipped_currencies_json": [],
             "exact_json": {**moves, "mrr": _s(mrr), "cmrr": _s(mrr), "previous_mrr": _s(prev)}}
        )  # fmt: skip
    _insert(wh, "mart.mrr_daily", daily)
    # Every day's plans, as the engine keeps them: cus_b (basic) until its churn on 09-20, cus_c
    # (basic) from 09-05, cus_a (pro) expanding on 09-10.
    plan = []
    for d in [AUG31, *SEPT]:
        basic = (50_000_000 if d.day < 20 or d == AUG31 else 0) + (
            NEW_C if d.month == 9 and d.day >= 5 else 0
        )
        pro = OPENING - 50_000_000 + (EXP_A if d.month == 9 and d.day >= 10 else 0)
        plan += [(d, "price_basic", Fraction(basic)), (d, "price_pro", pro)]
    _insert(
        wh,
        "mart.mrr_plan_daily",
        [
            {"workspace_id": WS, "day": d, "plan_id": p, "currency": "usd",
             "mrr_micros": round(v), "subscriptions": 1, "mrr_exact": _s(v)}
            for d, p, v in plan
        ],
    )  # fmt: skip
    _insert(
        wh,
        "mart.mrr_movements",
        [
            {"workspace_id": WS, "customer_id": c, "day": date(2026, 9, day), "kind": kind,
             "amount_micros": round(a), "amount_exact": _s(a), "reason": r}
            for c, day, kind, a, r in (
                ("cus_c", 5, "new", NEW_C, None),
                ("cus_a", 10, "expansion", EXP_A, None),
                ("cus_b", 20, "churn", CHURN_B, "voluntary"),
            )
        ],
    )  # fmt: skip
    changes = [
        ("cus_a", date(2026, 8, 1), OPENING - 50_000_000, {"price_pro": OPENING - 50_000_000}),
        ("cus_b", date(2026, 8, 1), Fraction(50_000_000), {"price_basic": 50_000_000}),
        ("cus_c", date(2026, 9, 5), NEW_C, {"price_basic": NEW_C}),
        (
            "cus_a",
            date(2026, 9, 10),
            OPENING - 50_000_000 + EXP_A,
            {"price_pro": OPENING - 50_000_000 + EXP_A},
        ),
        ("cus_b", date(2026, 9, 20), Fraction(0), {}),
    ]
    _insert(
        wh,
        "mart.mrr_changes",
        [
            {"workspace_id": WS, "customer_id": c, "currency": "usd", "day": d,
             "mrr_micros": round(v), "cmrr_micros": round(v), "active_subscriptions": 1 if v else 0,
             "mrr_exact": _s(v), "cmrr_exact": _s(v),
             "by_plan_json": {k: _s(Fraction(x)) for k, x in p.items()}, "churn_reason": None}
            for c, d, v, p in changes
        ],
    )  # fmt: skip
    hist = [
        ("sub_c", "si_c", "cus_c", ts(date(2026, 9, 5)), None),
        ("sub_b", "si_b", "cus_b", ts(date(2026, 8, 1)), ts(date(2026, 9, 20))),
        ("sub_a", "si_a1", "cus_a", ts(date(2026, 8, 1)), ts(date(2026, 9, 10))),
        ("sub_a", "si_a2", "cus_a", ts(date(2026, 9, 10)), None),
    ]
    _insert(
        wh,
        "core.subscription_history",
        [
            {"workspace_id": WS, "subscription_id": s, "valid_from": f, "item_id": i,
             "valid_to": t, "customer_id": c, "currency": "usd", "status": "active",
             "pause_collection": False, "cancel_scheduled": False, "discounts_json": []}
            for s, i, c, f, t in hist
        ],
    )  # fmt: skip
    _insert(
        wh,
        "mart.revenue_daily",
        [
            {"workspace_id": WS, "day": d, "currency": "usd", "gross_revenue_micros": g,
             "manual_revenue_micros": 0, "refunds_micros": r, "expenses_micros": e,
             "fees_micros": 0, "one_time_expenses_micros": 0, "net_micros": g - e,
             "net_revenue_micros": g + r, "skipped_currencies_json": {}}
            for d, g, r, e in (
                (date(2026, 8, 15), 7_000_000, 0, 1_000_000),
                (date(2026, 9, 2), 100_004_000, -5_000_000, 30_003_000),
                (date(2026, 9, 3), 20_003_000, 0, 4_001_000),
            )
        ],
    )  # fmt: skip
    _insert(
        wh,
        "mart.customer_margins_monthly",
        [
            {"workspace_id": WS, "month": "2026-09", "customer_key": c, "stripe_customer_id": c,
             "customer_name": n, "tag_value": t, "revenue_micros": rv, "cost_micros": co,
             "margin_micros": rv - co, "margin_percent": p, "health_tier": tier,
             "projected_margin_percent": None, "projected_tier_worsening": False,
             "budget_suggestion_micros": None, "sort_order": i, "sparkline_json": [],
             "row_json": {}}
            for i, (c, n, t, rv, co, p, tier) in enumerate(
                (
                    ("cus_a", EVIL, "acme", 100_005_000, 50_000_000, "50.0025", "healthy"),
                    ("cus_b", "Beta", None, 33_335_000, 30_000_000, "10.0044997749887494",
                     "critical"),
                )
            )
        ],
    )  # fmt: skip
    _insert(
        wh,
        "mart.customer_margins_summary_monthly",
        [
            {"workspace_id": WS, "month": "2026-09", "revenue_micros": 133_340_000,
             "cost_micros": 80_000_000, "blended_margin_percent": "40.0029998500074996",
             "critical_count": 1, "at_risk_count": 0, "untagged_cost_micros": 0,
             "unmapped_cost_micros": 0, "summary_json": {}, "unmatched_json": {},
             "computed_at": 0}
        ],
    )  # fmt: skip
    _insert(
        wh,
        "raw.stripe_customers",
        [
            _stripe(id="cus_a", name=EVIL, email=None, payload={}),
            _stripe(id="cus_b", name="Beta", email=None, payload={}),
            _stripe(id="cus_c", name=None, email="c@example.com", payload={}),
        ],
    )
    _insert(
        wh,
        "raw.stripe_invoices",
        [
            _stripe(id="in_1", customer="cus_a", subscription="sub_a", status="paid", currency="usd",
                    created=ts(date(2026, 9, 10)), paid_at=ts(date(2026, 9, 11)),
                    period_start=ts(date(2026, 9, 10)), period_end=ts(date(2026, 10, 10)),
                    subtotal=12000, total=11880, total_excluding_tax=10800, amount_paid=11880,
                    payload={"number": "-INV-0001", "total_discount_amounts": [{"amount": 1200}]}),
            _stripe(id="in_2", customer="cus_c", subscription="sub_c", status="open", currency="usd",
                    created=ts(date(2026, 9, 5)), subtotal=4999, total=4999,
                    total_excluding_tax=4999, amount_paid=0, payload={"number": "INV-0002"}),
            _stripe(id="in_3", customer="cus_c", status="draft", currency="usd",
                    created=ts(date(2026, 9, 6)), subtotal=1, total=1, total_excluding_tax=1,
                    amount_paid=0, payload={}),
            _stripe(id="in_4", customer="cus_b", subscription="sub_b", status="paid",
                    currency="usd", created=ts(date(2026, 8, 6)), subtotal=15000, total=15000,
                    total_excluding_tax=15000, amount_paid=15000, payload={}),
            # sub_b's cancellation credit, still a draft (so not in invoice_summary).
            _stripe(id="in_5", customer="cus_b", subscription="sub_b", status="draft",
                    currency="usd", created=ts(date(2026, 9, 20)), subtotal=-2500, total=-2500,
                    total_excluding_tax=-2500, amount_paid=0, payload={}),
        ],
    )  # fmt: skip
    _insert(
        wh,
        "raw.stripe_invoice_lines",
        [
            # cus_a's upgrade on 09-10: the new item's period and the old item's unused time.
            _stripe(id="il_1", invoice="in_1", price="price_pro", amount=12000, currency="usd",
                    subscription="sub_a", subscription_item="si_a2", proration=False,
                    period_start=ts(date(2026, 9, 10)), period_end=ts(date(2026, 10, 10)),
                    payload={}),
            _stripe(id="il_1c", invoice="in_1", price="price_pro", amount=-1000, currency="usd",
                    subscription="sub_a", subscription_item="si_a1", proration=True,
                    period_start=ts(date(2026, 9, 10)), period_end=ts(date(2026, 10, 1)),
                    payload={}),
            # A one-off invoice item on the same invoice bills no subscription state.
            _stripe(id="il_1x", invoice="in_1", price="price_setup", amount=0, currency="usd",
                    subscription="sub_a", subscription_item=None, proration=False,
                    period_start=ts(date(2026, 9, 10)), period_end=ts(date(2026, 9, 10)),
                    payload={}),
            # cus_c's first period from 09-05; the next one starts after the range.
            _stripe(id="il_2", invoice="in_2", price="price_basic", amount=4999, currency="usd",
                    subscription="sub_c", subscription_item="si_c", proration=False,
                    period_start=ts(date(2026, 9, 5)), period_end=ts(date(2026, 10, 5)),
                    payload={}),
            # sub_b: a quarter billed on 08-06 (after an older prorated stub), cancelled on 09-20
            # with a credit for the unused time.
            _stripe(id="il_4a", invoice="in_4", price="price_basic", amount=1000, currency="usd",
                    subscription="sub_b", subscription_item="si_b", proration=True,
                    period_start=ts(date(2026, 8, 1)), period_end=ts(date(2026, 8, 6)),
                    payload={}),
            _stripe(id="il_4b", invoice="in_4", price="price_basic", amount=14000,
                    currency="usd", subscription="sub_b", subscription_item="si_b",
                    proration=False, period_start=ts(date(2026, 8, 6)),
                    period_end=ts(date(2026, 11, 6)), payload={}),
            _stripe(id="il_5", invoice="in_5", price="price_basic", amount=-2500, currency="usd",
                    subscription="sub_b", subscription_item="si_b", proration=True,
                    period_start=ts(date(2026, 9, 20)), period_end=ts(date(2026, 11, 6)),
                    payload={}),
        ],
    )  # fmt: skip
    # Events about sub_c (created) and its invoice, and sub_b (deleted) and its old invoice, on the
    # movement days; others that must not show. cus_a's upgrade was loaded without events.
    _insert(
        wh,
        "raw.stripe_events",
        [
            {**_stripe(id=e, created=t, type=k, object_type=o, object_id=i, payload={}),
             "workspace_id": w}
            for e, w, t, k, o, i in (
                ("evt_c1", WS, ts(date(2026, 9, 5), 9), "customer.subscription.created",
                 "subscription", "sub_c"),
                ("evt_c2", WS, ts(date(2026, 9, 5), 9), "invoice.created", "invoice", "in_2"),
                ("evt_c0", WS, ts(date(2026, 9, 5), 23), "invoice.payment_failed", "invoice",
                 "in_2"),
                ("evt_c3", WS, ts(date(2026, 9, 6)), "customer.subscription.updated",
                 "subscription", "sub_c"),
                ("evt_cd", WS, ts(date(2026, 9, 5)), "customer.discount.created", "discount",
                 "di_c"),
                ("evt_x", "ws2", ts(date(2026, 9, 5)), "customer.subscription.created",
                 "subscription", "sub_c"),
                ("evt_b1", WS, ts(date(2026, 9, 20)), "customer.subscription.deleted",
                 "subscription", "sub_b"),
                ("evt_b2", WS, ts(date(2026, 9, 20), 13), "invoice.created", "invoice", "in_5"),
                ("evt_b0", WS, ts(date(2026, 9, 20), 11), "invoice.updated", "invoice", "in_4"),
                ("evt_b9", WS, ts(date(2026, 8, 20)), "customer.subscription.updated",
                 "subscription", "sub_b"),
            )
        ],
    )  # fmt: skip
    _insert(
        wh,
        "raw.stripe_charges",
        [
            _stripe(id="ch_f", customer="cus_c", amount=4999, currency="usd", status="failed",
                    created=ts(date(2026, 9, 5)), failure_code="card_declined",
                    payment_intent="pi_f", paid=False,
                    payload={"failure_message": "@Your card was declined."}),
            _stripe(id="ch_ok", customer="cus_a", amount=11880, currency="usd",
                    status="succeeded", created=ts(date(2026, 9, 11)), paid=True, payload={}),
        ],
    )  # fmt: skip
    _insert(
        wh,
        "raw.stripe_invoice_payments",
        [_stripe(id="inpay_1", invoice="in_2", charge="ch_f", amount_paid=0, payload={})],
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """One seeded warehouse per dialect, shared by the tests of this module."""
    with fresh_warehouse(request.param, tmp_path_factory.mktemp("reports"), request) as wh:
        seed(wh)
        yield wh


def assert_breakdown_foots(rows: list[list[str]]) -> None:
    """An mrr_breakdown CSV (header first) foots: each plan column adds up to the `All plans`
    row, and every row rolls forward (opening + movements = closing, net = closing - opening)."""
    plans, company = rows[1:-1], rows[-1]
    assert company[0] == "All plans"
    for col in range(1, 10):
        assert sum(Decimal(r[col]) for r in plans) == Decimal(company[col]), rows[0][col]
    for r in rows[1:]:
        amounts = [Decimal(x) for x in r[1:10]]
        assert sum(amounts[:7]) == amounts[8], r
        assert amounts[8] - amounts[0] == amounts[7], r


def _clear_store(wh: Warehouse) -> None:
    with wh.begin() as db:
        db.execute(wh.text("DELETE FROM app.report_exports"))
        db.execute(wh.text("DELETE FROM app.report_catalogue"))


def _read(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def _dec(micros: int) -> Decimal:
    return Decimal(micros) / 1_000_000


def _materialize_september(wh: Warehouse) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        report_assets,
        partition_key="2026-09-01",
        resources=warehouse_resources(wh),
        instance=dg.DagsterInstance.ephemeral(),
    )


def test_monthly_report_assets_equal_the_marts(seeded: Warehouse) -> None:
    _clear_store(seeded)
    result = _materialize_september(seeded)
    assert result.success
    root = get_settings().resolved_reports_dir
    entries = {
        (e.key.workspace_id, e.key.report_type): e
        for e in list_entries(seeded, WS)
        if e.key.format == "csv"
    }
    # ws2 has no MRR marts for September: no mrr_breakdown (listed as skipped), empty others,
    # each a CSV and its table PDF.
    assert sorted(e.key.format for e in list_entries(seeded, "ws2")) == ["csv"] * 5 + ["pdf"] * 5
    pdfs = {e.key.report_type: e for e in list_entries(seeded, WS) if e.key.format == "pdf"}
    assert sorted(pdfs) == sorted(REPORT_TYPES)
    assert pdfs["margins"].path == "ws1/2026-09/margins-2026-09.pdf"
    skipped = result.asset_materializations_for_node("reports__mrr_breakdown")[0].metadata
    assert "ws2 2026-09" in skipped["skipped"].value
    files = {t: _read(root / e.path) for (_, t), e in entries.items()}
    assert entries[(WS, "margins")].path == "ws1/2026-09/margins-2026-09.csv"

    # mrr_breakdown: the company row is the footed roll-forward of mart.mrr_daily's exact values.
    closing = OPENING + NEW_C + EXP_A - CHURN_B
    signed = {"new": NEW_C, "expansion": EXP_A, "reactivation": 0, "contraction": 0,
              "churn": -CHURN_B, "fx": 0}  # fmt: skip
    o, m, c = foot_roll_forward(OPENING, signed, closing, MICROS_PER_CENT)
    mrr = files["mrr_breakdown"]
    assert mrr[-1] == ["All plans", *(f"{_dec(v):.2f}" for v in (o, *m.values())),
                       f"{_dec(c - o):.2f}", f"{_dec(c):.2f}", "USD"]  # fmt: skip
    assert mrr[-1][1:4] == ["150.00", "50.00", "10.00"]  # 49.995 -> 50.00 and footed
    # Plan rows (§5 "Movements by plan"): cus_c's new and cus_b's churn in price_basic, cus_a's
    # expansion in price_pro; no FX in a USD workspace.
    assert mrr[1:-1] == [
        ["price_basic", "50.00", "50.00", "0.00", "0.00", "0.00", "-50.00", "0.00", "0.00",
         "50.00", "USD"],
        ["price_pro", "100.00", "0.00", "10.00", "0.00", "0.00", "0.00", "0.00", "10.00",
         "110.00", "USD"],
    ]  # fmt: skip
    assert_breakdown_foots(mrr)

    # revenue_trend: sums of mart.revenue_daily, MRR on the last day.
    assert files["revenue_trend"][1:] == [
        ["2026-09", "120.01", "-5.00", "34.00", "86.01", f"{_dec(c):.2f}", "USD"],
        ["Total", "120.01", "-5.00", "34.00", "86.01", "", "USD"],
    ]

    # margins: the margins API columns, neutralized name, footed revenue and cost.
    mg = files["margins"]
    assert mg[0] == ["Customer", "Stripe ID", "Tag Value", "Revenue ($)", "Cost ($)",
                     "Margin (%)", "Margin ($)", "Health Tier"]  # fmt: skip
    rev = foot([100_005_000, 33_335_000])
    assert mg[1] == ["'" + EVIL, "cus_a", "acme", f"{_dec(rev[0]):.2f}", "50.00", "50.00",
                     f"{_dec(rev[0] - 50_000_000):.2f}", "healthy"]  # fmt: skip
    assert mg[2][3:7] == [f"{_dec(rev[1]):.2f}", "30.00", "10.00", f"{_dec(rev[1]) - 30:.2f}"]
    assert mg[3] == ["Total", "", "", "133.34", "80.00", "40.00", "53.34", ""]
    assert sum(Decimal(r[3]) for r in mg[1:3]) == Decimal("133.34")

    # invoice_summary: drafts and other months left out; amounts from the Stripe minor units.
    inv = files["invoice_summary"]
    assert [r[14] for r in inv[1:-1]] == ["in_2", "in_1"]
    assert inv[2][:4] == ["'-INV-0001", "cus_a", "'" + EVIL, "paid"]
    assert inv[2][4:8] == ["2026-09-10", "2026-09-11", "2026-09-10", "2026-10-10"]
    assert inv[2][8:14] == ["120.00", "12.00", "10.80", "118.80", "118.80", "USD"]
    assert inv[-1][8:14] == ["169.99", "12.00", "10.80", "168.79", "118.80", "USD"]

    # failed_payments: the failed charge with its invoice, message neutralized.
    fp = files["failed_payments"]
    assert fp[1] == ["2026-09-05", "cus_c", "c@example.com", "49.99", "USD", "card_declined",
                     "'@Your card was declined.", "in_2", "ch_f", "pi_f"]  # fmt: skip
    assert fp[2][:5] == ["Total", "", "1 failed payments", "49.99", "USD"]

    # mrr_movements: one row per mart.mrr_movements row, signed, traced to subscriptions.
    mv = files["mrr_movements"]
    assert [r[:6] for r in mv[1:-1]] == [
        ["2026-09-05", "cus_c", "c@example.com", "new", "", "50.00"],
        ["2026-09-10", "cus_a", "'" + EVIL, "expansion", "", "10.00"],
        ["2026-09-20", "cus_b", "Beta", "churn", "voluntary", "-50.00"],
    ]
    assert mv[0][10:] == ["Stripe Subscription IDs", "Stripe Subscription Item IDs",
                          "Stripe Event IDs", "Stripe Invoice Line IDs"]  # fmt: skip
    # The Stripe facts of each movement's day, oldest first: the new subscription's event, its
    # invoice's events and first line; the upgrade's lines (no event synced: empty); the churn's
    # deletion and invoice events, the quarter's line that billed the lost MRR and the credit.
    assert mv[1][7:] == ["50.00", "USD", "price_basic", "sub_c", "si_c", "evt_c1 evt_c2 evt_c0",
                         "il_2"]  # fmt: skip
    assert mv[2][9:] == ["price_pro", "sub_a", "si_a1 si_a2", "", "il_1 il_1c"]
    assert mv[3][7:] == ["0.00", "USD", "price_basic", "sub_b", "si_b", "evt_b0 evt_b1 evt_b2",
                         "il_4b il_5"]  # fmt: skip
    assert mv[-1][5] == "10.00" and sum(Decimal(r[5]) for r in mv[1:-1]) == Decimal("10.00")
    assert mv[-1] == ["Total", "", "3 movements", "", "", "10.00", "USD"] + [""] * 7

    # Metadata shows each file; a re-run with the same data stores nothing new.
    mats = result.asset_materializations_for_node("reports__margins")
    assert mats[0].metadata["files"].value == 2
    assert "margins-2026-09.csv" in mats[0].metadata["reports"].value
    before = list_entries(seeded, WS)
    assert _materialize_september(seeded).success
    assert list_entries(seeded, WS) == before


def test_a_full_reports_folder_fails_the_run_clearly_and_stores_nothing(
    seeded: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full (or a read-only folder): the report run fails with a message naming the file,
    the folder and the reason; the catalogue has no row and the folder no file; the next run,
    with room again, stores every report."""
    import errno

    from finance_pipeline.reports import store

    _clear_store(seeded)
    root = get_settings().resolved_reports_dir
    shutil.rmtree(root, ignore_errors=True)
    for err in (errno.ENOSPC, errno.EROFS):

        def refuse(_fd: int, err: int = err) -> None:
            raise OSError(err, os.strerror(err))

        with monkeypatch.context() as patched:
            patched.setattr(store.os, "fsync", refuse)
            result = dg.materialize(
                report_assets,
                partition_key="2026-09-01",
                resources=warehouse_resources(seeded),
                instance=dg.DagsterInstance.ephemeral(),
                raise_on_error=False,
            )
            assert not result.success
            [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][:1]
            message = str(failure.event_specific_data.error_display_string)
            assert os.strerror(err) in message and str(root) in message, message
            assert "nothing was stored" in message
            assert seeded.scalar("SELECT COUNT(*) FROM app.report_catalogue") == 0
            assert [p for p in root.rglob("*") if p.is_file()] == []
    result = _materialize_september(seeded)
    assert result.success
    stored = seeded.scalar("SELECT COUNT(*) FROM app.report_catalogue")
    assert stored and stored == len([p for p in root.rglob("*") if p.is_file()])


def test_export_sensor_and_op(seeded: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_store(seeded)
    resources = warehouse_resources(seeded)
    instance = dg.DagsterInstance.ephemeral()
    csv_id = create_export(
        seeded, WS, "mrr_breakdown", "csv", date(2026, 9, 3), date(2026, 9, 12), "price_pro"
    )
    pdf_id = create_export(seeded, WS, "revenue_trend", "pdf", date(2026, 8, 1), date(2026, 9, 30))
    broken_id = create_export(
        seeded, WS, "failed_payments", "pdf", date(2026, 9, 1), date(2026, 9, 30)
    )
    with pytest.raises(ReportRequestError):
        create_export(seeded, WS, "revenue_trend", "csv", date(2026, 9, 2), date(2026, 9, 1))
    with pytest.raises(ReportRequestError):
        create_export(seeded, "ws_nope", "revenue_trend", "csv", date(2026, 9, 1), date(2026, 9, 2))
    real_render = pdf_tables.render_table_pdf

    def render(report: pdf_tables.TableReport) -> bytes:
        if report.report_type == "failed_payments":
            raise RuntimeError("weasyprint ran out of fonts")
        return real_render(report)

    monkeypatch.setattr(pdf_tables, "render_table_pdf", render)

    ctx = dg.build_sensor_context(instance=instance, resources=resources)
    result = report_export_sensor(ctx)
    assert sorted(r.run_key for r in result.run_requests) == sorted([csv_id, pdf_id, broken_id])
    for req in result.run_requests:
        run = report_export_job.execute_in_process(
            run_config=req.run_config, resources=resources, instance=instance, raise_on_error=False
        )
        assert run.success is (req.run_key != broken_id)
    done = get_export(seeded, csv_id)
    assert done["status"] == "completed" and done["error"] is None
    root = get_settings().resolved_reports_dir
    path = root / done["path"]
    assert done["path"] == "ws1/2026-09/mrr_breakdown-2026-09-03_2026-09-12-plan-price_pro.csv"
    # The filtered report shows the plan's own movements (cus_a's expansion on 09-10).
    assert _read(path)[1:] == [
        ["price_pro", "100.00", "0.00", "10.00", "0.00", "0.00", "0.00", "0.00", "10.00",
         "110.00", "USD"],
    ]  # fmt: skip
    # The PDF export: the table PDF in the store, catalogued as pdf with the export id.
    pdf = get_export(seeded, pdf_id)
    assert pdf["status"] == "completed" and pdf["error"] is None
    assert pdf["path"] == "ws1/2026-08/revenue_trend-2026-08-01_2026-09-30.pdf"
    assert (root / pdf["path"]).read_bytes().startswith(b"%PDF-")
    [entry] = [e for e in list_entries(seeded, WS) if e.key.format == "pdf"]
    assert entry.export_id == pdf_id and entry.id == pdf["catalogue_id"]
    # A render that fails marks its request failed with the reason (and fails the run).
    failed = get_export(seeded, broken_id)
    assert failed["status"] == "failed" and failed["error"] == "weasyprint ran out of fonts"
    assert failed["catalogue_id"] is None
    # Nothing is pending any more; a re-executed op changes nothing.
    assert isinstance(report_export_sensor(ctx), dg.SkipReason)
    assert render_export is not None
    run = report_export_job.execute_in_process(
        run_config={"ops": {"render_export": {"config": {"export_id": csv_id}}}},
        resources=resources,
        instance=instance,
    )
    assert run.success and get_export(seeded, csv_id) == done


def test_export_whose_run_ended_without_rendering_runs_again_then_fails(
    seeded: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the soak (bench/soak.py): under load the daemon's launch of an export run timed out
    (the run failed before its op ran) and the request stayed `processing` for ever, its run key
    spent. Now the sensor runs it again under a new key, and after MAX_EXPORT_RUNS runs that
    ended without rendering it, fails it with the reason instead of leaving the client polling."""
    _clear_store(seeded)
    resources = warehouse_resources(seeded)
    instance = dg.DagsterInstance.ephemeral()
    ctx = dg.build_sensor_context(instance=instance, resources=resources)
    export_id = create_export(
        seeded, WS, "mrr_breakdown", "csv", date(2026, 9, 1), date(2026, 9, 30)
    )

    def lost(*_a: Any, **_k: Any) -> dict[str, Any]:
        raise RuntimeError("run worker lost before the export was rendered")

    keys = []
    for _ in range(MAX_EXPORT_RUNS):
        [req] = report_export_sensor(ctx).run_requests
        keys.append(req.run_key)
        assert req.tags == {EXPORT_TAG: export_id}
        with monkeypatch.context() as patched:
            patched.setattr(exports, "run_export", lost)
            run = report_export_job.execute_in_process(
                run_config=req.run_config, resources=resources, instance=instance,
                tags=req.tags, raise_on_error=False,
            )  # fmt: skip
        assert not run.success
        assert get_export(seeded, export_id)["status"] == "processing"
    assert keys == [export_id, f"{export_id}:2", f"{export_id}:3"]
    # The third ended run: no fourth; the request fails, naming the last run.
    assert isinstance(report_export_sensor(ctx), dg.SkipReason)
    failed = get_export(seeded, export_id)
    assert failed["status"] == "failed" and failed["catalogue_id"] is None
    assert run.run_id in failed["error"] and "ask for the export again" in failed["error"]

    # A run still queued or going: no second run of the same request.
    other = create_export(seeded, WS, "revenue_trend", "csv", date(2026, 9, 1), date(2026, 9, 30))
    instance.create_run_for_job(
        report_export_job,
        run_config={"ops": {"render_export": {"config": {"export_id": other}}}},
        tags={EXPORT_TAG: other},
    )
    assert isinstance(report_export_sensor(ctx), dg.SkipReason)
    # That run ends without rendering it; the second run renders it.
    instance.report_run_failed(
        instance.get_runs(filters=dg.RunsFilter(tags={EXPORT_TAG: other}))[0]
    )
    [req] = report_export_sensor(ctx).run_requests
    assert req.run_key == f"{other}:2"
    run = report_export_job.execute_in_process(
        run_config=req.run_config, resources=resources, instance=instance, tags=req.tags
    )
    assert run.success and get_export(seeded, other)["status"] == "completed"
    assert isinstance(report_export_sensor(ctx), dg.SkipReason)

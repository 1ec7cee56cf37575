"""Recognized revenue, customer margins and default forecasts through Dagster on hand-built rows
(SQLite and PostgreSQL): exact spreads, tier boundaries, unmapped tags, idempotent re-runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from finance_pipeline.forecasting.assets import forecasts
from finance_pipeline.lib.money import round_half_away
from finance_pipeline.margins.assets import customer_margins_monthly, recognized_revenue_monthly
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.conftest import fresh_warehouse

PARTITION = "2026-09-01"


def ts(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp())


def _insert(wh: Warehouse, table: str, rows: list[dict[str, Any]]) -> None:
    with wh.begin() as db:
        db.execute(sa.insert(wh.table(table)), rows)


def _stripe(ws: str, **kw: Any) -> dict[str, Any]:
    return {"workspace_id": ws, "account_id": "acct_1", "livemode": False, "synced_at": 0, **kw}


def _invoice(ws: str, inv: str, customer: str, status: str, paid_day: date) -> dict[str, Any]:
    paid = ts(paid_day.year, paid_day.month, paid_day.day) + 3600
    return _stripe(
        ws, id=inv, created=paid, customer=customer, status=status, currency="usd",
        paid_at=paid if status == "paid" else None, payload={},
    )  # fmt: skip


def _line(ws: str, lid: str, inv: str, amount: int, start: int | None, end: int | None,
          discounts: int = 0, exclusive_tax: int = 0) -> dict[str, Any]:  # fmt: skip
    payload = {
        "discount_amounts": [{"amount": discounts, "discount": "di_1"}] if discounts else [],
        "taxes": [{"amount": exclusive_tax, "tax_behavior": "exclusive"}] if exclusive_tax else [],
    }
    return _stripe(
        ws, id=lid, invoice=inv, amount=amount, currency="usd", period_start=start,
        period_end=end, proration=False, payload=payload,
    )  # fmt: skip


def _ledger(ws: str, eid: str, day: date, kind: str, amount: int, *, customer: str | None,
            source: str, category: str | None = None,
            subtype: str = "recurring_expense") -> dict[str, Any]:  # fmt: skip
    return {
        "workspace_id": ws, "entry_id": eid, "day": day, "occurred_at": None, "kind": kind,
        "subtype": subtype, "category": category, "customer_id": customer,
        "amount_micros": amount, "currency": "usd", "amount_reporting_micros": amount,
        "reporting_currency": "usd", "fx_rate": "1", "source_table": source, "source_id": eid,
    }  # fmt: skip


def _mrr_day(ws: str, day: date, mrr: int, paying: int, new: int = 0, churned: int = 0) -> dict:
    zero = dict.fromkeys(
        ("expansion_micros", "reactivation_micros", "contraction_micros", "churn_micros",
         "fx_micros", "new_customers", "reactivated_customers", "delinquent_churned_customers"),
        0,
    )  # fmt: skip
    return {
        "workspace_id": ws, "day": day, "currency": "usd", "mrr_micros": mrr, "cmrr_micros": mrr,
        "arr_micros": 12 * mrr, "active_subscriptions": paying, "paying_customers": paying,
        "new_micros": new, "churned_customers": churned, "skipped_currencies_json": {},
        "exact_json": {}, **zero,
    }  # fmt: skip


def seed(wh: Warehouse) -> None:
    """Workspace ws1 (UTC, usd, cash 1,000,000.00) with the scenario below; ws_empty has nothing.

    September 2026: cus_a 100.00 revenue (120.00 line - 20.00 discount) vs 50.00 cost via manual
    tag "acme" (exactly 50 %); cus_b 100.00 (no period: paid day) vs 80.00 via exact-id tag (exactly
    20 %, auto-accepted by the workspace switch); cus_split 0.01 over Sep 29 - Oct 1 (2 days Sep,
    1 day Oct); cus_c cost 5.00 via exact-id tag, no revenue;
    tag "mystery" unmapped (7.00, 42 requests); an untagged COGS cost record 3.00; an open invoice
    (ignored) and a refund of cus_b on Oct 3 (negative, own day).
    """
    org = create_organization(wh, "o", org_id="o")
    # Exact-id auto matches (tag == Stripe id, confidence 1) are accepted by the workspace switch.
    create_workspace(
        wh,
        org,
        "w",
        workspace_id="ws1",
        cash_on_hand_micros=1_000_000_000_000,
        settings={"mapping_auto_accept_confidence": 1},
    )
    create_workspace(wh, org, "e", workspace_id="ws_empty")
    ws = "ws1"
    _insert(
        wh,
        "raw.stripe_customers",
        [
            _stripe(ws, id=c, name=n, email=None, deleted=False, payload={})
            for c, n in (
                ("cus_a", "Acme"),
                ("cus_b", "Beta"),
                ("cus_c", "Cee"),
                ("cus_split", "Split"),
            )
        ],
    )
    _insert(
        wh,
        "raw.stripe_invoices",
        [
            _invoice(ws, "in_a", "cus_a", "paid", date(2026, 9, 1)),
            _invoice(ws, "in_b", "cus_b", "paid", date(2026, 9, 10)),
            _invoice(ws, "in_s", "cus_split", "paid", date(2026, 9, 29)),
            _invoice(ws, "in_open", "cus_a", "open", date(2026, 9, 5)),
        ],
    )
    _insert(
        wh,
        "raw.stripe_invoice_lines",
        [
            _line(ws, "il_a", "in_a", 12000, ts(2026, 9, 1), ts(2026, 10, 1), 2000, 500),
            _line(ws, "il_b", "in_b", 10000, None, None),
            _line(ws, "il_s", "in_s", 1, ts(2026, 9, 29), ts(2026, 10, 2)),
            _line(ws, "il_open", "in_open", 99900, ts(2026, 9, 1), ts(2026, 10, 1)),
        ],
    )
    sep = date(2026, 9, 12)
    _insert(
        wh,
        "core.ledger",
        [
            _ledger(
                ws, "u1", sep, "expense", 50_000_000, customer="acme", source="raw.usage_costs"
            ),
            _ledger(
                ws, "u2", sep, "expense", 80_000_000, customer="cus_b", source="raw.usage_costs"
            ),
            _ledger(
                ws, "u3", sep, "expense", 7_000_000, customer="mystery", source="raw.usage_costs"
            ),
            _ledger(
                ws,
                "c1",
                sep,
                "expense",
                5_000_000,
                customer="cus_c",
                source="raw.cost_records",
                category="INFRA",
            ),
            _ledger(
                ws,
                "c2",
                sep,
                "expense",
                3_000_000,
                customer=None,
                source="raw.cost_records",
                category="COGS",
            ),
            _ledger(
                ws,
                "r1",
                date(2026, 10, 3),
                "refund",
                -10_000_000,
                customer="cus_b",
                source="raw.stripe_refunds",
                subtype="stripe",
            ),
        ],
    )
    _insert(
        wh,
        "raw.usage_costs",
        [
            {
                "workspace_id": ws,
                "external_id": "u3",
                "customer_tag": "mystery",
                "model": "gpt",
                "cost_micros": 7_000_000,
                "currency": "usd",
                "request_count": 42,
                "occurred_on": sep,
                "source": "t",
                "ingested_at": 0,
            }
        ],
    )
    _insert(
        wh,
        "app.customer_mappings",
        [
            {
                "id": "map_1",
                "workspace_id": ws,
                "stripe_customer_id": "cus_a",
                "tag_key": "customer",
                "tag_value": "acme",
                "match_type": "manual",
                "status": "accepted",
                "confidence": None,
                "created_at": 0,
            }
        ],
    )
    # MRR history: +10 % a month from 100.00 (Jun 30); one logo of 10 churned in July.
    _insert(
        wh,
        "mart.mrr_daily",
        [
            _mrr_day(ws, date(2026, 6, 30), 100_000_000, 10),
            _mrr_day(ws, date(2026, 7, 15), 110_000_000, 10, new=10_000_000, churned=1),
            _mrr_day(ws, date(2026, 8, 15), 121_000_000, 10, new=11_000_000),
            _mrr_day(ws, date(2026, 9, 15), 133_100_000, 10, new=12_100_000),
        ],
    )


def _resources(wh: Warehouse) -> dict[str, Any]:
    return {"warehouse": WarehouseResource(url=wh.url.render_as_string(hide_password=False))}


def _run(wh: Warehouse) -> None:
    res = _resources(wh)
    assert dg.materialize([recognized_revenue_monthly], resources=res).success
    for asset in (customer_margins_monthly, forecasts):
        result = dg.materialize([asset], resources=res, partition_key=PARTITION)
        assert result.success
    checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert checks == []  # forecasts has no checks; margins' check is asserted below


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def _margins(wh: Warehouse, ws: str = "ws1") -> list[dict[str, Any]]:
    return wh.rows(
        "SELECT * FROM mart.customer_margins_monthly WHERE workspace_id = :w AND month = '2026-09'"
        " ORDER BY sort_order",
        w=ws,
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """One seeded and materialized warehouse per dialect, shared by the read-mostly tests."""
    with fresh_warehouse(request.param, tmp_path_factory.mktemp("margins"), request) as wh:
        seed(wh)
        _run(wh)
        yield wh


def test_recognized_revenue_spread_exactly(seeded: Warehouse) -> None:
    rows = seeded.rows(
        "SELECT customer_id, month, amount_micros, amount_reporting_micros, skipped_lines"
        " FROM core.recognized_revenue_monthly WHERE workspace_id = 'ws1'"
        " ORDER BY customer_id, month"
    )
    got = {(r["customer_id"], r["month"]): r["amount_reporting_micros"] for r in rows}
    assert got == {
        ("cus_a", "2026-09"): 100_000_000,  # discount off, exclusive tax not in amount
        ("cus_b", "2026-09"): 100_000_000,  # no period: the paid day
        ("cus_b", "2026-10"): -10_000_000,  # refund on its own day
        # 10_000 micros over 3 days: 6666.67 / 3333.33 -> largest remainder to September.
        ("cus_split", "2026-09"): 6_667,
        ("cus_split", "2026-10"): 3_333,
    }
    assert all(r["amount_micros"] == r["amount_reporting_micros"] for r in rows)
    assert all(r["skipped_lines"] == 0 for r in rows)


def test_margin_tiers_boundaries_and_summary(seeded: Warehouse) -> None:
    rows = _margins(seeded)
    by = {r["customer_key"]: r for r in rows}
    assert [r["customer_key"] for r in rows] == ["cus_a", "cus_b", "cus_split", "cus_c"]
    a, b, c, s = by["cus_a"], by["cus_b"], by["cus_c"], by["cus_split"]
    assert (a["revenue_micros"], a["cost_micros"], a["margin_micros"]) == (
        100_000_000,
        50_000_000,
        50_000_000,
    )
    assert (a["margin_percent"], a["health_tier"], a["tag_value"]) == ("50.00", "healthy", "acme")
    assert a["budget_suggestion_micros"] is None
    assert (b["margin_percent"], b["health_tier"], b["tag_value"]) == ("20.00", "at_risk", "cus_b")
    assert b["budget_suggestion_micros"] == 50_000_000
    assert (c["revenue_micros"], c["cost_micros"], c["margin_micros"]) == (0, 5_000_000, -5_000_000)
    assert (c["margin_percent"], c["health_tier"], c["budget_suggestion_micros"]) == (
        None,
        "critical",
        0,
    )
    assert (s["revenue_micros"], s["health_tier"], s["margin_percent"]) == (
        6_667,
        "healthy",
        "100.00",
    )
    spark = _json(a["sparkline_json"])
    assert spark[-1] == {"period": "2026-10", "marginPercent": "50.00", "projected": True}
    assert [p["period"] for p in spark] == ["2026-07", "2026-08", "2026-09", "2026-10"]
    assert _json(a["row_json"])["customerName"] == "Acme"
    [summ] = seeded.rows(
        "SELECT * FROM mart.customer_margins_summary_monthly WHERE workspace_id = 'ws1'"
    )
    assert summ["revenue_micros"] == 200_006_667 and summ["cost_micros"] == 135_000_000
    assert summ["blended_margin_percent"] == "32.50"
    assert (summ["critical_count"], summ["at_risk_count"]) == (1, 1)
    assert (summ["untagged_cost_micros"], summ["unmapped_cost_micros"]) == (3_000_000, 7_000_000)
    unmatched = _json(summ["unmatched_json"])
    assert unmatched["unmappedTagValues"] == [
        {"tagValue": "mystery", "totalCostMicrodollars": 7_000_000, "requestCount": 42}
    ]
    assert [u["stripeCustomerId"] for u in unmatched["unmatchedStripeCustomers"]] == ["cus_split"]


def test_rerun_is_idempotent_and_empty_workspace_has_no_rows(seeded: Warehouse) -> None:
    def snapshot() -> list[Any]:
        return [
            seeded.rows(f"SELECT * FROM {t} ORDER BY 1, 2, 3")
            for t in ("core.recognized_revenue_monthly", "mart.customer_margins_monthly")
        ] + [
            seeded.scalar("SELECT COUNT(*) FROM mart.forecasts"),
            seeded.scalar("SELECT COUNT(*) FROM mart.customer_margins_summary_monthly"),
        ]

    before = snapshot()
    _run(seeded)
    assert snapshot() == before
    assert before[2] == 1 and before[3] == 2
    assert _margins(seeded, "ws_empty") == []
    [empty] = seeded.rows(
        "SELECT * FROM mart.customer_margins_summary_monthly WHERE workspace_id = 'ws_empty'"
    )
    assert (empty["revenue_micros"], empty["cost_micros"], empty["blended_margin_percent"]) == (
        0,
        0,
        None,
    )


def test_default_forecast_from_history(seeded: Warehouse) -> None:
    [fc] = seeded.rows("SELECT * FROM mart.forecasts WHERE workspace_id = 'ws1'")
    assert fc["is_default"] and fc["horizon_months"] == 12
    assert str(fc["as_of"])[:10] == "2026-09-30"
    resp = _json(fc["response_json"])
    # g = 10 % each month; c = mean(10, 0, 0); gm only from September (the one month with
    # revenue): (200.006667 - 3.00 COGS) / 200.006667 = 98.50005...% -> 98.5001 (4 decimals).
    assert {k: Decimal(v) for k, v in resp["assumptions"].items()} == {
        "mrr_growth_pct": Decimal(10),
        "monthly_logo_churn_pct": Decimal("3.3333"),
        "gross_margin_pct": Decimal("98.5001"),
    }
    assert set(resp["variants"]) == {"base", "best", "worst"}
    assert resp["start"] == {
        "mrr_micros": 133_100_000,
        "cash_on_hand_cents": 100_000_000,
        "monthly_recurring_expenses_micros": 145_000_000,
    }
    assert resp["series"]["months"][0] == "2026-10" and len(resp["series"]["months"]) == 12
    g, c = Fraction(10, 100), Fraction(33333, 1_000_000)
    mrr1 = 133_100_000 * (1 + g - c)
    assert resp["series"]["base"]["mrr_cents"][0] == round_half_away(mrr1 / 10_000)
    gm = Fraction(985001, 1_000_000)
    cash1 = 1_000_000_000_000 + mrr1 * gm - 145_000_000
    assert resp["series"]["base"]["cash_cents"][0] == round_half_away(cash1 / 10_000)
    # The empty workspace has no cash: no default forecast, nothing else stored.
    assert seeded.scalar("SELECT COUNT(*) FROM mart.forecasts WHERE workspace_id = 'ws_empty'") == 0


def test_margin_check_blocks_and_writes_nothing_on_mismatch(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finance_pipeline.margins.assets as m

    seed(warehouse)
    res = _resources(warehouse)
    assert dg.materialize([recognized_revenue_monthly], resources=res).success
    real = m.compute_margins

    def broken(wh: Warehouse, ws: Any, month: str) -> dict[str, Any]:
        out = real(wh, ws, month)
        out["recognized_total"] += 1
        return out

    monkeypatch.setattr(m, "compute_margins", broken)
    result = dg.materialize(
        [customer_margins_monthly], resources=res, partition_key=PARTITION, raise_on_error=False
    )
    assert not result.success
    assert warehouse.scalar("SELECT COUNT(*) FROM mart.customer_margins_monthly") == 0


def test_margin_check_passes(seeded: Warehouse) -> None:
    result = dg.materialize(
        [customer_margins_monthly], resources=_resources(seeded), partition_key=PARTITION
    )
    [check] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert check.check_name == "margin_revenue_equals_recognized" and check.passed
    meta = result.asset_materializations_for_node("customer_margins_monthly")[0].metadata
    assert meta["critical_count"].value == 1 and meta["at_risk_count"].value == 1

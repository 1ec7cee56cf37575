"""Saved scenarios (docs/metrics.md §13) on SQLite and PostgreSQL: create/get/list/delete with
exact impact numbers against a stored forecast, validation errors (422), not-found (404),
Idempotency-Key replays and conflicts (409), re-running after the baseline is restated."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from finance_pipeline.forecasting.scenarios import (
    IdempotencyConflictError,
    NotFoundError,
    create_scenario,
    delete_scenario,
    get_scenario,
    list_scenarios,
    rerun_scenario,
)
from finance_pipeline.lib.forecast import ForecastValidationError, forecast
from finance_pipeline.margins.assets import _plain
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse

AS_OF = date(2026, 2, 28)
T0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
# Baseline: MRR 1,000,000 cents, cash 5,000,000, recurring expenses 1,200,000 a month,
# g = 5 %, c = 2 %, gm = 80 %, 3 months. Base MRR 1,030,000 / 1,060,900 / 1,092,727 and cash
# 4,624,000 / 4,272,720 / 3,946,901.6 (docs/metrics.md §12).
ASSUMPTIONS = {"mrr_growth_pct": 5, "monthly_logo_churn_pct": 2, "gross_margin_pct": 80}
PRICE = {"type": "price_change", "pct": 0.10}


def _store_forecast(
    wh: Warehouse,
    ws: str,
    fid: str,
    *,
    as_of: date = AS_OF,
    mrr_cents: int = 1_000_000,
    is_default: bool = True,
    replace: bool = False,
) -> None:
    """A mart.forecasts row the way the forecasts asset writes it."""
    response = forecast(
        {"as_of": as_of.isoformat(), "horizon_months": 3, "assumptions": ASSUMPTIONS},
        start_mrr_micros=mrr_cents * 10_000,
        cash_on_hand_cents=5_000_000,
        monthly_recurring_expenses_micros=1_200_000 * 10_000,
    )
    response["id"] = fid
    with wh.begin() as db:
        if replace:
            db.execute(wh.text("DELETE FROM mart.forecasts WHERE id = :f"), {"f": fid})
        db.execute(
            wh.table("mart.forecasts").insert(),
            [
                {
                    "id": fid,
                    "workspace_id": ws,
                    "name": "Default forecast",
                    "as_of": as_of,
                    "horizon_months": 3,
                    "request_json": {},
                    "response_json": _plain(response),
                    "created_at": T0,
                    "is_default": is_default,
                }
            ],
        )


@pytest.fixture
def wh(warehouse: Warehouse) -> Warehouse:
    create_organization(warehouse, "o", org_id="o")
    create_organization(warehouse, "other", org_id="o2")
    for ws, org in (("ws1", "o"), ("ws2", "o"), ("ws_bare", "o"), ("ws_other", "o2")):
        create_workspace(warehouse, org, ws, workspace_id=ws, cash_on_hand_micros=5 * 10**10)
    _store_forecast(warehouse, "ws1", "fc_old", as_of=date(2026, 1, 31))
    _store_forecast(warehouse, "ws1", "fc_feb")  # the latest default: the implicit baseline
    _store_forecast(warehouse, "ws2", "fc_ws2")
    return warehouse


def test_create_get_list_delete_with_exact_impact(wh: Warehouse) -> None:
    price = create_scenario(
        wh,
        "ws1",
        {"name": "10% price increase", "baseline_forecast_id": "fc_feb", "delta": PRICE},
        org_id="o",
        now=T0,
    )
    assert price["id"].startswith("sc_")
    # MRR x 1.1 from the first month: 1,133,000 / 1,166,990 / 1,201,999.7; cash
    # 4,706,400 / 4,439,992 / 4,201,591.76; final cash delta 254,690.16 -> 254,690.
    assert {k: v for k, v in price.items() if k != "id"} == {
        "workspace_id": "ws1",
        "org_id": "o",
        "name": "10% price increase",
        "baseline_forecast_id": "fc_feb",
        "delta": {"type": "price_change", "pct": 0.1},
        "impact": {
            "final_cash_delta_cents": 254_690,
            "final_mrr_cents": 1_202_000,
            "baseline_final_cash_cents": 3_946_902,
            "baseline_final_mrr_cents": 1_092_727,
        },
        "series": {
            "months": ["2026-03", "2026-04", "2026-05"],
            "scenario": {
                "mrr_cents": [1_133_000, 1_166_990, 1_202_000],
                "cash_cents": [4_706_400, 4_439_992, 4_201_592],
                "runway_months": [Decimal("16.03"), Decimal("16.67"), Decimal("17.62")],
            },
        },
        "created_at": "2026-03-01T00:00:00+00:00",
        "updated_at": "2026-03-01T00:00:00+00:00",
    }
    assert get_scenario(wh, "ws1", price["id"], org_id="o") == price

    # No baseline id: the latest default forecast (fc_feb, not fc_old). c = 3.5 %: MRR x 1.015 a
    # month, final MRR 1,045,678.375, final cash 3,872,722.7: delta -74,178.9 -> -74,179.
    churn = create_scenario(
        wh, "ws1", {"delta": {"type": "churn_change", "delta_pp": 1.5}}, now=T0 + 1
    )
    assert churn["baseline_forecast_id"] == "fc_feb" and churn["name"] is None
    assert churn["impact"] == {
        "final_cash_delta_cents": -74_179,
        "final_mrr_cents": 1_045_678,
        "baseline_final_cash_cents": 3_946_902,
        "baseline_final_mrr_cents": 1_092_727,
    }
    assert churn["series"]["scenario"]["mrr_cents"] == [1_015_000, 1_030_225, 1_045_678]

    # A hire of 1,200,000 a month from April: two months of cost, MRR unchanged.
    hire = create_scenario(
        wh,
        "ws1",
        {"delta": {"type": "hire", "monthly_cost_cents": 1_200_000, "start_month": "2026-04"}},
        now=T0 + 2,
    )
    assert hire["delta"] == {
        "type": "hire",
        "monthly_cost_cents": 1_200_000,
        "start_month": "2026-04",
    }
    assert (hire["impact"]["final_cash_delta_cents"], hire["impact"]["final_mrr_cents"]) == (
        -2_400_000,
        1_092_727,
    )
    assert hire["series"]["scenario"] == {
        "mrr_cents": [1_030_000, 1_060_900, 1_092_727],
        "cash_cents": [4_624_000, 3_072_720, 1_546_902],
        "runway_months": [Decimal("12.30"), Decimal("1.98"), Decimal("1.01")],
    }

    # Lists: newest first, lightweight (no series), cursor pagination.
    page = list_scenarios(wh, "ws1", org_id="o", limit=2)
    assert [s["id"] for s in page["data"]] == [hire["id"], churn["id"]] and page["has_more"]
    assert page["data"][1] == {
        "id": churn["id"],
        "name": None,
        "baseline_forecast_id": "fc_feb",
        "delta": {"type": "churn_change", "delta_pp": 1.5},
        "impact": churn["impact"],
        "created_at": "2026-03-01T00:00:01+00:00",
    }
    rest = list_scenarios(wh, "ws1", limit="2", starting_after=churn["id"])
    assert [s["id"] for s in rest["data"]] == [price["id"]] and not rest["has_more"]
    assert list_scenarios(wh, "ws2") == {"data": [], "has_more": False}

    delete_scenario(wh, "ws1", churn["id"], org_id="o")
    assert [s["id"] for s in list_scenarios(wh, "ws1")["data"]] == [hire["id"], price["id"]]
    with pytest.raises(NotFoundError) as info:
        get_scenario(wh, "ws1", churn["id"])
    assert (info.value.status, info.value.param) == (404, "id")
    with pytest.raises(NotFoundError):
        delete_scenario(wh, "ws1", churn["id"])
    # Another workspace or another org sees nothing.
    with pytest.raises(NotFoundError):
        get_scenario(wh, "ws2", price["id"])
    with pytest.raises(NotFoundError) as info:
        get_scenario(wh, "ws1", price["id"], org_id="o2")
    assert info.value.param == "workspace_id"

    # Deleting the workspace deletes its scenarios.
    with wh.begin() as db:
        db.execute(wh.text("DELETE FROM app.workspaces WHERE id = 'ws1'"))
    assert wh.scalar("SELECT COUNT(*) FROM mart.scenarios") == 0


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ("not an object", "invalid_type", None),
        ({}, "missing_field", "delta"),
        ({"delta": PRICE, "deltas": {}}, "unknown_field", "deltas"),
        ({"delta": 5}, "invalid_type", "delta"),
        ({"delta": {}}, "missing_field", "delta.type"),
        ({"delta": {"type": "discount"}}, "invalid_value", "delta.type"),
        ({"delta": {"type": "price_change"}}, "missing_field", "delta.pct"),
        ({"delta": {"type": "price_change", "pct": "0.1"}}, "invalid_type", "delta.pct"),
        ({"delta": {"type": "price_change", "pct": -1.5}}, "out_of_range", "delta.pct"),
        ({"delta": {"type": "churn_change", "delta_pp": -2.5}}, "out_of_range", "delta.delta_pp"),
        (
            {"delta": {"type": "hire", "monthly_cost_cents": 12.5}},
            "invalid_type",
            "delta.monthly_cost_cents",
        ),
        (
            {"delta": {"type": "hire", "monthly_cost_cents": 0}},
            "out_of_range",
            "delta.monthly_cost_cents",
        ),
        (
            {"delta": {"type": "hire", "monthly_cost_cents": 1, "start_month": "2026-4"}},
            "invalid_value",
            "delta.start_month",
        ),
        (
            {"delta": {"type": "hire", "monthly_cost_cents": 1, "start_month": "2026-06"}},
            "out_of_range",
            "delta.start_month",
        ),
        ({"name": 5, "delta": PRICE}, "invalid_type", "name"),
        ({"name": "x" * 201, "delta": PRICE}, "out_of_range", "name"),
        ({"baseline_forecast_id": 7, "delta": PRICE}, "invalid_type", "baseline_forecast_id"),
    ],
)
def test_validation_errors_store_nothing(wh: Warehouse, body: Any, code: str, param: str) -> None:
    with pytest.raises(ForecastValidationError) as info:
        create_scenario(wh, "ws1", body)
    assert (info.value.code, info.value.param) == (code, param)
    assert wh.scalar("SELECT COUNT(*) FROM mart.scenarios") == 0


def test_not_found_and_query_errors(wh: Warehouse) -> None:
    cases = [
        (lambda: create_scenario(wh, "ws_missing", {"delta": PRICE}), "workspace_id"),
        (lambda: create_scenario(wh, "ws1", {"delta": PRICE}, org_id="o2"), "workspace_id"),
        (
            lambda: create_scenario(wh, "ws1", {"baseline_forecast_id": "fc_ws2", "delta": PRICE}),
            "baseline_forecast_id",
        ),
        (lambda: list_scenarios(wh, "ws1", starting_after="sc_nope"), "starting_after"),
        (lambda: rerun_scenario(wh, "ws1", "sc_nope"), "id"),
    ]
    for call, param in cases:
        with pytest.raises(NotFoundError) as info:
            call()
        assert (info.value.status, info.value.code, info.value.param) == (
            404,
            "resource_missing",
            param,
        )
    # A workspace without any default forecast needs an explicit baseline.
    with pytest.raises(ForecastValidationError) as err:
        create_scenario(wh, "ws_bare", {"delta": PRICE})
    assert (err.value.code, err.value.param) == ("missing_field", "baseline_forecast_id")
    for limit in (0, 101, "abc", True):
        with pytest.raises(ForecastValidationError) as err:
            list_scenarios(wh, "ws1", limit=limit)
        assert (err.value.code, err.value.param) == ("invalid_value", "limit")


def test_idempotency_key_replays_and_conflicts(wh: Warehouse) -> None:
    body = {"name": "Price +10%", "delta": PRICE}
    first = create_scenario(wh, "ws1", body, idempotency_key="k1", now=T0)
    again = create_scenario(wh, "ws1", dict(body), idempotency_key="k1", now=T0 + 60)
    assert again == first
    assert wh.scalar("SELECT COUNT(*) FROM mart.scenarios") == 1
    with pytest.raises(IdempotencyConflictError) as info:
        create_scenario(wh, "ws1", {**body, "name": "Price +11%"}, idempotency_key="k1")
    assert (info.value.status, info.value.code) == (409, "idempotency_key_reused")
    # The key is per workspace; other keys and key-less calls create new scenarios.
    other_ws = create_scenario(wh, "ws2", body, idempotency_key="k1")
    assert other_ws["id"] != first["id"] and other_ws["baseline_forecast_id"] == "fc_ws2"
    create_scenario(wh, "ws1", body, idempotency_key="k2")
    create_scenario(wh, "ws1", body)
    create_scenario(wh, "ws1", body)
    assert wh.scalar("SELECT COUNT(*) FROM mart.scenarios WHERE workspace_id = 'ws1'") == 4
    with pytest.raises(ForecastValidationError) as err:
        create_scenario(wh, "ws1", body, idempotency_key="")
    assert err.value.param == "Idempotency-Key"


def test_rerun_follows_the_restated_baseline(wh: Warehouse) -> None:
    sc = create_scenario(wh, "ws1", {"delta": PRICE}, now=T0)
    assert sc["impact"]["final_cash_delta_cents"] == 254_690
    # The monthly job restates fc_feb in place with MRR 2,000,000: base MRR 2,060,000 /
    # 2,121,800 / 2,185,454; the price change adds 0.1 x 80 % of their sum = 509,380.32 of cash.
    _store_forecast(wh, "ws1", "fc_feb", mrr_cents=2_000_000, replace=True)
    again = rerun_scenario(wh, "ws1", sc["id"], now=T0 + 3600)
    assert again["impact"] == {
        "final_cash_delta_cents": 509_380,
        "final_mrr_cents": 2_403_999,
        "baseline_final_cash_cents": 6_493_803,
        "baseline_final_mrr_cents": 2_185_454,
    }
    assert (again["created_at"], again["updated_at"]) == (
        "2026-03-01T00:00:00+00:00",
        "2026-03-01T01:00:00+00:00",
    )
    assert get_scenario(wh, "ws1", sc["id"]) == again
    assert list_scenarios(wh, "ws1")["data"][0]["impact"] == again["impact"]

"""Platform finance API "Get MRR Metrics" and "Get MRR Trend" from MRR marts built through Dagster
(SQLite and PostgreSQL) on a hand-made subscription history: exact numbers, month ends at the
instant boundaries, the plan filter, null growth, validation errors and empty workspaces."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from finance_pipeline.core.history_io import history_rows
from finance_pipeline.lib.mrr import PriceSpec, SubscriptionItem, SubscriptionState
from finance_pipeline.lib.timeutil import day_start_ts
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.metrics.mrr_queries import MrrQueryError, mrr_metrics, mrr_trend
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import materialize_days

FIRST, LAST = date(2025, 12, 1), date(2026, 4, 10)
BASIC = PriceSpec(currency="usd", unit_amount_decimal="10000", price_id="price_basic")  # 100/mo
PRO = PriceSpec(currency="usd", unit_amount_decimal="25000", price_id="price_pro")  # 250/mo
# 10 a week = 10 x 52 / 12 = 43.3333... a month: two of them are 86.67, not 43.33 + 43.33.
WEEKLY = PriceSpec(
    currency="usd", unit_amount_decimal="1000", interval="week", price_id="price_weekly"
)


def _s(day: date) -> int:
    return day_start_ts(day)  # S(D) in UTC, the workspace's time zone


# (customer, price, quantity, valid_from, valid_to). In force on D iff from < S(D+1) <= to (§1):
# f ends at the instant February starts, so it still counts on January 31; g starts one second
# before March, so it counts on February 28 (and March 1, its last day).
SUBSCRIPTIONS: list[tuple[str, PriceSpec, int, int, int | None]] = [
    ("cus_a", BASIC, 1, _s(date(2026, 1, 10)), None),
    ("cus_b", PRO, 2, _s(date(2026, 1, 20)), _s(date(2026, 3, 15))),  # last day March 14
    ("cus_c", WEEKLY, 1, _s(date(2026, 2, 5)), None),
    ("cus_d", WEEKLY, 1, _s(date(2026, 3, 3)), None),
    ("cus_e", BASIC, 1, _s(date(2026, 3, 20)), None),
    ("cus_f", BASIC, 1, _s(date(2026, 1, 25)), _s(date(2026, 2, 1))),
    ("cus_g", PRO, 1, _s(date(2026, 3, 1)) - 1, _s(date(2026, 3, 2))),
]


def _history(ws: str) -> list[dict[str, Any]]:
    states = [
        SubscriptionState(
            workspace_id=ws,
            subscription_id=f"sub_{customer[4:]}",
            customer_id=customer,
            currency="usd",
            valid_from=start,
            valid_to=end,
            status="active",
            items=(SubscriptionItem(f"si_{customer[4:]}", price, qty),),
        )
        for customer, price, qty, start, end in SUBSCRIPTIONS
    ]
    return history_rows(states)


@pytest.fixture
def marts(warehouse: Warehouse) -> Warehouse:
    """ws1 with the history above, ws_empty (New York) with none; marts for FIRST..LAST."""
    create_organization(warehouse, "o", org_id="o")
    create_workspace(warehouse, "o", "one", workspace_id="ws1")
    create_workspace(warehouse, "o", "empty", workspace_id="ws_empty", time_zone="America/New_York")
    with warehouse.begin() as db:
        db.execute(sa.insert(warehouse.table("core.subscription_history")), _history("ws1"))
    assert materialize_days([mrr_marts], warehouse, FIRST, LAST).success
    return warehouse


def _d(text: str) -> Decimal:
    return Decimal(text)


def _month(month: str, mrr: str | None, subs: int | None, growth: str | None) -> dict[str, Any]:
    return {
        "month": month,
        "mrr": None if mrr is None else _d(mrr),
        "subscriptions": subs,
        "growth_percent": None if growth is None else _d(growth),
    }


def _strs(payload: Any) -> Any:
    """Decimals as text, so 27.62 and 27.620 (or 0 and 0.00) are told apart."""
    if isinstance(payload, dict):
        return {k: _strs(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_strs(v) for v in payload]
    return str(payload) if isinstance(payload, Decimal) else payload


def test_metrics_are_the_current_day_balances_growth_and_churn(marts: Warehouse) -> None:
    wh = marts
    # D = April 10: a 100 + c 43.33.. + d 43.33.. + e 100 = 860/3. D-30 = March 11: a + b 500 + c
    # + d = 2060/3, so growth = -1200/2060. The cohort of March 11 is a, b, c, d; b churned: 1/4.
    latest = {
        "current_mrr": _d("286.67"),
        "mrr_growth_percent": _d("-58.25"),
        "active_subscriptions": 4,
        "churn_rate_percent": _d("25.00"),
        "as_of": "2026-04-10T23:59:59Z",
    }
    assert _strs(mrr_metrics(wh, "ws1")) == _strs(latest)
    # as_of past the last materialized day, as a query-string date: still D = April 10.
    assert mrr_metrics(wh, "ws1", "2026-06-01") == latest
    # February 28: a + b + c + g = 2680/3; January 29: a + b + f = 700 -> 580/2100. The cohort of
    # January 29 is a, b, f; f ended with January: 1/3.
    assert _strs(mrr_metrics(wh, "ws1", date(2026, 2, 28))) == _strs(
        {
            "current_mrr": _d("893.33"),
            "mrr_growth_percent": _d("27.62"),
            "active_subscriptions": 4,
            "churn_rate_percent": _d("33.33"),
            "as_of": "2026-02-28T23:59:59Z",
        }
    )
    # January 15: only a; December 16 had MRR 0 and nobody paying: both rates null.
    assert mrr_metrics(wh, "ws1", date(2026, 1, 15)) == {
        "current_mrr": _d("100.00"),
        "mrr_growth_percent": None,
        "active_subscriptions": 1,
        "churn_rate_percent": None,
        "as_of": "2026-01-15T23:59:59Z",
    }
    # D-30 not materialized (the marts start on December 1): growth unknown, not "from 0".
    assert mrr_metrics(wh, "ws1", date(2025, 12, 20))["mrr_growth_percent"] is None
    # Nothing materialized on or before as_of: every field null.
    nothing = {
        "current_mrr": None,
        "mrr_growth_percent": None,
        "active_subscriptions": None,
        "churn_rate_percent": None,
        "as_of": None,
    }
    assert mrr_metrics(wh, "ws1", date(2025, 11, 30)) == nothing
    # A workspace with no subscriptions has materialized zeros: known zeros, null rates; its day
    # ends at 04:00 UTC (New York, daylight time).
    assert _strs(mrr_metrics(wh, "ws_empty")) == _strs(
        {
            "current_mrr": _d("0.00"),
            "mrr_growth_percent": None,
            "active_subscriptions": 0,
            "churn_rate_percent": None,
            "as_of": "2026-04-11T03:59:59Z",
        }
    )
    create_workspace(wh, "o", "new", workspace_id="ws_new")
    assert mrr_metrics(wh, "ws_new") == nothing


def test_trend_reports_month_end_balances_and_growth(marts: Warehouse) -> None:
    wh = marts
    # Month ends: Jan 31 a + b + f = 700 (f ends at the instant February starts); Feb 28
    # a + b + c + g = 2680/3 (g starts one second before March); Mar 31 a + c + d + e = 860/3,
    # rounded once (43.33 + 43.33 would give 286.66); April is open: its value is April 10's.
    six = [
        _month("2025-11", None, None, None),  # not materialized: unknown, not 0
        _month("2025-12", "0.00", 0, None),  # previous month unknown
        _month("2026-01", "700.00", 3, None),  # previous month 0
        _month("2026-02", "893.33", 4, "27.62"),  # 580/2100
        _month("2026-03", "286.67", 4, "-67.91"),  # -1820/2680
        _month("2026-04", "286.67", 4, "0.00"),
    ]
    assert _strs(mrr_trend(wh, "ws1", months=6)) == _strs({"months": six})
    default = mrr_trend(wh, "ws1")["months"]
    assert [m["month"] for m in default] == [f"2025-{m:02d}" for m in range(5, 13)] + [
        f"2026-{m:02d}" for m in range(1, 5)
    ]
    assert default[-6:] == six and all(m["mrr"] is None for m in default[:7])
    assert mrr_trend(wh, "ws1", months="24")["months"][-6:] == six
    assert len(mrr_trend(wh, "ws1", months=24)["months"]) == 24
    # As of March 1 the open month is March, valued on March 1 (g's last day, b still in).
    assert _strs(mrr_trend(wh, "ws1", months=3, as_of="2026-03-01")) == _strs(
        {
            "months": [
                _month("2026-01", "700.00", 3, None),
                _month("2026-02", "893.33", 4, "27.62"),
                _month("2026-03", "893.33", 4, "0.00"),
            ]
        }
    )
    # As of the last day of a month, that month is complete and ends the list.
    assert mrr_trend(wh, "ws1", months=1, as_of=date(2026, 1, 31)) == {
        "months": [_month("2026-01", "700.00", 3, None)]
    }
    assert mrr_trend(wh, "ws1", as_of=date(2025, 11, 30)) == {"months": []}
    # A month end that is not materialized is null, and so is the growth that needs it.
    with wh.begin() as db:
        db.execute(wh.text("DELETE FROM mart.mrr_daily WHERE day = '2026-01-31'"))
    assert mrr_trend(wh, "ws1", months=3, as_of=date(2026, 3, 31)) == {
        "months": [
            _month("2026-01", None, None, None),
            _month("2026-02", "893.33", 4, None),
            _month("2026-03", "286.67", 4, "-67.91"),
        ]
    }


def test_trend_plan_filter_reads_the_plan_mart(marts: Warehouse) -> None:
    wh = marts
    # pro: b (quantity 2 is one subscription of 500) from January 20 to March 14, g over Feb 28.
    assert _strs(mrr_trend(wh, "ws1", months=5, plan_id="price_pro")) == _strs(
        {
            "months": [
                _month("2025-12", "0.00", 0, None),
                _month("2026-01", "500.00", 1, None),
                _month("2026-02", "750.00", 2, "50.00"),
                _month("2026-03", "0.00", 0, "-100.00"),
                _month("2026-04", "0.00", 0, None),
            ]
        }
    )
    # weekly: c from February 5, d from March 3; the plan total is rounded once (86.67).
    assert _strs(mrr_trend(wh, "ws1", months=3, plan_id="price_weekly")) == _strs(
        {
            "months": [
                _month("2026-02", "43.33", 1, None),
                _month("2026-03", "86.67", 2, "100.00"),
                _month("2026-04", "86.67", 2, "0.00"),
            ]
        }
    )
    # A known plan with nothing in the window is zeros, not an error.
    assert mrr_trend(wh, "ws1", months=1, plan_id="price_pro") == {
        "months": [_month("2026-04", "0.00", 0, None)]
    }
    # The plans add up to the company total on every month end listed.
    company = mrr_trend(wh, "ws1", months=4)["months"]
    plans = [
        mrr_trend(wh, "ws1", months=4, plan_id=p)["months"]
        for p in ("price_basic", "price_pro", "price_weekly")
    ]
    for i, month in enumerate(company):
        assert sum(p[i]["subscriptions"] for p in plans) == month["subscriptions"]
    for plan_id, ws in (("price_nope", "ws1"), ("price_basic", "ws_empty")):
        with pytest.raises(MrrQueryError) as err:
            mrr_trend(wh, ws, plan_id=plan_id)
        assert (err.value.status, err.value.code, err.value.param) == (
            404,
            "resource_missing",
            "plan_id",
        )
        assert err.value.message == f"No such plan: {plan_id}."
    assert _strs(mrr_trend(wh, "ws_empty", months=2)) == _strs(
        {"months": [_month("2026-03", "0.00", 0, None), _month("2026-04", "0.00", 0, None)]}
    )


@pytest.mark.parametrize(
    ("call", "status", "code", "param"),
    [
        (lambda wh: mrr_trend(wh, "ws1", months=0), 400, "invalid_value", "months"),
        (lambda wh: mrr_trend(wh, "ws1", months=25), 400, "invalid_value", "months"),
        (lambda wh: mrr_trend(wh, "ws1", months="-1"), 400, "invalid_value", "months"),
        (lambda wh: mrr_trend(wh, "ws1", months="twelve"), 400, "invalid_value", "months"),
        (lambda wh: mrr_trend(wh, "ws1", months=True), 400, "invalid_value", "months"),
        (lambda wh: mrr_trend(wh, "ws1", months=12.0), 400, "invalid_value", "months"),
        (lambda wh: mrr_trend(wh, "ws1", plan_id=""), 400, "invalid_value", "plan_id"),
        (lambda wh: mrr_trend(wh, "ws1", plan_id="p" * 256), 400, "invalid_value", "plan_id"),
        (lambda wh: mrr_trend(wh, "ws1", as_of="2026-02-30"), 400, "invalid_date", "as_of"),
        (lambda wh: mrr_metrics(wh, "ws1", "04/10/2026"), 400, "invalid_date", "as_of"),
        (lambda wh: mrr_metrics(wh, "ws1", datetime(2026, 4, 10)), 400, "invalid_date", "as_of"),
        (lambda wh: mrr_metrics(wh, "ws_x"), 404, "resource_missing", "workspace_id"),
        (lambda wh: mrr_trend(wh, "ws_x"), 404, "resource_missing", "workspace_id"),
        (
            lambda wh: mrr_trend(wh, "ws1", plan_id="price_basic"),
            404,
            "resource_missing",
            "plan_id",
        ),
    ],
)
def test_bad_requests_raise_clear_errors(
    warehouse: Warehouse, call: Any, status: int, code: str, param: str
) -> None:
    create_organization(warehouse, "o", org_id="o")
    create_workspace(warehouse, "o", "one", workspace_id="ws1")  # no marts: no plan is known
    with pytest.raises(MrrQueryError) as err:
        call(warehouse)
    assert (err.value.status, err.value.code, err.value.param) == (status, code, param)
    assert err.value.message and isinstance(err.value, ValueError)


def test_months_at_the_limits_are_accepted(warehouse: Warehouse) -> None:
    create_organization(warehouse, "o", org_id="o")
    create_workspace(warehouse, "o", "one", workspace_id="ws1")
    for months in (1, 24, "1", "24"):
        assert mrr_trend(warehouse, "ws1", months=months) == {"months": []}

"""The 000 platform finance API's `GET /mrr` and `GET /mrr-trend` over real HTTP, on MRR marts
built through Dagster from a small subscription history: the seed's shapes and envelope, dollars
as exact JSON numbers equal to mart.mrr_daily / mart.mrr_plan_daily, the plan filter, `months`
bounds (400 naming the field), tenancy and the error envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
import sqlalchemy as sa

from finance_pipeline.lib.money import micros_to_decimal
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.metrics.mrr_queries import mrr_metrics, mrr_trend
from finance_pipeline_tests.api.conftest import Account, ApiServer, _factory, register
from finance_pipeline_tests.dagster_runs import materialize_days
from finance_pipeline_tests.metrics import test_mrr_queries as fixture_history

BASE = "/api/v1/platform/finance"
FIRST, LAST = date(2026, 1, 1), date(2026, 3, 31)


def assert_pf_error(r, status: int, code: str, param: str | None = None) -> dict:
    """The family's error envelope: success false, the default error body, the request id."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    err = body["error"]
    assert set(err) == {"type", "code", "message", "param", "request_id"}
    assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    assert err["request_id"] == r.headers["x-request-id"]
    return err


@pytest.fixture(scope="module")
def mrr_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, Account, str]]:
    """A server whose org has one workspace with MRR marts for FIRST..LAST."""
    make, started = _factory(tmp_path_factory.mktemp("pf_mrr"))
    api = make(requests_inline=False)
    acct = register(api.client)
    r = api.client.post("/v1/workspaces", json={"name": "Acme"}, headers=acct.headers)
    ws = r.json()["id"]
    with api.wh.begin() as db:
        db.execute(
            sa.insert(api.wh.table("core.subscription_history")), fixture_history._history(ws)
        )
    assert materialize_days([mrr_marts], api.wh, FIRST, LAST).success
    yield api, acct, ws
    for server in started:
        server.stop()


def test_mrr_is_the_latest_day_of_the_marts_in_the_seed_shape(mrr_api) -> None:
    api, acct, ws = mrr_api
    r = api.client.get(f"{BASE}/mrr", headers=acct.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"success", "data"} and body["success"] is True
    data = body["data"]
    assert set(data) == {
        "current_mrr",
        "mrr_growth_percent",
        "active_subscriptions",
        "churn_rate_percent",
        "as_of",
    }
    [mart] = api.wh.rows(
        "SELECT day, mrr_micros, active_subscriptions FROM mart.mrr_daily WHERE workspace_id = :w"
        " ORDER BY day DESC LIMIT 1",
        w=ws,
    )
    assert str(mart["day"]) == str(LAST)
    # Exact: the JSON number is the mart's value in dollars, digit for digit, two decimals.
    exact = json.loads(r.text, parse_float=Decimal)["data"]
    assert exact["current_mrr"] == micros_to_decimal(mart["mrr_micros"])
    assert '"current_mrr":' + str(micros_to_decimal(mart["mrr_micros"])) in r.text
    assert data["active_subscriptions"] == mart["active_subscriptions"]
    assert data["as_of"] == "2026-03-31T23:59:59Z"
    expected = mrr_metrics(api.wh, ws)
    assert exact["mrr_growth_percent"] == expected["mrr_growth_percent"]
    assert exact["churn_rate_percent"] == expected["churn_rate_percent"]
    # The history: a (100) + c, d weekly (2 x 43.33...) + e (100) on March 31 = 286.67.
    assert exact["current_mrr"] == Decimal("286.67")
    assert isinstance(data["active_subscriptions"], int)


def test_trend_is_month_end_mrr_with_growth_and_the_plan_filter(mrr_api) -> None:
    api, acct, ws = mrr_api
    r = api.client.get(f"{BASE}/mrr-trend", params={"months": 3}, headers=acct.headers)
    assert r.status_code == 200, r.text
    months = json.loads(r.text, parse_float=Decimal)["data"]["months"]
    assert [m["month"] for m in months] == ["2026-01", "2026-02", "2026-03"]
    assert all(set(m) == {"month", "mrr", "subscriptions", "growth_percent"} for m in months)
    for m in months:
        day = {"2026-01": "2026-01-31", "2026-02": "2026-02-28", "2026-03": "2026-03-31"}
        [row] = api.wh.rows(
            "SELECT mrr_micros, active_subscriptions FROM mart.mrr_daily"
            " WHERE workspace_id = :w AND day = :d",
            w=ws,
            d=date.fromisoformat(day[m["month"]]),
        )
        assert m["mrr"] == micros_to_decimal(row["mrr_micros"])
        assert m["subscriptions"] == row["active_subscriptions"]
    expected = mrr_trend(api.wh, ws, months=3)["months"]
    assert [m["growth_percent"] for m in months] == [m["growth_percent"] for m in expected]
    # Default: 12 months ending with the current one.
    r = api.client.get(f"{BASE}/mrr-trend", headers=acct.headers)
    assert len(r.json()["data"]["months"]) == 12
    # One plan: mart.mrr_plan_daily's month-end rows.
    r = api.client.get(
        f"{BASE}/mrr-trend", params={"months": 2, "plan_id": "price_basic"}, headers=acct.headers
    )
    plan = json.loads(r.text, parse_float=Decimal)["data"]["months"]
    [row] = api.wh.rows(
        "SELECT mrr_exact, subscriptions FROM mart.mrr_plan_daily"
        " WHERE workspace_id = :w AND day = :d AND plan_id = 'price_basic'",
        w=ws,
        d=LAST,
    )
    assert plan[-1]["mrr"] == micros_to_decimal(Fraction(row["mrr_exact"]))
    assert plan[-1]["subscriptions"] == row["subscriptions"] == 2
    r = api.client.get(f"{BASE}/mrr-trend", params={"plan_id": "price_nope"}, headers=acct.headers)
    assert_pf_error(r, 404, "resource_missing", "plan_id")


@pytest.mark.parametrize("months", ["25", "0", "x", "12.5"])
def test_months_outside_1_to_24_is_a_400_naming_months(mrr_api, months: str) -> None:
    api, acct, _ = mrr_api
    r = api.client.get(f"{BASE}/mrr-trend", params={"months": months}, headers=acct.headers)
    assert_pf_error(r, 400, "invalid_field", "months")


def test_errors_unknown_params_auth_and_tenancy(mrr_api) -> None:
    api, acct, ws = mrr_api
    assert_pf_error(api.client.get(f"{BASE}/mrr"), 401, "missing_token")
    assert_pf_error(
        api.client.get(f"{BASE}/mrr", headers={"Authorization": "Bearer nope"}),
        401,
        "invalid_token",
    )
    r = api.client.get(f"{BASE}/mrr-trend", params={"monthz": 3}, headers=acct.headers)
    assert_pf_error(r, 400, "parameter_unknown", "monthz")
    assert_pf_error(api.client.get(f"{BASE}/nope", headers=acct.headers), 404, "route_not_found")
    # Another organization naming this workspace: 404, and its own (empty) workspace is nulls.
    other = register(api.client, "Other")
    r = api.client.get(f"{BASE}/mrr", headers={**other.headers, "X-Workspace-Id": ws})
    assert_pf_error(r, 404, "resource_missing", "X-Workspace-Id")
    api.client.post("/v1/workspaces", json={"name": "Empty"}, headers=other.headers)
    r = api.client.get(f"{BASE}/mrr", headers=other.headers)
    assert r.json()["data"] == {
        "current_mrr": None,
        "mrr_growth_percent": None,
        "active_subscriptions": None,
        "churn_rate_percent": None,
        "as_of": None,
    }
    assert api.client.get(f"{BASE}/mrr-trend", headers=other.headers).json()["data"] == {
        "months": []
    }
    # Several workspaces and no header: 400 workspace_required.
    api.client.post("/v1/workspaces", json={"name": "Second"}, headers=other.headers)
    r = api.client.get(f"{BASE}/mrr", headers=other.headers)
    assert_pf_error(r, 400, "workspace_required", "X-Workspace-Id")

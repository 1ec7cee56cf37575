"""The 002 workspace analytics API over real HTTP: every period of the seed from a small known
mart.revenue_daily, the seed's example totals digit for digit, values equal to the mart's exact
sums, the seed's 400s, and other organizations' workspaces 404."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from finance_pipeline.lib.money import micros_to_decimal
from finance_pipeline_tests.api.conftest import (
    PASSWORD,
    Account,
    ApiServer,
    _factory,
    assert_error,
    bearer,
    register,
    unique_email,
)

U = 1_000_000  # micro-units per dollar
# The seed's data points as days of the revenue mart: (day, revenue, expenses) in dollars.
SEED_DAYS = [
    ("2025-01-01", 2000, 500),
    ("2025-01-08", 2500, 800),
    ("2025-01-15", 2000, 600),
    ("2025-01-22", 2000, 700),
    ("2025-01-29", 1500, 400),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One server for the module (refresh requests are not run inline here)."""
    make, started = _factory(tmp_path_factory.mktemp("analytics"))
    yield make(requests_inline=False)
    for server in started:
        server.stop()


def _mart_row(ws: str, day: str, revenue: int, expenses: int, **extra: object) -> dict:
    """A mart.revenue_daily row (micro-units) as the CFO assets write it."""
    row = {
        "workspace_id": ws,
        "day": date.fromisoformat(day),
        "currency": "usd",
        "gross_revenue_micros": revenue,
        "manual_revenue_micros": 0,
        "refunds_micros": 0,
        "expenses_micros": expenses,
        "fees_micros": 0,
        "one_time_expenses_micros": 0,
        "net_micros": revenue - expenses,
        "net_revenue_micros": revenue,
        "skipped_currencies_json": {},
    }
    row.update(extra)
    return row


def _seed_mart(api: ApiServer, rows: list[dict]) -> None:
    with api.wh.begin() as db:
        api.wh.upsert(db, "mart.revenue_daily", rows, key=("workspace_id", "day"))


def _workspace(api: ApiServer, acct: Account) -> str:
    r = api.client.post("/v1/workspaces", json={"name": "Acme"}, headers=acct.headers)
    return r.json()["id"]


def _url(ws: str) -> str:
    return f"/api/v1/client/workspace/{ws}/financial/analytics"


@pytest.fixture(scope="module")
def seeded(api: ApiServer) -> tuple[Account, str]:
    """An organization whose workspace's mart holds the seed's January 2025 days."""
    acct = register(api.client)
    ws = _workspace(api, acct)
    _seed_mart(api, [_mart_row(ws, d, r * U, e * U) for d, r, e in SEED_DAYS])
    return acct, ws


def test_seed_example_monthly(api: ApiServer, seeded: tuple[Account, str]) -> None:
    acct, ws = seeded
    q = {"period": "monthly", "startDate": "2025-01-01", "endDate": "2025-01-31"}
    r = api.client.get(_url(ws), params=q, headers=acct.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"period", "startDate", "endDate", "dataPoints", "totals"} <= set(body)
    assert (body["period"], body["startDate"], body["endDate"]) == (
        "monthly",
        "2025-01-01",
        "2025-01-31",
    )
    # The seed's totals, digit for digit (whole dollars, 2 places).
    assert '"totals":{"revenue":10000.00,"expenses":3000.00,"net":7000.00,' in r.text
    assert body["dataPoints"] == [
        {"date": "2025-01-01", "revenue": 10000, "expenses": 3000, "net": 7000, "refunds": 0}
    ]
    assert (body["currency"], body["granularity"], body["skippedCurrencies"]) == (
        "USD",
        "monthly",
        {},
    )


def test_seed_example_daily_points(api: ApiServer, seeded: tuple[Account, str]) -> None:
    acct, ws = seeded
    q = {"period": "daily", "startDate": "2025-01-01", "endDate": "2025-01-31"}
    body = api.client.get(_url(ws), params=q, headers=acct.headers).json()
    assert len(body["dataPoints"]) == 31
    nonzero = [
        (p["date"], p["revenue"], p["expenses"], p["net"])
        for p in body["dataPoints"]
        if p["revenue"]
    ]
    # The seed's five data points (date, revenue, expenses, net = revenue - expenses).
    assert nonzero == [(d, r, e, r - e) for d, r, e in SEED_DAYS]
    assert body["totals"] == {"revenue": 10000, "expenses": 3000, "net": 7000, "refunds": 0}


def test_weekly_buckets_start_on_sunday_and_yearly(
    api: ApiServer, seeded: tuple[Account, str]
) -> None:
    acct, ws = seeded
    q = {"period": "weekly", "startDate": "2025-01-01", "endDate": "2025-01-31"}
    body = api.client.get(_url(ws), params=q, headers=acct.headers).json()
    # Jan 1 2025 is a Wednesday: the first week is clipped, the next ones start on Sundays.
    assert [(p["date"], p["revenue"]) for p in body["dataPoints"]] == [
        ("2025-01-01", 2000),
        ("2025-01-05", 2500),
        ("2025-01-12", 2000),
        ("2025-01-19", 2000),
        ("2025-01-26", 1500),
    ]
    q = {"period": "yearly", "startDate": "2024-01-01", "endDate": "2025-12-31"}
    body = api.client.get(_url(ws), params=q, headers=acct.headers).json()
    assert [(p["date"], p["revenue"]) for p in body["dataPoints"]] == [
        ("2024-01-01", 0),
        ("2025-01-01", 10000),
    ]


def test_custom_and_default_ranges(api: ApiServer, seeded: tuple[Account, str]) -> None:
    acct, ws = seeded
    q = {"period": "custom", "startDate": "2025-01-08", "endDate": "2025-01-15"}
    body = api.client.get(_url(ws), params=q, headers=acct.headers).json()
    assert body["granularity"] == "daily" and len(body["dataPoints"]) == 8
    assert body["totals"]["revenue"] == 4500
    q = {"period": "custom", "startDate": "2024-10-01", "endDate": "2025-03-31"}
    body = api.client.get(_url(ws), params=q, headers=acct.headers).json()
    assert body["granularity"] == "weekly"
    # Without dates: the current month of the workspace's time zone (UTC), monthly by default.
    today = datetime.now(UTC).date()
    for params in ({}, {"period": "daily"}, {"period": "weekly"}):
        body = api.client.get(_url(ws), params=params, headers=acct.headers).json()
        assert body["startDate"] == today.replace(day=1).isoformat()
    body = api.client.get(_url(ws), params={"period": "yearly"}, headers=acct.headers).json()
    assert (body["startDate"], body["endDate"]) == (f"{today.year}-01-01", f"{today.year}-12-31")
    assert body["period"] == "yearly" and body["totals"]["revenue"] == 0


def test_values_equal_the_mart_exactly(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    # Odd micro amounts, refunds, fees and an unconverted currency: the API shows the mart's
    # exact sums, rounded once at the reported grain (docs/metrics.md §2, §10).
    rows = [
        _mart_row(ws, "2025-03-01", 1_234_567, 5_000, refunds_micros=-333_333),
        _mart_row(ws, "2025-03-02", 2_000_005, 1_999_999, fees_micros=4_999),
        _mart_row(ws, "2025-03-31", 10, 0, skipped_currencies_json={"eur": 2}),
        _mart_row(ws, "2025-04-01", 99 * U, 0),  # outside the range
    ]
    _seed_mart(api, rows)
    q = {"period": "custom", "startDate": "2025-03-01", "endDate": "2025-03-31"}
    r = api.client.get(_url(ws), params=q, headers=acct.headers)
    body = r.json()
    in_range = rows[:3]
    revenue = sum(x["gross_revenue_micros"] for x in in_range)
    expenses = sum(x["expenses_micros"] for x in in_range)
    refunds = sum(x["refunds_micros"] for x in in_range)
    totals = {k: Decimal(str(v)) for k, v in body["totals"].items()}
    assert totals == {
        "revenue": micros_to_decimal(revenue),
        "expenses": micros_to_decimal(expenses),
        "net": micros_to_decimal(revenue - expenses),
        "refunds": micros_to_decimal(refunds),
    }
    assert '"revenue":3.23,' in r.text and '"net":1.23,' in r.text
    for point in body["dataPoints"]:
        day = next((x for x in in_range if x["day"].isoformat() == point["date"]), None)
        net = 0 if day is None else day["net_micros"]
        assert Decimal(str(point["net"])) == micros_to_decimal(net)
    assert body["skippedCurrencies"] == {"eur": 2}


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"period": "hourly"}, "invalid_period", "period"),
        ({"period": "custom"}, "missing_field", "startDate"),
        ({"period": "custom", "startDate": "2025-01-01"}, "missing_field", "endDate"),
        ({"startDate": "2025/01/01", "endDate": "2025-01-31"}, "invalid_date", "startDate"),
        ({"startDate": "2025-01-01", "endDate": "2025-02-30"}, "invalid_date", "endDate"),
        ({"startDate": "2025-02-01", "endDate": "2025-01-01"}, "invalid_date_range", "startDate"),
        (
            {"period": "daily", "startDate": "2020-01-01", "endDate": "2025-01-01"},
            "range_too_large",
            "endDate",
        ),
        ({"periode": "daily"}, "parameter_unknown", "periode"),
    ],
)
def test_bad_parameters_are_400(
    api: ApiServer, seeded: tuple[Account, str], params: dict, code: str, param: str
) -> None:
    acct, ws = seeded
    assert_error(api.client.get(_url(ws), params=params, headers=acct.headers), 400, code, param)


def test_workspace_ids_auth_tenancy_and_roles(api: ApiServer, seeded: tuple[Account, str]) -> None:
    acct, ws = seeded
    other = register(api.client)
    assert_error(
        api.client.get(_url("bad!id"), headers=acct.headers),
        400,
        "invalid_workspace_id",
        "workspaceId",
    )
    assert_error(
        api.client.get(_url("ws_missing"), headers=acct.headers),
        404,
        "resource_missing",
        "workspaceId",
    )
    assert_error(api.client.get(_url(ws), headers=other.headers), 404, "resource_missing")
    assert_error(api.client.get(_url(ws)), 401, "missing_token")
    assert_error(api.client.get(_url(ws), headers=bearer("nope")), 401, "invalid_token")
    # Every role may read analytics (docs/api.md, Roles); a member sees the same numbers.
    email = unique_email("member")
    api.client.post(
        "/v1/members",
        json={"email": email, "role": "member", "password": PASSWORD},
        headers=acct.headers,
    )
    login = api.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    member = bearer(login.json()["access_token"])
    q = {"startDate": "2025-01-01", "endDate": "2025-01-31"}
    got = api.client.get(_url(ws), params=q, headers=member)
    assert got.status_code == 200 and got.json()["totals"]["revenue"] == 10000
    # A key scoped to another workspace of the organization does not see this one.
    other_ws = _workspace(api, acct)
    r = api.client.post(
        "/v1/api_keys", json={"role": "owner", "workspace_id": other_ws}, headers=acct.headers
    )
    assert_error(api.client.get(_url(ws), headers=bearer(r.json()["key"])), 404, "resource_missing")


def test_records_created_through_the_products_api_reach_the_analytics(api: ApiServer) -> None:
    """End to end: revenue and a cost created over HTTP, their queued refresh run (inline, as the
    embedded deployment does), then the analytics equal mart.revenue_daily for that day."""
    import dagster as dg

    from finance_pipeline.partitions import last_daily_partition
    from finance_pipeline.requests.inline import run_pending_inline

    acct = register(api.client)
    ws = _workspace(api, acct)
    day = (last_daily_partition() - timedelta(days=3)).isoformat()
    revenue = {"amount": 99.00, "type": "subscription", "date": day}
    cost = {"name": "Vercel Pro", "amount": 20.5, "category": "INFRASTRUCTURE", "date": day}
    ids = [
        api.client.post(f"/api/v1/products/{ws}/revenue", json=revenue, headers=acct.headers),
        api.client.post(f"/api/v1/products/{ws}/costs", json=cost, headers=acct.headers),
    ]
    request_ids = [r.headers["x-refresh-request-id"] for r in ids]
    rows = run_pending_inline(dg.DagsterInstance.ephemeral(), api.wh, request_ids)
    assert [r["status"] for r in rows] == ["succeeded", "succeeded"], rows
    [mart] = api.wh.rows(
        "SELECT * FROM mart.revenue_daily WHERE workspace_id = :w AND day = :d",
        w=ws,
        d=date.fromisoformat(day),
    )
    assert mart["gross_revenue_micros"] == 99 * U
    q = {"period": "daily", "startDate": day, "endDate": day}
    r = api.client.get(_url(ws), params=q, headers=acct.headers)
    body = r.json()
    assert Decimal(str(body["totals"]["revenue"])) == micros_to_decimal(
        mart["gross_revenue_micros"]
    )
    assert Decimal(str(body["totals"]["expenses"])) == micros_to_decimal(mart["expenses_micros"])
    assert '"revenue":99.00,"expenses":20.50,"net":78.50' in r.text

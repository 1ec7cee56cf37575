"""The 004 v1 API's ingest, metrics, alerts, advisory memo, forecasts and scenarios over HTTP: the
seed's examples and shapes, bad input (422 naming the field, nothing written), tenancy (another
org: 404), roles (403), and values equal to the marts, which the tests seed directly.

The server here never runs the pipeline (FP_REQUESTS_INLINE off, no daemon): ingests only queue
refreshes, and reads wait at most 0.3 s, so what they answer is the seeded marts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from finance_pipeline.requests.store import claim, pending_requests
from finance_pipeline_tests.api.conftest import (
    Account,
    ApiServer,
    _factory,
    add_member,
    assert_error,
    bearer,
    register,
)

C = 10_000  # micros per cent


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server that queues refreshes but never runs them, and barely waits for them."""
    make, started = _factory(tmp_path_factory.mktemp("v1cfo"))
    yield make(requests_inline=False, api_read_wait_seconds=0.3)
    for s in started:
        s.stop()


def _workspace(api: ApiServer, acct: Account, cash: int | None = 5000000) -> str:
    body: dict[str, Any] = {"name": "Acme Corp"}
    if cash is not None:
        body["cash_on_hand_cents"] = cash
    r = api.client.post("/v1/workspaces", json=body, headers=acct.headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _settle(api: ApiServer, ws: str) -> None:
    """Mark the workspace's queued requests done, as a pipeline run would."""
    ids = [r["id"] for r in pending_requests(api.wh, ws)]
    claim(api.wh, ids)
    with api.wh.begin() as db:
        db.execute(
            api.wh.text("UPDATE app.pipeline_requests SET status = 'succeeded' WHERE id = :i"),
            [{"i": i} for i in ids],
        )


def _metrics_row(ws: str, day: str, **overrides: Any) -> dict[str, Any]:
    row = {
        "workspace_id": ws,
        "day": date.fromisoformat(day),
        "currency": "usd",
        "gross_revenue_cents_30d": 2400000,
        "refunds_cents_30d": -80000,
        "net_revenue_cents_30d": 2320000,
        "mrr_cents": 2150000,
        "arr_cents": 25800000,
        "burn_cents_30d": 480000,
        "recurring_burn_cents_30d": 350000,
        "one_time_expenses_cents_30d": 130000,
        "cash_on_hand_cents": 5000000,
        "runway_months": "14.29",
        "runway_days": "434.78",
        "total_expenses_cents_30d": 2800000,
        "recurring_expenses_cents_30d": 2670000,
        "warnings_json": [],
        "skipped_currencies_json": {},
    }
    row.update(overrides)
    return row


def _insert(api: ApiServer, table: str, rows: list[dict[str, Any]]) -> None:
    with api.wh.begin() as db:
        db.execute(api.wh.table(table).insert(), rows)


# --- ingest ------------------------------------------------------------------------------------

EXPENSE = {
    "subtype": "recurring_expense",
    "amount_cents": 120000,
    "currency": "USD",
    "occurred_at": "2026-02-01",
    "vendor": "AWS",
    "external_id": "aws-feb-2026",
}
REVENUE = {
    "subtype": "recurring",
    "amount_cents": 250000,
    "currency": "USD",
    "occurred_at": "2026-02-01",
    "description": "Feb subscription",
    "external_id": "sub-feb-2026",
}


def test_ingest_examples_store_dedup_and_request_a_refresh(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    url = f"/v1/workspaces/{ws}/ingest"
    r = api.client.post(f"{url}/expenses", json={"expenses": [EXPENSE]}, headers=acct.headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["ingest_id"].startswith("ing_")
    assert (body["status"], body["inserted"], body["duplicates"]) == ("completed", 1, 0)
    [stored] = api.wh.rows("SELECT * FROM raw.expense_events WHERE workspace_id = :w", w=ws)
    assert (stored["external_id"], stored["amount_micros"], stored["subtype"]) == (
        "aws-feb-2026",
        120000 * C,
        "recurring_expense",
    )
    assert str(stored["occurred_on"]) == "2026-02-01" and stored["vendor"] == "AWS"
    # The refresh covers the day and the 59 after it (30-day windows, alerts vs the prior 30).
    [req] = pending_requests(api.wh, ws)
    assert req["id"] == body["refresh_request_id"] and req["kind"] == "refresh"
    assert (str(req["first_day"]), str(req["last_day"])) == ("2026-02-01", "2026-04-01")

    again = api.client.post(f"{url}/expenses", json={"expenses": [EXPENSE]}, headers=acct.headers)
    assert (again.json()["inserted"], again.json()["duplicates"]) == (0, 1)
    assert again.json()["refresh_request_id"] is None  # nothing new, nothing to refresh

    r = api.client.post(f"{url}/revenue", json={"revenue": [REVENUE]}, headers=acct.headers)
    assert r.status_code == 202 and (r.json()["inserted"], r.json()["duplicates"]) == (1, 0)
    [rev] = api.wh.rows("SELECT * FROM raw.manual_revenue WHERE workspace_id = :w", w=ws)
    assert (rev["subtype"], rev["amount_micros"], rev["external_id"]) == (
        "recurring",
        250000 * C,
        "sub-feb-2026",
    )
    # Refunds are stored negative; a whole float is a whole number of cents.
    refund = {**REVENUE, "type": "refund", "subtype": "one_time", "external_id": "rf-1"}
    refund["amount_cents"] = 5000.0
    r = api.client.post(f"{url}/revenue", json={"revenue": [refund]}, headers=acct.headers)
    assert r.status_code == 202, r.text
    assert (
        api.wh.scalar("SELECT amount_micros FROM raw.manual_revenue WHERE external_id = 'rf-1'")
        == -5000 * C
    )


def test_one_bad_line_is_a_422_naming_it_and_nothing_is_written(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    url = f"/v1/workspaces/{ws}/ingest/expenses"
    lines = [{**EXPENSE, "external_id": f"e{i}"} for i in range(5)]
    for bad, code in (
        ({"amount_cents": 12.5}, "invalid_field"),
        ({"amount_cents": -5}, "invalid_field"),
        ({"amount_cents": "100"}, "invalid_field"),
        ({"subtype": "sometimes"}, "invalid_field"),
        ({"occurred_at": "2026-02-30"}, "invalid_field"),
    ):
        field = next(iter(bad))
        body = {"expenses": [*lines[:3], {**lines[3], **bad}, lines[4]]}
        assert_error(api.client.post(url, json=body, headers=acct.headers), 422, code)
        err = api.client.post(url, json=body, headers=acct.headers).json()["error"]
        assert err["param"] == f"expenses[3].{field}", err
    missing = {k: v for k, v in EXPENSE.items() if k != "amount_cents"}
    r = api.client.post(url, json={"expenses": [EXPENSE, missing]}, headers=acct.headers)
    assert_error(r, 422, "missing_field", "expenses[1].amount_cents")
    r = api.client.post(url, json={"expenses": []}, headers=acct.headers)
    assert_error(r, 422, "invalid_field", "expenses")
    r = api.client.post(url, json={"expenses": [EXPENSE], "extra": 1}, headers=acct.headers)
    assert_error(r, 422, "invalid_field", "extra")
    r = api.client.post(
        url, content=b'{"expenses": [', headers={**acct.headers, "Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_json")
    assert (
        api.wh.scalar("SELECT COUNT(*) FROM raw.expense_events WHERE workspace_id = :w", w=ws) == 0
    )
    assert pending_requests(api.wh, ws) == []


def test_ingest_needs_the_ingest_right_and_your_own_workspace(api: ApiServer) -> None:
    owner = register(api.client)
    ws = _workspace(api, owner)
    member = add_member(api, owner.headers, "member")
    finance = add_member(api, owner.headers, "finance")
    url = f"/v1/workspaces/{ws}/ingest/expenses"
    body = {"expenses": [EXPENSE]}
    assert_error(api.client.post(url, json=body, headers=member), 403, "insufficient_role")
    assert api.client.post(url, json=body, headers=finance).status_code == 202
    other = register(api.client, "Other Inc")
    assert_error(api.client.post(url, json=body, headers=other.headers), 404, "resource_missing")
    r = api.client.post(
        f"/v1/workspaces/{ws}/ingest/revenue", json={"revenue": [REVENUE]}, headers=other.headers
    )
    assert_error(r, 404, "resource_missing")
    assert (
        api.wh.scalar("SELECT COUNT(*) FROM raw.manual_revenue WHERE workspace_id = :w", w=ws) == 0
    )
    # Stripe connections are the owner's (stripe:connect).
    r = api.client.post(
        f"/v1/workspaces/{ws}/ingest/stripe", json={"stripe_api_key": "sk_test_x"}, headers=finance
    )
    assert_error(r, 403, "insufficient_role")


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_are_the_mart_row_in_the_seed_shape(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    _insert(api, "mart.cfo_metrics_daily", [_metrics_row(ws, "2026-02-28")])
    r = api.client.get(f"/v1/workspaces/{ws}/metrics?as_of=2026-02-28", headers=acct.headers)
    assert r.status_code == 200, r.text
    # The seed's example, digit for digit (runway an exact number, never "14.29" or 14.290000001).
    assert '"runway_months":14.29' in r.text
    assert r.json() == {
        "as_of": "2026-02-28",
        "currency": "USD",
        "gross_revenue_cents_30d": 2400000,
        "refunds_cents_30d": -80000,
        "net_revenue_cents_30d": 2320000,
        "mrr_cents": 2150000,
        "arr_cents": 25800000,
        "burn_cents_30d": 480000,
        "recurring_burn_cents_30d": 350000,
        "one_time_expenses_cents_30d": 130000,
        "cash_on_hand_cents": 5000000,
        "runway_months": 14.29,
        "runway_days": 434.78,
        "total_expenses_cents_30d": 2800000,
        "recurring_expenses_cents_30d": 2670000,
        "warnings": [],
    }
    assert r.headers["x-data-as-of"] == "2026-02-28"


def test_metrics_warnings_missing_cash_not_computed_and_no_data(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct, cash=None)
    url = f"/v1/workspaces/{ws}/metrics"
    r = api.client.get(f"{url}?as_of=2026-02-28", headers=acct.headers)
    assert r.status_code == 200
    assert r.json()["gross_revenue_cents_30d"] == 0 and r.json()["runway_months"] is None
    assert [w["code"] for w in r.json()["warnings"]] == ["no_data"]
    missing_cash = {"code": "missing_cash", "message": "Set cash_on_hand_cents for runway."}
    _insert(
        api,
        "mart.cfo_metrics_daily",
        [
            _metrics_row(
                ws,
                "2026-02-27",
                cash_on_hand_cents=None,
                runway_months=None,
                runway_days=None,
                warnings_json=[missing_cash],
            )
        ],
    )
    r = api.client.get(f"{url}?as_of=2026-02-28", headers=acct.headers)
    body = r.json()
    assert body["as_of"] == "2026-02-27" and body["cash_on_hand_cents"] is None
    assert body["runway_months"] is None
    assert [w["code"] for w in body["warnings"]] == ["missing_cash", "not_computed"]
    assert r.headers["x-data-as-of"] == "2026-02-27"
    # Without as_of: today, i.e. the latest day computed.
    assert api.client.get(url, headers=acct.headers).json()["as_of"] == "2026-02-27"
    assert_error(
        api.client.get(f"{url}?as_of=2026-13-01", headers=acct.headers),
        422,
        "invalid_field",
        "as_of",
    )
    assert_error(
        api.client.get(f"{url}?asof=2026-02-01", headers=acct.headers), 400, "parameter_unknown"
    )


def test_a_pending_refresh_is_waited_for_then_reported(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    _insert(api, "mart.cfo_metrics_daily", [_metrics_row(ws, "2026-02-28")])
    r = api.client.post(
        f"/v1/workspaces/{ws}/ingest/expenses", json={"expenses": [EXPENSE]}, headers=acct.headers
    )
    rid = r.json()["refresh_request_id"]
    r = api.client.get(f"/v1/workspaces/{ws}/metrics?as_of=2026-02-28", headers=acct.headers)
    [warning] = r.json()["warnings"]
    assert warning["code"] == "refresh_pending" and rid in warning["message"]
    assert r.headers["x-refresh-pending"] == rid
    alerts = api.client.get(f"/v1/workspaces/{ws}/alerts?as_of=2026-02-28", headers=acct.headers)
    assert alerts.headers["x-refresh-pending"] == rid
    _settle(api, ws)
    r = api.client.get(f"/v1/workspaces/{ws}/metrics?as_of=2026-02-28", headers=acct.headers)
    assert r.json()["warnings"] == [] and "x-refresh-pending" not in r.headers


def test_metrics_alerts_and_memo_of_another_org_are_404(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    _insert(api, "mart.cfo_metrics_daily", [_metrics_row(ws, "2026-02-28")])
    other = register(api.client, "Other Inc")
    member = add_member(api, acct.headers, "member")
    for path in ("metrics", "alerts", "advisory-memo", "forecasts", "scenarios"):
        url = f"/v1/workspaces/{ws}/{path}"
        assert_error(api.client.get(url, headers=other.headers), 404, "resource_missing", "id")
        assert api.client.get(url, headers=member).status_code == 200, path
    assert_error(
        api.client.get("/v1/workspaces/ws_nope/metrics", headers=acct.headers),
        404,
        "resource_missing",
    )


# --- alerts and memo ---------------------------------------------------------------------------


def test_alerts_are_the_mart_rows_of_the_day_in_the_seed_shape(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    _insert(api, "mart.cfo_metrics_daily", [_metrics_row(ws, "2026-02-28")])
    alert = {
        "workspace_id": ws,
        "day": date(2026, 2, 28),
        "alert_id": "al_runway",
        "type": "runway_low",
        "severity": "critical",
        "subject": "",
        "message": "Runway is below 6 months (2.5).",
        "payload_json": {"runway_months": "2.50"},
        "created_at": 1772236800,
    }
    earlier = {**alert, "day": date(2026, 2, 27), "alert_id": "al_old"}
    _insert(api, "mart.alerts", [alert, earlier])
    r = api.client.get(f"/v1/workspaces/{ws}/alerts?as_of=2026-02-28", headers=acct.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "data": [
            {
                "id": "al_runway",
                "type": "runway_low",
                "severity": "critical",
                "message": "Runway is below 6 months (2.5).",
                "payload": {"runway_months": 2.5},
                "workspace_id": ws,
                "org_id": acct.org_id,
                "created_at": "2026-02-28T00:00:00+00:00",
            }
        ]
    }
    assert '"runway_months":2.50' in r.text
    r = api.client.get(f"/v1/workspaces/{ws}/alerts?as_of=2026-02-27", headers=acct.headers)
    assert r.json() == {"data": []}  # no metrics computed that day yet: nothing to show


def test_advisory_memo_stored_or_fallback(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    url = f"/v1/workspaces/{ws}/advisory-memo"
    assert_error(
        api.client.get(f"{url}?as_of=2026-02-28", headers=acct.headers), 404, "resource_missing"
    )
    _insert(
        api, "mart.cfo_metrics_daily", [_metrics_row(ws, d) for d in ("2026-02-27", "2026-02-28")]
    )
    # No stored memo: written now by the rule-based writer (no AI provider configured).
    r = api.client.get(f"{url}?as_of=2026-02-28", headers=acct.headers)
    assert r.status_code == 200, r.text
    memo = r.json()
    assert set(memo) == {
        "workspace_id",
        "as_of",
        "summary",
        "suggestions",
        "risks",
        "grounding",
        "provider",
        "model",
        "ai_available",
        "ai_error",
    }
    assert (memo["workspace_id"], memo["as_of"], memo["provider"]) == (ws, "2026-02-28", "fallback")
    assert memo["model"] is None and memo["ai_available"] is False
    assert set(memo["ai_error"]) == {"type", "code", "message"}
    assert memo["grounding"]["workspace_name"] == "Acme Corp"
    assert memo["grounding"]["metrics"]["mrr_cents"] == 2150000
    # A stored memo (the pipeline's) is answered as stored.
    _insert(
        api,
        "mart.advisory_memos",
        [
            {
                "workspace_id": ws,
                "day": date(2026, 2, 27),
                "summary": "Cash position is stable with 14.3 months runway.",
                "suggestions_json": ["Consider increasing the marketing budget."],
                "risks_json": ["Refund volume rose 2.3x last month."],
                "provider": "huggingface",
                "model": "mistralai/Mistral-7B-Instruct-v0.2",
                "ai_available": True,
                "ai_error_json": None,
                "inputs_json": {"workspace_name": "Acme Corp", "alert_count": 0, "alerts": []},
                "created_at": 1772150400,
            }
        ],
    )
    stored = api.client.get(f"{url}?as_of=2026-02-27", headers=acct.headers).json()
    assert stored["summary"].startswith("Cash position is stable")
    assert (stored["provider"], stored["model"], stored["ai_available"]) == (
        "huggingface",
        "mistralai/Mistral-7B-Instruct-v0.2",
        True,
    )
    assert stored["risks"] == ["Refund volume rose 2.3x last month."]


# --- forecasts and scenarios -------------------------------------------------------------------

SEED_FORECAST = {
    "name": "Q2 2026 Base Plan",
    "as_of": "2026-02-28",
    "horizon_months": 12,
    "assumptions": {"mrr_growth_pct": 6, "monthly_logo_churn_pct": 2, "gross_margin_pct": 85},
    "variants": {
        "base": {},
        "best": {"mrr_growth_pct": 9, "monthly_logo_churn_pct": 1},
        "worst": {"mrr_growth_pct": 2, "monthly_logo_churn_pct": 4},
    },
}


def _mrr_day(ws: str, day: str, mrr_cents: int) -> dict[str, Any]:
    zero = dict.fromkeys(
        (
            "cmrr_micros",
            "new_micros",
            "expansion_micros",
            "reactivation_micros",
            "contraction_micros",
            "churn_micros",
            "fx_micros",
            "new_customers",
            "reactivated_customers",
            "churned_customers",
            "delinquent_churned_customers",
            "active_subscriptions",
        ),
        0,
    )
    return {
        **zero,
        "workspace_id": ws,
        "day": date.fromisoformat(day),
        "currency": "usd",
        "mrr_micros": mrr_cents * C,
        "arr_micros": mrr_cents * C * 12,
        "paying_customers": 10,
        "skipped_currencies_json": {},
        "exact_json": {},
    }


def test_forecast_create_list_get_from_the_marts(api: ApiServer) -> None:
    from finance_pipeline.lib.forecast import forecast

    acct = register(api.client)
    ws = _workspace(api, acct)
    _insert(api, "mart.mrr_daily", [_mrr_day(ws, "2026-02-28", 2150000)])
    url = f"/v1/workspaces/{ws}/forecasts"
    r = api.client.post(url, json=SEED_FORECAST, headers=acct.headers)
    assert r.status_code == 201, r.text
    fc = r.json()
    assert set(fc) == {
        "id",
        "workspace_id",
        "org_id",
        "name",
        "as_of",
        "horizon_months",
        "assumptions",
        "series",
        "created_at",
    }
    assert fc["id"].startswith("fc_") and (fc["workspace_id"], fc["org_id"]) == (ws, acct.org_id)
    assert (fc["name"], fc["as_of"], fc["horizon_months"]) == (
        "Q2 2026 Base Plan",
        "2026-02-28",
        12,
    )
    assert fc["assumptions"] == {
        "mrr_growth_pct": 6,
        "monthly_logo_churn_pct": 2,
        "gross_margin_pct": 85,
    }
    assert set(fc["series"]) == {"months", "base", "best", "worst"}
    assert (
        fc["series"]["months"][:2] == ["2026-03", "2026-04"] and len(fc["series"]["months"]) == 12
    )
    # Start values from the marts: MRR(as_of) from mart.mrr_daily, cash from the workspace.
    expected = forecast(
        SEED_FORECAST,
        start_mrr_micros=2150000 * C,
        cash_on_hand_cents=5000000,
        monthly_recurring_expenses_micros=0,
    )
    for variant in ("base", "best", "worst"):
        series = fc["series"][variant]
        assert series["mrr_cents"] == expected["series"][variant]["mrr_cents"]
        assert series["cash_cents"] == expected["series"][variant]["cash_cents"]
        assert set(series) == {"mrr_cents", "cash_cents", "runway_months"}
    assert api.client.get(f"{url}/{fc['id']}", headers=acct.headers).json() == fc
    listed = api.client.get(url, headers=acct.headers).json()
    assert listed == {
        "data": [
            {
                "id": fc["id"],
                "name": "Q2 2026 Base Plan",
                "as_of": "2026-02-28",
                "horizon_months": 12,
                "created_at": fc["created_at"],
            }
        ],
        "has_more": False,
    }
    assert api.wh.scalar("SELECT is_default FROM mart.forecasts WHERE id = :f", f=fc["id"]) in (
        False,
        0,
    )
    other = register(api.client, "Other Inc")
    assert_error(
        api.client.get(f"{url}/{fc['id']}", headers=other.headers), 404, "resource_missing"
    )
    ws2 = _workspace(api, other)
    r = api.client.get(f"/v1/workspaces/{ws2}/forecasts/{fc['id']}", headers=other.headers)
    assert_error(r, 404, "resource_missing", "forecast_id")
    assert api.client.get(f"/v1/workspaces/{ws2}/forecasts", headers=other.headers).json() == {
        "data": [],
        "has_more": False,
    }


def test_forecast_bad_input_and_roles(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    url = f"/v1/workspaces/{ws}/forecasts"
    body = {k: v for k, v in SEED_FORECAST.items() if k != "horizon_months"}
    assert_error(
        api.client.post(url, json=body, headers=acct.headers),
        422,
        "missing_field",
        "horizon_months",
    )
    for bad, param in (
        ({"horizon_months": 0}, "horizon_months"),
        ({"horizon_months": "12"}, "horizon_months"),
        ({"as_of": "28/02/2026"}, "as_of"),
        ({"assumptions": {"mrr_growth_pct": 5000}}, "assumptions.mrr_growth_pct"),
        ({"assumptions": {"growth": 5}}, "assumptions.growth"),
    ):
        r = api.client.post(url, json={**SEED_FORECAST, **bad}, headers=acct.headers)
        assert_error(r, 422, "invalid_field", param)
    no_cash = _workspace(api, acct, cash=None)
    r = api.client.post(
        f"/v1/workspaces/{no_cash}/forecasts", json=SEED_FORECAST, headers=acct.headers
    )
    assert_error(r, 422, "missing_cash", "cash_on_hand_cents")
    # Without history, an omitted assumption cannot be derived.
    r = api.client.post(url, json={"horizon_months": 3}, headers=acct.headers)
    assert_error(r, 422, "missing_assumption")
    member = add_member(api, acct.headers, "member")
    assert_error(api.client.post(url, json=SEED_FORECAST, headers=member), 403, "insufficient_role")
    finance = add_member(api, acct.headers, "finance")
    assert api.client.post(url, json=SEED_FORECAST, headers=finance).status_code == 201
    assert api.wh.scalar("SELECT COUNT(*) FROM mart.forecasts WHERE workspace_id = :w", w=ws) == 1


def test_scenarios_seed_examples_list_get_and_errors(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    _insert(api, "mart.mrr_daily", [_mrr_day(ws, "2026-02-28", 2150000)])
    fc = api.client.post(f"/v1/workspaces/{ws}/forecasts", json=SEED_FORECAST, headers=acct.headers)
    fc_id = fc.json()["id"]
    url = f"/v1/workspaces/{ws}/scenarios"
    body = {
        "name": "10% price increase",
        "baseline_forecast_id": fc_id,
        "delta": {"type": "price_change", "pct": 0.10},
    }
    r = api.client.post(url, json=body, headers=acct.headers)
    assert r.status_code == 201, r.text
    sc = r.json()
    assert set(sc) == {
        "id",
        "workspace_id",
        "org_id",
        "name",
        "baseline_forecast_id",
        "delta",
        "impact",
        "series",
        "created_at",
    }
    assert sc["id"].startswith("sc_") and (sc["workspace_id"], sc["org_id"]) == (ws, acct.org_id)
    assert sc["delta"] == {"type": "price_change", "pct": 0.1}
    base = fc.json()["series"]["base"]
    scenario = sc["series"]["scenario"]
    assert sc["series"]["months"] == fc.json()["series"]["months"]
    # +10 % price: every month's MRR is 1.1 x the baseline's (up to the cent rounding).
    assert all(
        abs(s - b * 1.1) <= 1 for s, b in zip(scenario["mrr_cents"], base["mrr_cents"], strict=True)
    )
    assert sc["impact"]["final_mrr_cents"] == scenario["mrr_cents"][-1]
    # The impact rounds the exact difference once (each series value was rounded on its own).
    delta = scenario["cash_cents"][-1] - base["cash_cents"][-1]
    assert abs(sc["impact"]["final_cash_delta_cents"] - delta) <= 1
    stored = api.wh.rows("SELECT * FROM mart.scenarios WHERE id = :s", s=sc["id"])[0]
    assert stored["final_mrr_cents"] == sc["impact"]["final_mrr_cents"]

    churn = {"baseline_forecast_id": fc_id, "delta": {"type": "churn_change", "delta_pp": 1.5}}
    hire = {
        "baseline_forecast_id": fc_id,
        "delta": {"type": "hire", "monthly_cost_cents": 1200000, "start_month": "2026-04"},
    }
    for extra in (churn, hire):
        r = api.client.post(url, json=extra, headers=acct.headers)
        assert r.status_code == 201, r.text
        assert r.json()["delta"] == extra["delta"]
    hired = r.json()
    assert hired["series"]["scenario"]["cash_cents"][0] == base["cash_cents"][0]
    assert hired["series"]["scenario"]["cash_cents"][1] == base["cash_cents"][1] - 1200000

    listed = api.client.get(f"{url}?limit=2", headers=acct.headers).json()
    assert listed["has_more"] is True and len(listed["data"]) == 2
    assert set(listed["data"][0]) == {
        "id",
        "name",
        "baseline_forecast_id",
        "delta",
        "impact",
        "created_at",
    }
    rest = api.client.get(
        f"{url}?limit=2&starting_after={listed['data'][1]['id']}", headers=acct.headers
    ).json()
    assert rest["has_more"] is False and len(rest["data"]) == 1
    assert {d["id"] for d in listed["data"] + rest["data"]} >= {sc["id"]}
    assert api.client.get(f"{url}/{sc['id']}", headers=acct.headers).json() == sc

    for bad, status, code, param in (
        ({**body, "delta": {"type": "discount"}}, 422, "invalid_field", "delta.type"),
        ({**body, "delta": {"type": "price_change"}}, 422, "missing_field", "delta.pct"),
        (
            {k: v for k, v in body.items() if k != "baseline_forecast_id"},
            422,
            "missing_field",
            "baseline_forecast_id",
        ),
        (
            {**body, "baseline_forecast_id": "fc_nope"},
            404,
            "resource_missing",
            "baseline_forecast_id",
        ),
    ):
        assert_error(api.client.post(url, json=bad, headers=acct.headers), status, code, param)
    member = add_member(api, acct.headers, "member")
    assert_error(api.client.post(url, json=body, headers=member), 403, "insufficient_role")
    other = register(api.client, "Other Inc")
    assert_error(
        api.client.get(f"{url}/{sc['id']}", headers=other.headers), 404, "resource_missing"
    )
    assert_error(api.client.post(url, json=body, headers=other.headers), 404, "resource_missing")
    ws2 = _workspace(api, other)
    # Another org's forecast is no baseline in your workspace, and their scenarios are not listed.
    r = api.client.post(f"/v1/workspaces/{ws2}/scenarios", json=body, headers=other.headers)
    assert_error(r, 404, "resource_missing", "baseline_forecast_id")
    assert api.client.get(f"/v1/workspaces/{ws2}/scenarios", headers=other.headers).json() == {
        "data": [],
        "has_more": False,
    }
    assert api.wh.scalar("SELECT COUNT(*) FROM mart.scenarios WHERE workspace_id = :w", w=ws) == 3


# --- Stripe ------------------------------------------------------------------------------------


def test_stripe_ingest_checks_the_key_connects_and_requests_a_sync(
    api_server_factory: Any, stripe_standin: Any
) -> None:
    server = api_server_factory(
        requests_inline=False, api_read_wait_seconds=0.3, stripe_api_base=stripe_standin.url
    )
    acct = register(server.client)
    ws = _workspace(server, acct)
    url = f"/v1/workspaces/{ws}/ingest/stripe"
    r = server.client.post(url, json={"stripe_api_key": "sk_test_wrong"}, headers=acct.headers)
    assert_error(r, 422, "invalid_stripe_api_key", "stripe_api_key")
    r = server.client.post(url, json={"stripe_api_key": "hello"}, headers=acct.headers)
    assert_error(r, 422, "invalid_stripe_api_key", "stripe_api_key")
    assert (
        server.wh.rows("SELECT * FROM app.stripe_connections WHERE workspace_id = :w", w=ws) == []
    )

    r = server.client.post(
        url, json={"stripe_api_key": stripe_standin.api_key}, headers=acct.headers
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["ingest_id"].startswith("sync_")
    [conn] = server.wh.rows("SELECT * FROM app.stripe_connections WHERE workspace_id = :w", w=ws)
    assert conn["account_id"] == stripe_standin.account_id and conn["status"] == "active"
    assert conn["api_base"] == stripe_standin.url
    assert stripe_standin.api_key not in json.dumps(conn, default=str)  # stored encrypted
    [req] = pending_requests(server.wh, ws)
    assert (req["id"], req["kind"]) == (body["ingest_id"], "stripe_sync")


def test_stripe_unreachable_is_502(api_server_factory: Any) -> None:
    server = api_server_factory(requests_inline=False, stripe_api_base="http://127.0.0.1:9")
    acct = register(server.client)
    ws = _workspace(server, acct)
    r = server.client.post(
        f"/v1/workspaces/{ws}/ingest/stripe",
        json={"stripe_api_key": "sk_test_anything"},
        headers=acct.headers,
    )
    assert_error(r, 502, "stripe_unavailable")
    assert (
        server.wh.rows("SELECT * FROM app.stripe_connections WHERE workspace_id = :w", w=ws) == []
    )


def test_ingest_replays_an_idempotency_key_and_scoped_keys_see_one_workspace(
    api: ApiServer,
) -> None:
    acct = register(api.client)
    ws, other_ws = _workspace(api, acct), _workspace(api, acct)
    url = f"/v1/workspaces/{ws}/ingest/expenses"
    headers = {**acct.headers, "Idempotency-Key": "ingest-1"}
    first = api.client.post(url, json={"expenses": [EXPENSE]}, headers=headers)
    replay = api.client.post(url, json={"expenses": [EXPENSE]}, headers=headers)
    assert replay.json() == first.json() and replay.headers["idempotent-replayed"] == "true"
    changed = {"expenses": [{**EXPENSE, "amount_cents": 1}]}
    assert_error(api.client.post(url, json=changed, headers=headers), 409, "idempotency_key_reused")
    assert (
        api.wh.scalar("SELECT COUNT(*) FROM raw.expense_events WHERE workspace_id = :w", w=ws) == 1
    )

    r = api.client.post(
        "/v1/api_keys", json={"role": "finance", "workspace_id": ws}, headers=acct.headers
    )
    key = bearer(r.json()["key"])
    assert api.client.get(f"/v1/workspaces/{ws}/metrics", headers=key).status_code == 200
    body = {"expenses": [{**EXPENSE, "external_id": "k-1"}]}
    assert api.client.post(url, json=body, headers=key).status_code == 202
    for r in (
        api.client.get(f"/v1/workspaces/{other_ws}/metrics", headers=key),
        api.client.post(f"/v1/workspaces/{other_ws}/ingest/expenses", json=body, headers=key),
        api.client.get(f"/v1/workspaces/{other_ws}/forecasts", headers=key),
    ):
        assert_error(r, 404, "resource_missing", "id")


def test_a_cash_change_restates_the_computed_days(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    url = f"/v1/workspaces/{ws}"
    # Nothing computed yet: nothing to restate.
    api.client.patch(url, json={"cash_on_hand_cents": 7500000}, headers=acct.headers)
    assert pending_requests(api.wh, ws) == []
    _insert(
        api,
        "mart.cfo_metrics_daily",
        [_metrics_row(ws, "2026-02-27"), _metrics_row(ws, "2026-02-28")],
    )
    api.client.patch(url, json={"name": "Renamed"}, headers=acct.headers)
    assert pending_requests(api.wh, ws) == []  # the name is in no metric
    api.client.patch(url, json={"cash_on_hand_cents": 100}, headers=acct.headers)
    [req] = pending_requests(api.wh, ws)
    assert (str(req["first_day"]), str(req["last_day"])) == ("2026-02-27", "2026-02-28")
    r = api.client.get(f"{url}/metrics?as_of=2026-02-28", headers=acct.headers)
    assert r.json()["warnings"][-1]["code"] == "refresh_pending"

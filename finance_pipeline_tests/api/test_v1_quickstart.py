"""Reads see writes: the 004 v1 API's quickstart shell session, run verbatim (curl) against our
server, returns metrics that include what it just ingested. The ingests request a refresh, the
embedded server runs it inline, and the metrics read waits for it (docs/api.md)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from finance_pipeline_dev.standin.shapes.customers import make_customer
from finance_pipeline_dev.standin.shapes.invoices import make_invoice

from finance_pipeline.requests.results import INGEST_OBJECT_TABLES
from finance_pipeline_tests.api.conftest import ApiServer, _factory, register
from finance_pipeline_tests.api.v1_helpers import make_v1_server

SEED_HOST = "https://mycfo.vercel.app"

# The quickstart exactly as the 004 v1 API document prints it (only the host is replaced).
QUICKSTART = r"""
# 1. Register
TOKEN=$(curl -s -X POST https://mycfo.vercel.app/v1/auth/register \
-H "Content-Type: application/json" \
-d '{"org_name":"Acme","email":"ceo@acme.com","password":"hunter2"}' \
| python3 -c "import sys,json; print(json.load(sys.stdin)['access_token'])")
# 2. Create workspace
WS=$(curl -s -X POST https://mycfo.vercel.app/v1/workspaces \
-H "Authorization: Bearer $TOKEN" \
-H "Content-Type: application/json" \
-d '{"name":"Acme Corp","cash_on_hand_cents":5000000}' \
| python3 -c "import sys,json; print(json.load(sys.stdin)['id'])")
# 3. Ingest expenses
curl -s -X POST https://mycfo.vercel.app/v1/workspaces/$WS/ingest/expenses \
-H "Authorization: Bearer $TOKEN" \
-H "Content-Type: application/json" \
-d '{"expenses":[
{"subtype":"recurring_expense","amount_cents":120000,"occurred_at":"2026-02-01","vendor":"AWS"},
{"subtype":"one_time_expense","amount_cents":500000,"occurred_at":"2026-02-15","vendor":"Design contractor"}
]}'
# 4. Ingest recurring revenue
curl -s -X POST https://mycfo.vercel.app/v1/workspaces/$WS/ingest/revenue \
-H "Authorization: Bearer $TOKEN" \
-H "Content-Type: application/json" \
-d '{"revenue":[
{"subtype":"recurring","amount_cents":250000,"occurred_at":"2026-02-01","description":"Feb subscriptions"}
]}'
# 5. Pull metrics
curl -s "https://mycfo.vercel.app/v1/workspaces/$WS/metrics?as_of=2026-02-28" \
-H "Authorization: Bearer $TOKEN"
# 6. Run a 12-month forecast
FC=$(curl -s -X POST https://mycfo.vercel.app/v1/workspaces/$WS/forecasts \
-H "Authorization: Bearer $TOKEN" \
-H "Content-Type: application/json" \
-d '{"name":"Base plan","horizon_months":12,
"assumptions":{"mrr_growth_pct":6,"monthly_logo_churn_pct":2,"gross_margin_pct":85},
"variants":{"base":{},"best":{"mrr_growth_pct":9},"worst":{"mrr_growth_pct":2}}}' \
| python3 -c "import sys,json; print(json.load(sys.stdin)['id'])")
# 7. What-if: 10% price increase
curl -s -X POST https://mycfo.vercel.app/v1/workspaces/$WS/scenarios \
-H "Authorization: Bearer $TOKEN" \
-H "Content-Type: application/json" \
-d "{\"name\":\"Price +10%\",\"baseline_forecast_id\":\"$FC\",\"delta\":{\"type\":\"price_change\",\"pct\":0.10}}"
# 8. Check alerts
curl -s "https://mycfo.vercel.app/v1/workspaces/$WS/alerts" \
-H "Authorization: Bearer $TOKEN"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """An embedded-default server (SQLite, inline refreshes); reads may wait for two inline runs
    on a shared 2-core machine, so the bound is above the 20 s default."""
    make, started = _factory(tmp_path_factory.mktemp("quickstart"))
    yield make_v1_server(make)
    for s in started:
        s.stop()


def _documents(text: str) -> list[dict]:
    """The JSON bodies curl printed back to back."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        out.append(doc)
    return out


def test_the_quickstart_verbatim_sees_what_it_ingested(server: ApiServer) -> None:
    script = "set -e\n" + QUICKSTART.replace(SEED_HOST, server.base_url)
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    expenses, revenue, metrics, scenario, alerts = _documents(done.stdout)

    assert {k: expenses[k] for k in ("status", "inserted", "duplicates")} == {
        "status": "completed",
        "inserted": 2,
        "duplicates": 0,
    }
    assert expenses["ingest_id"].startswith("ing_")
    assert (revenue["status"], revenue["inserted"], revenue["duplicates"]) == ("completed", 1, 0)

    # The 30 days ending 2026-02-28 hold everything ingested (docs/metrics.md §9).
    assert metrics == {
        "as_of": "2026-02-28",
        "currency": "USD",
        "gross_revenue_cents_30d": 250000,
        "refunds_cents_30d": 0,
        "net_revenue_cents_30d": 250000,
        "mrr_cents": 250000,
        "arr_cents": 3000000,
        "burn_cents_30d": 620000 - 250000,
        "recurring_burn_cents_30d": 120000 - 250000,
        "one_time_expenses_cents_30d": 500000,
        "cash_on_hand_cents": 5000000,
        # Revenue covers recurring expenses: burn is not positive, so runway is null.
        "runway_months": None,
        "runway_days": None,
        "total_expenses_cents_30d": 620000,
        "recurring_expenses_cents_30d": 120000,
        "warnings": [],
    }
    ws_id = server.wh.scalar("SELECT id FROM app.workspaces WHERE name = 'Acme Corp'")
    [mart] = server.wh.rows(
        "SELECT * FROM mart.cfo_metrics_daily WHERE workspace_id = :w AND day = '2026-02-28'",
        w=ws_id,
    )
    for key, value in metrics.items():
        if key.endswith("_cents") or key.endswith("_cents_30d"):
            assert mart[key] == value, key

    assert scenario["id"].startswith("sc_") and scenario["name"] == "Price +10%"
    assert scenario["delta"] == {"type": "price_change", "pct": 0.1}
    assert len(scenario["series"]["months"]) == 12
    assert set(scenario["impact"]) >= {"final_cash_delta_cents", "final_mrr_cents"}
    forecast_id = scenario["baseline_forecast_id"]
    assert server.wh.scalar("SELECT name FROM mart.forecasts WHERE id = :f", f=forecast_id) == (
        "Base plan"
    )
    assert set(alerts) == {"data"} and isinstance(alerts["data"], list)
    # Every request the ingests queued ran and succeeded.
    statuses = {
        r["status"]
        for r in server.wh.rows(
            "SELECT status FROM app.pipeline_requests WHERE workspace_id = :w", w=ws_id
        )
    }
    assert statuses == {"succeeded"}


def test_stripe_ingest_syncs_inline_and_reads_wait_for_it(
    api_server_factory: Any, stripe_standin: Any
) -> None:
    """Embedded default: the sync the Stripe ingest requests runs in the API process, and a
    metrics read waits for it instead of answering stale figures."""
    server = make_v1_server(api_server_factory, stripe_api_base=stripe_standin.url)
    created = int(datetime(2026, 11, 2, 12, tzinfo=UTC).timestamp())
    stripe_standin.add_many(
        [
            make_customer("cus_q", created=created),
            *(
                make_invoice(
                    f"in_q{n}", customer="cus_q", created=created + n, currency="usd", lines=[]
                )
                for n in (1, 2)
            ),
        ]
    )
    acct = register(server.client)
    r = server.client.post(
        "/v1/workspaces", json={"name": "Acme Corp", "cash_on_hand_cents": 1}, headers=acct.headers
    )
    ws = r.json()["id"]
    r = server.client.post(
        f"/v1/workspaces/{ws}/ingest/stripe",
        json={"stripe_api_key": stripe_standin.api_key},
        headers=acct.headers,
    )
    assert r.status_code == 202, r.text
    sync_id = r.json()["ingest_id"]
    metrics = server.client.get(f"/v1/workspaces/{ws}/metrics", headers=acct.headers)
    assert "refresh_pending" not in [w["code"] for w in metrics.json()["warnings"]]
    row = server.wh.rows("SELECT * FROM app.pipeline_requests WHERE id = :i", i=sync_id)[0]
    assert row["status"] == "succeeded", row["error"]
    # The seed's answer: the sync ran within the read wait, so it is completed with its counts.
    stored = sum(
        int(server.wh.scalar(f"SELECT COUNT(*) FROM {t} WHERE workspace_id = :w", w=ws))
        for t in INGEST_OBJECT_TABLES
    )
    assert stored >= 2  # the two invoices, and whatever the stand-in's account holds
    assert (r.json()["status"], r.json()["inserted"], r.json()["duplicates"]) == (
        "completed",
        stored,
        0,
    )
    # Re-running is safe: nothing new is inserted; what the incremental sync read again is a
    # duplicate.
    again = server.client.post(
        f"/v1/workspaces/{ws}/ingest/stripe",
        json={"stripe_api_key": stripe_standin.api_key},
        headers=acct.headers,
    )
    assert again.status_code == 202, again.text
    assert (again.json()["status"], again.json()["inserted"]) == ("completed", 0)
    assert 0 <= again.json()["duplicates"] <= stored

"""GET /api/stripe/revenue-sync by a member over real HTTP, the sync running inline as a real
Dagster `daily_refresh` run against the local Stripe stand-in: the seed's counters of a known
fixture, exactly; a sync that outlasts the read wait answers its pending request; a sync Stripe
refuses answers 502 with the request's error, one the pipeline fails 500."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from finance_pipeline_dev.pytest_plugin import TestStandIn
from finance_pipeline_dev.standin.shapes.customers import make_customer
from finance_pipeline_dev.standin.shapes.invoices import make_invoice, make_invoice_line

from finance_pipeline.requests.store import finish, pending_requests
from finance_pipeline.tenancy import connect_stripe
from finance_pipeline_tests.api.conftest import ApiServer, ServerFactory
from finance_pipeline_tests.api.margins_fixtures import Org, assert_error, new_org

# Long enough for a real inline run on a loaded machine; the HTTP client waits a little longer.
WAIT_SECONDS = 300
CLIENT_TIMEOUT = WAIT_SECONDS + 30


def _ts(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, 12, tzinfo=UTC).timestamp())


# (invoice, customer, currency, created): USD needs no rate; EUR has one on Nov 3 only, GBP none.
INVOICES = [
    ("in_a1", "cus_a", "usd", _ts(2026, 10, 15)),
    ("in_a2", "cus_a", "usd", _ts(2026, 11, 2)),
    ("in_a3", "cus_a", "usd", _ts(2026, 11, 20)),
    ("in_b1", "cus_b", "eur", _ts(2026, 11, 3)),
    ("in_b2", "cus_b", "eur", _ts(2026, 11, 4)),
    ("in_c1", "cus_c", "gbp", _ts(2026, 11, 5)),
]


def _seed_stripe(standin: TestStandIn) -> None:
    customers = [make_customer(c, created=_ts(2026, 10, 1)) for c in ("cus_a", "cus_b", "cus_c")]
    invoices = [
        make_invoice(
            i,
            customer=c,
            created=t,
            currency=cur,
            lines=[
                make_invoice_line(
                    f"il_{i}",
                    invoice=i,
                    amount=10_000,
                    currency=cur,
                    period_start=t,
                    period_end=t + 30 * 86400,
                )
            ],
        )
        for i, c, cur, t in INVOICES
    ]
    standin.add_many([*customers, *invoices])


def _connect(api: ApiServer, ws: str, standin: TestStandIn, key: str) -> None:
    # Encrypted with the process's master key, which the inline run decrypts it with.
    connect_stripe(
        api.wh, ws, account_id=standin.account_id, livemode=False, api_key=key,
        api_base=standin.url,
    )  # fmt: skip


def _sync(api: ApiServer, org: Org) -> dict:
    r = api.client.get("/api/stripe/revenue-sync", headers=org.headers, timeout=CLIENT_TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()["data"]


@pytest.mark.slow
def test_a_member_sync_answers_the_seed_counters(
    api_server_factory: ServerFactory, stripe_standin: TestStandIn
) -> None:
    api = api_server_factory(api_read_wait_seconds=WAIT_SECONDS)
    assert api.settings.resolved_requests_inline
    org = new_org(api)
    _seed_stripe(stripe_standin)
    # The full test key: the daily sync also reads charges, refunds and balance transactions,
    # which the stand-in's restricted key may not.
    _connect(api, org.workspace_id, stripe_standin, stripe_standin.api_key)
    with api.wh.begin() as db:
        db.execute(
            sa.insert(api.wh.table("raw.fx_rates")),
            [{"base": "usd", "currency": "eur", "date": datetime(2026, 11, 3).date(),
              "rate": "1.08", "source": "test", "ingested_at": 0}],
        )  # fmt: skip
    start = time.monotonic()
    data = _sync(api, org)
    elapsed_ms = (time.monotonic() - start) * 1000
    assert data["status"] == "succeeded", data
    assert data["requestId"].startswith("sync_")
    assert (data["orgId"], data["workspaceId"]) == (org.owner.org_id, org.workspace_id)
    duration = data.pop("durationMs")
    assert isinstance(duration, int) and 0 < duration <= elapsed_ms
    assert {k: v for k, v in data.items() if k not in ("orgId", "workspaceId", "requestId")} == {
        "status": "succeeded",
        "invoicesFetched": 6,
        "customersProcessed": 3,
        "periodsUpdated": 4,  # a: Oct and Nov; b: Nov; c: Nov
        "invoicesSkipped": 2,  # the EUR invoice of Nov 4 and the GBP one
        "skippedCurrencies": {"eur": 1, "gbp": 1},
        "autoMatchesCreated": 0,  # the sync job does not run the auto-matcher
    }
    row = api.wh.rows(
        "SELECT status, result_json FROM app.pipeline_requests WHERE id = :i", i=data["requestId"]
    )[0]
    assert row["status"] == "succeeded" and row["result_json"]["durationMs"] == duration

    # A second sync is incremental: it re-lists only what was created within the lookback of the
    # newest invoice seen (Stripe's index lag), i.e. in_a3 (USD, cus_a, November).
    again = _sync(api, org)
    assert again["status"] == "succeeded" and again["requestId"] != data["requestId"]
    assert {k: again[k] for k in ("invoicesFetched", "customersProcessed", "periodsUpdated",
                                  "invoicesSkipped", "skippedCurrencies")} == {
        "invoicesFetched": 1, "customersProcessed": 1, "periodsUpdated": 1,
        "invoicesSkipped": 0, "skippedCurrencies": {},
    }  # fmt: skip


def test_a_sync_outlasting_the_read_wait_answers_its_pending_request(
    api_server_factory: ServerFactory, stripe_standin: TestStandIn
) -> None:
    """FP_API_READ_WAIT_SECONDS=0 and no inline runner: the request is answered as queued."""
    api = api_server_factory(api_read_wait_seconds=0, requests_inline=False)
    org = new_org(api)
    _connect(api, org.workspace_id, stripe_standin, stripe_standin.api_key)
    data = _sync(api, org)
    assert data["status"] == "queued" and data["requestId"].startswith("sync_")
    counters = ("customersProcessed", "periodsUpdated", "autoMatchesCreated", "invoicesFetched",
                "invoicesSkipped", "skippedCurrencies", "durationMs")  # fmt: skip
    assert {k: data[k] for k in counters} == dict.fromkeys(counters)


@pytest.mark.slow
def test_a_sync_stripe_refuses_answers_502_with_the_request_error(
    api_server_factory: ServerFactory, stripe_standin: TestStandIn
) -> None:
    api = api_server_factory(api_read_wait_seconds=WAIT_SECONDS)
    org = new_org(api)
    # A key the stand-in does not know: Stripe answers 401 to the sync's reads.
    _connect(api, org.workspace_id, stripe_standin, "rk_test_revoked_key_0000")
    r = api.client.get("/api/stripe/revenue-sync", headers=org.headers, timeout=CLIENT_TIMEOUT)
    err = assert_error(r, 502, "stripe_sync_failed")
    [row] = api.wh.rows(
        "SELECT id, status, error, result_json FROM app.pipeline_requests WHERE workspace_id = :w",
        w=org.workspace_id,
    )
    assert row["status"] == "failed" and row["result_json"] is None
    assert row["id"] in err["message"] and row["error"] in err["message"]


def test_a_sync_failing_in_the_pipeline_answers_500(
    api_server_factory: ServerFactory, stripe_standin: TestStandIn
) -> None:
    """No Stripe error recorded during the sync: the failure is the pipeline's (500). A runner
    stand-in (another thread, as the daemon would) fails the request while the call waits."""
    api = api_server_factory(api_read_wait_seconds=60, requests_inline=False)
    org = new_org(api)
    _connect(api, org.workspace_id, stripe_standin, stripe_standin.api_key)

    def fail_it() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = pending_requests(api.wh, org.workspace_id)
            if rows:
                finish(api.wh, [rows[0]["id"]], "failed", error="run r1 failed: core__ledger: boom")
                return
            time.sleep(0.1)

    runner = threading.Thread(target=fail_it)
    runner.start()
    r = api.client.get("/api/stripe/revenue-sync", headers=org.headers, timeout=CLIENT_TIMEOUT)
    runner.join()
    err = assert_error(r, 500, "sync_failed")
    assert "core__ledger: boom" in err["message"]

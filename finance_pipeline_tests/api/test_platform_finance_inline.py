"""End to end on the embedded default (requests run inline in the API process): a Stripe event
delivered by the stand-in's signed webhook asks for a sync, the sync runs as a real Dagster
`daily_refresh` run against the stand-in, and the job status and sync status follow it."""

from __future__ import annotations

import time

import dagster as dg
import pytest
from finance_pipeline_dev.pytest_plugin import TestStandIn
from finance_pipeline_dev.standin.webhooks import deliver

from finance_pipeline.api.inline_runs import dagster_instance
from finance_pipeline.tenancy import connect_stripe
from finance_pipeline_tests.api.conftest import ServerFactory, register
from finance_pipeline_tests.api.test_platform_finance_jobs import SECRET
from finance_pipeline_tests.api.test_platform_finance_mrr import BASE


@pytest.mark.slow
def test_a_webhook_runs_a_real_sync_inline(
    api_server_factory: ServerFactory, stripe_standin: TestStandIn
) -> None:
    api = api_server_factory()
    assert api.settings.resolved_requests_inline
    acct = register(api.client)
    ws = api.client.post("/v1/workspaces", json={"name": "W"}, headers=acct.headers).json()["id"]
    # Encrypted with the process's master key: the run (not the API) decrypts it.
    connect_stripe(
        api.wh,
        ws,
        account_id=stripe_standin.account_id,
        livemode=False,
        api_key=stripe_standin.api_key,
        api_base=stripe_standin.url,
    )
    r = api.client.put(
        f"{BASE}/stripe/webhook-secret", json={"secret": SECRET}, headers=acct.headers
    )
    hook = r.json()["data"]["webhook_url"]
    customer = stripe_standin.add({"object": "customer", "email": "a@b.c"}, "customer.created")
    [event] = [
        e
        for e in stripe_standin.store.objects(stripe_standin.account_id, "event")
        if e["data"]["object"]["id"] == customer["id"]
    ]
    r = deliver(hook, event, SECRET, client=api.client)
    assert r.status_code == 200, r.text
    job_id = r.json()["data"]["job_id"]

    deadline = time.monotonic() + 300
    while True:
        job = api.client.get(f"{BASE}/stripe-sync/{job_id}", headers=acct.headers).json()["data"]
        if job["status"] != "processing" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert job["status"] == "completed", job
    # The instance the API ran it in: the deployment's DAGSTER_HOME when the environment names one
    # (another test of this process may have set it), else the embedded one under the data dir.
    run = dagster_instance(api.app.state.ctx).get_run_by_id(job["run_id"])
    assert run is not None and run.job_name == "daily_refresh"
    assert run.status == dg.DagsterRunStatus.SUCCESS
    status = api.client.get(f"{BASE}/stripe-sync-status", headers=acct.headers).json()["data"]
    assert status["pending_webhooks"] == 0
    assert status["last_webhook_event"]["id"] == event["id"]
    synced = api.wh.rows("SELECT id FROM raw.stripe_customers WHERE workspace_id = :w", w=ws)
    assert {"id": customer["id"]} in synced

"""No secret is left in clear anywhere the product writes or answers (docs/security.md): after a
Stripe connection, a sync run inline through Dagster, a webhook secret, an API key and a round of
refused requests, neither the Stripe key, the webhook signing secret, the API key, the JWT
signing key nor the master key appears in any file under the data folder (warehouse, Dagster
storage, event log, compute logs), in the process's output or logs, or in any response body
other than the one that shows the API key once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from finance_pipeline_dev.pytest_plugin import TestStandIn

from finance_pipeline_tests.api.conftest import ServerFactory, register
from finance_pipeline_tests.api.test_platform_finance_jobs import SECRET as WEBHOOK_SECRET
from finance_pipeline_tests.api.test_platform_finance_mrr import BASE
from finance_pipeline_tests.secret_scan import joined, leaks, written_files


@pytest.mark.slow
def test_no_secret_is_stored_logged_or_answered_in_clear(
    api_server_factory: ServerFactory,
    stripe_standin: TestStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The embedded Dagster instance under the data folder, so its storage is on disk to scan.
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    caplog.set_level(logging.DEBUG)
    api = api_server_factory(stripe_api_base=stripe_standin.url, api_read_wait_seconds=300)
    bodies: list[str] = []

    def call(method: str, url: str, **kwargs: object) -> dict:
        r = api.client.request(method, url, timeout=300, **kwargs)
        bodies.append(r.text)
        return r.json() if r.content else {}

    acct = register(api.client)
    ws = call("POST", "/v1/workspaces", json={"name": "W"}, headers=acct.headers)["id"]
    done = call(
        "POST",
        f"/v1/workspaces/{ws}/ingest/stripe",
        json={"stripe_api_key": stripe_standin.api_key},
        headers=acct.headers,
    )
    assert done["status"] == "completed", done
    call(
        "PUT",
        f"{BASE}/stripe/webhook-secret",
        json={"secret": WEBHOOK_SECRET},
        headers=acct.headers,
    )
    created = api.client.post("/v1/api_keys", json={"role": "finance"}, headers=acct.headers)
    assert created.status_code == 201, created.text
    api_key = created.json()["key"]
    # Refused requests that carry the secrets: their errors must not echo them.
    wrong_stripe = stripe_standin.api_key[:-4] + "zzzz"
    call(
        "POST",
        f"/v1/workspaces/{ws}/ingest/stripe",
        json={"stripe_api_key": wrong_stripe},
        headers=acct.headers,
    )
    call("GET", "/v1/workspaces", headers={"Authorization": f"Bearer {api_key}x"})
    call(
        "PUT",
        f"{BASE}/stripe/webhook-secret",
        json={"secret": "whsec_" + "x" * 5},
        headers=acct.headers,
    )
    call("GET", "/v1/workspaces", headers={"Authorization": f"Bearer {api_key}"})
    api.client.post(
        f"{BASE}/stripe/webhook/{ws}",
        content=b"{}",
        headers={"Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"},
    )

    data = Path(api.settings.data_dir)
    secrets = {
        "Stripe key": stripe_standin.api_key,
        "rejected Stripe key": wrong_stripe,
        "webhook secret": WEBHOOK_SECRET,
        "API key": api_key,
        "JWT signing key": (data / ".jwt_secret").read_text().strip(),
        "master key": api.settings.secret_key.get_secret_value() if api.settings.secret_key else "",
    }
    places = written_files(data)
    # The sync ran as a Dagster run whose storage is in the data folder.
    assert any(p.endswith(".db") for p in places) and any("warehouse" in p for p in places)
    out, err = capfd.readouterr()
    places["stdout"], places["stderr"] = out.encode(), err.encode()
    places["log records"] = joined(r.getMessage() for r in caplog.records)
    places["response bodies"] = joined(bodies)
    assert leaks(secrets, places) == []

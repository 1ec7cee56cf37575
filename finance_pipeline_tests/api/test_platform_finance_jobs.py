"""The 000 platform finance API's Stripe sync status, sync requests, Stripe webhook and report
exports over real HTTP: seed shapes, sync requests queued for the pipeline (job status follows the
request row), webhooks signed like Stripe's (stand-in helper) verified and idempotent by event id,
exports with signed expiring download links, roles (403) and tenancy (404)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pytest
from finance_pipeline_dev.standin.shapes.events import make_event
from finance_pipeline_dev.standin.webhooks import deliver, signature_header

from finance_pipeline.api.platform_finance import links
from finance_pipeline.reports.exports import run_export
from finance_pipeline.requests.store import finish, get_request
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.stripe_sync.webhooks import platform_sync_status
from finance_pipeline.tenancy import connect_stripe
from finance_pipeline_tests.api.conftest import Account, ApiServer, _factory, add_member, register
from finance_pipeline_tests.api.test_platform_finance_mrr import BASE, assert_pf_error

SECRET = "whsec_test_0123456789abcdef"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """Requests stay queued (no inline runs): the tests play the pipeline's part."""
    make, started = _factory(tmp_path_factory.mktemp("pf_jobs"))
    yield make(requests_inline=False)
    for server in started:
        server.stop()


def _org(api: ApiServer, *, stripe: bool = True) -> tuple[Account, str]:
    acct = register(api.client)
    ws = api.client.post("/v1/workspaces", json={"name": "W"}, headers=acct.headers).json()["id"]
    if stripe:
        connect_stripe(
            api.wh,
            ws,
            account_id="acct_test",
            livemode=False,
            api_key="sk_test_0123456789",
            settings=api.settings,
        )
    return acct, ws


def _event(evt: str, created: int, type_: str = "invoice.paid") -> dict:
    obj = {"id": "in_1", "object": "invoice", "customer": "cus_1", "livemode": False}
    return make_event(evt, type=type_, created=created, data_object=obj)


def _synced(api: ApiServer, ws: str, at: int) -> None:
    """Every stream of the workspace last synced successfully at `at`."""
    with api.wh.begin() as db:
        api.wh.upsert(
            db,
            "raw.sync_state",
            [
                {
                    "workspace_id": ws,
                    "stream": s,
                    "status": "ok",
                    "last_success_at": at,
                    "objects_total": 1234 if s == "invoices" else 1,
                }
                for s in STREAMS
            ],
            key=("workspace_id", "stream"),
        )


def test_sync_status_in_the_seed_shape(api: ApiServer) -> None:
    acct, ws = _org(api)
    now = int(time.time())
    _synced(api, ws, now - 60)
    r = api.client.get(f"{BASE}/stripe-sync-status", headers=acct.headers)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert r.json()["success"] is True
    assert data == {
        "last_sync": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
        "sync_health": "healthy",
        "invoices_synced": 1234,
        "failed_payments": 0,
        "pending_webhooks": 0,
        "last_webhook_event": None,
    }
    with api.wh.begin() as db:
        api.wh.upsert(
            db,
            "raw.sync_state",
            [{"workspace_id": ws, "stream": "charges", "status": "error", "last_error": "boom"}],
            key=("workspace_id", "stream"),
        )
    r = api.client.get(f"{BASE}/stripe-sync-status", headers=acct.headers)
    assert r.json()["data"]["sync_health"] == "error"


def test_force_sync_queues_a_request_and_its_job_status_follows_it(api: ApiServer) -> None:
    acct, ws = _org(api)
    body = {"reason": "Manual reconciliation for month-end close"}
    r = api.client.post(f"{BASE}/stripe-sync", json=body, headers=acct.headers)
    assert r.status_code == 202, r.text
    data = r.json()["data"]
    assert set(data) == {"job_id", "status", "estimated_duration_seconds"}
    assert data["status"] == "processing" and data["estimated_duration_seconds"] == 120
    row = get_request(api.wh, data["job_id"])
    assert row is not None and (row["kind"], row["workspace_id"], row["status"]) == (
        "stripe_sync",
        ws,
        "queued",
    )
    assert row["reason"] == body["reason"]
    url = f"{BASE}/stripe-sync/{data['job_id']}"
    job = api.client.get(url, headers=acct.headers).json()["data"]
    assert (job["job_id"], job["status"], job["run_id"], job["error"]) == (
        data["job_id"],
        "processing",
        None,
        None,
    )
    finish(api.wh, [data["job_id"]], "succeeded", run_id="run-1")
    job = api.client.get(url, headers=acct.headers).json()["data"]
    assert (job["status"], job["run_id"]) == ("completed", "run-1")
    assert job["finished_at"].endswith("Z")
    # Bad input: 400 naming the field, nothing written.
    before = api.wh.scalar("SELECT COUNT(*) FROM app.pipeline_requests")
    for bad in ({}, {"reason": ""}, {"reason": "x", "extra": 1}, {"reason": 5}):
        r = api.client.post(f"{BASE}/stripe-sync", json=bad, headers=acct.headers)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] in ("reason", "extra")
    assert api.wh.scalar("SELECT COUNT(*) FROM app.pipeline_requests") == before
    # No Stripe connection: 409.
    other, _ = _org(api, stripe=False)
    r = api.client.post(f"{BASE}/stripe-sync", json=body, headers=other.headers)
    assert_pf_error(r, 409, "stripe_not_connected")
    # Another org's job is a 404; a member cannot force a sync but can read.
    assert_pf_error(api.client.get(url, headers=other.headers), 404, "resource_missing", "job_id")
    member = add_member(api, acct.headers, "member", acct.org_id)
    assert_pf_error(
        api.client.post(f"{BASE}/stripe-sync", json=body, headers=member), 403, "insufficient_role"
    )
    assert api.client.get(url, headers=member).status_code == 200
    finance = add_member(api, acct.headers, "finance", acct.org_id)
    assert api.client.post(f"{BASE}/stripe-sync", json=body, headers=finance).status_code == 202
    # A key scoped to another workspace of the same org does not see the job.
    ws2 = api.client.post("/v1/workspaces", json={"name": "W2"}, headers=acct.headers).json()["id"]
    key = api.client.post(
        "/v1/api_keys", json={"role": "finance", "workspace_id": ws2}, headers=acct.headers
    ).json()["key"]
    scoped = {"Authorization": f"Bearer {key}"}
    assert_pf_error(api.client.get(url, headers=scoped), 404, "resource_missing", "job_id")
    # Idempotency-Key: the retry replays the first answer, one request queued.
    keyed = {**acct.headers, "Idempotency-Key": "close-2025-11", "X-Workspace-Id": ws}
    first = api.client.post(f"{BASE}/stripe-sync", json=body, headers=keyed)
    again = api.client.post(f"{BASE}/stripe-sync", json=body, headers=keyed)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()


def test_webhook_verifies_records_once_and_asks_for_a_sync(api: ApiServer) -> None:
    acct, ws = _org(api)
    member = add_member(api, acct.headers, "member", acct.org_id)
    r = api.client.put(f"{BASE}/stripe/webhook-secret", json={"secret": SECRET}, headers=member)
    assert_pf_error(r, 403, "insufficient_role")
    r = api.client.put(
        f"{BASE}/stripe/webhook-secret", json={"secret": "nope"}, headers=acct.headers
    )
    assert_pf_error(r, 400, "invalid_field", "secret")
    r = api.client.put(
        f"{BASE}/stripe/webhook-secret", json={"secret": SECRET}, headers=acct.headers
    )
    assert r.status_code == 200, r.text
    hook = r.json()["data"]["webhook_url"]
    assert hook == f"{api.base_url}{BASE}/stripe/webhook/{ws}"
    stored = api.wh.scalar(
        "SELECT webhook_secret_ciphertext FROM app.stripe_connections WHERE workspace_id = :w", w=ws
    )
    assert stored and SECRET not in stored  # encrypted at rest

    created = int(time.time()) - 5
    event = _event("evt_abc123", created)
    r = deliver(hook, event, SECRET, client=api.client)
    assert r.status_code == 200, r.text
    receipt = r.json()["data"]
    assert receipt["event_id"] == "evt_abc123" and receipt["duplicate"] is False
    job = get_request(api.wh, receipt["job_id"])
    assert job is not None and job["reason"] == "webhook evt_abc123" and job["status"] == "queued"
    stored_event = api.wh.rows(
        "SELECT type, object_id FROM raw.stripe_events WHERE workspace_id = :w AND id = :i",
        w=ws,
        i="evt_abc123",
    )
    assert stored_event == [{"type": "invoice.paid", "object_id": "in_1"}]
    # A redelivery is a 200 no-op; a second event shares the queued sync.
    again = deliver(hook, event, SECRET, client=api.client).json()["data"]
    assert again == {**receipt, "duplicate": True}
    second = deliver(
        hook, _event("evt_def456", created + 1, "charge.failed"), SECRET, client=api.client
    )
    assert second.json()["data"]["job_id"] == receipt["job_id"]
    assert (
        api.wh.scalar("SELECT COUNT(*) FROM app.pipeline_requests WHERE workspace_id = :w", w=ws)
        == 1
    )
    status = api.client.get(f"{BASE}/stripe-sync-status", headers=acct.headers).json()["data"]
    assert status["pending_webhooks"] == 2
    # Synced a minute ago, but a webhook waiting 5+ minutes for its sync is `delayed`.
    _synced(api, ws, int(time.time()) - 60)
    assert status["sync_health"] == "delayed"  # not every stream had synced yet
    later = platform_sync_status(api.wh, ws, now=int(time.time()) + 300)
    assert later["sync_health"] == "delayed" and later["pending_webhooks"] == 2
    assert platform_sync_status(api.wh, ws)["sync_health"] == "healthy"
    assert status["last_webhook_event"] == {
        "id": "evt_def456",
        "type": "charge.failed",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + 1)),
    }
    finish(api.wh, [receipt["job_id"]], "succeeded", run_id="run-2")
    status = api.client.get(f"{BASE}/stripe-sync-status", headers=acct.headers).json()["data"]
    assert status["pending_webhooks"] == 0

    # Tampered, stale, unsigned or foreign-secret deliveries: 400, nothing recorded.
    payload = b'{"id":"evt_bad","object":"event","type":"x","created":1,"livemode":false}'
    for header in (
        signature_header(payload, SECRET) + "0",
        signature_header(payload, SECRET, timestamp=int(time.time()) - 3600),
        signature_header(payload, "whsec_some_other_secret"),
        None,
    ):
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["Stripe-Signature"] = header
        r = api.client.post(hook, content=payload, headers=headers)
        assert_pf_error(r, 400, "invalid_signature", "Stripe-Signature")
    assert not api.wh.rows("SELECT id FROM raw.stripe_events WHERE id = 'evt_bad'")
    # A workspace without a webhook secret (or unknown): 404.
    _, plain = _org(api)
    r = deliver(f"{api.base_url}{BASE}/stripe/webhook/{plain}", event, SECRET, client=api.client)
    assert_pf_error(r, 404, "resource_missing")
    r = deliver(f"{api.base_url}{BASE}/stripe/webhook/ws_nope", event, SECRET, client=api.client)
    assert_pf_error(r, 404, "resource_missing")


def test_export_queue_status_signed_download_and_expiry(api: ApiServer) -> None:
    acct, ws = _org(api, stripe=False)
    # The seed's GET with query parameters, and the POST with a JSON body.
    params = {
        "report_type": "revenue_trend",
        "format": "csv",
        "date_start": "2026-01-01",
        "date_end": "2026-01-31",
    }
    r = api.client.get(f"{BASE}/reports/export", params=params, headers=acct.headers)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) >= {"export_id", "status", "download_url", "expires_at"}
    assert (data["status"], data["download_url"], data["expires_at"]) == ("processing", None, None)
    r = api.client.post(f"{BASE}/reports/export", json=params, headers=acct.headers)
    assert r.status_code == 202, r.text
    export_id = r.json()["data"]["export_id"]
    row = api.wh.rows("SELECT * FROM app.report_exports WHERE id = :i", i=export_id)[0]
    assert (row["workspace_id"], row["report_type"], row["format"]) == (ws, "revenue_trend", "csv")
    assert str(row["date_start"]) == "2026-01-01" and str(row["date_end"]) == "2026-01-31"
    url = f"{BASE}/reports/export/{export_id}"
    assert api.client.get(url, headers=acct.headers).json()["data"]["status"] == "processing"

    # The export sensor's op renders it; then a signed link that expires.
    done = run_export(api.wh, api.settings.resolved_reports_dir, export_id)
    assert done["status"] == "completed", done
    data = api.client.get(url, headers=acct.headers).json()["data"]
    assert data["status"] == "completed" and data["error"] is None
    expires = time.mktime(time.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 880 <= expires - time.time() <= 905  # 15 minutes by default
    download = api.client.get(data["download_url"])  # no bearer: the link is the credential
    assert download.status_code == 200, download.text
    assert download.headers["content-type"].startswith("text/csv")
    file = api.settings.resolved_reports_dir / done["path"]
    assert download.content == file.read_bytes()
    token = data["download_url"].rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    r = api.client.get(f"{BASE}/reports/download/{tampered}")
    assert_pf_error(r, 403, "invalid_link", "token")
    forged = links.sign(api.settings, export_id, int(time.time()) - 1)
    assert_pf_error(api.client.get(f"{BASE}/reports/download/{forged}"), 403, "link_expired")
    assert_pf_error(api.client.get(f"{BASE}/reports/download/garbage"), 403, "invalid_link")

    # Bad input: 400 naming the field, nothing written.
    before = api.wh.scalar("SELECT COUNT(*) FROM app.report_exports")
    bad = [
        ({**params, "report_type": "payroll"}, "report_type"),
        ({**params, "format": "xlsx"}, "format"),
        ({**params, "date_start": "2026-02-01"}, "date_end"),
        ({**params, "date_end": "31/01/2026"}, "date_end"),
        ({**params, "plan_id": "price_basic"}, "plan_id"),
        ({k: v for k, v in params.items() if k != "format"}, "format"),
    ]
    for query, field in bad:
        r = api.client.get(f"{BASE}/reports/export", params=query, headers=acct.headers)
        assert r.status_code == 400, (query, r.text)
        assert r.json()["error"]["param"] == field, (query, r.text)
        r = api.client.post(f"{BASE}/reports/export", json=query, headers=acct.headers)
        assert r.status_code == 400 and r.json()["error"]["param"] == field, (query, r.text)
    assert api.wh.scalar("SELECT COUNT(*) FROM app.report_exports") == before

    # Roles and tenancy.
    member = add_member(api, acct.headers, "member", acct.org_id)
    r = api.client.post(f"{BASE}/reports/export", json=params, headers=member)
    assert_pf_error(r, 403, "insufficient_role")
    assert api.client.get(url, headers=member).status_code == 200
    other, _ = _org(api, stripe=False)
    assert_pf_error(
        api.client.get(url, headers=other.headers), 404, "resource_missing", "export_id"
    )
    assert_pf_error(
        api.client.get(f"{BASE}/reports/export/export_nope", headers=acct.headers),
        404,
        "resource_missing",
    )


def test_export_defaults_to_the_month_to_yesterday(api: ApiServer) -> None:
    acct, _ = _org(api, stripe=False)
    r = api.client.post(
        f"{BASE}/reports/export",
        json={"report_type": "mrr_breakdown", "format": "pdf", "plan_id": "price_basic"},
        headers=acct.headers,
    )
    assert r.status_code == 202, r.text
    [row] = api.wh.rows(
        "SELECT date_start, date_end, plan_id FROM app.report_exports WHERE id = :i",
        i=r.json()["data"]["export_id"],
    )
    end = date.fromordinal(date.today().toordinal() - 1)
    assert (str(row["date_start"]), str(row["date_end"]), row["plan_id"]) == (
        str(end.replace(day=1)),
        str(end),
        "price_basic",
    )

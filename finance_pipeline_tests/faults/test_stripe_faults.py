"""Stripe at 20 % faults during a sync, with webhooks arriving (issue 12).

A full sync through the real SDK against the stand-in while it fails a fifth of the requests with
every kind it has (429 rate limits and lock timeouts, 500, 502, 503, dropped connections) and
leaves a further twentieth unanswered past the client's timeout. Meanwhile the account keeps
changing and the stand-in delivers each change's event, signed, to the API's webhook endpoint.
The sync the webhooks ask for then catches up, still under faults. The raw tables then equal a
clean sync of the same final data, the core tables and marts built from them equal the clean
ones', and every delivered event is stored once: 0 duplicates, 0 lost events."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from finance_pipeline_dev.pytest_plugin import TestStandIn
from finance_pipeline_dev.standin.webhooks import deliver, signature_header

from finance_pipeline.api import create_app
from finance_pipeline.definitions import defs
from finance_pipeline.lib.backoff import BackoffPolicy
from finance_pipeline.stripe_sync import webhooks
from finance_pipeline.stripe_sync.engine import Connection, StripeStreamSync
from finance_pipeline.stripe_sync.gateway import StripeGateway
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.stripe_sync.webhooks import set_webhook_secret
from finance_pipeline.warehouse import Warehouse, apply_migrations
from finance_pipeline_tests.api.conftest import server_settings, start_server
from finance_pipeline_tests.dagster_runs import range_tags, warehouse_resources
from finance_pipeline_tests.ingest import stripe_dataset
from finance_pipeline_tests.ingest.test_stripe_sync import _register, warehouse_snapshot
from finance_pipeline_tests.table_snapshot import duplicate_keys, snapshot

WS = "ws_a"
SECRET = "whsec_faults_0123456789abcdef"
# The client gives up on a request after this; the stand-in's slow answers take longer.
TIMEOUT_SECONDS = 1.0
SLOW_MS = 1500
FAULTS: dict[str, Any] = {
    "error_rate": 0.2,
    "error_mix": {
        "rate_limit": 1.0,
        "lock_timeout": 1.0,
        "server_error": 1.0,
        "bad_gateway": 1.0,
        "service_unavailable": 1.0,
        "drop": 1.0,
    },
    "slow_rate": 0.05,
    "slow_ms": SLOW_MS,
    "seed": 12,
}
CHANGES = 12


def _sync(wh: Warehouse, standin: TestStandIn, conn: Connection) -> dict[str, Any]:
    """Every stream once, through the real SDK with a client timeout, as the assets do."""
    gw = StripeGateway(
        conn.api_key,
        api_base=standin.url,
        rate_limit_rps=10_000,
        backoff=BackoffPolicy(base_seconds=0.001, max_seconds=0.01, max_attempts=20),
        workspace_id=conn.workspace_id,
        timeout_seconds=TIMEOUT_SECONDS,
    )
    sync = StripeStreamSync(wh, gw, conn, clock=standin.now)
    return {"results": {name: sync.sync(name) for name in STREAMS}, "stats": gw.stats}


def _change_and_deliver(
    standin: TestStandIn, url: str, start: threading.Event, out: list[tuple[str, int]]
) -> None:
    """Change customers and subscriptions one by one, delivering each change's signed event."""
    start.wait(60)
    with httpx.Client(timeout=30) as client:
        for n in range(CHANGES):
            standin.advance_clock(60)
            if n % 2:
                event = standin.update(
                    standin.account_id,
                    f"sub_{n:05d}",
                    {"cancel_at_period_end": True, "metadata": {"change": str(n)}},
                    "customer.subscription.updated",
                )
            else:
                event = standin.update(
                    standin.account_id,
                    f"cus_{n:05d}",
                    {"email": f"changed-{n}@example.test"},
                    "customer.updated",
                )
            assert event is not None
            r = deliver(url, event, SECRET, client=client)
            out.append((event["id"], r.status_code))
            # Stripe redelivers when unsure: a second delivery of one event must change nothing.
            if n % 3 == 0:
                r = deliver(url, event, SECRET, client=client)
                out.append((event["id"], r.status_code))


def _marts(wh: Warehouse, end: date) -> dict[str, list[str]]:
    """The core tables and daily marts rebuilt from the raw tables (the last 60 days)."""
    result = defs.resolve_job_def("rebuild_marts").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        resources=warehouse_resources(wh),
        tags=range_tags(end - timedelta(days=59), end),
    )
    assert result.success
    tables = snapshot(wh)
    # The source watermarks of the build (latest synced_at per raw table, and how many rows
    # carry it) record when rows were synced, not what they hold: they differ between a sync
    # in several passes and one clean pass.
    del tables["core.build_state"]
    return tables


def test_a_sync_at_twenty_percent_faults_with_webhooks_arriving_equals_a_clean_sync(
    warehouse: Warehouse, stripe_standin: TestStandIn, tmp_path: Path
) -> None:
    standin = stripe_standin
    standin.add_many(stripe_dataset.build(n_customers=120))
    conn = _register(warehouse, standin, ws=WS)
    set_webhook_secret(warehouse, WS, SECRET)
    settings = server_settings(
        tmp_path / "api",
        warehouse.url.render_as_string(False),
        api_rate_limit_per_minute=1_000_000,
        requests_inline=False,  # the sync the webhooks ask for is run below, by the test
    )
    api = start_server(create_app(settings), settings)
    try:
        url = f"{api.base_url}/api/v1/platform/finance/stripe/webhook/{WS}"
        standin.configure_faults(**FAULTS)
        deliveries: list[tuple[str, int]] = []
        start = threading.Event()
        changer = threading.Thread(
            target=_change_and_deliver, args=(standin, url, start, deliveries), daemon=True
        )
        changer.start()
        # The changes begin once the sync is under way.
        original = StripeStreamSync.sync

        def sync_and_signal(self: StripeStreamSync, name: str) -> Any:
            start.set()
            return original(self, name)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(StripeStreamSync, "sync", sync_and_signal)
            first = _sync(warehouse, standin, conn)
        changer.join(120)
        assert not changer.is_alive()
        # The sync the webhooks asked for, still at 20 % faults.
        second = _sync(warehouse, standin, conn)
        log = standin.requests()
        standin.reset_faults()
    finally:
        api.stop()

    # Every kind of fault was met, and the client retried past each.
    kinds = Counter(r["fault"] for r in log if r["fault"])
    assert set(kinds) >= {*FAULTS["error_mix"], "slow"}, kinds
    faulted = sum(kinds.values()) / len(log)
    assert 0.15 < faulted < 0.35, (faulted, kinds)
    retries = first["stats"].retries + second["stats"].retries
    assert retries >= sum(kinds.values()) - 1  # each fault retried (one may hit the last page)
    assert all(200 <= status < 300 for _, status in deliveries), deliveries
    delivered = {event_id for event_id, _ in deliveries}
    assert len(delivered) == CHANGES

    # No event lost, none stored twice: each delivered event once among the webhook events and
    # once among the synced events; the webhooks asked for a Stripe sync.
    received = Counter(
        r["event_id"]
        for r in warehouse.rows(
            "SELECT event_id FROM app.stripe_webhook_events WHERE workspace_id = :w", w=WS
        )
    )
    assert received == Counter(delivered)
    events = Counter(
        r["id"]
        for r in warehouse.rows("SELECT id FROM raw.stripe_events WHERE workspace_id = :w", w=WS)
    )
    assert {e: events[e] for e in delivered} == {e: 1 for e in delivered}
    assert warehouse.scalar(
        "SELECT COUNT(*) FROM app.pipeline_requests WHERE workspace_id = :w"
        " AND kind = 'stripe_sync' AND requested_by = 'webhook'",
        w=WS,
    )

    # The same final data synced cleanly, into a warehouse of its own.
    reference = Warehouse(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    try:
        apply_migrations(reference)
        _sync(reference, standin, _register(reference, standin, ws=WS))
        assert warehouse_snapshot(warehouse, WS) == warehouse_snapshot(reference, WS)
        end = datetime.fromtimestamp(standin.now(), UTC).date() - timedelta(days=1)
        assert _marts(warehouse, end) == _marts(reference, end)
        assert duplicate_keys(warehouse) == {}
    finally:
        reference.dispose()


def test_a_webhook_whose_sync_request_was_lost_asks_for_it_on_redelivery(
    sqlite_warehouse: Warehouse, stripe_standin: TestStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database lost between recording an event and queuing its sync: the delivery fails
    (a 503, so Stripe redelivers) and the redelivery, though a duplicate, queues the sync."""
    wh, standin = sqlite_warehouse, stripe_standin
    standin.add_many(stripe_dataset.build(n_customers=2))
    _register(wh, standin, ws=WS)
    set_webhook_secret(wh, WS, SECRET)
    event = standin.update(
        standin.account_id, "cus_00000", {"email": "x@example.test"}, "customer.updated"
    )
    assert event is not None
    payload = json.dumps(event).encode()
    real = webhooks._sync_request

    def lost(*args: Any) -> str:
        raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(webhooks, "_sync_request", lost)
    with pytest.raises(sa.exc.OperationalError):
        webhooks.receive(wh, WS, payload, signature_header(payload, SECRET))
    monkeypatch.setattr(webhooks, "_sync_request", real)
    again = webhooks.receive(wh, WS, payload, signature_header(payload, SECRET))
    assert again.duplicate and again.request_id is not None
    [req] = wh.rows("SELECT id, kind FROM app.pipeline_requests WHERE workspace_id = :w", w=WS)
    assert (req["id"], req["kind"]) == (again.request_id, "stripe_sync")
    # A third delivery changes nothing.
    third = webhooks.receive(wh, WS, payload, signature_header(payload, SECRET))
    assert (third.duplicate, third.request_id) == (True, again.request_id)

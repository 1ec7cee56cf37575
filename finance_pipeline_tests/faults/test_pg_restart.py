"""PostgreSQL restarted under load (issue 12): the API's clients keep reading and ingesting (with
and without Idempotency-Key) while the server is stopped and started again. Every answer is a 2xx
or a 503 in the error envelope with Retry-After, the API recovers by itself, and every ingest it
accepted is stored exactly once, as is every refused one once its client retried it.

The server is the test's own (private_postgres): the shared one of the other tests is never
stopped."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from finance_pipeline.api import create_app
from finance_pipeline.definitions import defs
from finance_pipeline.warehouse import Warehouse, apply_migrations
from finance_pipeline_tests.api.conftest import ApiServer, register, server_settings, start_server
from finance_pipeline_tests.api.test_v1_cfo import EXPENSE
from finance_pipeline_tests.dagster_runs import range_tags, warehouse_resources
from finance_pipeline_tests.private_postgres import PrivatePostgres, private_postgres, wait_until
from finance_pipeline_tests.reports_pdf.dataset import build_account
from finance_pipeline_tests.table_snapshot import duplicate_keys, snapshot

pytestmark = pytest.mark.postgres

CLIENTS = 6
END = date(2026, 10, 31)
# A request that takes longer than this is a hang (the pool or a lock waiting forever).
REQUEST_BOUND_SECONDS = 30.0
# A key whose request died with the database is taken over after this (the API's lease).
LEASE_SECONDS = 3


@dataclass
class Ingest:
    """One expense a client sent: its id, its key (or None) and every answer it got."""

    external_id: str
    key: str | None
    statuses: list[int] = field(default_factory=list)
    refresh_ids: list[str] = field(default_factory=list)


@dataclass
class Load:
    """What the clients saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    ingests: list[Ingest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, r: httpx.Response) -> None:
        with self.lock:
            self.statuses[r.status_code] += 1
        if 200 <= r.status_code < 300:
            return
        if r.status_code != 503:
            self.bad.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
            return
        err = r.json().get("error", {})
        if (
            err.get("code") != "database_unavailable"
            or r.headers.get("retry-after") != "2"
            or err.get("request_id") != r.headers.get("x-request-id")
        ):
            self.bad.append(f"503 without the envelope or Retry-After: {r.headers} {r.text}")


def _client_loop(
    base_url: str, headers: dict[str, str], ws: str, load: Load, stop: threading.Event, seed: int
) -> None:
    rnd = random.Random(seed)
    url = f"/v1/workspaces/{ws}/ingest/expenses"
    with httpx.Client(base_url=base_url, timeout=REQUEST_BOUND_SECONDS) as client:
        while not stop.is_set():
            kind = rnd.choice(("list", "metrics", "ingest", "ingest_key"))
            try:
                if kind == "list":
                    load.record(client.get("/v1/workspaces", headers=headers))
                elif kind == "metrics":
                    load.record(client.get(f"/v1/workspaces/{ws}/metrics", headers=headers))
                else:
                    ing = Ingest(
                        f"load-{uuid.uuid4().hex[:12]}",
                        uuid.uuid4().hex if kind == "ingest_key" else None,
                    )
                    with load.lock:
                        load.ingests.append(ing)
                    extra = {"Idempotency-Key": ing.key} if ing.key else {}
                    r = client.post(
                        url,
                        json={"expenses": [{**EXPENSE, "external_id": ing.external_id}]},
                        headers={**headers, **extra},
                    )
                    ing.statuses.append(r.status_code)
                    if r.status_code == 202:
                        ing.refresh_ids.append(r.json()["refresh_request_id"])
                    load.record(r)
            except httpx.HTTPError as exc:  # a timeout is a hang; a dropped connection a bug
                load.bad.append(f"{kind}: {type(exc).__name__} {exc}")


def test_the_api_under_load_answers_503_while_postgres_restarts_and_loses_no_ingest(
    tmp_path: Path,
) -> None:
    with private_postgres() as pg:
        settings = server_settings(
            tmp_path / "api",
            pg.create_database("fp_load_outage"),
            api_rate_limit_per_minute=1_000_000,
            # As in production: the daemon runs the queued refreshes, not the API process.
            requests_inline=False,
            # ... so reads answer at once with a refresh_pending warning rather than wait for it.
            api_read_wait_seconds=0,
            api_idempotency_lease_seconds=LEASE_SECONDS,
        )
        api = start_server(create_app(settings), settings)
        try:
            _load_through_a_restart(api, pg)
        finally:
            api.stop()


def _load_through_a_restart(api: ApiServer, pg: PrivatePostgres) -> None:
    acct = register(api.client)
    ws = api.client.post("/v1/workspaces", json={"name": "W"}, headers=acct.headers).json()
    load = Load()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(api.base_url, acct.headers, ws["id"], load, stop, seed),
            daemon=True,
        )
        for seed in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: load.statuses[202] >= 10)
        pg.stop("fast")
        # Under load while the server is away: enough refusals that every kind got some.
        wait_until(lambda: load.statuses[503] >= 30)
        pg.start()
        accepted_before = load.statuses[202]
        # It recovers by itself: ingests are accepted again, with no restart of the API.
        wait_until(lambda: load.statuses[202] >= accepted_before + 20)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=REQUEST_BOUND_SECONDS + 5)
    assert not any(t.is_alive() for t in threads), "a client hangs"
    assert load.bad == []
    assert set(load.statuses) <= {200, 202, 503}, load.statuses

    ids = [i.external_id for i in load.ingests]
    stored = Counter(
        r["external_id"]
        for r in api.wh.rows(
            "SELECT external_id FROM raw.expense_events WHERE workspace_id = :w", w=ws["id"]
        )
    )
    accepted = [i for i in load.ingests if i.statuses == [202]]
    refused = [i for i in load.ingests if i.statuses == [503]]
    assert len(accepted) + len(refused) == len(ids)
    assert refused and any(i.key for i in refused) and any(not i.key for i in refused)
    # Every accepted ingest is stored once, with the refresh that puts it in the marts queued.
    assert {i.external_id: stored[i.external_id] for i in accepted} == {
        i.external_id: 1 for i in accepted
    }
    queued = {r["id"] for r in api.wh.rows("SELECT id FROM app.pipeline_requests")}
    assert all(i.refresh_ids[0] in queued for i in accepted)
    # A refused one was not written (at most once: a COMMIT whose acknowledgement the
    # restart cut off cannot be told from one that never happened).
    assert {stored[i.external_id] for i in refused} <= {0, 1}

    # Keys the outage left in progress are free once the lease has passed since the restart.
    time.sleep(LEASE_SECONDS)
    # The clients retry what was refused, with the same key when they had one: each is
    # then stored once, and a keyed retry replayed afterwards returns the same answer.
    url = f"/v1/workspaces/{ws['id']}/ingest/expenses"
    for ing in refused:
        extra = {"Idempotency-Key": ing.key} if ing.key else {}
        body = {"expenses": [{**EXPENSE, "external_id": ing.external_id}]}
        r = _retry(api.client, url, body, {**acct.headers, **extra})
        assert r.status_code == 202, r.text
        assert (r.json()["inserted"], r.json()["duplicates"]) == (
            (0, 1) if stored[ing.external_id] else (1, 0)
        )
        if ing.key:
            again = api.client.post(url, json=body, headers={**acct.headers, **extra})
            assert again.status_code == 202, again.text
            assert again.headers.get("idempotent-replayed") == "true"
            assert again.json() == r.json()
    stored = Counter(
        r["external_id"]
        for r in api.wh.rows(
            "SELECT external_id FROM raw.expense_events WHERE workspace_id = :w", w=ws["id"]
        )
    )
    assert stored == Counter(ids)


def _retry(
    client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """POST as a client retrying a refused request: a key still held by a request the outage
    cut off answers 409 `idempotency_key_in_use` until the lease ends; then it runs."""
    deadline = time.monotonic() + LEASE_SECONDS + REQUEST_BOUND_SECONDS
    while True:
        r = client.post(url, json=body, headers=headers)
        if r.status_code != 409 or time.monotonic() > deadline:
            return r
        assert r.json()["error"]["code"] == "idempotency_key_in_use", r.text
        time.sleep(0.5)


def test_a_run_cut_off_by_a_postgres_restart_fails_cleanly_and_the_next_run_matches(
    tmp_path: Path,
) -> None:
    """The warehouse's server restarts while a refresh run is inside its MRR window replacement
    (the window's old rows deleted, the new ones not yet inserted, after the core steps have
    committed): the run fails in Dagster naming the step and the lost connection, the half-done
    window is rolled back, and the next run leaves the tables identical to a clean run's."""
    with private_postgres() as pg:
        wh = Warehouse(pg.create_database("fp_run_outage"))
        apply_migrations(wh)
        try:
            build_account(wh, tmp_path / "landing", customers=4, months=2, end=END, seed=13)
            clean = _refresh(wh)
            assert clean.success
            expected = snapshot(wh)
            assert expected["mart.mrr_changes"] and expected["mart.mrr_daily"]

            reached, stopped = threading.Event(), threading.Event()
            original = Warehouse.insert

            def insert(self: Warehouse, db: Any, table: str, rows: Any) -> int:
                if table.startswith("mart.mrr") and not reached.is_set():
                    reached.set()  # inside the transaction, after the window's delete
                    stopped.wait(60)
                return original(self, db, table, rows)

            with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(1) as pool:
                mp.setattr(Warehouse, "insert", insert)
                run = pool.submit(_refresh, wh)
                assert reached.wait(120), "the run never reached the MRR window write"
                pg.stop("fast")
                stopped.set()
                cut = run.result(timeout=120)
            pg.start()
            # The test's own handle (not the runs' one, which the failure reset) still pools
            # connections the restart killed; one used in the last 5 s is not pinged before use.
            wh.dispose()

            assert not cut.success
            failed = [e for e in cut.all_events if e.is_step_failure]
            assert [e.step_key for e in failed] == ["mrr_marts"]
            error = failed[0].step_failure_data.error
            assert error is not None
            assert "OperationalError" in str(error.to_string()), error.to_string()
            # Nothing of the cut-off transaction is stored: the window's rows are all there (the
            # delete was rolled back), and the steps before it committed what a clean run does.
            assert snapshot(wh) == expected

            after = _refresh(wh)
            assert after.success
            assert snapshot(wh) == expected
            assert duplicate_keys(wh) == {}
        finally:
            wh.dispose()


def _refresh(wh: Warehouse) -> dg.ExecuteInProcessResult:
    """The core tables and daily marts rebuilt over the last 20 days (as a backfill does)."""
    return defs.resolve_job_def("rebuild_marts").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        resources=warehouse_resources(wh),
        tags=range_tags(END - timedelta(days=20), END),
        raise_on_error=False,
    )

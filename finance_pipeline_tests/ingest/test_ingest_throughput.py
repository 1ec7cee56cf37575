"""The fast ingestion paths keep the sync's behaviour: prefetching and parallel sub-list reads give
the same rows, checkpoints and exceptions as sequential reads; the driver-level upsert stores what
the SQLAlchemy Core upsert stored; the limiter spaces requests and honours Retry-After."""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import stripe
from finance_pipeline_dev.pytest_plugin import TestStandIn
from finance_pipeline_dev.standin import shapes

from finance_pipeline.ingest.stripe_assets import stripe_assets
from finance_pipeline.lib.backoff import BackoffPolicy
from finance_pipeline.resources import StripeResource, WarehouseResource
from finance_pipeline.stripe_sync import engine as engine_mod
from finance_pipeline.stripe_sync.engine import Connection, StripeStreamSync
from finance_pipeline.stripe_sync.gateway import (
    GatewayStats,
    StripeGateway,
    StripePermissionDenied,
    StripeSyncError,
    account_pacing_file,
)
from finance_pipeline.stripe_sync.ratelimit import TokenBucket
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.tenancy import connect_stripe, create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse, WarehouseError, apply_migrations
from finance_pipeline.warehouse.db import JsonText, json_doc, json_text
from finance_pipeline_tests.ingest import stripe_dataset
from finance_pipeline_tests.ingest.test_stripe_sync import _register, warehouse_snapshot

NOW = 1_800_000_000


@pytest.fixture
def loaded(stripe_standin: TestStandIn) -> TestStandIn:
    stripe_standin.add_many(stripe_dataset.build())
    return stripe_standin


def _gateway(standin: TestStandIn, conn: Connection, cls: type = StripeGateway) -> Any:
    return cls(
        conn.api_key,
        api_base=standin.url,
        rate_limit_rps=10_000,
        backoff=BackoffPolicy(base_seconds=0.001, max_seconds=0.01, max_attempts=3),
        workspace_id=conn.workspace_id,
    )


def _cursor(wh: Warehouse, stream: str) -> dict[str, Any]:
    raw = wh.scalar(
        "SELECT cursor_json FROM raw.sync_state WHERE workspace_id = 'ws_a' AND stream = :s",
        s=stream,
    )
    return raw if isinstance(raw, dict) else json.loads(raw)


# ---- prefetch: same rows, same checkpoints, same exceptions ----------------------------------


def test_parallel_reads_give_the_same_rows_and_requests_as_sequential(
    loaded: TestStandIn, warehouse: Warehouse, tmp_path: Path
) -> None:
    sequential = Warehouse(f"sqlite:///{tmp_path / 'sequential.sqlite'}")
    apply_migrations(sequential)
    outcomes = []
    for wh, workers in ((sequential, 0), (warehouse, 4)):
        conn = _register(wh, loaded)
        loaded.clear_requests()
        sync = StripeStreamSync(
            wh, _gateway(loaded, conn), conn, clock=loaded.now, fetch_workers=workers
        )
        results = {name: sync.sync(name) for name in STREAMS}
        paths = sorted(r["path"] for r in loaded.requests())
        outcomes.append((warehouse_snapshot(wh, "ws_a"), paths, results))
    (seq_snap, seq_paths, seq_res), (par_snap, par_paths, par_res) = outcomes
    assert par_snap == seq_snap
    assert par_paths == seq_paths
    # The truncated sub-lists were completed through their own endpoints, in both modes.
    assert "/v1/invoices/in_00011/lines" in par_paths
    assert "/v1/credit_notes/cn_00011/lines" in par_paths
    assert par_paths.count("/v1/subscription_items") == 1
    for name in STREAMS:
        assert (par_res[name].listed, par_res[name].sublist_rows, par_res[name].pages) == (
            seq_res[name].listed,
            seq_res[name].sublist_rows,
            seq_res[name].pages,
        )
    assert par_res["invoices"].sublist_rows == 229 * 2 + 25
    sequential.dispose()


def test_kill_after_two_pages_commits_page_two_cursor_with_prefetch_running(
    warehouse: Warehouse, loaded: TestStandIn
) -> None:
    conn = _register(warehouse, loaded)
    gw = _gateway(loaded, conn)
    killed = StripeStreamSync(warehouse, gw, conn, clock=loaded.now, stop_after_pages=2)
    with pytest.raises(KeyboardInterrupt):
        killed.sync("customers")
    # Newest first: page 1 is cus_00229..cus_00130, page 2 cus_00129..cus_00030; page 3 had
    # been prefetched but nothing of it was committed.
    assert warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_customers") == 200
    assert warehouse.scalar("SELECT MIN(id) FROM raw.stripe_customers") == "cus_00030"
    cursor = _cursor(warehouse, "customers")
    assert cursor["starting_after"] == "cus_00030" and cursor["full"] is True
    resumed = StripeStreamSync(warehouse, gw, conn, clock=loaded.now).sync("customers")
    assert (resumed.mode, resumed.listed) == ("resumed", 30)


class _FailsOnPage:
    """A gateway whose list read of `resource` fails on page `page` with `exc`."""

    def __init__(self, resource: str, page: int, exc: Exception) -> None:
        self.resource, self.page, self.exc, self.calls = resource, page, exc, 0

    def wrap(self, gw: StripeGateway) -> StripeGateway:
        inner = gw.list_page

        def list_page(resource: str, params: Any, parent: str | None = None) -> Any:
            if resource == self.resource:
                self.calls += 1
                if self.calls == self.page:
                    raise self.exc
            return inner(resource, params, parent)

        gw.list_page = list_page  # type: ignore[method-assign]
        return gw


@pytest.mark.parametrize(
    "exc",
    [
        StripePermissionDenied("key may not read customers (HTTP 403)"),
        stripe.APIError("An unknown error occurred", http_status=500),
    ],
    ids=["403", "500"],
)
def test_a_failed_prefetch_raises_what_a_sequential_read_raises(
    loaded: TestStandIn, exc: Exception, tmp_path: Path
) -> None:
    seen = []
    for workers in (0, 4):
        wh = Warehouse(f"sqlite:///{tmp_path / f'w{workers}.sqlite'}")
        apply_migrations(wh)
        conn = _register(wh, loaded)
        gw = _FailsOnPage("customers", 2, exc).wrap(_gateway(loaded, conn))
        sync = StripeStreamSync(wh, gw, conn, clock=loaded.now, fetch_workers=workers)
        with pytest.raises(type(exc)) as info:
            sync.sync("customers")
        seen.append((type(info.value), str(info.value)))
        # Page 1 and its checkpoint are committed; the failed page 2 wrote nothing.
        assert _cursor(wh, "customers")["starting_after"] == "cus_00130"
        assert wh.scalar("SELECT COUNT(*) FROM raw.stripe_customers") == 100
        wh.dispose()
    assert seen[0] == seen[1] == (type(exc), str(exc))


def test_a_failed_sublist_read_raises_before_its_page_commits(
    sqlite_warehouse: Warehouse, loaded: TestStandIn
) -> None:
    conn = _register(sqlite_warehouse, loaded)
    exc = StripePermissionDenied("key may not read invoice_lines (HTTP 403)")
    gw = _FailsOnPage("invoice_lines", 1, exc).wrap(_gateway(loaded, conn))
    sync = StripeStreamSync(sqlite_warehouse, gw, conn, clock=loaded.now)
    with pytest.raises(StripePermissionDenied, match="invoice_lines"):
        sync.sync("invoices")
    # in_00011 (25 lines) is on page 3 of invoices (in_00029..in_00000): pages 1-2 committed.
    assert sqlite_warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_invoices") == 200
    assert _cursor(sqlite_warehouse, "invoices")["starting_after"] == "in_00030"


# ---- stale children --------------------------------------------------------------------------


def test_children_no_longer_on_their_parent_are_deleted_in_batches(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_mod, "_STALE_PARAMS", 3)  # force several DELETE batches
    sub_stream = STREAMS["subscriptions"]
    [items_sub] = sub_stream.sublists

    def item(i: str, sub: str) -> dict[str, Any]:
        return shapes.make_subscription_item(
            i,
            subscription=sub,
            price=shapes.make_price("price_x", product="prod_x", unit_amount=100, created=1),
            created=1,
            current_period_start=1,
            current_period_end=2,
        )

    def write(ws: str, children: dict[str, list[str]]) -> None:
        sync = StripeStreamSync(warehouse, None, Connection(ws, "acct_1", False, "sk"))  # type: ignore[arg-type]
        rows = [
            sync._row(shapes.make_subscription(p, customer="cus_1", created=1, items=[]), NOW)
            for p in children
        ]
        kids = [
            sync._row(item(c, p), NOW, "subscription", p) for p, cs in children.items() for c in cs
        ]
        with warehouse.begin() as db:
            sync._write(db, sub_stream, rows, {items_sub: (list(children), kids)})

    write("ws_a", {"sub_a": ["si_1", "si_2", "si_3"], "sub_b": ["si_4"], "sub_c": ["si_5"]})
    write("ws_b", {"sub_a": ["si_2"]})
    write("ws_a", {"sub_a": ["si_1", "si_3"], "sub_b": [], "sub_c": ["si_5", "si_6"]})
    rows = warehouse.rows(
        "SELECT workspace_id, id, subscription FROM raw.stripe_subscription_items "
        "ORDER BY workspace_id, id"
    )
    assert [(r["workspace_id"], r["id"], r["subscription"]) for r in rows] == [
        ("ws_a", "si_1", "sub_a"),
        ("ws_a", "si_3", "sub_a"),
        ("ws_a", "si_5", "sub_c"),
        ("ws_a", "si_6", "sub_c"),
        ("ws_b", "si_2", "sub_a"),  # another workspace's child of the same id is untouched
    ]


# ---- driver-level upsert ---------------------------------------------------------------------


def _state_row(stream: str, cursor: Any, **extra: Any) -> dict[str, Any]:
    return {"workspace_id": "ws_u", "stream": stream, "cursor_json": cursor, **extra}


def _stored_state(wh: Warehouse) -> dict[str, Any]:
    rows = wh.rows(
        "SELECT stream, cursor_json, status, last_error FROM raw.sync_state "
        "WHERE workspace_id = 'ws_u' ORDER BY stream"
    )
    out = {}
    for r in rows:
        doc = r["cursor_json"]
        out[r["stream"]] = (json.loads(doc) if isinstance(doc, str) else doc, r["status"])
    return out


def test_upsert_stores_what_the_sqlalchemy_core_upsert_stores(warehouse: Warehouse) -> None:
    doc = {"b": 1, "a": [1, 2.5, None, "é"], "amount_decimal": Decimal("12.3400")}
    key = ("workspace_id", "stream")
    with warehouse.begin() as db:
        for name, path in (("fast", warehouse.upsert), ("core", warehouse._upsert_core)):
            kwargs = {"update": None} if path == warehouse._upsert_core else {}
            path(db, "raw.sync_state", [_state_row(f"{name}_dict", doc)], key, **kwargs)
            path(db, "raw.sync_state", [_state_row(f"{name}_none", None)], key, **kwargs)
            path(db, "raw.sync_state", [_state_row(f"{name}_text", json_doc(doc))], key, **kwargs)
    stored = _stored_state(warehouse)
    expected_doc = {"b": 1, "a": [1, 2.5, None, "é"], "amount_decimal": "12.3400"}
    for kind in ("dict", "none", "text"):
        assert stored[f"fast_{kind}"] == stored[f"core_{kind}"]
    assert stored["fast_dict"][0] == stored["fast_text"][0] == expected_doc
    assert stored["fast_none"][0] is None
    if warehouse.is_sqlite:
        # Aliased to a name reads do not decode: the text as stored.
        raw = warehouse.scalar(
            "SELECT cursor_json AS stored_text FROM raw.sync_state WHERE stream = 'fast_text'"
        )
        assert (
            raw == json_text(doc) == '{"b":1,"a":[1,2.5,null,"\\u00e9"],"amount_decimal":"12.3400"}'
        )


def test_upsert_replaces_updates_only_named_columns_and_does_nothing_on_key_only_rows(
    warehouse: Warehouse,
) -> None:
    key = ("workspace_id", "stream")
    with warehouse.begin() as db:
        assert (
            warehouse.upsert(
                db,
                "raw.sync_state",
                [_state_row("s1", {"v": 1}, status="ok"), _state_row("s2", None, status="ok")],
                key,
            )
            == 2
        )
        # A later row with the same key wins, as with one statement per row.
        warehouse.upsert(
            db,
            "raw.sync_state",
            [_state_row("s1", {"v": 2}, status="running"), _state_row("s1", {"v": 3}, status="x")],
            key,
        )
        warehouse.upsert(
            db,
            "raw.sync_state",
            [_state_row("s2", {"v": 9}, status="error")],
            key,
            update=("status",),
        )
        warehouse.upsert(
            db, "raw.sync_state", [{"workspace_id": "ws_u", "stream": "s1"}], key
        )  # nothing to update: kept as is
    assert _stored_state(warehouse) == {"s1": ({"v": 3}, "x"), "s2": (None, "error")}


def test_upsert_refuses_rows_with_missing_columns_or_unknown_ones(
    sqlite_warehouse: Warehouse,
) -> None:
    key = ("workspace_id", "stream")
    wh = sqlite_warehouse
    with pytest.raises(WarehouseError, match="lacks column 'status'"), wh.begin() as db:
        wh.upsert(
            db,
            "raw.sync_state",
            [_state_row("s1", None, status="ok"), _state_row("s2", None)],
            key,
        )
    with pytest.raises(WarehouseError, match="no column"), wh.begin() as db:
        wh.upsert(db, "raw.sync_state", [_state_row("s", None, nope=1)], key)
    assert sqlite_warehouse.scalar("SELECT COUNT(*) FROM raw.sync_state") == 0


def test_json_doc_is_json_text_marked_as_encoded() -> None:
    doc = {"id": "in_1", "lines": {"data": [{"amount": 5}]}, "x": Decimal("0.5")}
    encoded = json_doc(doc)
    assert type(encoded) is JsonText
    assert (
        encoded
        == json_text(doc)
        == json.dumps(doc, default=str, separators=(",", ":")).replace('"x":0.5', '"x":"0.5"')
    )


# ---- rate limiting ---------------------------------------------------------------------------


class _FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))


def test_token_bucket_with_burst_one_spaces_every_request() -> None:
    t = _FakeTime()
    bucket = TokenBucket(100, burst=1, clock=t.clock, sleep=t.sleep)
    waits = [round(bucket.acquire(), 6) for _ in range(4)]  # no time passes: reservations
    assert waits == [0.0, 0.01, 0.02, 0.03]
    t.now += 1.0  # a long idle period saves up one request, not more
    assert [round(bucket.acquire(), 6) for _ in range(2)] == [0.0, 0.01]


def test_token_buckets_on_one_state_file_are_one_bucket(tmp_path: Path) -> None:
    # Two opens of the file flock like two processes: they share the slots and the holds.
    t = _FakeTime()
    path = tmp_path / "pacing" / "acct"
    a, b = (TokenBucket(100, burst=1, clock=t.clock, sleep=t.sleep, state_file=path) for _ in "ab")
    waits = [round(bucket.acquire(), 6) for bucket in (a, b, a, b)]
    assert waits == [0.0, 0.01, 0.02, 0.03]
    t.now += 1.0
    a.hold(0.5)
    assert round(b.acquire(), 6) == 0.51
    alone = TokenBucket(100, burst=1, clock=t.clock, sleep=t.sleep, state_file=tmp_path / "other")
    assert round(alone.acquire(), 6) == 0.0
    for bucket in (a, b, alone):
        bucket.close()


def test_the_pacing_file_is_one_per_stripe_account() -> None:
    base = "http://127.0.0.1:1"
    assert account_pacing_file(base, "acct_1", False) == account_pacing_file(base, "acct_1", False)
    assert (
        len(
            {
                account_pacing_file(base, "acct_1", False),
                account_pacing_file(base, "acct_2", False),
                account_pacing_file(base, "acct_1", True),
                account_pacing_file(None, "acct_1", False),
            }
        )
        == 4
    )


def test_token_bucket_hold_stops_everyone_then_resumes_without_burst() -> None:
    t = _FakeTime()
    bucket = TokenBucket(100, burst=5, clock=t.clock, sleep=t.sleep)
    bucket.hold(1.0)
    assert [round(bucket.acquire(), 6) for _ in range(3)] == [1.01, 1.02, 1.03]
    t.now += 2.0
    assert round(bucket.acquire(), 6) == 0.0  # after the hold, the bucket refills as usual
    bucket.hold(0.5)
    bucket.hold(0.2)  # a shorter hold never shortens a longer one
    assert round(bucket.acquire(), 6) == 0.51
    assert bucket.waited_seconds == pytest.approx(1.01 + 1.02 + 1.03 + 0.51)


def test_token_bucket_is_exact_under_concurrent_callers() -> None:
    t = _FakeTime()
    bucket = TokenBucket(50, burst=1, clock=t.clock, sleep=t.sleep)
    got: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            w = round(bucket.acquire(), 6)
            with lock:
                got.append(w)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # 100 reservations at 50/s with no time passing: one slot each, 20 ms apart.
    assert sorted(got) == [round(i * 0.02, 6) for i in range(100)]


def test_gateway_honours_retry_after_for_every_thread(
    stripe_standin: TestStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    stripe_standin.add_many(stripe_dataset.build(3))
    stripe_standin.configure_faults(rate_limit_rps=1, rate_limit_burst=1)
    slept: list[float] = []
    gw = StripeGateway(
        stripe_standin.api_key,
        api_base=stripe_standin.url,
        rate_limit_rps=1000,
        backoff=BackoffPolicy(base_seconds=0.001, max_seconds=5, max_attempts=1),
        sleep=slept.append,
    )
    holds: list[float] = []
    monkeypatch.setattr(gw._limiter, "hold", holds.append)
    gw.list_page("customers", {"limit": 1})
    with pytest.raises(stripe.RateLimitError):
        gw.list_page("customers", {"limit": 1})  # max_attempts=1: no retry, no hold
    assert holds == []
    gw._backoff = BackoffPolicy(base_seconds=0.001, max_seconds=5, max_attempts=2)
    with pytest.raises(stripe.RateLimitError):
        gw.list_page("customers", {"limit": 1})
    stripe_standin.reset_faults()
    # The stand-in answered 429 with Retry-After: 1; the gateway held the shared limiter and
    # slept that long itself.
    assert holds == [1.0] and slept[-1] == 1.0
    assert gw.stats.errors_by_status["429"] == 3 and gw.stats.retries == 1


def test_gateway_decodes_pages_into_the_same_plain_data_as_raw_request(
    loaded: TestStandIn,
) -> None:
    gw = StripeGateway(loaded.api_key, api_base=loaded.url, rate_limit_rps=10_000)
    assert gw._requestor is not None  # the pinned SDK still offers the fast path
    page, has_more = gw.list_page("invoices", {"limit": 3})
    raw = gw._client.raw_request("get", "/v1/invoices", limit=3).data
    assert type(page[0]) is dict and type(page[0]["lines"]) is dict
    assert json.dumps(page) == json.dumps(raw["data"]) and has_more is raw["has_more"] is True
    assert gw.retrieve("invoices", "in_99999") is None  # a 404 still maps to "gone"
    with pytest.raises(StripePermissionDenied):
        StripeGateway(loaded.restricted_key, api_base=loaded.url).list_page("charges", {})


def test_sdk_formats_its_log_lines_only_when_they_are_emitted(
    loaded: TestStandIn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import stripe._util as sdk_util

    gw = StripeGateway(loaded.api_key, api_base=loaded.url, rate_limit_rps=10_000)
    formatted: list[str] = []
    real_logfmt = sdk_util.logfmt
    monkeypatch.setattr(
        sdk_util, "logfmt", lambda props: formatted.append(props["message"]) or real_logfmt(props)
    )
    monkeypatch.setattr(stripe, "log", None)
    caplog.set_level(logging.WARNING, logger="stripe")
    gw.list_page("customers", {"limit": 2})
    assert formatted == []  # logging off: the page body is never decoded and repr'd for a log
    caplog.set_level(logging.DEBUG, logger="stripe")
    gw.list_page("customers", {"limit": 2})
    # With the stripe logger at DEBUG the SDK logs exactly what it always did.
    assert "API response body" in formatted and "Request to Stripe api" in formatted
    bodies = [r.getMessage() for r in caplog.records if "API response body" in r.getMessage()]
    assert len(bodies) == 1 and "cus_00229" in bodies[0]


# ---- concurrent reads: slices of a pass, streams at once ---------------------------------------


def _sync_state(wh: Warehouse, ws: str = "ws_a") -> dict[str, tuple[Any, ...]]:
    """Each stream's watermarks as a finished sync leaves them."""
    return {
        r["stream"]: (
            r["high_water"],
            r["events_checkpoint"],
            r["cursor_json"],
            r["status"],
            r["objects_total"],
            r["last_run_objects"],
        )
        for r in wh.rows("SELECT * FROM raw.sync_state WHERE workspace_id = :w", w=ws)
    }


def _events(wh: Warehouse, ws: str = "ws_a") -> list[str]:
    return [
        r["id"]
        for r in wh.rows(
            "SELECT id FROM raw.stripe_events WHERE workspace_id = :w ORDER BY id", w=ws
        )
    ]


def _reference(loaded: TestStandIn, tmp_path: Path) -> Warehouse:
    """The page-after-page, one-stream-after-another sync everything is compared with."""
    ref = Warehouse(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    apply_migrations(ref)
    conn = _register(ref, loaded)
    sync = StripeStreamSync(ref, _gateway(loaded, conn), conn, clock=loaded.now, page_size=10)
    for name in STREAMS:
        sync.sync(name)
    return ref


def test_sliced_concurrent_sync_equals_sequential_rows_events_and_watermarks(
    loaded: TestStandIn, warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _reference(loaded, tmp_path)
    # Small slices and pages: many slices per stream, cut while pages are in flight.
    monkeypatch.setattr(engine_mod, "SLICE_PAGES", 2)
    conn = _register(warehouse, loaded)
    loaded.clear_requests()
    # Two processes (the default on two cores or more): invoices, about half the work, are
    # synced by the second one, pacing through the same limiter.
    sync = StripeStreamSync(
        warehouse,
        _gateway(loaded, conn),
        conn,
        clock=loaded.now,
        page_size=10,
        list_slices=4,
        processes=2,
    )
    results = sync.sync_many(list(STREAMS))
    assert results["invoices"].pid not in (0, os.getpid())
    assert results["events"].pid == results["customers"].pid == os.getpid()
    assert warehouse_snapshot(warehouse, "ws_a") == warehouse_snapshot(ref, "ws_a")
    assert _events(warehouse) == _events(ref)
    assert _sync_state(warehouse) == _sync_state(ref)
    # The customers pass really was cut into created ranges read side by side.
    windows = {
        r["query"]
        for r in loaded.requests()
        if r["path"] == "/v1/customers" and "created[lte]" in r["query"]
    }
    assert len(windows) >= 3
    assert results["customers"].listed == 230 and results["customers"].pages > 23
    ref.dispose()


def test_killed_sliced_sync_resumes_every_slice_exactly(
    loaded: TestStandIn, warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _reference(loaded, tmp_path)
    monkeypatch.setattr(engine_mod, "SLICE_PAGES", 2)
    conn = _register(warehouse, loaded)
    gw = _gateway(loaded, conn)
    killed = StripeStreamSync(
        warehouse,
        gw,
        conn,
        clock=loaded.now,
        page_size=10,
        list_slices=4,
        stop_after_pages=6,
        processes=2,
    )
    # Invoices stop in the second process: its interruption is raised here all the same.
    with pytest.raises(KeyboardInterrupt):
        killed.sync_many(["events", "customers", "invoices"])
    assert 0 < warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_invoices") <= 60
    # Each stream committed 6 pages with, in the same transaction, every slice's position.
    committed = warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_customers")
    cursor = _cursor(warehouse, "customers")
    # (a slice's last page may be partial; how many slices are still open at the kill depends on
    # which pages arrived first, since slices read ahead of the pages written)
    assert 40 < committed <= 60 and len(cursor["slices"]) >= 1
    covered = sorted(
        (lo if lo is not None else -1, hi if hi is not None else 2**62)
        for lo, hi, _ in cursor["slices"]
    )
    assert all(a[1] < b[0] for a, b in itertools.pairwise(covered))  # disjoint
    loaded.clear_requests()
    resumed = StripeStreamSync(
        warehouse, gw, conn, clock=loaded.now, page_size=10, list_slices=4, processes=2
    ).sync_many(list(STREAMS))
    # Nothing committed before the kill is listed again.
    assert resumed["customers"].mode == "resumed"
    assert resumed["customers"].listed == 230 - committed
    assert warehouse_snapshot(warehouse, "ws_a") == warehouse_snapshot(ref, "ws_a")
    assert _events(warehouse) == _events(ref)
    # The same watermarks; the resumed run's own count is what it listed after the kill.
    assert {k: v[:-1] for k, v in _sync_state(warehouse).items()} == {
        k: v[:-1] for k, v in _sync_state(ref).items()
    }
    for table in ("raw.stripe_customers", "raw.stripe_invoices", "raw.stripe_invoice_lines"):
        assert warehouse.scalar(f"SELECT COUNT(*) FROM {table}") == ref.scalar(
            f"SELECT COUNT(DISTINCT id) FROM {table}"
        )
    ref.dispose()


def test_an_old_single_cursor_checkpoint_resumes_in_slices(
    loaded: TestStandIn, warehouse: Warehouse, tmp_path: Path
) -> None:
    ref = _reference(loaded, tmp_path)
    conn = _register(warehouse, loaded)
    gw = _gateway(loaded, conn)
    killed = StripeStreamSync(warehouse, gw, conn, clock=loaded.now, stop_after_pages=1)
    with pytest.raises(KeyboardInterrupt):
        killed.sync("customers")
    assert set(_cursor(warehouse, "customers")) == {"lower", "starting_after", "pass_max", "full"}
    resumed = StripeStreamSync(
        warehouse, gw, conn, clock=loaded.now, page_size=10, list_slices=3
    ).sync("customers")
    assert (resumed.mode, resumed.listed) == ("resumed", 130)
    assert (
        warehouse_snapshot(warehouse, "ws_a")["raw.stripe_customers"]
        == (warehouse_snapshot(ref, "ws_a")["raw.stripe_customers"])
    )
    ref.dispose()


def test_a_failed_events_pass_fails_the_mutable_streams_not_the_others(
    loaded: TestStandIn, sqlite_warehouse: Warehouse
) -> None:
    conn = _register(sqlite_warehouse, loaded)
    exc = stripe.APIError("An unknown error occurred", http_status=500)
    gw = _FailsOnPage("events", 1, exc).wrap(_gateway(loaded, conn))
    sync = StripeStreamSync(sqlite_warehouse, gw, conn, clock=loaded.now, list_slices=2)
    # The first failure in the order asked for is raised once every stream is done.
    with pytest.raises(StripeSyncError, match="customers not synced because the events stream"):
        sync.sync_many(["customers", "events", "balance_transactions"])
    # Balance transactions do not depend on events; customers never started listing.
    assert _sync_state(sqlite_warehouse)["balance_transactions"][3] == "ok"
    assert sqlite_warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_customers") == 0
    gw = _FailsOnPage("events", 1, exc).wrap(_gateway(loaded, conn))
    sync = StripeStreamSync(sqlite_warehouse, gw, conn, clock=loaded.now, list_slices=2)
    with pytest.raises(stripe.APIError):
        sync.sync_many(["events", "customers"])


def test_a_streams_asset_syncs_its_workspaces_side_by_side(
    sqlite_warehouse: Warehouse, stripe_standin_factory: Any
) -> None:
    standins = {"ws_a": stripe_standin_factory(), "ws_b": stripe_standin_factory()}
    org = create_organization(sqlite_warehouse, "Acme", org_id="org_a")
    for ws, si in standins.items():
        si.add_many(stripe_dataset.build(12))
        si.configure_faults(latency_ms=200)
        create_workspace(sqlite_warehouse, org, ws, workspace_id=ws)
        connect_stripe(
            sqlite_warehouse,
            ws,
            account_id=si.account_id,
            livemode=False,
            api_key=si.api_key,
            api_base=si.url,
        )
    [customers] = [a for a in stripe_assets if a.node_def.name == "stripe_customers"]
    resources = {
        "warehouse": WarehouseResource(url=sqlite_warehouse.url.render_as_string(False)),
        "stripe": StripeResource(rate_limit_rps=1000),
    }
    assert dg.materialize([customers], resources=resources).success
    # Each workspace's requests, as (arrival, answer) on the wall clock: the two overlap.
    spans = {
        ws: [(r["time"], r["time"] + r["duration_ms"] / 1000) for r in si.requests()]
        for ws, si in standins.items()
    }
    assert all(spans.values())
    assert any(a0 < b1 and b0 < a1 for a0, a1 in spans["ws_a"] for b0, b1 in spans["ws_b"])
    counts = sqlite_warehouse.rows(
        "SELECT workspace_id, COUNT(*) AS n FROM raw.stripe_customers GROUP BY workspace_id"
    )
    assert sorted((r["workspace_id"], r["n"]) for r in counts) == [("ws_a", 12), ("ws_b", 12)]


def test_token_bucket_spaces_callers_that_all_wake_up_late_without_losing_slots() -> None:
    t = _FakeTime()

    def sleep(seconds: float) -> None:
        t.now += seconds

    bucket = TokenBucket(100, burst=1, clock=t.clock, sleep=sleep, max_late=0.05)
    # Ten callers reserve slots 10 ms apart, then all wake up 0.5 s late (a starved process).
    assert [round(bucket.reserve(), 6) for _ in range(10)] == [i / 100 for i in range(10)]
    t.now += 0.5
    sent = []
    for _ in range(10):
        bucket.depart()
        sent.append(round(t.now - 100.5, 6))
    # max_late's worth (5) leaves at once, the rest 1/rate apart: no burst of 10, no slot lost.
    assert sent == [0.0] * 5 + [0.01, 0.02, 0.03, 0.04, 0.05]
    # After a quiet second, a caller goes at once.
    t.now += 1.0
    assert round(bucket.acquire(), 6) == 0.0


# ---- pages written together; requests counted per stream ---------------------------------------


def test_pages_already_read_commit_together_with_the_last_ones_checkpoint(
    loaded: TestStandIn, warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _reference(loaded, tmp_path)
    monkeypatch.setattr(engine_mod, "SLICE_PAGES", 2)
    conn = _register(warehouse, loaded)
    gw = _gateway(loaded, conn)
    # Reads in the caller's thread: a page that cuts a new slice off also reads that slice's
    # first page and its own next one, so two pages are waiting when it has been written.
    killed = StripeStreamSync(
        warehouse,
        gw,
        conn,
        clock=loaded.now,
        page_size=10,
        list_slices=4,
        fetch_workers=0,
        stop_after_pages=5,
    )
    with pytest.raises(KeyboardInterrupt):
        killed.sync("customers")
    # Exactly 5 pages committed (the batch before the kill is cut to fit), with every slice's
    # position after the last of them.
    committed = warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_customers")
    assert 40 < committed <= 50
    resumed = StripeStreamSync(
        warehouse, gw, conn, clock=loaded.now, page_size=10, list_slices=4, fetch_workers=0
    ).sync("customers")
    assert (resumed.mode, resumed.listed) == ("resumed", 230 - committed)
    assert resumed.timings["commits"] < resumed.pages
    assert (
        warehouse_snapshot(warehouse, "ws_a")["raw.stripe_customers"]
        == warehouse_snapshot(ref, "ws_a")["raw.stripe_customers"]
    )
    whole = Warehouse(f"sqlite:///{tmp_path / 'whole.sqlite'}")
    apply_migrations(whole)
    conn = _register(whole, loaded)
    result = StripeStreamSync(
        whole, gw, conn, clock=loaded.now, page_size=10, list_slices=4, fetch_workers=0
    ).sync("invoices")
    assert result.timings["commits"] < result.pages
    assert (
        warehouse_snapshot(whole, "ws_a")["raw.stripe_invoice_lines"]
        == warehouse_snapshot(ref, "ws_a")["raw.stripe_invoice_lines"]
    )
    assert _sync_state(whole)["invoices"] == _sync_state(ref)["invoices"]
    whole.dispose()
    ref.dispose()


def test_gateway_counts_requests_by_the_stream_a_thread_reads_for(
    loaded: TestStandIn, sqlite_warehouse: Warehouse
) -> None:
    conn = _register(sqlite_warehouse, loaded)
    gw = _gateway(loaded, conn)
    sync = StripeStreamSync(sqlite_warehouse, gw, conn, clock=loaded.now, page_size=100)
    sync.sync("invoices")
    by_tag = gw.stats.by_tag
    # 230 invoices: 3 list pages; in_00011's 25 lines need one page beyond the 10 embedded.
    long_invoices = 1
    assert by_tag["invoices/list"]["requests"] == 3
    assert by_tag["invoice_lines"]["requests"] == long_invoices
    assert sum(c["requests"] for c in by_tag.values()) == gw.stats.requests
    assert sum(sum(line.values()) for line in gw.stats.timeline.values()) == gw.stats.requests
    # Another process's counters add up tag by tag.
    total = GatewayStats()
    total.add(gw.stats)
    total.add(gw.stats)
    assert total.by_tag["invoice_lines"]["requests"] == 2 * long_invoices
    assert total.requests == 2 * gw.stats.requests

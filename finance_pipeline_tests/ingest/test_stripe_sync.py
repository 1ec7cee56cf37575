"""Stripe ingestion through the real SDK against the stand-in: completeness, idempotence, resume,
faults, permissions, events refresh, the 30-day rule and several workspaces (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dagster as dg
import pytest
from finance_pipeline_dev.pytest_plugin import TestStandIn

from finance_pipeline.ingest.stripe_assets import stripe_assets
from finance_pipeline.lib.backoff import BackoffPolicy
from finance_pipeline.resources import StripeResource, WarehouseResource
from finance_pipeline.stripe_sync.engine import Connection, StripeStreamSync
from finance_pipeline.stripe_sync.gateway import StripeGateway, StripePermissionDenied
from finance_pipeline.stripe_sync.health import sync_status
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.tenancy import connect_stripe, create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.ingest import stripe_dataset

SUBLIST_KEYS = {"invoice": "lines", "subscription": "items", "credit_note": "lines"}
CHILD_TABLES = {
    "invoice": "raw.stripe_invoice_lines",
    "subscription": "raw.stripe_subscription_items",
    "credit_note": "raw.stripe_credit_note_lines",
}


def _canon(obj: dict[str, Any]) -> str:
    trimmed = {k: v for k, v in obj.items() if k != SUBLIST_KEYS.get(obj.get("object", ""))}
    return json.dumps(trimmed, sort_keys=True, separators=(",", ":"))


def _digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()


def standin_snapshot(standin: TestStandIn, account: str) -> dict[str, Any]:
    """What the stand-in holds, per raw table: object count and checksum (sub-lists in full)."""
    objects = standin.dump()["accounts"][account]["objects"]
    out: dict[str, list[str]] = {}
    for stream in STREAMS.values():
        mine = [o for o in objects if o.get("object") == stream.object_type]
        if stream.name == "events":
            continue  # events depend on the clock window; checked separately
        out[stream.table] = [_canon(o) for o in mine]
        if stream.object_type in CHILD_TABLES:
            key = SUBLIST_KEYS[stream.object_type]
            out[CHILD_TABLES[stream.object_type]] = [
                _canon(c) for o in mine for c in o[key]["data"]
            ]
    return {t: (len(v), _digest(v)) for t, v in out.items()}


def warehouse_snapshot(wh: Warehouse, workspace_id: str) -> dict[str, Any]:
    """The same per-table count and checksum, from the raw tables' payloads."""
    out = {}
    for stream in STREAMS.values():
        if stream.name == "events":
            continue
        tables = [stream.table] + (
            [CHILD_TABLES[stream.object_type]] if stream.object_type in CHILD_TABLES else []
        )
        for table in tables:
            payloads = [
                r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"])
                for r in wh.rows(
                    f"SELECT payload FROM {table} WHERE workspace_id = :w", w=workspace_id
                )
            ]
            canon = [_canon(p) for p in payloads]
            out[table] = (len(canon), _digest(canon))
    return out


def _register(
    wh: Warehouse, standin: TestStandIn, ws: str = "ws_a", key: str | None = None
) -> Connection:
    org = create_organization(wh, "Acme", org_id="org_a")
    create_workspace(wh, org, ws, workspace_id=ws)
    connect_stripe(
        wh,
        ws,
        account_id=standin.account_id,
        livemode=False,
        api_key=key or standin.api_key,
        api_base=standin.url,
    )
    return Connection(ws, standin.account_id, False, key or standin.api_key, standin.url)


def _sync_all(wh: Warehouse, standin: TestStandIn, conn: Connection, **kw: Any) -> dict[str, Any]:
    gw = StripeGateway(
        conn.api_key,
        api_base=standin.url,
        rate_limit_rps=10_000,
        backoff=BackoffPolicy(base_seconds=0.001, max_seconds=0.01, max_attempts=12),
        workspace_id=conn.workspace_id,
    )
    sync = StripeStreamSync(wh, gw, conn, clock=lambda: standin.now(), **kw)
    results = {name: sync.sync(name) for name in STREAMS}
    return {"results": results, "stats": gw.stats}


@pytest.fixture
def loaded(stripe_standin: TestStandIn) -> TestStandIn:
    stripe_standin.add_many(stripe_dataset.build())
    return stripe_standin


def test_sync_is_complete_including_long_sublists_and_canceled(
    warehouse: Warehouse, loaded: TestStandIn
) -> None:
    conn = _register(warehouse, loaded)
    out = _sync_all(warehouse, loaded, conn)
    assert warehouse_snapshot(warehouse, "ws_a") == standin_snapshot(loaded, loaded.account_id)
    # The invoice with 25 lines, the subscription with 12 items, the credit note with 12 lines:
    assert (
        warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_invoice_lines WHERE invoice = 'in_00011'")
        == 25
    )
    assert (
        warehouse.scalar(
            "SELECT COUNT(*) FROM raw.stripe_subscription_items WHERE subscription = 'sub_00007'"
        )
        == 12
    )
    assert (
        warehouse.scalar(
            "SELECT COUNT(*) FROM raw.stripe_credit_note_lines WHERE credit_note = 'cn_00011'"
        )
        == 12
    )
    assert (
        warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_subscriptions WHERE status = 'canceled'")
        == 26
    )
    # Extracted columns carry the Stripe values; every row carries account and mode.
    row = warehouse.rows(
        "SELECT subscription, lines_count, account_id, livemode FROM raw.stripe_invoices WHERE id = 'in_00011'"
    )[0]
    assert (row["subscription"], row["lines_count"], row["account_id"], bool(row["livemode"])) == (
        "sub_00011",
        25,
        loaded.account_id,
        False,
    )
    assert all(r.mode == "full" for r in out["results"].values())
    # Pagination really happened with limit=100 and the default list hid nothing.
    paths = [r for r in loaded.requests() if r["path"] == "/v1/subscriptions"]
    assert len(paths) == 3 and all("status" in json.dumps(r) for r in paths)


def test_rerun_is_idempotent_and_incremental(warehouse: Warehouse, loaded: TestStandIn) -> None:
    conn = _register(warehouse, loaded)
    _sync_all(warehouse, loaded, conn)
    before = warehouse_snapshot(warehouse, "ws_a")
    out = _sync_all(warehouse, loaded, conn)
    assert warehouse_snapshot(warehouse, "ws_a") == before
    assert {r.mode for r in out["results"].values()} == {"incremental"}
    # Only the lookback window (10 min of index lag) is listed again: customers are 10 min apart.
    assert out["results"]["customers"].listed == 2


def test_killed_run_resumes_from_checkpoint_and_equals_uninterrupted(
    warehouse: Warehouse, loaded: TestStandIn, sqlite_warehouse: Warehouse
) -> None:
    conn = _register(warehouse, loaded)
    gw = StripeGateway(
        conn.api_key, api_base=loaded.url, rate_limit_rps=10_000, workspace_id="ws_a"
    )
    killed = StripeStreamSync(warehouse, gw, conn, clock=loaded.now, stop_after_pages=1)
    with pytest.raises(KeyboardInterrupt):
        killed.sync("customers")
    assert (
        warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_customers") == 100
    )  # first page committed
    loaded.clear_requests()
    resumed = StripeStreamSync(warehouse, gw, conn, clock=loaded.now).sync("customers")
    assert resumed.mode == "resumed" and resumed.listed == 130
    first = next(r for r in loaded.requests() if r["path"] == "/v1/customers")
    assert "starting_after" in json.dumps(first)  # it did not start over
    _sync_all(warehouse, loaded, conn)
    reference = _register(sqlite_warehouse, loaded, ws="ws_a")
    _sync_all(sqlite_warehouse, loaded, reference)
    assert warehouse_snapshot(warehouse, "ws_a") == warehouse_snapshot(sqlite_warehouse, "ws_a")


def test_twenty_percent_faults_give_the_same_result(
    warehouse: Warehouse, loaded: TestStandIn
) -> None:
    conn = _register(warehouse, loaded)
    loaded.configure_faults(error_rate=0.2, seed=3)
    out = _sync_all(warehouse, loaded, conn)
    loaded.reset_faults()
    assert out["stats"].retries >= 3 and out["stats"].requests > 25
    assert warehouse_snapshot(warehouse, "ws_a") == standin_snapshot(loaded, loaded.account_id)


def test_restricted_key_missing_permission_fails_the_run_clearly(
    sqlite_warehouse: Warehouse, loaded: TestStandIn
) -> None:
    _register(sqlite_warehouse, loaded, key=loaded.restricted_key)
    resources = {
        "warehouse": WarehouseResource(url=sqlite_warehouse.url.render_as_string(False)),
        "stripe": StripeResource(rate_limit_rps=1000),
    }
    charges = next(a for a in stripe_assets if a.op.name == "stripe_charges")
    result = dg.materialize([charges], resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = str(failure.step_failure_data.error.message) + str(
        failure.step_failure_data.user_failure_data
    )
    assert "Stripe sync of charges failed for 1 workspace" in text
    assert "rk_test_****cted may not read charges (HTTP 403)" in text and "rak_charge_read" in text
    assert "rk_test_standin_restricted" not in text  # the key itself never appears
    status = sync_status(sqlite_warehouse, "ws_a")
    assert status["sync_health"] == "error" and "charges" in status["health_reason"]
    with pytest.raises(StripePermissionDenied):
        gw = StripeGateway(loaded.restricted_key, api_base=loaded.url, workspace_id="ws_a")
        gw.list_page("charges", {"limit": 1})


def test_events_refresh_picks_up_changes_to_old_objects(
    warehouse: Warehouse, loaded: TestStandIn
) -> None:
    conn = _register(warehouse, loaded)
    _sync_all(warehouse, loaded, conn)
    loaded.advance_clock(3600)
    loaded.update(
        loaded.account_id,
        "sub_00001",
        {"cancel_at_period_end": True},
        "customer.subscription.updated",
    )
    loaded.update(loaded.account_id, "cus_00002", {"email": "new@example.test"}, "customer.updated")
    out = _sync_all(warehouse, loaded, conn)
    assert (
        out["results"]["subscriptions"].refreshed == 1
        and out["results"]["customers"].refreshed == 1
    )
    assert warehouse.scalar(
        "SELECT cancel_at_period_end FROM raw.stripe_subscriptions WHERE id = 'sub_00001'"
    )
    assert (
        warehouse.scalar("SELECT email FROM raw.stripe_customers WHERE id = 'cus_00002'")
        == "new@example.test"
    )
    assert warehouse.scalar("SELECT COUNT(*) FROM raw.stripe_events") == 2


def test_checkpoint_older_than_event_retention_forces_full_reread(
    sqlite_warehouse: Warehouse, loaded: TestStandIn
) -> None:
    conn = _register(sqlite_warehouse, loaded)
    _sync_all(sqlite_warehouse, loaded, conn)
    loaded.advance_clock(31 * 86400)
    out = _sync_all(sqlite_warehouse, loaded, conn)
    assert out["results"]["subscriptions"].mode == "full"
    assert any("30-day" in n for n in out["results"]["subscriptions"].notes)
    assert out["results"]["charges"].mode == "full"  # charges are mutable (refunds, disputes)
    assert out["results"]["balance_transactions"].mode == "incremental"  # immutable: lookback only


def test_several_workspaces_with_their_own_keys_sync_in_one_run(
    sqlite_warehouse: Warehouse, stripe_standin_factory: Any
) -> None:
    a = stripe_standin_factory()
    a.add_many(stripe_dataset.build(12))
    b = stripe_standin_factory()
    b.add_many(stripe_dataset.build(5))
    org = create_organization(sqlite_warehouse, "Acme", org_id="org_a")
    for ws, si in (("ws_a", a), ("ws_b", b)):
        create_workspace(sqlite_warehouse, org, ws, workspace_id=ws)
        connect_stripe(
            sqlite_warehouse,
            ws,
            account_id=si.account_id,
            livemode=False,
            api_key=si.api_key,
            api_base=si.url,
        )
    resources = {
        "warehouse": WarehouseResource(url=sqlite_warehouse.url.render_as_string(False)),
        "stripe": StripeResource(rate_limit_rps=1000),
    }
    result = dg.materialize(stripe_assets, resources=resources)
    assert result.success
    counts = sqlite_warehouse.rows(
        "SELECT workspace_id, COUNT(*) AS n FROM raw.stripe_customers GROUP BY workspace_id ORDER BY workspace_id"
    )
    assert [(r["workspace_id"], r["n"]) for r in counts] == [("ws_a", 12), ("ws_b", 5)]
    mat = result.asset_materializations_for_node("stripe_customers")[0]
    assert mat.metadata["workspaces"].value == 2 and mat.metadata["objects_synced"].value == 17


def test_client_limiter_keeps_under_server_rate_limit(
    sqlite_warehouse: Warehouse, loaded: TestStandIn
) -> None:
    conn = _register(sqlite_warehouse, loaded)
    loaded.configure_faults(rate_limit_rps=50, rate_limit_burst=5)
    gw = StripeGateway(conn.api_key, api_base=loaded.url, rate_limit_rps=45, workspace_id="ws_a")
    StripeStreamSync(sqlite_warehouse, gw, conn, clock=loaded.now).sync("customers")
    loaded.reset_faults()
    assert gw.stats.requests >= 3 and gw.stats.errors_by_status.get("429", 0) == 0


def test_refreshed_subscriptions_keep_their_expanded_discounts(
    sqlite_warehouse: Warehouse, loaded: TestStandIn
) -> None:
    conn = _register(sqlite_warehouse, loaded)
    _sync_all(sqlite_warehouse, loaded, conn)
    loaded.advance_clock(3600)
    loaded.update(
        loaded.account_id,
        "sub_00001",
        {"cancel_at_period_end": True},
        "customer.subscription.updated",
    )
    loaded.clear_requests()
    out = _sync_all(sqlite_warehouse, loaded, conn)
    assert out["results"]["subscriptions"].refreshed == 1
    retrieve = [r for r in loaded.requests() if r["path"] == "/v1/subscriptions/sub_00001"]
    assert retrieve and "discounts" in json.dumps(retrieve[0]["query"])

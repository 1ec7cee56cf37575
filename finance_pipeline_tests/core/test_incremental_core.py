"""Incremental builds of core.ledger and core.subscription_history (SQLite and PostgreSQL): after
each kind of change (new syncs, a late landing file, a late FX rate, a new reporting currency) the
tables equal a full rebuild exactly, and a run with nothing changed touches no row."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from finance_pipeline_dev.simulator import LANDING_HEADERS, simulate
from finance_pipeline_dev.standin.server import StandIn

import finance_pipeline.core.assets as core_assets
from finance_pipeline.core.assets import _ledger_rows, fx_rates, ledger, subscription_history
from finance_pipeline.core.history_io import history_rows, load_history_inputs
from finance_pipeline.ingest.landing import pending_files, process_file
from finance_pipeline.lib.subscription_history import build_history
from finance_pipeline.lib.timeutil import day_start_ts
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.stripe_sync.engine import Connection, StripeStreamSync
from finance_pipeline.stripe_sync.gateway import StripeGateway
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.tenancy import create_organization, create_workspace, list_workspaces
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import range_tags

END = date(2026, 10, 31)
MONTHS = 3
WORKSPACES = {"ws1": ("usd", "UTC"), "ws2": ("usd", "America/New_York")}
BUILD_COLUMNS = ()  # neither table stores a build timestamp


def _norm(value: Any) -> Any:
    """One spelling per value across dialects and the in-memory rows (dates, booleans, JSON)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _json_norm(value: Any) -> Any:
    if value is None:
        return None
    doc = json.loads(value) if isinstance(value, str) else value
    return json.dumps(doc, sort_keys=True, default=str)


def _rowset(rows: list[dict[str, Any]], json_columns: tuple[str, ...] = ()) -> list[tuple]:
    out = []
    for r in rows:
        out.append(
            tuple(
                sorted(
                    (k, _json_norm(v) if k in json_columns else _norm(v))
                    for k, v in r.items()
                    if k not in BUILD_COLUMNS
                )
            )
        )
    return sorted(out, key=repr)


HISTORY_JSON = ("price_json", "discounts_json")


def _tables(wh: Warehouse) -> tuple[list[tuple], list[tuple]]:
    return (
        _rowset(wh.rows("SELECT * FROM core.ledger")),
        _rowset(wh.rows("SELECT * FROM core.subscription_history"), HISTORY_JSON),
    )


def _full_rebuild_rows(wh: Warehouse, now: int) -> tuple[list[tuple], list[tuple]]:
    """What a full rebuild writes, computed with the full build's own readers and builders."""
    led: list[dict[str, Any]] = []
    hist: list[dict[str, Any]] = []
    for ws in list_workspaces(wh):
        led += _ledger_rows(wh, ws)
        for inp in load_history_inputs(wh, ws.id):
            hist += history_rows(build_history(inp, now))
    return _rowset(led), _rowset(hist, HISTORY_JSON)


class Env:
    """A simulated account served by the stand-in, synced into two workspaces on demand."""

    def __init__(self, wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wh = wh
        self.sim = simulate(seed=5, customers=14, months=MONTHS, end=END, event_history="retention")
        [(acct, a)] = self.sim.fixture["accounts"].items()
        key = next(iter(a["keys"]))
        self.standin = StandIn(self.sim.fixture)
        url = self.standin.start()
        org = create_organization(wh, "o", org_id="o")
        for ws_id, (currency, tz) in WORKSPACES.items():
            create_workspace(
                wh, org, ws_id, workspace_id=ws_id, reporting_currency=currency, time_zone=tz
            )
        self.syncs = [
            StripeStreamSync(
                wh,
                StripeGateway(key, api_base=url, rate_limit_rps=1e9, workspace_id=ws_id),
                Connection(ws_id, acct, False, key, url),
                clock=self.standin.now,
            )
            for ws_id in WORKSPACES
        ]
        self.landing = get_settings().resolved_landing_dir
        self.landing.mkdir(parents=True)
        self.staged = self.landing.parent / "staged"
        self.sim.write_landing(self.staged)
        self.resources = {"warehouse": WarehouseResource(url=wh.url.render_as_string(False))}
        self.now = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
        monkeypatch.setattr(core_assets, "_now", lambda: self.now)

    def sync_at(self, t: int) -> None:
        self.standin.set_clock(t)
        for sync in self.syncs:
            for name in STREAMS:
                sync.sync(name)

    def land(self, name: str, kind: str, rows: list[dict[str, str]], ws: str | None) -> None:
        folder = self.landing / ws if ws else self.landing
        folder.mkdir(exist_ok=True)
        with (folder / name).open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=LANDING_HEADERS[kind], lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        for path in pending_files(self.landing):
            assert process_file(self.wh, path, self.landing).status == "accepted"

    def build(self, *, full: bool = False) -> dict[str, dict[str, Any]]:
        """Materialize the core assets through Dagster; metadata per asset."""
        result = dg.materialize(
            [fx_rates, ledger, subscription_history],
            resources=self.resources,
            instance=dg.DagsterInstance.ephemeral(),
            run_config={
                "ops": {
                    "core__ledger": {"config": {"full_rebuild": full}},
                    "core__subscription_history": {"config": {"full_rebuild": full}},
                }
            },
        )
        assert result.success
        out = {}
        for node in ("core__ledger", "core__subscription_history"):
            [mat] = result.asset_materializations_for_node(node)
            out[node.removeprefix("core__")] = {k: v.value for k, v in mat.metadata.items()}
        return out

    def assert_equals_full(self) -> None:
        assert _tables(self.wh) == _full_rebuild_rows(self.wh, self.now)


@pytest.fixture
def env(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch):
    e = Env(warehouse, monkeypatch)
    yield e
    e.standin.stop()


def _no_change(meta: dict[str, dict[str, Any]]) -> None:
    for asset in ("ledger", "subscription_history"):
        m = meta[asset]
        assert (m["mode"], m["objects_changed"], m["rows_deleted"], m["rows_rebuilt"]) == (
            "incremental",
            0,
            0,
            0,
        ), asset


def test_incremental_core_equals_full_rebuild_after_every_kind_of_change(env: Env) -> None:
    wh = env.wh
    first = END - timedelta(days=MONTHS * 31)
    clock = day_start_ts(first + timedelta(days=40))
    env.sync_at(clock)
    env.now = clock + 3600

    # FX rates, less one (currency, day) that has a foreign-currency charge: its entries are
    # skipped until the rate arrives late.
    charge = wh.rows(
        "SELECT currency, created FROM raw.stripe_charges WHERE workspace_id = 'ws1'"
        " AND status = 'succeeded' AND currency <> 'usd' ORDER BY created, id"
    )[0]
    held_day = datetime.fromtimestamp(int(charge["created"]), UTC).date()
    held = (charge["currency"].upper(), held_day.isoformat())
    fx_rows = list(csv.DictReader((env.staged / f"fx_rates_{END}.csv").open()))
    late_fx = [r for r in fx_rows if (r["currency"], r["date"]) == held]
    assert len(late_fx) == 1
    env.land("fx_rates_early.csv", "fx_rates", [r for r in fx_rows if r not in late_fx], None)
    for kind in ("costs", "expenses", "usage_costs", "revenue"):
        rows = list(csv.DictReader((env.staged / f"{kind}_{END}.csv").open()))
        env.land(f"{kind}_first.csv", kind, rows, "ws1")

    meta = env.build()
    assert meta["ledger"]["mode"] == meta["subscription_history"]["mode"] == "full"
    env.assert_equals_full()
    _no_change(env.build())
    env.assert_equals_full()

    # Time alone: histories valid only until an instant now past (a trial's end, a new invoice
    # period) are rebuilt, with the other subscriptions of their customers; nothing else.
    due = wh.rows("SELECT subscription_id, due_at FROM core.subscription_history_due")
    assert len(due) == 6
    env.now = max(int(r["due_at"]) for r in due) + 1
    customers_subs = wh.scalar(
        "SELECT COUNT(*) FROM raw.stripe_subscriptions s WHERE EXISTS (SELECT 1 FROM"
        " raw.stripe_subscriptions d JOIN core.subscription_history_due u"
        " ON u.workspace_id = d.workspace_id AND u.subscription_id = d.id"
        " WHERE d.workspace_id = s.workspace_id AND d.customer = s.customer)"
    )
    meta = env.build()
    assert meta["ledger"]["objects_changed"] == 0
    assert meta["subscription_history"]["objects_changed"] == customers_subs
    env.assert_equals_full()

    # New syncs (new events, invoices, charges, refunds, changed subscriptions), one day later each.
    while clock < env.sim.fixture["clock"]:
        clock = min(clock + 25 * 86400, env.sim.fixture["clock"])
        env.sync_at(clock)
        env.now = clock + 3600
        meta = env.build()
        assert meta["ledger"]["mode"] == meta["subscription_history"]["mode"] == "incremental"
        n_subs = wh.scalar("SELECT COUNT(*) FROM raw.stripe_subscriptions")
        assert meta["subscription_history"]["objects_changed"] <= n_subs
        env.assert_equals_full()
    _no_change(env.build())

    # A late landing file dated at the start of the history: one entry rebuilt, nothing else.
    late_cost = {
        "external_id": "late-cost-1",
        "name": "Late invoice",
        "amount": "123.45",
        "currency": "EUR",
        "category": "INFRASTRUCTURE",
        "is_recurring": "false",
        "note": "",
        "date": first.isoformat(),
        "customer_tag": "",
    }
    env.land("costs_late.csv", "costs", [late_cost], "ws1")
    meta = env.build()
    assert (
        meta["ledger"]["objects_changed"],
        meta["ledger"]["rows_deleted"],
        meta["ledger"]["rows_rebuilt"],
    ) == (1, 0, 1)
    assert meta["subscription_history"]["objects_changed"] == 0
    env.assert_equals_full()

    # The late FX rate: the entries skipped on that (currency, day) in both workspaces get it.
    skipped = wh.rows(
        "SELECT workspace_id, COUNT(*) AS n FROM core.ledger WHERE currency = :c AND day = :d"
        " AND amount_reporting_micros IS NULL GROUP BY workspace_id ORDER BY workspace_id",
        c=charge["currency"],
        d=held_day,
    )
    n_skipped = sum(r["n"] for r in skipped)
    assert n_skipped >= 1
    env.land("fx_rates_late.csv", "fx_rates", late_fx, None)
    meta = env.build()
    assert (meta["ledger"]["objects_changed"], meta["ledger"]["rows_rebuilt"]) == (
        n_skipped,
        n_skipped,
    )
    assert (
        wh.scalar(
            "SELECT COUNT(*) FROM core.ledger WHERE currency = :c AND day = :d"
            " AND amount_reporting_micros IS NULL",
            c=charge["currency"],
            d=held_day,
        )
        == 0
    )
    env.assert_equals_full()
    _no_change(env.build())

    # A new reporting currency: the ledger of that workspace is rebuilt fully, history is not.
    with wh.begin() as db:
        db.execute(wh.text("UPDATE app.workspaces SET reporting_currency = 'eur' WHERE id = 'ws2'"))
    meta = env.build()
    assert meta["ledger"]["mode"] == "mixed"
    assert "ws2 | full | workspace settings" in meta["ledger"]["workspaces"]
    assert meta["subscription_history"]["objects_changed"] == 0
    env.assert_equals_full()
    _no_change(env.build())

    # Finally the asset's own full rebuild writes exactly what the incremental runs left.
    incremental = _tables(wh)
    meta = env.build(full=True)
    assert meta["ledger"]["mode"] == meta["subscription_history"]["mode"] == "full"
    assert _tables(wh) == incremental


def _cost_record(wh: Warehouse, external_id: str) -> None:
    """A 5 USD cost record of workspace ws1 (one ledger entry), every one ingested in one second."""
    row = {
        "workspace_id": "ws1",
        "external_id": external_id,
        "name": external_id,
        "amount_micros": 5_000_000,
        "currency": "usd",
        "category": "OTHER",
        "is_recurring": False,
        "note": None,
        "date": date(2026, 1, 5),
        "customer_tag": None,
        "source": "test",
        "ingested_at": 1_900_000_000,  # the same second for every row
    }
    with wh.begin() as db:
        wh.upsert(db, "raw.cost_records", [row], key=("workspace_id", "external_id"))


def test_rebuild_marts_rebuilds_core_fully_over_a_partition_range(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild_marts run over a range of days (a backfill's single run, the demo: range tags, no
    partition key, so no job config reaches it) rebuilds both core tables wholly; the daily and
    requested refreshes over the same range build incrementally, and a run config may say so."""
    from finance_pipeline.definitions import defs

    wh = warehouse
    org = create_organization(wh, "o", org_id="o")
    create_workspace(wh, org, "w", workspace_id="ws1")
    monkeypatch.setattr(core_assets, "_now", lambda: 2_000_000_000)
    resources = {"warehouse": WarehouseResource(url=wh.url.render_as_string(False))}
    _cost_record(wh, "a")
    instance = dg.DagsterInstance.ephemeral()

    def modes(job: str, run_config: dict[str, Any] | None = None) -> tuple[Any, Any]:
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            resources=resources,
            tags=range_tags("2026-10-30", "2026-10-31"),
            run_config=run_config,
        )
        assert result.success and result.dagster_run.tags.get("dagster/partition") is None
        return tuple(
            result.asset_materializations_for_node(node)[0].metadata["mode"].value
            for node in ("core__ledger", "core__subscription_history")
        )

    assert modes("requested_refresh") == ("full", "full")  # the first build
    assert modes("daily_refresh") == ("incremental", "incremental")
    assert modes("requested_refresh") == ("incremental", "incremental")
    assert modes("rebuild_marts") == ("full", "full")
    incremental = {"config": {"full_rebuild": False}}
    ops = {"core__ledger": incremental, "core__subscription_history": incremental}
    assert modes("rebuild_marts", {"ops": ops}) == ("incremental", "incremental")
    # A single-partition run of rebuild_marts rebuilds wholly too.
    result = defs.resolve_job_def("rebuild_marts").execute_in_process(
        instance=instance, resources=resources, partition_key="2026-10-31"
    )
    [mat] = result.asset_materializations_for_node("core__ledger")
    assert mat.metadata["mode"].value == "full"
    assert _tables(wh)[0] == _full_rebuild_rows(wh, 2_000_000_000)[0]


def test_rows_ingested_in_the_same_second_as_the_last_build_are_built(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stamps are whole seconds: a row stamped with the last build's largest stamp, written after
    that build read raw, is still built (known by the count of rows carrying that stamp)."""
    wh = warehouse
    org = create_organization(wh, "o", org_id="o")
    create_workspace(wh, org, "w", workspace_id="ws1")
    monkeypatch.setattr(core_assets, "_now", lambda: 2_000_000_000)
    resources = {"warehouse": WarehouseResource(url=wh.url.render_as_string(False))}

    def build() -> tuple[Any, ...]:
        result = dg.materialize(
            [fx_rates, ledger], resources=resources, instance=dg.DagsterInstance.ephemeral()
        )
        [mat] = result.asset_materializations_for_node("core__ledger")
        m = {k: v.value for k, v in mat.metadata.items()}
        return m["mode"], m["objects_changed"], m["rows_deleted"], m["rows_rebuilt"], m["rows"]

    _cost_record(wh, "a")
    assert build() == ("full", 1, 0, 1, 1)
    _cost_record(wh, "b")
    # Every row of that second is built again: a's entry is replaced, b's added.
    assert build() == ("incremental", 2, 1, 2, 2)
    assert build() == ("incremental", 0, 0, 0, 2)
    assert _tables(wh)[0] == _full_rebuild_rows(wh, 2_000_000_000)[0]


def test_full_build_in_small_batches_equals_one_read(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full build reads and builds the history a batch of customers at a time, and the ledger
    from streamed pages, parking their rows on disk: with batches of 3 customers, pages of 3 rows
    and ledger chunks of 7 rows the tables equal one whole-workspace read, row for row, and the
    ledger equals its rows read by lists of ids (every source object named)."""
    import finance_pipeline.warehouse.db as warehouse_db

    env.sync_at(day_start_ts(END))
    monkeypatch.setattr(core_assets, "HISTORY_BATCH_CUSTOMERS", 3)
    monkeypatch.setattr(core_assets, "LEDGER_SPOOL_CHUNK", 7)
    monkeypatch.setattr(warehouse_db, "_FETCH_BATCH", 3)
    meta = env.build(full=True)
    assert meta["subscription_history"]["subscriptions"] > 3 * 3
    assert meta["ledger"]["rows_rebuilt"] > 7 * 3
    env.assert_equals_full()
    wh = env.wh
    by_ids: list[dict[str, Any]] = []
    for ws in list_workspaces(wh):
        only = {
            t: {
                r["i"]
                for r in wh.rows(f"SELECT {c} AS i FROM {t} WHERE workspace_id = :w", w=ws.id)
            }
            for t, c in (
                ("raw.stripe_charges", "id"),
                ("raw.stripe_refunds", "id"),
                ("raw.stripe_balance_transactions", "id"),
                *((t, "external_id") for t in core_assets.MANUAL_TABLES),
            )
        }
        by_ids += _ledger_rows(wh, ws, only)
    assert _tables(wh)[0] == _rowset(by_ids)

"""Fan-out by workspace (docs/scaling.md): the workspace tag scopes every asset of a run, the daily
refresh schedule and the requests sensor ask for one run per workspace (or batch) on an ephemeral
instance, and a workspace whose data fails fails only its own run."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest
from finance_pipeline_dev.fanout_seed import seed_workspaces

from finance_pipeline.advisory.assets import advisory_memos
from finance_pipeline.alerts.assets import alerts
from finance_pipeline.core.assets import fx_rates, ledger, subscription_history
from finance_pipeline.definitions import daily_refresh, defs
from finance_pipeline.fanout import STRIPE_TAG, fan_out, scope_key, workspace_batches
from finance_pipeline.metrics.cfo_assets import cfo_marts
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import (
    WORKSPACE_TAG,
    create_organization,
    create_workspace,
    parse_workspace_scope,
)
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import range_tags, warehouse_resources

TICK = datetime(2026, 11, 23, 2, 15, tzinfo=UTC)
RANGE = {
    "dagster/asset_partition_range_start": "2026-11-20",
    "dagster/asset_partition_range_end": "2026-11-22",
}


def test_batches_scope_tags_and_run_keys() -> None:
    assert workspace_batches(["a", "b", "c"], 2) == [("a", "b"), ("c",)]
    assert workspace_batches(["a", "b", "c"], 1) == [("a",), ("b",), ("c",)]
    assert workspace_batches(["a", "b"], 0) == [("a", "b")]
    assert workspace_batches([], 3) == []
    assert parse_workspace_scope(None) is None and parse_workspace_scope(" , ") is None
    assert parse_workspace_scope("ws_b, ws_a") == frozenset({"ws_a", "ws_b"})
    assert scope_key(["ws_a"]) == "ws_a"
    # A batch's key does not depend on the order of its ids, and differs from another batch's.
    assert scope_key(["ws_b", "ws_a"]) == scope_key(["ws_a", "ws_b"]) != scope_key(["ws_a", "c"])
    [whole] = fan_out("k", {"t": "1"}, ["a", "b"], 0)
    assert whole.run_key == "k" and whole.tags == {"t": "1"}


def _workspaces(wh: Warehouse, n: int) -> list[str]:
    org = create_organization(wh, "Org", org_id="org1")
    ids = [f"ws{i}" for i in range(n)]
    for ws in ids:
        create_workspace(wh, org, ws, workspace_id=ws)
    return ids


def _tick(wh: Warehouse) -> list[dg.RunRequest]:
    ctx = dg.build_schedule_context(
        instance=dg.DagsterInstance.ephemeral(),
        scheduled_execution_time=TICK,
        resources=warehouse_resources(wh),
    )
    return list(daily_refresh(ctx))  # type: ignore[arg-type]


def test_daily_refresh_asks_for_one_run_per_workspace(sqlite_warehouse: Warehouse) -> None:
    ids = _workspaces(sqlite_warehouse, 3)
    requests = _tick(sqlite_warehouse)
    assert [r.tags[WORKSPACE_TAG] for r in requests] == ids
    assert [r.run_key for r in requests] == [f"daily_refresh:2026-11-22:{w}" for w in ids]
    for r in requests:
        assert {k: r.tags[k] for k in RANGE} == RANGE and r.tags[STRIPE_TAG] == "sync"
        assert r.run_config == {}  # the default multiprocess executor
    # A re-evaluated tick asks for the same runs (Dagster launches a run key once).
    assert [r.run_key for r in _tick(sqlite_warehouse)] == [r.run_key for r in requests]


def test_daily_refresh_batches_and_executor_follow_the_settings(
    sqlite_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    _workspaces(sqlite_warehouse, 3)
    monkeypatch.setenv("FP_FANOUT_BATCH_SIZE", "2")
    monkeypatch.setenv("FP_EXECUTOR", "celery")
    monkeypatch.setenv("FP_CELERY_BROKER_URL", "redis://127.0.0.1:6390/0")
    get_settings.cache_clear()
    requests = _tick(sqlite_warehouse)
    assert [r.tags[WORKSPACE_TAG] for r in requests] == ["ws0,ws1", "ws2"]
    celery = requests[0].run_config["execution"]["config"]["celery"]
    assert celery["broker"] == "redis://127.0.0.1:6390/0"
    # The run config is valid for the job (its executor takes the celery choice).
    dg.validate_run_config(defs.resolve_job_def("daily_refresh"), requests[0].run_config)
    monkeypatch.setenv("FP_FANOUT_BATCH_SIZE", "0")
    get_settings.cache_clear()
    [whole] = _tick(sqlite_warehouse)
    assert whole.run_key == "daily_refresh:2026-11-22" and WORKSPACE_TAG not in whole.tags


REFRESH = [fx_rates, ledger, subscription_history, mrr_marts, cfo_marts, alerts, advisory_memos]


def _refresh(wh: Warehouse, scope: str | None) -> dg.ExecuteInProcessResult:
    tags = range_tags("2026-10-01", "2026-10-31")
    if scope is not None:
        tags[WORKSPACE_TAG] = scope
    return dg.materialize(
        REFRESH,
        resources=warehouse_resources(wh),
        tags=tags,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _mrr_workspaces(wh: Warehouse) -> dict[str, int]:
    return {
        r["workspace_id"]: int(r["n"])
        for r in wh.rows("SELECT workspace_id, COUNT(*) AS n FROM mart.mrr_daily GROUP BY 1")
    }


def test_a_failing_workspace_fails_only_its_own_run(warehouse: Warehouse) -> None:
    good, other, bad = seed_workspaces(warehouse, 3)
    # The bad workspace's settings break its ledger build (as a corrupt row would).
    with warehouse.begin() as db:
        db.execute(
            warehouse.text("UPDATE app.workspaces SET time_zone = 'Nowhere/Land' WHERE id = :w"),
            {"w": bad},
        )
    assert _refresh(warehouse, good).success
    assert _mrr_workspaces(warehouse) == {good: 31}  # only the run's workspace is written
    for table in ("mart.revenue_daily", "mart.cfo_metrics_daily", "mart.advisory_memos"):
        written = warehouse.rows(f"SELECT DISTINCT workspace_id FROM {table}")
        assert {r["workspace_id"] for r in written} == {good}, table
    failed = _refresh(warehouse, bad)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.is_step_failure]
    assert failure.step_key == "core__ledger"
    # One run over every workspace fails on the bad one and writes nobody's marts: the reason
    # for fanning out.
    assert not _refresh(warehouse, None).success
    assert _mrr_workspaces(warehouse) == {good: 31}
    assert _refresh(warehouse, f"{good},{other}").success
    assert _mrr_workspaces(warehouse) == {good: 31, other: 31}
    ledger_ws = {
        r["workspace_id"] for r in warehouse.rows("SELECT DISTINCT workspace_id FROM core.ledger")
    }
    assert ledger_ws == {good, other}


def test_the_restatement_check_follows_the_refreshed_workspaces() -> None:
    from finance_pipeline.definitions import closed_months_restated

    @dg.op
    def step() -> None:
        pass

    @dg.job(name="requested_refresh")
    def stand_in() -> None:
        step()

    instance = dg.DagsterInstance.ephemeral()
    for tags, expected in (({WORKSPACE_TAG: "ws_a,ws_b"}, {WORKSPACE_TAG: "ws_a,ws_b"}), ({}, {})):
        result = stand_in.execute_in_process(instance=instance, tags=tags)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="closed_months_restated",
            dagster_event=result.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
        )
        req = closed_months_restated(ctx)
        assert req.run_key == f"close_restatements:{result.run_id}" and req.tags == expected

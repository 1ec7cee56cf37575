"""The Dagster project as a data engineer sees it: it loads, everything that must run unattended is
RUNNING by default, schedules ask for the right partitions, and every asset is documented."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from finance_pipeline.definitions import RESTATEMENT_DAYS, daily_refresh, defs
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import warehouse_resources


def test_definitions_load_and_every_asset_has_group_kinds_and_description() -> None:
    graph = defs.resolve_asset_graph()
    keys = list(graph.get_all_asset_keys())
    assert len(keys) >= 30
    for key in keys:
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key
        assert node.description, key
        assert node.kinds, key


def test_automation_is_running_by_default() -> None:
    for schedule in defs.schedules or []:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, schedule.name
    for sensor in defs.sensors or []:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name


def test_daily_refresh_restates_a_trailing_window(sqlite_warehouse: Warehouse) -> None:
    create_workspace(
        sqlite_warehouse, create_organization(sqlite_warehouse, "O"), "W", workspace_id="ws1"
    )
    ctx = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 2, 15, tzinfo=UTC),
        resources=warehouse_resources(sqlite_warehouse),
    )
    [req] = daily_refresh(ctx)  # one run per workspace (finance_pipeline_tests/test_fanout.py)
    assert req.tags["dagster/asset_partition_range_end"] == "2026-11-22"
    assert req.tags["dagster/asset_partition_range_start"] == "2026-11-20"
    assert RESTATEMENT_DAYS == 3 and req.run_key == "daily_refresh:2026-11-22:ws1"


def test_month_end_close_builds_margins_before_the_reports() -> None:
    # The close sensor's job (finance_pipeline_tests/close/) replaces the monthly_margins schedule.
    job = defs.resolve_job_def("month_end_close")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"mart/customer_margins_monthly", "reports/margins", "reports/close_pack"} <= keys


def test_every_table_has_a_blocking_schema_check() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        if graph.get(key).group_name == "reports":
            continue  # report assets write files and catalogue rows, not warehouse tables
        check = graph.get_check_spec(dg.AssetCheckKey(key, "schema_matches_metadata"))
        assert check.blocking, key


def test_daily_and_monthly_marts_have_freshness_deadlines() -> None:
    graph = defs.resolve_asset_graph()
    daily = ["mrr_daily", "cfo_metrics_daily", "revenue_daily", "alerts", "advisory_memos"]
    for name in daily:
        policy = graph.get(dg.AssetKey(["mart", name])).freshness_policy
        # Yesterday's partition, materialized by the 02:15 refresh, is there by 06:00 UTC.
        assert policy.deadline_cron == "0 6 * * *" and policy.timezone == "UTC", name
    for name in ("customer_margins_monthly", "forecasts"):
        policy = graph.get(dg.AssetKey(["mart", name])).freshness_policy
        assert policy.deadline_cron == "0 0 2 * *", name
    assert graph.get(dg.AssetKey(["core", "ledger"])).freshness_policy is None

"""The requests sensor on an ephemeral instance: a workspace's queued refreshes coalesce into one run
request over the union of their days (one per workspace), its syncs into one daily_refresh run; the run status sensors and the
reconciliation finish the requests (succeeded, failed with the reason, canceled, never launched)."""

from __future__ import annotations

import time
from datetime import timedelta

import dagster as dg
import pytest

from finance_pipeline.core.assets import REBUILD_JOB
from finance_pipeline.definitions import defs, marts_job, requested_refresh_job
from finance_pipeline.fanout import STRIPE_TAG
from finance_pipeline.partitions import last_daily_partition
from finance_pipeline.requests.sensors import (
    LAUNCH_TIMEOUT_SECONDS,
    REQUEST_IDS_TAG,
    reconcile,
)
from finance_pipeline.requests.store import claim, get_request, request_refresh, request_sync
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import (
    WORKSPACE_TAG,
    connect_stripe,
    create_organization,
    create_workspace,
)
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import warehouse_resources

YESTERDAY = last_daily_partition()


def _sensor(name: str) -> dg.SensorDefinition:
    [sensor] = [s for s in defs.sensors or [] if s.name == name]
    return sensor


@pytest.fixture
def wh(sqlite_warehouse: Warehouse) -> Warehouse:
    org = create_organization(sqlite_warehouse, "Org", org_id="org1")
    for ws in ("ws1", "ws2"):
        create_workspace(sqlite_warehouse, org, ws, workspace_id=ws)
    return sqlite_warehouse


def _tick(wh: Warehouse, instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    ctx = dg.build_sensor_context(instance=instance, resources=warehouse_resources(wh))
    return _sensor("pipeline_requests_sensor")(ctx)


def test_the_sensors_are_wired_and_running_by_default() -> None:
    for name in (
        "pipeline_requests_sensor",
        "pipeline_requests_succeeded",
        "pipeline_requests_failed",
        "pipeline_requests_canceled",
    ):
        assert _sensor(name).default_status == dg.DefaultSensorStatus.RUNNING
    assert _sensor("pipeline_requests_sensor").minimum_interval_seconds == 10
    job = defs.resolve_job_def("requested_refresh")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"core/ledger", "mart/mrr_daily", "mart/revenue_daily", "mart/alerts"} <= keys
    assert not any(k.startswith("raw/") for k in keys)  # no Stripe ingest
    # Incremental core: only rebuild_marts runs rebuild it wholly (by job name, core/assets.py).
    assert requested_refresh_job.name != REBUILD_JOB and marts_job.name == REBUILD_JOB


def test_nothing_queued_is_a_skip(wh: Warehouse) -> None:
    result = _tick(wh, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SkipReason) and "no queued" in str(result.skip_message)


def test_refreshes_coalesce_per_workspace_and_syncs_run_the_daily_refresh(wh: Warehouse) -> None:
    connect_stripe(wh, "ws2", account_id="acct_2", livemode=False, api_key="sk_test_x")
    a = request_refresh(
        wh, "ws1", YESTERDAY - timedelta(days=9), YESTERDAY - timedelta(days=8), reason="a"
    )
    b = request_refresh(wh, "ws2", YESTERDAY - timedelta(days=3), YESTERDAY, reason="b")
    b2 = request_refresh(wh, "ws2", YESTERDAY - timedelta(days=5), YESTERDAY, reason="b2")
    s = request_sync(wh, "ws2", reason="s")
    instance = dg.DagsterInstance.ephemeral()
    result = _tick(wh, instance)
    assert isinstance(result, dg.SensorResult)
    # One run per kind and workspace, scoped by the workspace tag (docs/scaling.md).
    refresh1, refresh2, sync = result.run_requests or []
    assert refresh1.job_name == refresh2.job_name == "requested_refresh"
    assert (refresh1.tags[WORKSPACE_TAG], refresh1.tags[REQUEST_IDS_TAG]) == ("ws1", a)
    assert refresh1.tags["dagster/asset_partition_range_start"] == str(
        YESTERDAY - timedelta(days=9)
    )
    assert refresh1.tags["dagster/asset_partition_range_end"] == str(YESTERDAY - timedelta(days=8))
    assert refresh2.tags[WORKSPACE_TAG] == "ws2"
    assert refresh2.tags[REQUEST_IDS_TAG] == ",".join(sorted([b, b2]))
    assert refresh2.tags["dagster/asset_partition_range_start"] == str(
        YESTERDAY - timedelta(days=5)
    )
    assert refresh2.tags["dagster/asset_partition_range_end"] == str(YESTERDAY)
    assert refresh2.run_key and refresh2.run_key.startswith("pipeline_requests:refresh:")
    assert sync.job_name == "daily_refresh" and sync.tags[REQUEST_IDS_TAG] == s
    assert sync.tags[WORKSPACE_TAG] == "ws2" and sync.tags[STRIPE_TAG] == "sync"
    assert sync.tags["dagster/asset_partition_range_start"] == str(YESTERDAY - timedelta(days=2))
    assert sync.tags["dagster/asset_partition_range_end"] == str(YESTERDAY)
    # Claimed: the next tick asks for nothing, and a runner elsewhere cannot take them.
    assert {(get_request(wh, i) or {})["status"] for i in (a, b, b2, s)} == {"running"}
    assert isinstance(_tick(wh, instance), dg.SkipReason)
    assert claim(wh, [a, b, b2, s]) == []


def test_without_fan_out_refreshes_coalesce_over_every_workspace(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FP_FANOUT_BATCH_SIZE", "0")
    get_settings.cache_clear()
    a = request_refresh(
        wh, "ws1", YESTERDAY - timedelta(days=9), YESTERDAY - timedelta(days=8), reason="a"
    )
    b = request_refresh(wh, "ws2", YESTERDAY - timedelta(days=3), YESTERDAY, reason="b")
    result = _tick(wh, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SensorResult)
    [refresh] = result.run_requests or []
    assert refresh.tags[REQUEST_IDS_TAG] == ",".join(sorted([a, b]))
    assert WORKSPACE_TAG not in refresh.tags
    assert refresh.tags["dagster/asset_partition_range_start"] == str(YESTERDAY - timedelta(days=9))
    assert refresh.tags["dagster/asset_partition_range_end"] == str(YESTERDAY)


def _run(
    instance: dg.DagsterInstance, request_ids: list[str], fail: bool = False
) -> dg.ExecuteInProcessResult:
    @dg.op
    def step() -> None:
        if fail:
            raise RuntimeError("ledger exploded")

    @dg.job(name="requested_refresh")
    def stand_in() -> None:
        step()

    return stand_in.execute_in_process(
        instance=instance, tags={REQUEST_IDS_TAG: ",".join(request_ids)}, raise_on_error=False
    )


def _status(
    wh: Warehouse, name: str, instance: dg.DagsterInstance, run: dg.DagsterRun, event: object
) -> object:
    ctx = dg.build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=event,  # type: ignore[arg-type]
        dagster_instance=instance,
        dagster_run=run,
        resources=warehouse_resources(wh),
    )
    return _sensor(name)(ctx)


def _queued(wh: Warehouse, n: int) -> list[str]:
    day = YESTERDAY - timedelta(days=1)
    ids = [request_refresh(wh, "ws1", day, day, reason=f"r{i}") for i in range(n)]
    assert claim(wh, ids) == ids
    return ids


def test_status_sensors_mark_succeeded_and_failed_with_the_reason(wh: Warehouse) -> None:
    instance = dg.DagsterInstance.ephemeral()
    ok_ids, bad_ids = _queued(wh, 2), _queued(wh, 1)
    ok = _run(instance, ok_ids)
    _status(wh, "pipeline_requests_succeeded", instance, ok.dagster_run, ok.get_run_success_event())
    for rid in ok_ids:
        row = get_request(wh, rid) or {}
        assert (row["status"], row["run_id"], row["error"]) == ("succeeded", ok.run_id, None)
    bad = _run(instance, bad_ids, fail=True)
    failure = next(e for e in bad.all_events if e.is_run_failure)
    _status(wh, "pipeline_requests_failed", instance, bad.dagster_run, failure)
    row = get_request(wh, bad_ids[0]) or {}
    assert (row["status"], row["run_id"]) == ("failed", bad.run_id)
    assert row["error"].startswith(f"run {bad.run_id} failed: step: ")
    assert "ledger exploded" in row["error"]
    # A run without request ids (the daily schedule's) is not ours.
    other = _run(instance, [])
    skip = _status(
        wh,
        "pipeline_requests_succeeded",
        instance,
        other.dagster_run,
        other.get_run_success_event(),
    )
    assert isinstance(skip, dg.SkipReason)


def test_a_canceled_run_fails_its_requests(wh: Warehouse) -> None:
    instance = dg.DagsterInstance.ephemeral()
    [rid] = _queued(wh, 1)
    job = defs.resolve_job_def("requested_refresh")
    run = instance.create_run_for_job(job, tags={REQUEST_IDS_TAG: rid})
    instance.report_run_canceled(run)
    run = instance.get_run_by_id(run.run_id)
    assert run is not None
    event = instance.get_records_for_run(run.run_id).records[-1].event_log_entry.dagster_event
    _status(wh, "pipeline_requests_canceled", instance, run, event)
    row = get_request(wh, rid) or {}
    assert (row["status"], row["error"]) == ("failed", f"run {run.run_id} was canceled")


def test_reconcile_records_runs_and_fails_requests_never_launched(wh: Warehouse) -> None:
    instance = dg.DagsterInstance.ephemeral()
    lost, launched, done = _queued(wh, 1), _queued(wh, 1), _queued(wh, 1)
    job = defs.resolve_job_def("requested_refresh")
    run = instance.create_run_for_job(job, tags={REQUEST_IDS_TAG: launched[0]})
    finished = _run(instance, done)  # its status sensor never ran
    assert reconcile(instance, wh) != []
    assert (get_request(wh, launched[0]) or {})["run_id"] == run.run_id
    assert (get_request(wh, launched[0]) or {})["status"] == "running"
    assert (get_request(wh, done[0]) or {})["status"] == "succeeded"
    assert (get_request(wh, done[0]) or {})["run_id"] == finished.run_id
    assert (get_request(wh, lost[0]) or {})["status"] == "running"  # may still launch
    later = time.time() + LAUNCH_TIMEOUT_SECONDS + 1
    reconcile(instance, wh, now=later)
    row = get_request(wh, lost[0]) or {}
    assert row["status"] == "failed" and "no run started within 15 minutes" in row["error"]
    assert (get_request(wh, launched[0]) or {})["status"] == "running"  # its run is queued


def test_a_succeeded_sync_records_the_run_wall_time(wh: Warehouse) -> None:
    """The status sensor's path: durationMs is the run's start-to-end time in the instance."""
    from finance_pipeline.requests.sensors import run_duration_ms

    instance = dg.DagsterInstance.ephemeral()
    connect_stripe(wh, "ws1", account_id="acct_1", livemode=False, api_key="sk_test_x")
    rid = request_sync(wh, "ws1", reason="r")
    assert claim(wh, [rid]) == [rid]

    @dg.op
    def step() -> None:
        time.sleep(0.05)

    @dg.job(name="daily_refresh")
    def stand_in() -> None:
        step()

    ok = stand_in.execute_in_process(
        instance=instance, tags={REQUEST_IDS_TAG: rid}, raise_on_error=False
    )
    _status(wh, "pipeline_requests_succeeded", instance, ok.dagster_run, ok.get_run_success_event())
    row = get_request(wh, rid) or {}
    duration = run_duration_ms(instance, ok.dagster_run)
    assert row["status"] == "succeeded" and duration is not None and duration >= 50
    assert row["result_json"] == {
        "customersProcessed": 0, "periodsUpdated": 0, "autoMatchesCreated": 0,
        "invoicesFetched": 0, "invoicesSkipped": 0, "skippedCurrencies": {},
        "durationMs": duration, "inserted": 0, "duplicates": 0,
    }  # fmt: skip

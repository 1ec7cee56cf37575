"""Month-end close readiness per workspace (docs/reports.md, docs/scaling.md): with one refresh run
per workspace, a workspace whose refresh of the month's last day failed holds back only its own
close. The sensor asks for the ready workspace's close, the close run closes it, and the not-ready
workspace is reported with the failed run, until its refresh succeeds. SQLite and PostgreSQL,
through Dagster."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import dagster as dg
import pytest
from finance_pipeline_dev.fanout_seed import seed_workspaces

from finance_pipeline.definitions import defs
from finance_pipeline.reports import close_assets
from finance_pipeline.reports.close import latest_close, reopen
from finance_pipeline.reports.close_assets import close_pack, workspace_readiness
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import WORKSPACE_TAG
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import range_tags, warehouse_resources

OCT = "2026-10"
LAST_DAY = date(2026, 10, 31)


def _refresh(instance: dg.DagsterInstance, wh: Warehouse, ws: str) -> dg.ExecuteInProcessResult:
    """The workspace's refresh of October (core, MRR, CFO marts) as a fanned-out run."""
    return defs.resolve_job_def("requested_refresh").execute_in_process(
        instance=instance,
        resources=warehouse_resources(wh),
        tags={**range_tags("2026-10-01", LAST_DAY), WORKSPACE_TAG: ws},
        raise_on_error=False,
    )


def _close(instance: dg.DagsterInstance, wh: Warehouse, tags: dict[str, str]) -> dict[str, str]:
    """Run the month-end close of October; each workspace's status line of the pack's table."""
    result = defs.resolve_job_def("month_end_close").execute_in_process(
        instance=instance,
        resources=warehouse_resources(wh),
        partition_key=f"{OCT}-01",
        tags=tags,
    )
    assert result.success
    [mat] = [
        m
        for m in result.asset_materializations_for_node("reports__close_pack")
        if m.asset_key == close_pack.key
    ]
    rows = [r.split(" | ") for r in mat.metadata["closes"].value.splitlines()[2:]]
    return {r[0].strip("| "): r[2] for r in rows}


def _tick(
    instance: dg.DagsterInstance, wh: Warehouse, cursor: str | None
) -> dg.SensorExecutionData:
    sensor = defs.resolve_sensor_def("month_end_close_sensor")
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=warehouse_resources(wh), definitions=defs
    )
    return sensor.evaluate_tick(ctx)


def _set_time_zone(wh: Warehouse, ws: str, tz: str) -> None:
    with wh.begin() as db:
        db.execute(
            wh.text("UPDATE app.workspaces SET time_zone = :tz WHERE id = :w"), {"tz": tz, "w": ws}
        )


def test_a_failed_workspace_holds_back_only_its_own_close(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = warehouse
    good, bad = seed_workspaces(wh, 2)
    instance = dg.DagsterInstance.ephemeral()
    monkeypatch.setattr(close_assets, "_today", lambda: date(2026, 11, 1))
    # Nothing refreshed yet: no workspace is ready, and the sensor says why for each.
    first = _tick(instance, wh, None)
    assert not first.run_requests
    assert f"{good}: mart/mrr_daily 2026-10-31 not refreshed" in (first.skip_message or "")

    ok = _refresh(instance, wh, good)
    assert ok.success
    # The bad workspace's refresh runs after the good one's and fails (a broken time zone breaks
    # its ledger build, as a corrupt row would); the cause is then fixed, but not yet re-run.
    bad_tz = wh.rows("SELECT time_zone FROM app.workspaces WHERE id = :w", w=bad)[0]["time_zone"]
    _set_time_zone(wh, bad, "Nowhere/Land")
    failed = _refresh(instance, wh, bad)
    assert not failed.success
    _set_time_zone(wh, bad, bad_tz)

    readiness = workspace_readiness(instance, LAST_DAY, [good, bad])
    assert readiness[good].ready and readiness[good].run_id == ok.run_id
    assert not readiness[bad].ready and readiness[bad].run_id is None
    assert failed.run_id in readiness[bad].reason and "FAILURE" in readiness[bad].reason

    # The sensor asks for the good workspace's close only, scoped to it.
    tick = _tick(instance, wh, None)
    [req] = tick.run_requests
    assert req.tags[WORKSPACE_TAG] == good and req.partition_key == f"{OCT}-01"
    assert req.run_key == f"month_end_close:{OCT}:{good}"
    assert json.loads(tick.cursor or "") == {"month": OCT, "requested": [good]}
    # Without fan-out (batch size 0) the ready part is still one run scoped to it, not an untagged
    # run over every workspace (which would take the bad one's run key).
    monkeypatch.setenv("FP_FANOUT_BATCH_SIZE", "0")
    get_settings.cache_clear()
    [whole] = _tick(instance, wh, None).run_requests
    assert whole.tags[WORKSPACE_TAG] == good and whole.run_key == f"month_end_close:{OCT}:{good}"
    monkeypatch.delenv("FP_FANOUT_BATCH_SIZE")
    get_settings.cache_clear()
    # Its next tick asks for nothing more and says why the bad workspace waits.
    waiting = _tick(instance, wh, tick.cursor)
    assert not waiting.run_requests
    assert f"{bad}: its latest refresh of 2026-10-31, run {failed.run_id}, FAILURE" in (
        waiting.skip_message or ""
    )
    assert good not in (waiting.skip_message or "")

    # The scoped close run checks and closes its own workspace only.
    assert _close(instance, wh, dict(req.tags)) == {good: "closed"}
    assert latest_close(wh, good, OCT) is not None and latest_close(wh, bad, OCT) is None
    # A close over every workspace (run by hand) still leaves the bad one open and says why.
    statuses = _close(instance, wh, {})
    assert statuses[good] == "already_closed"
    assert (
        statuses[bad].startswith("not ready: its latest refresh")
        and failed.run_id in (statuses[bad])
    )
    assert latest_close(wh, bad, OCT) is None

    # Its refresh succeeds: the sensor asks for its close, and the month is done.
    again = _refresh(instance, wh, bad)
    assert again.success
    assert workspace_readiness(instance, LAST_DAY, [bad])[bad].run_id == again.run_id
    late = _tick(instance, wh, tick.cursor)
    [req] = late.run_requests
    assert req.tags[WORKSPACE_TAG] == bad and late.cursor == OCT
    assert _close(instance, wh, dict(req.tags)) == {bad: "closed"}
    closed = latest_close(wh, bad, OCT)
    assert closed is not None and closed.status == "closed"
    # Its pack's checks are those of its own successful refresh run.
    assert closed.manifest["checks"] and all(closed.manifest["checks"].values())
    assert _tick(instance, wh, late.cursor).skip_message == f"{OCT} already requested"


def test_the_close_sensor_requests_last_month_once_its_last_day_is_in_and_skips_closed_ones(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own state: two workspaces refreshed by one run, nothing closed. The sensor asks for
    each workspace's close of last month once; a workspace closed by hand is not asked for (the
    tick names it), nor is a month every workspace closed, until a reopen."""
    wh = warehouse
    a, b = seed_workspaces(wh, 2)
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.resolve_sensor_def("month_end_close_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    monkeypatch.setattr(close_assets, "_today", lambda: date(2026, 11, 1))
    # One refresh run over every workspace (untagged), as the daily refresh without fan-out.
    refresh = defs.resolve_job_def("requested_refresh").execute_in_process(
        instance=instance,
        resources=warehouse_resources(wh),
        tags=range_tags("2026-10-01", LAST_DAY),
    )
    assert refresh.success

    tick = _tick(instance, wh, None)
    # One run per workspace (the default fan-out), scoped by the workspace tag.
    assert [(r.partition_key, r.run_key, r.tags[WORKSPACE_TAG]) for r in tick.run_requests] == [
        (f"{OCT}-01", f"month_end_close:{OCT}:{ws}", ws) for ws in (a, b)
    ]
    assert tick.cursor == OCT  # every workspace requested: the month is done
    again = _tick(instance, wh, OCT)
    assert not again.run_requests and again.skip_message == f"{OCT} already requested"
    # November's last day has not been refreshed: nothing yet.
    monkeypatch.setattr(close_assets, "_today", lambda: date(2026, 12, 1))
    later = _tick(instance, wh, OCT)
    assert not later.run_requests and "waiting" in (later.skip_message or "")
    monkeypatch.setattr(close_assets, "_today", lambda: date(2026, 11, 1))
    # On an instance without the refresh run, nothing either.
    empty = _tick(dg.DagsterInstance.ephemeral(), wh, None)
    assert not empty.run_requests and "waiting" in (empty.skip_message or "")

    # a's October is closed by hand (a close run launched for it alone): from a fresh cursor the
    # sensor asks for b only, and the month is done.
    assert _close(instance, wh, {WORKSPACE_TAG: a}) == {a: "closed"}
    closed_at = latest_close(wh, a, OCT).closed_at
    when = datetime.fromtimestamp(closed_at, UTC).strftime("%Y-%m-%d %H:%M")
    tick = _tick(instance, wh, None)
    [req] = tick.run_requests
    assert req.tags[WORKSPACE_TAG] == b and req.run_key == f"month_end_close:{OCT}:{b}"
    assert tick.cursor == OCT
    # Without fan-out, still one run scoped to b (an untagged one would cover a as well).
    monkeypatch.setenv("FP_FANOUT_BATCH_SIZE", "0")
    get_settings.cache_clear()
    [whole] = _tick(instance, wh, None).run_requests
    assert whole.tags[WORKSPACE_TAG] == b
    monkeypatch.delenv("FP_FANOUT_BATCH_SIZE")
    get_settings.cache_clear()
    # Had the sensor requested b before a was closed, its next tick requests nothing and says
    # why a was left out.
    partial = _tick(instance, wh, json.dumps({"month": OCT, "requested": [b]}))
    assert not partial.run_requests and partial.cursor == OCT
    assert partial.skip_message == (
        f"{OCT} has nothing left to close: 1 requested by this sensor; "
        f"1 already closed, not requested: {a} v1 closed {when} UTC"
    )

    # Both closed by hand: nothing to request, and the tick says so (not an empty run each).
    assert _close(instance, wh, {WORKSPACE_TAG: b}) == {b: "closed"}
    done = _tick(instance, wh, None)
    assert not done.run_requests and done.cursor == OCT
    assert (done.skip_message or "").startswith(
        f"{OCT} has nothing left to close: 2 already closed, not requested: {a} v1 closed {when}"
    )
    # A reopened month is asked for again (its next close issues version 2).
    reopen(wh, a, OCT, "late refund")
    [req] = _tick(instance, wh, None).run_requests
    assert req.tags[WORKSPACE_TAG] == a

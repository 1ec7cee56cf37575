"""Dagster side of pipeline requests: the sensor that turns queued requests into runs, the run
status sensors that record their outcome, and the reconciliation that keeps no request 'running'
forever.

A tick claims every queued request (queued -> running, atomically, so the inline runner and a
second daemon never take the same one) and asks, per workspace (the run scoped to it by the
workspace tag), for at most two runs: one `requested_refresh` over the union of that workspace's
refresh requests' days, one `daily_refresh` for its sync requests (FP_FANOUT_BATCH_SIZE=0: the two
runs cover every workspace). The run's tag
lists its request ids; the run id is recorded once the run exists (next tick) and the outcome
when it ends (run status sensors, or the next tick if they missed it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from finance_pipeline.executors import executor_run_config
from finance_pipeline.fanout import STRIPE_TAG, STRIPE_TAG_VALUE
from finance_pipeline.requests.store import (
    Batch,
    attach_run,
    claim,
    finish,
    pending_requests,
    plan_batches,
)
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import WORKSPACE_TAG
from finance_pipeline.warehouse.db import Warehouse

REQUEST_IDS_TAG = "finance_pipeline/request_ids"
REQUEST_KIND_TAG = "finance_pipeline/request_kind"
# A claimed request whose run has not appeared by then was lost between the sensor's tick and the
# launch (e.g. the daemon stopped mid-tick): it fails, and asking again queues a new request.
LAUNCH_TIMEOUT_SECONDS = 15 * 60
# A run still unfinished after this long is taken as dead (an in-process run whose process died
# never reports an end); its requests fail so a reader does not wait forever.
RUN_TIMEOUT_SECONDS = 12 * 3600
SENSOR_INTERVAL_SECONDS = 10
# Dagster's automatic run retries (run_retries in dagster.yaml) copy the tags to the retry run.
WILL_RETRY_TAG = "dagster/will_retry"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"
_ERROR_CHARS = 2000


def run_tags(batch: Batch) -> dict[str, str]:
    """Tags of the run serving a batch: its request ids and partition range."""
    return {
        REQUEST_IDS_TAG: ",".join(batch.request_ids),
        REQUEST_KIND_TAG: batch.kind,
        "dagster/asset_partition_range_start": batch.first_day.isoformat(),
        "dagster/asset_partition_range_end": batch.last_day.isoformat(),
    }


def request_ids_of(run: dg.DagsterRun) -> list[str]:
    """The pipeline requests a run serves (none for a scheduled run)."""
    return [i for i in run.tags.get(REQUEST_IDS_TAG, "").split(",") if i]


def failure_message(events: Sequence[dg.DagsterEvent], run_id: str) -> str:
    """Why a run failed, from its step failures (else its run failure event), bounded."""
    messages = []
    for event in events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            # Dagster wraps the op's exception ("Error occurred while executing op"): the root
            # cause is what a reader needs.
            while error is not None and error.cause is not None:
                error = error.cause
            text = error.message.strip() if error else event.message or ""
            messages.append(f"{event.step_key}: {text}")
    if not messages:
        messages = [e.message or "" for e in events if e.is_run_failure and e.message]
    text = "; ".join(messages) or "the run failed"
    return f"run {run_id} failed: {text}"[:_ERROR_CHARS]


def run_duration_ms(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    """The run's wall time from its start to its end event (a succeeded sync's durationMs), or
    None when the instance has no stats for it."""
    try:
        stats = instance.get_run_stats(run.run_id)
    except Exception:  # an instance without the run's events: the claim-to-finish time is used
        return None
    if stats.start_time is None or stats.end_time is None:
        return None
    # Dagster's times are float seconds; a duration in whole milliseconds is exact enough.
    return max(0, round((stats.end_time - stats.start_time) * 1000))


def _latest_attempt(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """The run's latest automatic retry (Dagster copies the tags to it), or the run itself."""
    while run.tags.get(AUTO_RETRY_RUN_ID_TAG):
        retry = instance.get_run_by_id(run.tags[AUTO_RETRY_RUN_ID_TAG])
        if retry is None:
            break
        run = retry
    return run


def record_run_outcome(
    instance: dg.DagsterInstance, wh: Warehouse, run: dg.DagsterRun, error: str | None = None
) -> list[str]:
    """Finish the requests a finished run serves: succeeded, or failed with `error` (a failure that
    Dagster will retry leaves them running for the retry). Returns the ids it finished."""
    ids = request_ids_of(run)
    if not ids:
        return []
    run = instance.get_run_by_id(run.run_id) or run  # fresh tags (will_retry is added late)
    status = run.status
    if status == dg.DagsterRunStatus.SUCCESS:
        return finish(
            wh, ids, "succeeded", run_id=run.run_id, duration_ms=run_duration_ms(instance, run)
        )
    if status == dg.DagsterRunStatus.FAILURE:
        if run.tags.get(WILL_RETRY_TAG) == "true":
            attach_run(wh, ids, run.run_id)
            return []
        return finish(
            wh, ids, "failed", run_id=run.run_id, error=error or f"run {run.run_id} failed"
        )
    if status == dg.DagsterRunStatus.CANCELED:
        return finish(wh, ids, "failed", run_id=run.run_id, error=f"run {run.run_id} was canceled")
    return []


def reconcile(instance: dg.DagsterInstance, wh: Warehouse, now: float | None = None) -> list[str]:
    """Bring running requests up to date with the Dagster instance: record the run serving each,
    finish those whose run ended (should a status sensor have missed it), and fail those whose run
    never appeared or never ends. Returns one line per change."""
    now = time.time() if now is None else now
    running = [r for r in pending_requests(wh) if r["status"] == "running"]
    if not running:
        return []
    since = min(r["started_at"] or now for r in running) - 60
    by_request: dict[str, dg.DagsterRun] = {}
    # Oldest first, so a request's latest run wins.
    for run in reversed(
        instance.get_runs(
            dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC)), limit=1000
        )
    ):
        for request_id in request_ids_of(run):
            by_request[request_id] = run
    notes = []
    for req in running:
        run = by_request.get(req["id"])
        if run is None and req["run_id"]:
            run = instance.get_run_by_id(req["run_id"])
        if run is None:
            # An inline runner claims with the run id just before creating the run: wait too.
            if now - (req["started_at"] or now) <= LAUNCH_TIMEOUT_SECONDS:
                continue
            error = (
                f"no run started within {LAUNCH_TIMEOUT_SECONDS // 60} minutes of the claim;"
                " request it again"
            )
            if req["run_id"]:
                error = f"run {req['run_id']} is not in the Dagster instance; request it again"
            if finish(wh, [req["id"]], "failed", error=error):
                notes.append(f"{req['id']}: failed ({error})")
            continue
        run = _latest_attempt(instance, run)
        if run.run_id != req["run_id"]:
            attach_run(wh, [req["id"]], run.run_id)
            notes.append(f"{req['id']}: run {run.run_id}")
        if run.is_finished:
            if record_run_outcome(instance, wh, run):
                notes.append(f"{req['id']}: {run.status.value.lower()}")
        elif now - (req["started_at"] or now) > RUN_TIMEOUT_SECONDS:
            error = f"run {run.run_id} still not finished after {RUN_TIMEOUT_SECONDS // 3600} h"
            if finish(wh, [req["id"]], "failed", run_id=run.run_id, error=error):
                notes.append(f"{req['id']}: failed ({error})")
    return notes


def run_request(batch: Batch, workspace_id: str | None = None) -> dg.RunRequest:
    """The run serving a batch: a partition range run of the kind's job, keyed by its requests,
    scoped to the requests' workspace when given (docs/scaling.md)."""
    tags = run_tags(batch)
    if workspace_id is not None:
        tags[WORKSPACE_TAG] = workspace_id
    if batch.kind == "stripe_sync":
        tags[STRIPE_TAG] = STRIPE_TAG_VALUE
    return dg.RunRequest(
        run_key=batch.run_key,
        job_name=batch.job_name,
        tags=tags,
        run_config=executor_run_config(get_settings()),
    )


def plan_runs(
    claimed: Sequence[dict[str, Any]], by_workspace: bool
) -> list[tuple[Batch, str | None]]:
    """The batches of the claimed requests: one per kind and workspace (each scoped to its
    workspace, so a workspace's refresh neither waits for nor rebuilds another's), or one per
    kind over every workspace when the fan-out is off (FP_FANOUT_BATCH_SIZE=0)."""
    if not by_workspace:
        return [(b, None) for b in plan_batches(claimed)]
    out: list[tuple[Batch, str | None]] = []
    for ws in sorted({r["workspace_id"] for r in claimed}):
        out += [(b, ws) for b in plan_batches([r for r in claimed if r["workspace_id"] == ws])]
    return out


def make_request_sensors(
    refresh_job: dg.UnresolvedAssetJobDefinition, sync_job: dg.UnresolvedAssetJobDefinition
) -> list[Any]:
    """The requests sensor (launching `refresh_job` and `sync_job`) and the run status sensors
    that record the outcome of their runs."""

    @dg.sensor(
        name="pipeline_requests_sensor",
        jobs=[refresh_job, sync_job],
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Claim the queued refresh and Stripe sync requests (app.pipeline_requests) and "
        "launch, per workspace, one requested_refresh run over their union of days and one "
        "daily_refresh run for the syncs; record the run of each and fail requests whose run never came.",
    )
    def pipeline_requests_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Claim, then one run request per batch; the run key is the batch's sorted request ids,
        so a re-evaluated tick (the same batch) never launches a second run."""
        wh = warehouse.get()
        for note in reconcile(context.instance, wh):
            context.log.info(note)
        queued = [r for r in pending_requests(wh) if r["status"] == "queued"]
        won = set(claim(wh, [r["id"] for r in queued]))
        batches = plan_runs(
            [r for r in queued if r["id"] in won], get_settings().fanout_batch_size > 0
        )
        if not batches:
            return dg.SkipReason("no queued pipeline requests")
        for batch, ws in batches:
            context.log.info(
                f"{batch.job_name} {batch.first_day}..{batch.last_day} for {ws or 'every workspace'}"
                f", {len(batch.request_ids)} request(s): {', '.join(batch.request_ids)}"
            )
        return dg.SensorResult(run_requests=[run_request(b, ws) for b, ws in batches])

    def _status_sensor(name: str, status: dg.DagsterRunStatus, outcome: str) -> Any:
        @dg.run_status_sensor(
            name=name,
            run_status=status,
            monitored_jobs=[refresh_job, sync_job],
            minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description=f"Mark the pipeline requests of a {outcome} requested_refresh or "
            "daily_refresh run accordingly (runs without request ids are ignored).",
        )
        def _sensor(
            context: dg.RunStatusSensorContext, warehouse: WarehouseResource
        ) -> dg.SkipReason | None:
            """Finish the run's requests."""
            error = None
            if status == dg.DagsterRunStatus.FAILURE:
                run_id = context.dagster_run.run_id
                events = [
                    r.event_log_entry.dagster_event
                    for r in context.instance.get_records_for_run(
                        run_id, of_type=dg.DagsterEventType.STEP_FAILURE
                    ).records
                    if r.event_log_entry.dagster_event is not None
                ]
                error = failure_message([*events, context.dagster_event], run_id)
            done = record_run_outcome(context.instance, warehouse.get(), context.dagster_run, error)
            if not done:
                return dg.SkipReason("no pipeline request waited on this run")
            context.log.info(f"{outcome}: {', '.join(done)}")
            return None

        return _sensor

    return [
        pipeline_requests_sensor,
        _status_sensor("pipeline_requests_succeeded", dg.DagsterRunStatus.SUCCESS, "succeeded"),
        _status_sensor("pipeline_requests_failed", dg.DagsterRunStatus.FAILURE, "failed"),
        _status_sensor("pipeline_requests_canceled", dg.DagsterRunStatus.CANCELED, "canceled"),
    ]

"""On-demand exports (platform finance API "Export Financial Report"): a request row, a sensor
that launches one run per pending request, and the op that renders it into the report store.

The CLI (and later the API) writes an app.report_exports row with status `processing`; the sensor
requests a run keyed by the export id (so a request runs once); the op sets `completed` with the
catalogue id, or `failed` with the reason. A run that ends without the op finishing the request (its
launch timed out, its worker died, it was canceled) leaves it `processing`: the sensor runs it
again under a new run key, up to MAX_EXPORT_RUNS runs, then marks it `failed` naming the last run.
"""

import time
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from finance_pipeline.reports.pdf_tables import store_table_pdf
from finance_pipeline.reports.render import (
    ReportRequestError,
    render_and_store,
    validate_request,
    workspace,
)
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import new_id
from finance_pipeline.warehouse.db import Warehouse

EXPORT_FORMATS = ("csv", "pdf")
# Requests launched per sensor tick; the rest wait for the next tick.
MAX_RUNS_PER_TICK = 50
EXPORT_TAG = "finance_pipeline/export_id"
# Runs of one request at most (Dagster's own automatic retries included) before it is failed.
MAX_EXPORT_RUNS = 3
_WILL_RETRY_TAG = "dagster/will_retry"
_AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"


def create_export(
    wh: Warehouse,
    workspace_id: str,
    report_type: str,
    fmt: str,
    start: date,
    end: date,
    plan_id: str | None = None,
    requested_by: str | None = None,
) -> str:
    """Record an export request (status processing); returns its id (`export_...`)."""
    workspace(wh, workspace_id)
    validate_request(report_type, start, end, plan_id)
    if fmt not in EXPORT_FORMATS:
        raise ReportRequestError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    export_id = new_id("export")
    now = int(time.time())
    row = {
        "id": export_id,
        "workspace_id": workspace_id,
        "report_type": report_type,
        "format": fmt,
        "date_start": start,
        "date_end": end,
        "plan_id": plan_id,
        "status": "processing",
        "requested_by": requested_by,
        "created_at": now,
        "updated_at": now,
    }
    # Plain SQL, not wh.insert: reflecting the table (and, through its foreign key, the
    # catalogue) would warn about the catalogue's expression index on SQLite.
    with wh.begin() as db:
        db.execute(
            wh.text(
                f"INSERT INTO app.report_exports ({', '.join(row)})"
                f" VALUES ({', '.join(':' + k for k in row)})"
            ),
            row,
        )
    return export_id


def get_export(wh: Warehouse, export_id: str) -> dict[str, Any] | None:
    """The export request row, with the stored file's relative path once completed."""
    rows = wh.rows(
        "SELECT e.*, c.path AS path FROM app.report_exports e"
        " LEFT JOIN app.report_catalogue c ON c.id = e.catalogue_id WHERE e.id = :i",
        i=export_id,
    )
    return rows[0] if rows else None


def pending_exports(wh: Warehouse, limit: int = MAX_RUNS_PER_TICK) -> list[str]:
    """Ids of requests still processing, oldest first."""
    return [
        r["id"]
        for r in wh.rows(
            "SELECT id FROM app.report_exports WHERE status = 'processing'"
            " ORDER BY created_at, id LIMIT :n",
            n=limit,
        )
    ]


def _finish(wh: Warehouse, export_id: str, status: str, **values: Any) -> None:
    with wh.begin() as db:
        db.execute(
            wh.text(
                "UPDATE app.report_exports SET status = :s, error = :e, catalogue_id = :c,"
                " updated_at = :t WHERE id = :i"
            ),
            {
                "s": status,
                "e": values.get("error"),
                "c": values.get("catalogue_id"),
                "t": int(time.time()),
                "i": export_id,
            },
        )


def run_export(wh: Warehouse, root: Path, export_id: str) -> dict[str, Any]:
    """Render one request into the store and record the outcome; returns the final row."""
    req = get_export(wh, export_id)
    if req is None:
        raise ReportRequestError(f"no such export: {export_id}")
    if req["status"] != "processing":
        return req  # already done: a re-executed run changes nothing
    try:
        if req["format"] not in EXPORT_FORMATS:
            raise ReportRequestError(f"unknown format {req['format']!r}")
        args = (
            wh,
            root,
            workspace(wh, req["workspace_id"]),
            req["report_type"],
            req["date_start"],
            req["date_end"],
            req["plan_id"],
        )
        if req["format"] == "pdf":
            # The table PDF of the same rows as the CSV (reports/pdf_tables.py).
            entry = store_table_pdf(*args, export_id=export_id)
        else:
            entry, _ = render_and_store(*args, export_id=export_id)
    except Exception as exc:
        _finish(wh, export_id, "failed", error=str(exc) or type(exc).__name__)
    else:
        _finish(wh, export_id, "completed", catalogue_id=entry.id)
    return get_export(wh, export_id) or req


class ExportConfig(dg.Config):
    """Which export request the run renders."""

    export_id: str


@dg.op(description="Render one export request into the report store and catalogue.")
def render_export(
    context: dg.OpExecutionContext, config: ExportConfig, warehouse: WarehouseResource
) -> None:
    """Render the request; a failed export fails the run too, with the recorded reason."""
    row = run_export(warehouse.get(), get_settings().resolved_reports_dir, config.export_id)
    if row["status"] == "failed":
        raise dg.Failure(f"export {config.export_id} failed: {row['error']}")
    context.log.info(f"export {config.export_id} completed: {row['path']}")


@dg.job(description="Render one on-demand export request (launched by the export sensor).")
def report_export_job() -> None:
    """One op: the export named in the run config."""
    render_export()


def next_run_key(instance: dg.DagsterInstance, wh: Warehouse, export_id: str) -> str | None:
    """The run key of the next run of a request still processing: the export id for its first
    run, `<id>:<n>` for the n-th after runs that ended without finishing it; None while a run of
    it is under way (or Dagster will retry one), and None once MAX_EXPORT_RUNS runs failed, after
    marking it failed with the last run's id."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={EXPORT_TAG: export_id}))
    if not runs:
        return export_id
    ended = [
        r for r in runs if r.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    ]
    # A failure Dagster will retry (run_retries) whose retry does not exist yet: wait for it.
    parents = {r.tags.get("dagster/parent_run_id") for r in runs}
    retry_pending = any(
        r.tags.get(_WILL_RETRY_TAG) == "true"
        and not r.tags.get(_AUTO_RETRY_RUN_ID_TAG)
        and r.run_id not in parents
        for r in ended
    )
    # A run still going (or succeeded: its op has finished the request by now) needs no other.
    if len(ended) < len(runs) or retry_pending:
        return None
    if len(ended) >= MAX_EXPORT_RUNS:
        last = ended[0]  # get_runs lists the newest first
        _finish(
            wh,
            export_id,
            "failed",
            error=f"the export's run ended without rendering it {len(ended)} times "
            f"(last: run {last.run_id}, {last.status.value.lower()}); ask for the export again",
        )
        return None
    return f"{export_id}:{len(ended) + 1}"


@dg.sensor(
    job=report_export_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launch one run per export request still processing (run key = export id; a "
    f"request whose run ended without rendering it runs again, {MAX_EXPORT_RUNS} runs at most).",
)
def report_export_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    """A run request per pending export without a run under way; run keys make each run once."""
    wh = warehouse.get()
    pending = pending_exports(wh)
    keys = {export_id: next_run_key(context.instance, wh, export_id) for export_id in pending}
    requests = [
        dg.RunRequest(
            run_key=key,
            run_config={"ops": {"render_export": {"config": {"export_id": export_id}}}},
            tags={EXPORT_TAG: export_id},
        )
        for export_id, key in keys.items()
        if key is not None
    ]
    if not requests:
        return dg.SkipReason("no export requests waiting for a run")
    return dg.SensorResult(run_requests=requests)

"""The month-end close in Dagster: the close pack asset (render, store, freeze), the restatement
check of closed months, and the sensor that closes last month for each workspace once its last
day is refreshed for that workspace."""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
from dagster._core.event_api import EventRecordsFilter, PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecordStatus,
)

from finance_pipeline.fanout import fan_out
from finance_pipeline.lib.margins import shift_month
from finance_pipeline.partitions import monthly_partitions
from finance_pipeline.reports.assets import month_bounds, partition_months, report_assets
from finance_pipeline.reports.close import (
    CloseError,
    check_closed_months,
    closed_workspaces,
    run_close,
)
from finance_pipeline.reports.email import deliver_close_pack
from finance_pipeline.reports.pdf.pack_data import CheckResult
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import (
    WORKSPACE_TAG,
    current_run_scope,
    list_workspaces,
    parse_workspace_scope,
    scoped_workspaces,
)

MRR_DAILY = dg.AssetKey(["mart", "mrr_daily"])
# The marts whose latest check results of the month's last day go into the pack.
CHECKED_MARTS = (
    MRR_DAILY,
    dg.AssetKey(["mart", "mrr_plan_daily"]),
    dg.AssetKey(["mart", "mrr_movements"]),
    dg.AssetKey(["mart", "revenue_daily"]),
    dg.AssetKey(["mart", "cfo_metrics_daily"]),
)


def _evaluation(event: dg.EventLogEntry | None) -> dg.AssetCheckEvaluation | None:
    data = getattr(getattr(event, "dagster_event", None), "event_specific_data", None)
    return data if isinstance(data, dg.AssetCheckEvaluation) else None


def _run_evaluation(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, run_id: str
) -> dg.AssetCheckEvaluation | None:
    """The evaluation of `key` a run recorded, if it got that far."""
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = _evaluation(event)
        if data is not None and data.asset_check_key == key:
            return data
    return None


def latest_evaluation(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, day: date
) -> dg.AssetCheckEvaluation | None:
    """The check's latest evaluation covering the partition `day`, else its latest at all.

    A run over a partition RANGE (the daily refresh, a backfill, the demo) records the check as
    planned once per day but evaluates it once, without a partition: the day's latest record is
    then a PLANNED row whose result is the unpartitioned evaluation of the same run.
    """
    storage = instance.event_log_storage
    [latest] = storage.get_asset_check_execution_history(
        key, limit=1, partition_filter=PartitionKeyFilter(key=day.isoformat())
    ) or [None]
    if latest is not None:
        found = _evaluation(latest.event)
        if found is None and latest.status == AssetCheckExecutionRecordStatus.PLANNED:
            found = _run_evaluation(instance, key, latest.run_id)
        if found is not None:
            return found
    # Never run over the day, or its run stopped before the check: the latest result at all.
    [done] = storage.get_asset_check_execution_history(
        key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
    ) or [None]
    return None if done is None else _evaluation(done.event)


def _check_result(key: dg.AssetCheckKey, data: dg.AssetCheckEvaluation) -> CheckResult:
    return CheckResult(
        f"{key.asset_key.to_user_string()}: {key.name}",
        bool(data.passed),
        data.description or "",
        data.severity.value,
    )


def _sorted_keys(check_keys: Iterable[dg.AssetCheckKey]) -> list[dg.AssetCheckKey]:
    return sorted(check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))


def latest_check_results(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], day: date
) -> list[CheckResult]:
    """Each check's latest evaluation covering the partition `day` (else its latest at all), as
    the pack's CheckResults, sorted by asset and name; checks never evaluated are left out."""
    out = []
    for key in _sorted_keys(check_keys):
        data = latest_evaluation(instance, key, day)
        if data is not None:
            out.append(_check_result(key, data))
    return out


def run_evaluations(
    instance: dg.DagsterInstance, run_id: str
) -> dict[dg.AssetCheckKey, dg.AssetCheckEvaluation]:
    """The check evaluations a run recorded, by check (the last one where a check ran twice)."""
    out: dict[dg.AssetCheckKey, dg.AssetCheckEvaluation] = {}
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = _evaluation(event)
        if data is not None:
            out[data.asset_check_key] = data
    return out


def run_check_results(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], run_id: str
) -> list[CheckResult]:
    """The checks' evaluations in one run (the run that refreshed a workspace's last day), as the
    pack's CheckResults sorted by asset and name; checks the run did not evaluate are left out."""
    found = run_evaluations(instance, run_id)
    return [_check_result(k, found[k]) for k in _sorted_keys(check_keys) if k in found]


def mart_check_keys() -> list[dg.AssetCheckKey]:
    """The checks defined on the marts the pack reports (from the project's definitions)."""
    # Imported here: definitions imports this module (a run's repository_def is not always set).
    from finance_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    return [k for k in graph.asset_check_keys if k.asset_key in CHECKED_MARTS]


class ClosePackConfig(dg.Config):
    """`force`: close a workspace whose last day is not ready (its newest refresh failed or is
    still running), for an operator who knows why; the pack then prints that run's checks."""

    force: bool = False


@dg.asset(
    key=dg.AssetKey(["reports", "close_pack"]),
    # The pack reads Stripe's 30-day subscriber churn from the subscriptions' counting changes.
    deps=[*(a.key for a in report_assets), dg.AssetKey(["mart", "subscription_counting"])],
    partitions_def=monthly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="reports",
    kinds={"pdf", "python"},
    description="Month-end close: the close pack PDF (PDF/A-3, the month's six CSVs and a manifest "
    "attached) per workspace, stored in the catalogue and frozen (app.closes: watermarks, FX "
    "rates, code version, checks, file sha256s). A month already closed is not re-rendered: its "
    "figures are recomputed and any difference recorded as a restatement (close_restated). A "
    "workspace whose month's last day is not ready (its newest refresh of that day failed or is "
    "still running) is not closed; the metadata says why.",
)
def close_pack(
    context: dg.AssetExecutionContext, config: ClosePackConfig, warehouse: WarehouseResource
):
    """Close each of the run's workspaces' month of the partition (a closed month: check for
    restatements), each once its own last day is ready."""
    wh = warehouse.get()
    root = get_settings().resolved_reports_dir
    check_keys = mart_check_keys()
    lines = ["| workspace | month | status | close | pack | pages | bytes |", "|---|" * 7]
    meta: dict[str, Any] = {}
    not_ready = 0
    for month in partition_months(context):
        _, last_day = month_bounds(month)
        workspaces = scoped_workspaces(wh)
        readiness = workspace_readiness(context.instance, last_day, [ws.id for ws in workspaces])
        for ws in workspaces:
            ready = readiness[ws.id]
            if not ready.ready and not config.force:
                not_ready += 1
                lines.append(f"| {ws.id} | {month} | not ready: {ready.reason} | | | | |")
                continue
            # The checks of the run that refreshed this workspace's last day, not another's.
            checks = (
                run_check_results(context.instance, check_keys, ready.run_id)
                if ready.run_id
                else latest_check_results(context.instance, check_keys, last_day)
            )
            try:
                outcome = run_close(wh, root, ws.id, month, checks=checks)
            except CloseError as exc:
                # No report of the month (the workspace had no data yet): nothing to close.
                lines.append(f"| {ws.id} | {month} | skipped: {exc} | | | | |")
                continue
            c, pack = outcome.close, outcome.pack
            status = outcome.status + (
                f", restated ({outcome.restatement_id})" if outcome.restatement_id else ""
            )
            if pack is None:
                lines.append(f"| {ws.id} | {month} | {status} | v{c.version} | | | |")
                continue
            path = pack.absolute(root)
            pages = outcome.pages
            lines.append(
                f"| {ws.id} | {month} | {status} | v{c.version} | {pack.path} | {pages}"
                f" | {pack.size_bytes} |"
            )
            prefix = f"{ws.id}_{month}"
            meta[f"{prefix}_path"] = dg.MetadataValue.path(str(path))
            meta[f"{prefix}_size_bytes"] = pack.size_bytes
            meta[f"{prefix}_pages"] = pages
            meta[f"{prefix}_sha256"] = pack.sha256
            meta[f"{prefix}_close_id"] = c.id
            # Mailed once per rendering to the workspace's recipients, if it has any; a failed
            # delivery is shown here and retried by the next run, never failing the close.
            mail = deliver_close_pack(
                wh, get_settings(), ws.id, month, path.read_bytes(), path.name
            )
            meta[f"{prefix}_email"] = mail.status + (f": {mail.error}" if mail.error else "")
    meta["closes"] = dg.MetadataValue.md("\n".join(lines))
    meta["not_ready"] = not_ready
    return dg.MaterializeResult(metadata=meta)


class RestatementCheckConfig(dg.Config):
    """Which workspace's closed months to compare ("" = every workspace)."""

    workspace_id: str = ""


@dg.asset(
    key=dg.AssetKey(["reports", "close_restatements"]),
    deps=[MRR_DAILY, dg.AssetKey(["mart", "revenue_daily"])],
    group_name="reports",
    kinds={"python"},
    description="Restatements of closed months: each closed month's close pack figures "
    "recomputed from the marts and compared with the as-closed figures in its manifest; a "
    "difference is recorded in app.restatements, raises a close_restated alert in mart.alerts "
    "(downstream) and is listed in the next month's close pack. Closed files never change.",
)
def close_restatements(
    config: RestatementCheckConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Compare every closed month with its recomputed figures; record new restatements."""
    wh = warehouse.get()
    scope = current_run_scope()
    if config.workspace_id or scope is None:
        new = check_closed_months(wh, config.workspace_id or None)
    else:  # after a workspace-scoped refresh: only the workspaces it recomputed
        new = [rid for ws in sorted(scope) for rid in check_closed_months(wh, ws)]
    return dg.MaterializeResult(
        metadata={"new_restatements": len(new), "ids": ", ".join(new) or "none"}
    )


close_restatement_job = dg.define_asset_job(
    "close_restatement_check",
    selection=dg.AssetSelection.assets(close_restatements),
    description="Compare closed months with the marts and record restatements (after a refresh).",
)


@dataclass(frozen=True)
class Readiness:
    """Whether a workspace's month can close: decided by the newest run that refreshed the month's
    last day of mart/mrr_daily for that workspace (`run_id`); `reason` says why, or why not."""

    workspace_id: str
    ready: bool
    reason: str
    run_id: str | None = None


# Planned-materialization records read per query while looking for each workspace's newest run.
_READINESS_PAGE = 500
_WAITING = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.MANAGED,
}


def _run_readiness(instance: dg.DagsterInstance, run: dg.DagsterRun, day: date) -> Readiness:
    """The verdict of one refresh run of `day` (workspace_id left blank for the caller)."""
    rid = run.run_id
    if run.status in _WAITING:
        return Readiness("", False, f"waiting for run {rid} ({run.status.value}) to refresh {day}")
    if run.status != dg.DagsterRunStatus.SUCCESS:
        return Readiness("", False, f"its latest refresh of {day}, run {rid}, {run.status.value}")
    for key, data in sorted(run_evaluations(instance, rid).items(), key=lambda kv: str(kv[0])):
        if key.asset_key in CHECKED_MARTS and data.blocking and not data.passed:
            return Readiness(
                "", False, f"blocking check {key.to_user_string()} failed in run {rid}", rid
            )
    return Readiness("", True, f"{day} refreshed by run {rid}", rid)


def workspace_readiness(
    instance: dg.DagsterInstance, day: date, workspace_ids: Sequence[str]
) -> dict[str, Readiness]:
    """Each workspace's readiness to close the month ending `day`.

    The newest run that planned mart/mrr_daily's partition `day` and covered the workspace (its
    workspace tag names it, or it is untagged) decides: ready when it succeeded with the MRR marts'
    blocking checks passed; not ready while it is queued or running, or when it failed. Another
    workspace's runs never count, so a failing or lagging workspace holds back only its own close.
    """
    pending = set(workspace_ids)
    out: dict[str, Readiness] = {}
    seen: set[str] = set()
    storage = instance.event_log_storage
    before: int | None = None
    while pending:
        records = storage.get_event_records(
            EventRecordsFilter(
                dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                asset_key=MRR_DAILY,
                asset_partitions=[day.isoformat()],
                before_cursor=before,
            ),
            limit=_READINESS_PAGE,
            ascending=False,
        )
        if not records:
            break
        before = records[-1].storage_id
        run_ids = [r for r in dict.fromkeys(rec.run_id for rec in records) if r not in seen]
        seen.update(run_ids)
        # An empty run_ids filter would match every run.
        found = instance.get_runs(dg.RunsFilter(run_ids=run_ids)) if run_ids else []
        runs = {r.run_id: r for r in found}
        for rid in run_ids:  # newest first
            run = runs.get(rid)
            if run is None:
                continue
            scope = parse_workspace_scope(run.tags.get(WORKSPACE_TAG))
            covered = set(pending) if scope is None else pending & scope
            if not covered:
                continue
            verdict = _run_readiness(instance, run, day)
            for ws in covered:
                out[ws] = Readiness(ws, verdict.ready, verdict.reason, verdict.run_id)
            pending -= covered
            if not pending:
                break
        if len(records) < _READINESS_PAGE:
            break
    for ws in pending:
        out[ws] = Readiness(ws, False, f"mart/mrr_daily {day} not refreshed for it yet")
    return {ws: out[ws] for ws in workspace_ids}


_WAITING_LISTED = 20


def _cursor_requested(cursor: str | None, month: str) -> tuple[bool, set[str]]:
    """From the sensor's cursor: whether `month` is done (every workspace requested; a cursor of
    one month string, or a later month), and the workspaces already requested for it."""
    if not cursor:
        return False, set()
    if not cursor.startswith("{"):
        return cursor >= month, set()
    state = json.loads(cursor)
    if state["month"] > month:
        return True, set()
    return False, set(state["requested"]) if state["month"] == month else set()


def _listed(items: Sequence[str]) -> str:
    """Items joined for a tick's message, which stays readable with a thousand workspaces."""
    more = len(items) - _WAITING_LISTED
    return "; ".join(items[:_WAITING_LISTED]) + (f"; and {more} more" if more > 0 else "")


def _closed_note(closed: dict[str, tuple[int, int]]) -> str:
    """Which workspaces the sensor leaves out because their month is closed already."""
    return f"{len(closed)} already closed, not requested: " + _listed(
        [
            f"{ws} v{version} closed {datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M} UTC"
            for ws, (version, at) in closed.items()
        ]
    )


def _all_closed(month: str, closed: dict[str, tuple[int, int]], requested: set[str]) -> str:
    """The skip reason of a month with nothing left to request."""
    parts = [f"{len(requested)} requested by this sensor"] if requested else []
    parts += [_closed_note(closed)] if closed else []
    return f"{month} has nothing left to close: " + "; ".join(parts)


def make_close_sensor(job: Any) -> dg.SensorDefinition:
    """The sensor that requests `job` for last month, per workspace, once its last day is ready."""

    @dg.sensor(
        name="month_end_close_sensor",
        job=job,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="From the 1st: close the previous month (margins, CSV reports, close pack, "
        "freeze) for each workspace once the newest run that refreshed its last day of "
        "mart/mrr_daily for that workspace succeeded with passing blocking checks. One run per "
        "workspace (or batch, FP_FANOUT_BATCH_SIZE) and month; a workspace not ready holds back "
        "only its own close, and the tick says why; a workspace whose month is closed already "
        "(by hand) is not requested, and the tick names it.",
    )
    def month_end_close_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Request the close of the month before the evaluation day for its ready workspaces."""
        month = shift_month(_today().strftime("%Y-%m"), -1)
        done, requested = _cursor_requested(context.cursor, month)
        if done:
            return dg.SkipReason(f"{month} already requested")
        _, last_day = month_bounds(month)
        wh = warehouse.get()
        ids = [ws.id for ws in list_workspaces(wh)]
        if not ids:
            return dg.SkipReason("no workspaces to close")
        # A workspace whose month was closed without this sensor (by hand: `close run`, a run
        # launched in the UI) gets no run: it would only find the month closed. A reopened month
        # is requested again.
        known = set(ids) - requested
        closed = {ws: c for ws, c in closed_workspaces(wh, month).items() if ws in known}
        todo = [ws for ws in ids if ws not in requested and ws not in closed]
        if not todo:
            # Nothing left: the month is done, and the UI says which closes were not ours.
            return dg.SensorResult(skip_reason=_all_closed(month, closed, requested), cursor=month)
        readiness = workspace_readiness(context.instance, last_day, todo)
        ready = [ws for ws in todo if readiness[ws].ready]
        not_ready = [f"{ws}: {r.reason}" for ws, r in readiness.items() if not r.ready]
        waiting = _listed(not_ready)
        skipped = f" ({_closed_note(closed)})" if closed else ""
        if not ready:
            return dg.SkipReason(f"waiting for {month}'s last day ({last_day}): {waiting}{skipped}")
        if waiting:
            context.log.info(f"{month}: not ready yet: {waiting}")
        if closed:
            context.log.info(f"{month}: {_closed_note(closed)}")
        batch = get_settings().fanout_batch_size
        if batch <= 0 and (requested or len(ready) < len(ids)):
            batch = len(ready)  # no fan-out, but part of the workspaces: one tagged run of them
        requests = fan_out(
            f"month_end_close:{month}", {}, ready, batch, partition_key=f"{month}-01"
        )
        requested.update(ready)
        all_in = requested.union(closed).issuperset(ids)
        cursor = month if all_in else json.dumps({"month": month, "requested": sorted(requested)})
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return month_end_close_sensor


def _today() -> date:
    """Today (UTC): the sensor closes the month before it. Tests replace it."""
    return datetime.now(UTC).date()

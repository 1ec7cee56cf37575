"""The month-end close in Dagster: the close pack asset (render, store, freeze), the restatement
check of closed months, and the sensor that closes last month once its last day is refreshed."""

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecordStatus,
)

from finance_pipeline.lib.margins import shift_month
from finance_pipeline.partitions import monthly_partitions
from finance_pipeline.reports.assets import month_bounds, partition_months, report_assets
from finance_pipeline.reports.close import (
    CloseError,
    check_closed_months,
    run_close,
)
from finance_pipeline.reports.email import deliver_close_pack
from finance_pipeline.reports.pdf.pack_data import CheckResult
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import current_run_scope, scoped_workspaces

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


def latest_check_results(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], day: date
) -> list[CheckResult]:
    """Each check's latest evaluation covering the partition `day` (else its latest at all), as
    the pack's CheckResults, sorted by asset and name; checks never evaluated are left out."""
    out = []
    for key in sorted(check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        data = latest_evaluation(instance, key, day)
        if data is None:
            continue
        out.append(
            CheckResult(
                f"{key.asset_key.to_user_string()}: {key.name}",
                bool(data.passed),
                data.description or "",
                data.severity.value,
            )
        )
    return out


def mart_check_keys() -> list[dg.AssetCheckKey]:
    """The checks defined on the marts the pack reports (from the project's definitions)."""
    # Imported here: definitions imports this module (a run's repository_def is not always set).
    from finance_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    return [k for k in graph.asset_check_keys if k.asset_key in CHECKED_MARTS]


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
    "figures are recomputed and any difference recorded as a restatement (close_restated).",
)
def close_pack(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Close every workspace's month of the partition (a closed month: check for restatements)."""
    wh = warehouse.get()
    root = get_settings().resolved_reports_dir
    check_keys = mart_check_keys()
    lines = ["| workspace | month | status | close | pack | pages | bytes |", "|---|" * 7]
    meta: dict[str, Any] = {}
    for month in partition_months(context):
        _, last_day = month_bounds(month)
        checks = latest_check_results(context.instance, check_keys, last_day)
        for ws in scoped_workspaces(wh):
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


def last_day_ready(instance: dg.DagsterInstance, day: date) -> bool:
    """Whether mart/mrr_daily's partition `day` was last materialized by a successful run whose
    blocking checks on the MRR marts all passed."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MRR_DAILY, asset_partitions=[day.isoformat()]), limit=1
    )
    if not result.records:
        return False
    run = instance.get_run_by_id(result.records[0].run_id)
    if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
        return False
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(MRR_DAILY, "schema_matches_metadata")]
    )
    for record in checks.values():
        data = getattr(record.event.dagster_event, "event_specific_data", None)
        if isinstance(data, dg.AssetCheckEvaluation) and data.blocking and not data.passed:
            return False
    return True


def make_close_sensor(job: Any) -> dg.SensorDefinition:
    """The sensor that requests `job` for last month once its last day is ready."""

    @dg.sensor(
        name="month_end_close_sensor",
        job=job,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="From the 1st: close the previous month (margins, CSV reports, close pack, "
        "freeze) once the daily refresh has materialized its last day of mart/mrr_daily in a "
        "successful run with passing blocking checks. One run per month (run key and cursor).",
    )
    def month_end_close_sensor(context: dg.SensorEvaluationContext):
        """Request the close of the month before the evaluation day, once."""
        month = shift_month(_today().strftime("%Y-%m"), -1)
        if context.cursor and context.cursor >= month:
            return dg.SkipReason(f"{month} already requested")
        _, last_day = month_bounds(month)
        if not last_day_ready(context.instance, last_day):
            return dg.SkipReason(f"waiting for a successful daily refresh of {last_day}")
        context.update_cursor(month)
        return dg.RunRequest(run_key=f"month_end_close:{month}", partition_key=f"{month}-01")

    return month_end_close_sensor


def _today() -> date:
    """Today (UTC): the sensor closes the month before it. Tests replace it."""
    return datetime.now(UTC).date()

"""Landed CSV files (costs, expenses, usage costs, manual revenue, FX) as assets, with their sensor."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from finance_pipeline.ingest.landing import (
    GLOBAL_WORKSPACE,
    REJECTED,
    LandingOutcome,
    _workspace_for,
    pending_files,
    process_file,
)
from finance_pipeline.ingest.manual_rows import KIND_TABLES
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.warehouse.db import Warehouse

LANDING_KEYS = {kind: dg.AssetKey(table.split(".")) for kind, (table, _) in KIND_TABLES.items()}
_DESCRIPTIONS = {
    "costs": "Cost records (products API shape) by category, some tagged to a customer.",
    "expenses": "Expense events: recurring (runway) and one-time (burn only).",
    "usage_costs": "Per-customer usage costs (model, cost, request count) for margins.",
    "revenue": "Manual revenue; type `subscription` counts in MRR, refunds are negative.",
    "fx_rates": "Daily FX rates to each reporting currency, kept as exact decimals.",
}


class LandingConfig(dg.Config):
    """Which files to ingest; empty means every file waiting in the landing folder."""

    files: list[str] = []  # noqa: RUF012 - pydantic copies defaults per instance


def _outcome_table(outcomes: list[LandingOutcome]) -> str:
    lines = [
        "| file | workspace | kind | status | rows | new | duplicates |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {Path(o.path).name} | {o.workspace_id} | {o.kind or '?'} | {o.status} | {o.rows} "
            f"| {o.inserted} | {o.duplicates} |"
        )
    return "\n".join(lines)


def _earlier_rejection(wh: Warehouse, path: Path, root: Path) -> LandingOutcome | None:
    """The outcome of a listed file that is gone because an earlier attempt rejected it, or None."""
    try:
        workspace = _workspace_for(path, root) or GLOBAL_WORKSPACE
    except ValueError:
        return None
    rows = wh.rows(
        "SELECT status, kind, errors_json FROM raw.landing_files"
        " WHERE workspace_id = :w AND file_name = :f ORDER BY processed_at DESC",
        w=workspace,
        f=path.name,
    )
    moved = path.parent / REJECTED / path.name
    if not rows or rows[0]["status"] != "rejected" or not moved.exists():
        return None
    errors = rows[0]["errors_json"]
    if isinstance(errors, str):
        errors = json.loads(errors)
    return LandingOutcome(
        str(path),
        workspace,
        "rejected",
        kind=rows[0]["kind"],
        errors=[str(e) for e in errors or []],
        moved_to=str(moved),
    )


@dg.multi_asset(
    name="landing_files",
    specs=[
        dg.AssetSpec(
            key, description=_DESCRIPTIONS[kind], group_name="ingest", kinds={"csv", "sql"}
        )
        for kind, key in LANDING_KEYS.items()
    ],
    can_subset=False,
)
def landing_files(
    context: dg.AssetExecutionContext, config: LandingConfig, warehouse: WarehouseResource
):
    """Validate and ingest landed CSV files; a file with any bad row is rejected whole."""
    wh = warehouse.get()
    root = get_settings().resolved_landing_dir
    paths = [Path(f) for f in config.files] if config.files else pending_files(root)
    outcomes = []
    for path in paths:
        if not path.exists():
            earlier = _earlier_rejection(wh, path, root)
            if earlier is not None:
                # A re-execution of a run that rejected it: the rejection stands, the run fails again.
                outcomes.append(earlier)
                continue
            context.log.info(f"{path} is gone (already processed by another run)")
            continue
        outcome = process_file(wh, path, root)
        outcomes.append(outcome)
        if outcome.status == "rejected":
            context.log.error(
                f"rejected {path.name}: {len(outcome.errors)} problem(s); report at "
                f"{outcome.moved_to}.errors.txt\n" + "\n".join(outcome.errors[:20])
            )
        else:
            context.log.info(
                f"{outcome.status} {path.name}: {outcome.inserted} new, {outcome.duplicates} duplicates"
            )
    for kind, key in LANDING_KEYS.items():
        mine = [o for o in outcomes if o.kind == kind and o.status != "rejected"]
        table = KIND_TABLES[kind][0]
        rows_total = int(wh.scalar(f"SELECT COUNT(*) FROM {table}") or 0)
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "files": len(mine),
                "rows_inserted": sum(o.inserted for o in mine),
                "duplicates_skipped": sum(o.duplicates for o in mine),
                "rows_total": rows_total,
                **table_metadata(key, rows_total),
            },
        )
    rejected = [o for o in outcomes if o.status == "rejected"]
    if rejected:
        # Deterministic: the same bytes fail the same way, so neither the step nor the run retries.
        raise dg.Failure(
            description=f"{len(rejected)} landed file(s) rejected; nothing from them was written. "
            + "; ".join(
                f"{Path(o.path).name}: {o.errors[0] if o.errors else 'invalid'}"
                f"{f' (+{len(o.errors) - 1} more)' if len(o.errors) > 1 else ''}, "
                f"report {o.moved_to}.errors.txt"
                for o in rejected
            ),
            metadata={"files": dg.MetadataValue.md(_outcome_table(outcomes))},
            allow_retries=False,
        )


landing_job = dg.define_asset_job(
    "ingest_landing_files",
    selection=dg.AssetSelection.assets(*LANDING_KEYS.values()),
    description="Ingest CSV files dropped in the landing folder.",
    # A rejected file fails the run; a run retry would find it moved and end green, so the
    # instance's run retries apply here only to crashes, not to a failed step.
    tags={"dagster/retry_on_asset_or_op_failure": "false"},
)


@dg.sensor(
    job=landing_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts an ingest run for new CSV files in the landing folder.",
)
def landing_folder_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """One run per batch of new files; the run key (file digests) makes re-evaluation idempotent."""
    root = get_settings().resolved_landing_dir
    if root.exists() and not root.is_dir():
        return dg.SkipReason(f"landing path {root} exists but is not a folder; fix FP_LANDING_DIR")
    files = pending_files(root)
    if not files:
        return dg.SkipReason(f"no new files in {root}")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=digest.hexdigest(),
                run_config=dg.RunConfig(
                    ops={"landing_files": LandingConfig(files=[str(f) for f in files])}
                ),
                tags={"landing_files": str(len(files))},
            )
        ]
    )

"""Landed CSV files (costs, expenses, usage costs, manual revenue, FX) as assets, with their sensor."""

import hashlib
from pathlib import Path

import dagster as dg

from finance_pipeline.ingest.landing import LandingOutcome, pending_files, process_file
from finance_pipeline.ingest.manual_rows import KIND_TABLES
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.table_checks import table_metadata

LANDING_KEYS = {kind: dg.AssetKey(table.split(".")) for kind, (table, _) in KIND_TABLES.items()}
_DESCRIPTIONS = {
    "costs": "Cost records (seeds/001 shape) by category, some tagged to a customer.",
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
        raise dg.Failure(
            description=f"{len(rejected)} landed file(s) rejected; nothing from them was written",
            metadata={"files": dg.MetadataValue.md(_outcome_table(outcomes))},
            allow_retries=False,
        )


landing_job = dg.define_asset_job(
    "ingest_landing_files",
    selection=dg.AssetSelection.assets(*LANDING_KEYS.values()),
    description="Ingest CSV files dropped in the landing folder.",
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

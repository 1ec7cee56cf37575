"""The one Dagster entry point (named in workspace.yaml)."""

from datetime import timedelta

import dagster as dg

from finance_pipeline.advisory.assets import advisory_memos
from finance_pipeline.alerts.assets import alerts
from finance_pipeline.core.assets import REBUILD_JOB, fx_rates, ledger, subscription_history
from finance_pipeline.executors import executor_run_config, refresh_executor
from finance_pipeline.fanout import STRIPE_TAG, STRIPE_TAG_VALUE, fan_out
from finance_pipeline.forecasting.assets import forecasts
from finance_pipeline.ingest.landing_assets import landing_files, landing_folder_sensor, landing_job
from finance_pipeline.ingest.stripe_assets import stripe_assets
from finance_pipeline.margins.assets import customer_margins_monthly, recognized_revenue_monthly
from finance_pipeline.metrics.cfo_assets import cfo_marts
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.partitions import RESTATEMENT_DAYS, restatement_window
from finance_pipeline.reports.assets import report_assets
from finance_pipeline.reports.close_assets import (
    close_pack,
    close_restatement_job,
    close_restatements,
    make_close_sensor,
)
from finance_pipeline.reports.exports import report_export_job, report_export_sensor
from finance_pipeline.requests.sensors import make_request_sensors
from finance_pipeline.resources import StripeResource, WarehouseResource
from finance_pipeline.run_sweep import dead_run_sweep
from finance_pipeline.settings import get_settings
from finance_pipeline.table_checks import schema_checks, with_table_metadata
from finance_pipeline.tenancy import WORKSPACE_TAG, list_workspaces

stripe_ingest = dg.AssetSelection.assets(*stripe_assets)
core_assets = dg.AssetSelection.assets(fx_rates, ledger, subscription_history)
mrr = dg.AssetSelection.assets(mrr_marts)
cfo = dg.AssetSelection.assets(cfo_marts, alerts, advisory_memos)

ingest_job = dg.define_asset_job(
    "stripe_ingest",
    selection=stripe_ingest,
    description="Sync every connected workspace's Stripe data into the raw layer.",
)
daily_refresh_job = dg.define_asset_job(
    "daily_refresh",
    selection=stripe_ingest | core_assets | mrr | cfo,
    description="Stripe ingest, then core tables, then the MRR, CFO, revenue and alert marts for "
    "the partition range.",
    executor_def=refresh_executor,
)
marts_job = dg.define_asset_job(
    REBUILD_JOB,
    selection=core_assets | mrr | cfo,
    description="Rebuild core tables and the daily marts from raw (e.g. a full-history backfill).",
    executor_def=refresh_executor,
    # The core tables are rebuilt wholly from raw here (the daily refresh builds them from the
    # changes since their last build): the core assets decide it from the run's job name, since
    # job config would reach only single-partition runs (core/assets.py REBUILD_JOB); a run may
    # still set full_rebuild: false in its run config.
)
# Refresh requests (API, CLI): the daily refresh without the Stripe ingest, over the requested days.
# The core tables build incrementally (the changes since their last build), not wholly as in
# rebuild_marts: the marts of the days outside the range keep what they have.
requested_refresh_job = dg.define_asset_job(
    "requested_refresh",
    selection=core_assets | mrr | cfo,
    description="Core tables (incremental), then the MRR, CFO, revenue and alert marts for the "
    "partition range of queued refresh requests (launched by pipeline_requests_sensor).",
    executor_def=refresh_executor,
)
request_sensors = make_request_sensors(requested_refresh_job, daily_refresh_job)


monthly_job = dg.define_asset_job(
    "monthly_margins_and_forecasts",
    selection=dg.AssetSelection.assets(
        recognized_revenue_monthly, customer_margins_monthly, forecasts
    ),
    description="Recognized revenue, customer margins and the default forecast for a month.",
)

monthly_reports_job = dg.define_asset_job(
    "monthly_reports",
    selection=dg.AssetSelection.assets(*report_assets),
    description="The month's CSV reports for every workspace, into the report store and catalogue.",
)

# The month-end close builds margins and the forecast itself, so they are there before the
# reports; it replaces the former 04:00 monthly_margins schedule (a fixed time could run before
# the daily refresh of the month's last day had succeeded).
month_end_close_job = dg.define_asset_job(
    "month_end_close",
    selection=dg.AssetSelection.assets(
        recognized_revenue_monthly, customer_margins_monthly, forecasts, *report_assets, close_pack
    ),
    description="Month-end close: margins and forecast, the six CSV reports, the close pack PDF, "
    "and the freeze (app.closes) for every workspace; a month already closed is only checked "
    "for restatements.",
)
month_end_close_sensor = make_close_sensor(month_end_close_job)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[daily_refresh_job, marts_job, requested_refresh_job],
    request_job=close_restatement_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each successful refresh or rebuild of the marts: compare closed months "
    "with the recomputed figures and record restatements.",
)
def closed_months_restated(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """One restatement check per successful refresh run, over the workspaces it refreshed."""
    scope = context.dagster_run.tags.get(WORKSPACE_TAG)
    return dg.RunRequest(
        run_key=f"close_restatements:{context.dagster_run.run_id}",
        tags={WORKSPACE_TAG: scope} if scope else {},
    )


@dg.schedule(
    job=daily_refresh_job,
    cron_schedule="15 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"Daily refresh: ingest, core, and MRR for yesterday plus {RESTATEMENT_DAYS - 1} "
    "earlier days restated for late data; one run per workspace (or batch, FP_FANOUT_BATCH_SIZE).",
)
def daily_refresh(
    context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource
) -> list[dg.RunRequest]:
    """One run per workspace and day covering the trailing restatement window (a partition
    range), keyed by day and workspace so a re-evaluated tick launches nothing twice."""
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date()
    first, _ = restatement_window(yesterday)
    settings = get_settings()
    return fan_out(
        f"daily_refresh:{yesterday.isoformat()}",
        {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": yesterday.isoformat(),
            STRIPE_TAG: STRIPE_TAG_VALUE,
        },
        [ws.id for ws in list_workspaces(warehouse.get())],
        settings.fanout_batch_size,
        run_config=executor_run_config(settings),
    )


# Freshness (FreshnessPolicy: Dagster 1.13 supersedes the build_*_freshness_checks factories with
# it; the freshness daemon evaluates it, no sensor needed). The daily refresh runs at 02:15 UTC, so
# the daily marts must have been materialized between midnight and 06:00 UTC (yesterday's
# partition); the month-end close runs on the 1st at 04:00, so the monthly marts by the 2nd.
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=6), timezone="UTC"
)
MONTHLY_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 0 2 * *", lower_bound_delta=timedelta(days=1), timezone="UTC"
)
_FRESHNESS = {
    **{
        key: DAILY_FRESHNESS
        for a in (mrr_marts, cfo_marts, alerts, advisory_memos)
        for key in a.keys
    },
    **{key: MONTHLY_FRESHNESS for a in (customer_margins_monthly, forecasts) for key in a.keys},
}


def _with_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    policy = _FRESHNESS.get(spec.key)
    return dg.apply_freshness_policy(spec, policy) if policy else spec


# Every asset carries its table's column schema (warehouse/tables.py) and a blocking schema check.
assets = with_table_metadata(
    dg.map_asset_specs(
        _with_freshness,
        [
            *stripe_assets,
            landing_files,
            fx_rates,
            ledger,
            subscription_history,
            mrr_marts,
            cfo_marts,
            alerts,
            advisory_memos,
            recognized_revenue_monthly,
            customer_margins_monthly,
            forecasts,
        ],
    )
)

defs = dg.Definitions(
    # Report assets write files and catalogue rows, not warehouse tables: no table schema.
    assets=[*assets, *report_assets, close_pack, close_restatements],
    asset_checks=schema_checks(assets),
    jobs=[
        ingest_job,
        landing_job,
        daily_refresh_job,
        marts_job,
        requested_refresh_job,
        monthly_job,
        monthly_reports_job,
        report_export_job,
        month_end_close_job,
        close_restatement_job,
    ],
    schedules=[daily_refresh],
    sensors=[
        landing_folder_sensor,
        report_export_sensor,
        month_end_close_sensor,
        closed_months_restated,
        dead_run_sweep,
        *request_sensors,
    ],
    resources={"warehouse": WarehouseResource(), "stripe": StripeResource()},
)

"""The one Dagster entry point (named in workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from finance_pipeline.ingest.landing_assets import landing_files, landing_folder_sensor, landing_job
from finance_pipeline.ingest.stripe_assets import stripe_assets
from finance_pipeline.resources import StripeResource, WarehouseResource

ingest_job = dg.define_asset_job(
    "stripe_ingest",
    selection=dg.AssetSelection.groups("ingest") - dg.AssetSelection.assets(landing_files),
    description="Sync every connected workspace's Stripe data into the raw layer.",
)

daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh",
    job=ingest_job,
    cron_schedule="15 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily refresh: Stripe ingest, then the marts.",
)

defs = dg.Definitions(
    assets=[*stripe_assets, landing_files],
    jobs=[ingest_job, landing_job],
    schedules=[daily_refresh_schedule],
    sensors=[landing_folder_sensor],
    resources={"warehouse": WarehouseResource(), "stripe": StripeResource()},
)

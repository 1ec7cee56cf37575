"""Running daily-partitioned assets over a range of days the way a backfill does: one run on an
ephemeral instance, against the test's warehouse."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import dagster as dg

from finance_pipeline.resources import WarehouseResource
from finance_pipeline.warehouse import Warehouse


def range_tags(start: date | str, end: date | str) -> dict[str, str]:
    """The run tags of a single-run backfill over start..end (inclusive partition keys)."""
    return {
        "dagster/asset_partition_range_start": str(start),
        "dagster/asset_partition_range_end": str(end),
    }


def warehouse_resources(wh: Warehouse) -> dict[str, Any]:
    """The resources the assets need, pointing at the test's warehouse."""
    return {"warehouse": WarehouseResource(url=wh.url.render_as_string(False))}


def materialize_days(
    assets: Sequence[Any], wh: Warehouse, start: date, end: date, raise_on_error: bool = False
) -> dg.ExecuteInProcessResult:
    """Materialize `assets` for the days start..end in one run."""
    return dg.materialize(
        assets,
        resources=warehouse_resources(wh),
        tags=range_tags(start, end),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """Each asset check evaluated in the run, by name: passed or not."""
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }

"""The check results a close pack reports for a month's last day, from the Dagster instance: a run
over a partition range (the daily refresh, a backfill, the demo) records a check planned per day
but evaluated once without a partition, and that evaluation is the day's result."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter

from finance_pipeline.partitions import daily_partitions
from finance_pipeline.reports.close_assets import latest_check_results
from finance_pipeline_tests.dagster_runs import range_tags

KEY = dg.AssetKey(["mart", "probe"])
CHECK = dg.AssetCheckKey(KEY, "probe_ok")


def _definitions(passed: bool) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """A daily mart and an unpartitioned blocking check over it, like the schema checks."""

    @dg.asset(
        key=KEY, partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run()
    )
    def probe() -> None:
        """A stand-in mart: nothing stored."""

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(CHECK.name, asset=KEY, blocking=True)], can_subset=True
    )
    def probe_checks() -> dg.AssetCheckResult:
        """Passes or fails as the test asks."""
        return dg.AssetCheckResult(asset_key=KEY, check_name=CHECK.name, passed=passed)

    return probe, probe_checks


def _run(instance: dg.DagsterInstance, passed: bool, start: str, end: str) -> None:
    # A failed blocking check fails the run; its evaluation is recorded all the same.
    result = dg.materialize(
        list(_definitions(passed)),
        instance=instance,
        tags=range_tags(start, end),
        raise_on_error=False,
    )
    assert result.success == passed


@pytest.mark.parametrize("subset_events", [False, True])
def test_a_range_runs_check_is_the_result_of_each_day_it_covered(
    subset_events: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo sets this to store one planned event per asset and range; same result either way.
    if subset_events:
        monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    instance = dg.DagsterInstance.ephemeral()
    _run(instance, True, "2026-10-01", "2026-10-31")
    # Dagster itself leaves the day's row PLANNED: what made the close pack find no checks.
    [row] = instance.event_log_storage.get_asset_check_execution_history(
        CHECK, limit=1, partition_filter=PartitionKeyFilter(key="2026-10-31")
    )
    assert row.status.value == "PLANNED"
    [result] = latest_check_results(instance, [CHECK], date(2026, 10, 31))
    assert (result.name, result.passed) == ("mart/probe: probe_ok", True)
    # A later run over another range that fails: October keeps its own run's result, a day no run
    # covered gets the latest result at all.
    _run(instance, False, "2026-11-01", "2026-11-30")
    assert [r.passed for r in latest_check_results(instance, [CHECK], date(2026, 10, 31))] == [True]
    assert [r.passed for r in latest_check_results(instance, [CHECK], date(2026, 11, 30))] == [
        False
    ]
    assert [r.passed for r in latest_check_results(instance, [CHECK], date(2026, 12, 31))] == [
        False
    ]
    # A check never evaluated is left out.
    other = dg.AssetCheckKey(KEY, "never_run")
    assert latest_check_results(dg.DagsterInstance.ephemeral(), [other], date(2026, 10, 31)) == []

"""The demo's full-history backfill on the embedded instance, as the Dagster UI sees it: every day
and month it covered shows materialized, each check is evaluated once per run's window, and a
run that fails leaves its range of days failed (until a later run materializes them). The
embedded instance batches each asset's per-day events into one transaction
(finance_pipeline/dagster_storage.py); these are the guarantees that batching must keep."""

from __future__ import annotations

from collections import Counter
from datetime import date

import dagster as dg
import pytest
from dagster._core.storage.partition_status_cache import AssetPartitionStatus
from finance_pipeline_dev import demo

from finance_pipeline.dagster_storage import BatchingSqliteEventLogStorage
from finance_pipeline.definitions import defs
from finance_pipeline.deployment import dagster_home
from finance_pipeline.partitions import daily_partitions, monthly_partitions
from finance_pipeline.resources import warehouse_for
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, create_workspace

FIRST, LAST = date(2026, 1, 1), date(2026, 3, 10)
DAYS = daily_partitions.get_partition_keys_in_range(
    dg.PartitionKeyRange(FIRST.isoformat(), LAST.isoformat())
)
MONTHS = ["2026-01-01", "2026-02-01"]  # the full months of the range
MRR_DAILY = dg.AssetKey(["mart", "mrr_daily"])


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """The embedded instance (its dagster.yaml as the demo writes it) over a warehouse with one
    workspace and no Stripe data: the marts hold empty windows, the bookkeeping is all there."""
    monkeypatch.delenv("FP_DEPLOYMENT", raising=False)
    home = dagster_home(get_settings())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # Set by the storage for the processes that open it; restored after the test.
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    wh = warehouse_for(get_settings().resolved_warehouse_url)
    org = create_organization(wh, "Backfill Org", org_id="org_backfill")
    create_workspace(wh, org, "Backfill workspace", workspace_id="ws_backfill")
    instance = dg.DagsterInstance.get()
    yield instance
    instance.dispose()


def _daily_keys() -> list[dg.AssetKey]:
    return sorted(defs.resolve_job_def("rebuild_marts").asset_layer.executable_asset_keys)


def _status(instance: dg.DagsterInstance, key: dg.AssetKey, keys: list[str], partitions) -> set:
    return set(instance.get_status_by_partition(key, keys, partitions).values())


def test_the_backfill_shows_every_day_and_month_materialized_and_checks_once_per_window(
    embedded: dg.DagsterInstance,
) -> None:
    assert isinstance(embedded.event_log_storage, BatchingSqliteEventLogStorage)
    demo.backfill_history(embedded, FIRST, LAST, demo.Progress(total=3))

    partitioned = [
        k for k in _daily_keys() if defs.resolve_assets_def(k).partitions_def is not None
    ]
    assert MRR_DAILY in partitioned and len(partitioned) >= 7
    for key in partitioned:
        # One materialization per day, each day MATERIALIZED in the status the UI reads.
        assert embedded.get_materialized_partitions(key) == set(DAYS), key
        assert _status(embedded, key, DAYS, daily_partitions) == {
            AssetPartitionStatus.MATERIALIZED
        }, key
    monthly = defs.resolve_job_def("monthly_margins_and_forecasts").asset_layer
    monthly_keys = [
        k for k in monthly.executable_asset_keys if defs.resolve_assets_def(k).partitions_def
    ]
    assert dg.AssetKey(["mart", "customer_margins_monthly"]) in monthly_keys
    for key in monthly_keys:
        assert embedded.get_materialized_partitions(key) == set(MONTHS), key
        assert _status(embedded, key, MONTHS, monthly_partitions) == {
            AssetPartitionStatus.MATERIALIZED
        }
    # The days after the range were never planned: neither materialized nor failed.
    assert _status(embedded, MRR_DAILY, ["2026-03-11"], daily_partitions) == {None}

    # Each check ran once per run over its window (not once per day), and passed; the MRR
    # identity says how many days it checked: the window's, for the one workspace.
    evaluations: Counter[tuple[str, str]] = Counter()
    identity_days = []
    for run in embedded.get_runs():
        for entry in embedded.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ):
            data = entry.get_dagster_event().asset_check_evaluation_data
            evaluations[(run.run_id, data.asset_check_key.to_user_string())] += 1
            assert data.passed or data.severity == dg.AssetCheckSeverity.WARN, data
            if data.check_name == "movement_identity_holds":
                identity_days.append(data.metadata["days_checked"].value)
    assert evaluations and set(evaluations.values()) == {1}
    assert identity_days == [len(DAYS)]


def test_a_failed_backfill_leaves_its_range_failed_until_a_run_materializes_it(
    embedded: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finance_pipeline.metrics import mrr_assets

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("MRR window failed (test)")

    with monkeypatch.context() as m:
        m.setattr(mrr_assets, "compute_mrr_window", broken)
        with pytest.raises(demo.PhaseFailed, match='step "mrr_marts" failed'):
            demo.backfill_history(embedded, FIRST, LAST, demo.Progress(total=3))
    # Every day of the failed run's range shows failed, for each MRR mart; the core tables it
    # built before the MRR step are materialized.
    for name in mrr_assets.MRR_TABLES:
        key = dg.AssetKey(["mart", name])
        assert _status(embedded, key, DAYS, daily_partitions) == {AssetPartitionStatus.FAILED}
        assert not embedded.get_materialized_partitions(key)
    assert embedded.get_latest_materialization_event(dg.AssetKey(["core", "ledger"]))

    # A later run over part of the range materializes those days; the rest stays failed.
    demo.backfill_history(embedded, date(2026, 2, 1), LAST, demo.Progress(total=3))
    redone = [d for d in DAYS if d >= "2026-02-01"]
    statuses = embedded.get_status_by_partition(MRR_DAILY, DAYS, daily_partitions)
    assert {statuses[d] for d in redone} == {AssetPartitionStatus.MATERIALIZED}
    assert {statuses[d] for d in DAYS if d < "2026-02-01"} == {AssetPartitionStatus.FAILED}

"""The embedded event log's batch writes leave the instance as Dagster's own SQLite storage does
when it stores the same run's events one by one: the same events per type and day, the same
latest materialization and asset entry, the same partition status, the same event tags."""

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from finance_pipeline.dagster_storage import BatchingSqliteEventLogStorage

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily_table(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """A range of days written in one run, with metadata and a tag on every day's event."""
    days = len(context.partition_keys)
    return dg.MaterializeResult(metadata={"days": days}, tags={"dagster/code_version": "v1"})


@dg.asset_check(asset=daily_table, description="The window's days were written.")
def daily_table_written(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """One evaluation per run, over the run's window."""
    return dg.AssetCheckResult(passed=True, metadata={"checked": "window"})


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def broken_table(context: dg.AssetExecutionContext) -> None:
    """A range of days whose run fails."""
    raise RuntimeError("broken")


def _instance(home: Path, batching: bool) -> dg.DagsterInstance:
    home.mkdir()
    if batching:
        (home / "dagster.yaml").write_text(
            "event_log_storage:\n"
            "  module: finance_pipeline.dagster_storage\n"
            "  class: BatchingSqliteEventLogStorage\n"
            f"  config:\n    base_dir: {home / 'history' / 'runs'}\n"
        )
    return dg.DagsterInstance.from_config(str(home))


def _state(instance: dg.DagsterInstance, labels: dict[str, str]) -> dict[str, object]:
    """What the UI and the asset daemon read back from the event log (run ids as `labels`: the
    two instances' ids differ)."""
    state: dict[str, object] = {}
    keys = DAYS.get_partition_keys_in_range(dg.PartitionKeyRange("2026-01-01", "2026-01-12"))
    for asset in (daily_table, broken_table):
        key = asset.key
        records = {
            kind.value: sorted(
                (r.partition_key or "", labels[r.run_id])
                for r in instance.fetch_materializations(key, limit=1000).records
            )
            if kind is dg.DagsterEventType.ASSET_MATERIALIZATION
            else sorted(
                (r.partition_key or "", labels[r.run_id])
                for r in instance.get_event_records(
                    dg.EventRecordsFilter(event_type=kind, asset_key=key)
                )
            )
            for kind in (
                dg.DagsterEventType.ASSET_MATERIALIZATION,
                dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            )
        }
        latest = instance.get_latest_materialization_event(key)
        entry = instance.get_asset_records([key])
        state[key.to_user_string()] = {
            "records": records,
            "latest": None
            if latest is None
            else (
                labels[latest.run_id],
                latest.asset_materialization.partition,
                dict(latest.asset_materialization.metadata),
                # The data version hashes the run's own id: it differs between the instances.
                {
                    k: v
                    for k, v in (latest.asset_materialization.tags or {}).items()
                    if k != "dagster/data_version"
                },
            ),
            "last_run_id": labels[entry[0].asset_entry.last_run_id] if entry else None,
            # The asset entry names the index row of the latest materialization (its id).
            "entry_is_latest_row": bool(entry)
            and latest is not None
            and entry[0].asset_entry.last_materialization_record.storage_id
            == instance.fetch_materializations(key, limit=1).records[0].storage_id,
            "status": instance.get_status_by_partition(key, keys, DAYS),
            "materialized": instance.get_materialized_partitions(key),
        }
    # The check's executions: planned rows per day of each run's window, the evaluations.
    check_key = dg.AssetCheckKey(daily_table.key, "daily_table_written")
    state["check"] = sorted(
        (r.partition or "", labels[r.run_id], r.status.value)
        for r in instance.event_log_storage.get_asset_check_execution_history(check_key, 1000)
    )
    return state


def _run(instance: dg.DagsterInstance, asset: dg.AssetsDefinition, first: str, last: str) -> str:
    result = dg.materialize(
        [asset, daily_table_written] if asset is daily_table else [asset],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        raise_on_error=False,
    )
    return result.run_id


def test_batched_events_leave_the_instance_as_events_stored_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    plain = _instance(tmp_path / "plain", batching=False)
    batching = _instance(tmp_path / "batching", batching=True)
    assert isinstance(batching.event_log_storage, BatchingSqliteEventLogStorage)
    assert type(plain.event_log_storage) is not BatchingSqliteEventLogStorage
    calls: list[int] = []
    store_batch = BatchingSqliteEventLogStorage.store_event_batch

    def counted(self: BatchingSqliteEventLogStorage, events: list) -> None:
        calls.append(len(events))
        store_batch(self, events)

    monkeypatch.setattr(BatchingSqliteEventLogStorage, "store_event_batch", counted)

    states = []
    for instance in (plain, batching):
        run_ids = [
            _run(instance, daily_table, "2026-01-01", "2026-01-10"),
            _run(instance, broken_table, "2026-01-03", "2026-01-08"),
            _run(instance, daily_table, "2026-01-09", "2026-01-12"),
            _run(instance, broken_table, "2026-01-05", "2026-01-06"),
        ]
        states.append(_state(instance, {run_id: f"run{n}" for n, run_id in enumerate(run_ids)}))
        instance.dispose()
    assert states[0]["check"] == states[1]["check"]
    for name in ("daily_table", "broken_table"):
        for part in states[0][name]:
            assert states[0][name][part] == states[1][name][part], (name, part)
    # The batching instance did write batches (each run's planned days, each output's days).
    assert calls and max(calls) >= 10
    # Dagster plans the check per day of the window (10 + 4 rows) and stores its evaluation once
    # per run, for the window.
    assert Counter(status for _, _, status in states[1]["check"]) == {
        "PLANNED": 14,
        "SUCCEEDED": 2,
    }
    statuses = {
        v for name in ("daily_table", "broken_table") for v in states[1][name]["status"].values()
    }
    assert statuses == {
        AssetPartitionStatus.MATERIALIZED,
        AssetPartitionStatus.FAILED,
        None,
    }

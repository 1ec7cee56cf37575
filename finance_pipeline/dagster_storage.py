"""The embedded Dagster instance's event log: Dagster's SQLite storage, writing a batch of asset
events in one transaction per database file instead of one per event.

A backfill of a range of days in one run stores one materialization event per asset and day
(that is how the UI knows which days are materialized, and which failed). Dagster's SQLite
storage writes each event on its own: open the run's database, insert, commit, close, then the
same again in the cross-run index. Measured on the demo's backfill (733 days x 10 assets), that
was most of the run's time (bench/README.md, "Dagster bookkeeping: the demo backfill").

Dagster hands the events of one output's partitions, and the planned events of a run, to
`store_event_batch` when `DAGSTER_EVENT_BATCH_SIZE` is set (dagster-postgres implements it; the
SQLite storage inherits a loop over `store_event`). This subclass implements it with the same
rows, tags and asset-key entries `store_event` writes, one transaction per database file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from dagster import _check as check
from dagster._core.events import ASSET_EVENTS, BATCH_WRITABLE_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData, serialize_value

if TYPE_CHECKING:
    from dagster._core.events import AssetCheckEvaluationPlanned

# Events Dagster buffers before handing them over (one output's partitions, a run's planned
# events): a run of 733 days hands each output's 733 materializations over in one batch.
EVENT_BATCH_SIZE = "1000"


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log storage whose `store_event_batch` writes each database file once."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        # Dagster reads the batch size from the environment only, at each event; the processes
        # that open this storage (the demo, the daemon, the webserver, the runs they launch)
        # batch with it unless the operator set another size.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchingSqliteEventLogStorage:
        """The storage dagster.yaml names (the parent builds its own class here)."""
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store the events as `store_event` would: the asset events of one run in one
        transaction per database file, any other event (a run's planned check evaluations come
        in the same batch as its planned materializations) on its own."""
        batched = [e for e in events if _batchable(e) and e.run_id == events[0].run_id]
        for event in events:
            if not (_batchable(event) and event.run_id == events[0].run_id):
                self.store_event(event)
        if len(batched) < 2:
            for event in batched:
                self.store_event(event)
            return
        rows = [self._event_to_row(e) for e in batched]
        # The index shard first: if it fails nothing of the batch is stored, and Dagster stores
        # the events one by one instead (handle_new_event).
        with self.index_transaction() as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
            # From the first insert to the commit this transaction holds SQLite's write lock, so
            # the rows took consecutive ids ending at the last one; checked, never assumed.
            last_id = int(conn.execute(sa.text("SELECT last_insert_rowid()")).scalar_one())
            ids = list(range(last_id - len(rows) + 1, last_id + 1))
            stored = conn.execute(
                sa.select(sa.func.count())
                .select_from(SqlEventLogStorageTable)
                .where(
                    SqlEventLogStorageTable.c.id.between(ids[0], ids[-1]),
                    SqlEventLogStorageTable.c.run_id == batched[0].run_id,
                )
            ).scalar_one()
            if stored != len(rows):
                raise RuntimeError(f"batch of {len(rows)} events took non-consecutive ids")
            self._store_asset_event_tags(conn, batched, ids)
            # The asset-key entry keeps the last event of each kind per asset (as the events
            # stored one by one would leave it, and as dagster-postgres's batch does).
            last: dict[tuple[str, str], int] = {}
            for i, e in enumerate(batched):
                key = e.get_dagster_event().asset_key
                last[(key.to_string() if key else "", str(e.dagster_event_type))] = i
            for i in sorted(last.values()):
                self._store_asset_event(conn, batched[i], ids[i])
        with self.run_connection(batched[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        """One planned row per partition of the run, as Dagster writes them, with the event
        serialized once for all of them (Dagster serializes it again for each day)."""
        planned = cast(
            "AssetCheckEvaluationPlanned", check.not_none(event.dagster_event).event_specific_data
        )
        partition_keys: Sequence[str | None] = (
            planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        )
        serialized = serialize_value(event)
        timestamp = self._event_insert_timestamp(event)
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert(),
                [
                    dict(
                        asset_key=planned.asset_key.to_string(),
                        check_name=planned.check_name,
                        partition=partition_key,
                        run_id=event.run_id,
                        execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                        evaluation_event=serialized,
                        evaluation_event_timestamp=timestamp,
                        evaluation_event_storage_id=event_id,
                    )
                    for partition_key in partition_keys
                ],
            )


def _batchable(event: EventLogEntry) -> bool:
    """An asset event (materialization, observation, planned, failed) that store_event writes to
    the run's file and the index only."""
    return (
        event.dagster_event_type in BATCH_WRITABLE_EVENTS & ASSET_EVENTS
        and event.get_dagster_event().asset_key is not None
    )

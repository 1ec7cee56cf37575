"""The first partition that can hold a number: where a full-history backfill starts."""

from __future__ import annotations

from datetime import date

from finance_pipeline.partitions import HISTORY_START, first_partition_with_data
from finance_pipeline.warehouse import Warehouse

# 2024-03-05 00:30:00 UTC
MARCH_5_0030 = 1709598600


def _insert(wh: Warehouse, sql: str, **params: object) -> None:
    with wh.begin() as db:
        db.execute(wh.text(sql), params)


def test_empty_warehouse_has_no_history(warehouse: Warehouse) -> None:
    assert first_partition_with_data(warehouse) is None


def test_history_starts_the_day_before_the_earliest_fact(warehouse: Warehouse) -> None:
    _insert(
        warehouse,
        "INSERT INTO raw.expense_events (workspace_id, external_id, subtype, amount_micros,"
        " currency, occurred_on, source, ingested_at)"
        " VALUES ('w', 'e1', 'payroll', 1, 'usd', :d, 'csv', 0)",
        d=date(2024, 6, 1),
    )
    assert first_partition_with_data(warehouse) == date(2024, 5, 31)
    # A charge at 00:30 UTC is still the previous local day west of UTC: one day earlier.
    _insert(
        warehouse,
        "INSERT INTO raw.stripe_charges (workspace_id, id, account_id, livemode, created, payload,"
        " synced_at) VALUES ('w', 'ch_1', 'acct_1', FALSE, :t, '{}', 0)",
        t=MARCH_5_0030,
    )
    assert first_partition_with_data(warehouse) == date(2024, 3, 4)


def test_history_never_starts_before_the_partitions(warehouse: Warehouse) -> None:
    _insert(
        warehouse,
        "INSERT INTO raw.manual_revenue (workspace_id, external_id, type, subtype, amount_micros,"
        " currency, date, ingested_via, ingested_at)"
        " VALUES ('w', 'm1', 'one_time', 'one_time', 1, 'usd', :d, 'csv', 0)",
        d=date(2020, 1, 1),
    )
    assert first_partition_with_data(warehouse) == date.fromisoformat(HISTORY_START)

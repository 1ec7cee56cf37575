"""Storing validated cost, expense, usage, manual-revenue and FX records (CSV landing and API).

Rows are deduplicated by external_id: a record already stored is skipped and counted as a
duplicate, never overwritten, so re-ingesting a file or replaying a request changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

from sqlalchemy.engine import Connection

from finance_pipeline.lib.ingest_validation import RECORD_TYPES
from finance_pipeline.lib.ingest_validation.records import (
    CostRecord,
    ExpenseEvent,
    FxRate,
    ManualRevenue,
    Record,
    UsageCostEvent,
)
from finance_pipeline.warehouse.db import Warehouse

# kind -> (raw table, primary key)
KIND_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "costs": ("raw.cost_records", ("workspace_id", "external_id")),
    "expenses": ("raw.expense_events", ("workspace_id", "external_id")),
    "usage_costs": ("raw.usage_costs", ("workspace_id", "external_id")),
    "revenue": ("raw.manual_revenue", ("workspace_id", "external_id")),
    "fx_rates": ("raw.fx_rates", ("base", "currency", "date")),
}
assert set(KIND_TABLES) == set(RECORD_TYPES)


@dataclass(frozen=True)
class StoreOutcome:
    """How many records were new and how many were already stored."""

    kind: str
    inserted: int
    duplicates: int


def record_row(record: Record, workspace_id: str, source: str, now: int) -> dict[str, object]:
    """The raw-table row of one validated record."""
    match record:
        case CostRecord():
            return {
                "workspace_id": workspace_id,
                "external_id": record.external_id,
                "name": record.name,
                "amount_micros": record.amount_micros,
                "currency": record.currency,
                "category": record.category,
                "is_recurring": record.is_recurring,
                "note": record.note,
                "date": record.date,
                "customer_tag": record.customer_tag,
                "source": source,
                "ingested_at": now,
            }
        case ExpenseEvent():
            return {
                "workspace_id": workspace_id,
                "external_id": record.external_id,
                "subtype": record.subtype,
                "amount_micros": record.amount_micros,
                "currency": record.currency,
                "occurred_on": record.date,
                "vendor": record.vendor,
                "source": source,
                "ingested_at": now,
            }
        case UsageCostEvent():
            occurred = record.occurred_at
            return {
                "workspace_id": workspace_id,
                "external_id": record.external_id,
                "customer_tag": record.customer_tag,
                "model": record.model,
                "cost_micros": record.amount_micros,
                "currency": record.currency,
                "request_count": record.request_count,
                "occurred_on": record.date,
                "occurred_at": int(occurred.astimezone(UTC).timestamp()) if occurred else None,
                "source": source,
                "ingested_at": now,
            }
        case ManualRevenue():
            return {
                "workspace_id": workspace_id,
                "external_id": record.external_id,
                "type": record.type,
                "subtype": record.subtype,
                "amount_micros": record.amount_micros,
                "currency": record.currency,
                "date": record.date,
                "customer_id": record.customer_id,
                "source": record.source,
                "note": record.note,
                "ingested_via": source,
                "ingested_at": now,
            }
        case FxRate():
            return {
                "base": record.base,
                "currency": record.currency,
                "date": record.date,
                "rate": str(record.rate),
                "source": source,
                "ingested_at": now,
            }
    raise TypeError(f"not an ingest record: {record!r}")


def store_records(
    wh: Warehouse,
    db: Connection,
    kind: str,
    records: Sequence[Record],
    *,
    workspace_id: str,
    source: str,
    now: int | None = None,
) -> StoreOutcome:
    """Insert records not stored yet, inside the caller's transaction."""
    table, key = KIND_TABLES[kind]
    stamp = int(time.time()) if now is None else now
    rows = [record_row(r, workspace_id, source, stamp) for r in records]
    inserted = wh.insert_new(db, table, rows, key=key)
    return StoreOutcome(kind, inserted, len(rows) - inserted)

"""Comparing a warehouse after a fault with one after a clean run, on SQLite and PostgreSQL: every
table the assets write (raw, core, mart and their companions), row for row, write stamps aside."""

from __future__ import annotations

import json
import re

from finance_pipeline.warehouse import Warehouse
from finance_pipeline.warehouse.tables import COMPANIONS, TABLES, Table

# Stamped at write time, not derived from the data (as test_backup_restore.VOLATILE and
# test_celery_refresh.STAMP): equal across two runs only by accident.
STAMP = re.compile(r"(_at|write_id)$")


def written_tables(layers: tuple[str, ...] = ("raw", "core", "mart")) -> list[Table]:
    """The asset-written tables of these layers, each once."""
    out: dict[str, Table] = {}
    for table in [*TABLES.values(), *(c for cs in COMPANIONS.values() for c in cs)]:
        if table.name.split(".")[0] in layers:
            out.setdefault(table.name, table)
    return sorted(out.values(), key=lambda t: t.name)


def snapshot(wh: Warehouse, layers: tuple[str, ...] = ("core", "mart")) -> dict[str, list[str]]:
    """Every row of every written table of `layers`, canonical JSON without stamps, sorted."""
    out = {}
    for table in written_tables(layers):
        rows = [
            json.dumps(
                {k: v for k, v in r.items() if not STAMP.search(k)}, sort_keys=True, default=str
            )
            for r in wh.rows(f"SELECT * FROM {table.name}")
        ]
        out[table.name] = sorted(rows)
    return out


def duplicate_keys(
    wh: Warehouse, layers: tuple[str, ...] = ("raw", "core", "mart")
) -> dict[str, int]:
    """Rows beyond the first per primary key, by table (only tables that have any)."""
    out = {}
    for table in written_tables(layers):
        if not table.primary_key:
            continue
        key = ", ".join(table.primary_key)
        extra = wh.scalar(
            f"SELECT COALESCE(SUM(n - 1), 0) FROM"
            f" (SELECT COUNT(*) AS n FROM {table.name} GROUP BY {key}) AS g"
        )
        if int(extra or 0):
            out[table.name] = int(extra)
    return out

"""Whole tables as comparable row sets: two warehouses hold the same data when their snapshots are
equal. Columns stamped at write time are left out; they differ between two equal runs.

`table_rows` reads every table of a schema as it is on disk (backup/restore, killed runs);
`snapshot` and `duplicate_keys` read the tables the assets declare (warehouse/tables.py), so a
fault test also checks each table's primary key."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from finance_pipeline.warehouse import Warehouse
from finance_pipeline.warehouse.tables import COMPANIONS, TABLES, Table

# Stamped at write time, not derived from the data: equal across a rerun only by accident.
VOLATILE = frozenset({"created_at", "computed_at", "write_id", "built_at"})


def _canonical(row: Mapping[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def schema_tables(wh: Warehouse, schema: str) -> list[str]:
    """The layer-qualified names of a schema's tables (`raw__x` files on SQLite are `raw.x`)."""
    inspector = sa.inspect(wh.engine)
    if wh.is_sqlite:
        prefix = f"{schema}__"
        return [
            f"{schema}.{t[len(prefix) :]}"
            for t in inspector.get_table_names()
            if t.startswith(prefix)
        ]
    return [f"{schema}.{t}" for t in inspector.get_table_names(schema=schema)]


def table_rows(
    wh: Warehouse,
    schemas: Iterable[str] = ("core", "mart"),
    *,
    tables: Iterable[str] = (),
    ignore: Iterable[str] = VOLATILE,
    ignore_in: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every table of `schemas` plus the named `tables` ("schema.table"), each as its rows sorted,
    without the `ignore` columns (and, per table, the `ignore_in[table]` ones)."""
    names = [t for s in schemas for t in schema_tables(wh, s)]
    out = {}
    for t in sorted({*names, *tables}):
        drop = {*ignore, *(ignore_in or {}).get(t, ())}
        rows = [
            {k: v for k, v in r.items() if k not in drop} for r in wh.rows(f"SELECT * FROM {t}")
        ]
        out[t] = sorted(rows, key=_canonical)
    return out


def duplicate_rows(snapshot: Mapping[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Per table, how many rows repeat another row of it (0 everywhere when nothing doubled)."""
    out = {}
    for t, rows in snapshot.items():
        extra = len(rows) - len({_canonical(r) for r in rows})
        if extra:
            out[t] = extra
    return out


# The same stamps by name pattern, for every declared table (any `*_at` column is a stamp there).
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

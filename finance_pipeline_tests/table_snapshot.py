"""Whole tables as comparable row sets: two warehouses hold the same data when their snapshots are
equal. Columns stamped at write time are left out; they differ between two equal runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from finance_pipeline.warehouse import Warehouse

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

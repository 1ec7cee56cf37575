"""What the warehouse holds, to show that a rejected input wrote nothing."""

from __future__ import annotations

import sqlalchemy as sa

from finance_pipeline.warehouse import Warehouse

LAYERS = ("raw", "core", "mart", "app")
# Bookkeeping of the request itself, not stored data: a refused request may count against the rate
# limit, and an Idempotency-Key row is taken (and released) around it.
BOOKKEEPING = frozenset({"app.idempotency_keys", "app.rate_limit_windows"})


def data_tables(wh: Warehouse) -> list[str]:
    """Every layer-qualified table of the warehouse but the request bookkeeping."""
    insp = sa.inspect(wh.engine)
    if wh.is_sqlite:
        names = [n.replace("__", ".", 1) for n in insp.get_table_names() if "__" in n]
    else:
        names = [f"{layer}.{t}" for layer in LAYERS for t in insp.get_table_names(schema=layer)]
    return sorted(n for n in names if n.split(".")[0] in LAYERS and n not in BOOKKEEPING)


def stored_counts(wh: Warehouse, tables: list[str] | None = None) -> dict[str, int]:
    """Row count of each data table (one query)."""
    tables = tables if tables is not None else data_tables(wh)
    union = " UNION ALL ".join(f"SELECT '{t}' AS t, COUNT(*) AS n FROM {t}" for t in tables)
    return {r["t"]: int(r["n"]) for r in wh.rows(union)}

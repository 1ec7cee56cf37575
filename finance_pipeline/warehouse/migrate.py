"""Apply the DDL in `sql/` once, in order, each file in one transaction; re-running is harmless.

A file `NNNN_name.sql` is portable SQL with layer-qualified names; `NNNN_name.postgresql.sql` or
`NNNN_name.sqlite.sql` beside it replaces it on that dialect. An applied file whose content changed
is an error: migrations are append-only.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from finance_pipeline.warehouse.db import Warehouse, WarehouseError
from finance_pipeline.warehouse.decode import SQL_DIR

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(sqlite|postgresql))?\.sql$")
# Arbitrary constant: serializes concurrent migrators on one PostgreSQL database.
_PG_LOCK_ID = 727_001


@dataclass(frozen=True)
class Migration:
    """One numbered DDL file as it applies to a dialect."""

    version: str
    name: str
    path: Path

    def statements(self, wh: Warehouse) -> list[str]:
        """The file's statements, rewritten for the warehouse dialect."""
        text = self.path.read_text()
        text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        out = []
        for stmt in text.split(";"):
            stmt = stmt.strip()
            if not stmt:
                continue
            if wh.is_sqlite:
                if stmt.upper().startswith("CREATE SCHEMA"):
                    continue
                stmt = stmt.replace("JSONB", "TEXT")
            out.append(wh.sql(stmt))
        return out

    def checksum(self) -> str:
        """sha256 of the file, to detect edits of an applied migration."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(wh: Warehouse, sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The migrations for this dialect, ordered by version."""
    if not sql_dir.is_dir():
        raise WarehouseError(f"DDL folder {sql_dir} is missing")
    chosen: dict[str, Migration] = {}
    for path in sorted(sql_dir.iterdir()):
        m = _FILE.match(path.name)
        if not m:
            continue
        version, name, dialect = m.groups()
        if dialect and dialect != wh.dialect:
            continue
        if version in chosen and not dialect:
            continue  # a dialect-specific file already replaced the portable one
        chosen[version] = Migration(version, name, path)
    return [chosen[v] for v in sorted(chosen)]


def apply_migrations(wh: Warehouse, sql_dir: Path = SQL_DIR) -> list[str]:
    """Bring the warehouse schema up to date; returns the versions applied now."""
    applied_now: list[str] = []
    migrations = discover(wh, sql_dir)
    with wh.begin() as conn:
        if not wh.is_sqlite:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
            conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS app"))
        conn.execute(
            wh.text(
                "CREATE TABLE IF NOT EXISTS app.schema_migrations ("
                " version TEXT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
                " applied_at BIGINT NOT NULL)"
            )
        )
    for mig in migrations:
        with wh.begin() as conn:
            if not wh.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
            row = conn.execute(
                wh.text("SELECT checksum FROM app.schema_migrations WHERE version = :v"),
                {"v": mig.version},
            ).first()
            if row is not None:
                if row[0] != mig.checksum():
                    raise WarehouseError(
                        f"migration {mig.path.name} changed after it was applied; "
                        "add a new numbered file instead of editing an applied one"
                    )
                continue
            for stmt in mig.statements(wh):
                conn.exec_driver_sql(stmt)
            conn.execute(
                wh.text(
                    "INSERT INTO app.schema_migrations (version, name, checksum, applied_at)"
                    " VALUES (:v, :n, :c, :t)"
                ),
                {"v": mig.version, "n": mig.name, "c": mig.checksum(), "t": int(time.time())},
            )
            applied_now.append(mig.version)
    return applied_now

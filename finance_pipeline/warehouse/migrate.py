"""Apply the DDL in `sql/` once, in order, each file in one transaction; re-running is harmless.

A file `NNNN_name.sql` is portable SQL with layer-qualified names; `NNNN_name.postgresql.sql` or
`NNNN_name.sqlite.sql` beside it replaces it on that dialect. An applied file whose content changed
is an error: migrations are append-only. Only statements count: the checksum ignores comments and
blank lines, so a comment can be reworded without invalidating warehouses that applied the file.
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
_CHECKSUM_SCHEME = "stmt1:"
# Warehouses migrated before checksums ignored comments stored the sha256 of the whole file. These
# are the files whose comments were reworded since (statements unchanged), as they were applied.
_LEGACY_FILE_SHA256 = {
    "0001_foundation.sql": "47ef3c99976be356a9c750c9d01bc615c8efab40216b52efe0f5c23468eea939",
    "0002_core_and_mrr.sql": "898bf70e31e487a2c5d7f5f343af3f8c647bc6c82b3f34a167021f4a80dbf50b",
    "0003_cfo_revenue_alerts.sql": "840276e6ea6f79de0f8ba89ceca734818acac07033fd5e9a624ef63bd0c89632",
    "0004_margins_forecasts.sql": "4fcd93aace236c45a72f43278ac4ce248c4d54aa3bb74da1d66347b085240be8",
    "0006_alert_deliveries.sql": "1b4e2c1c5fbd69e2418e4bcf53c88b8a9f4e660e98ebcdb4431c2643f1641d88",
    "0007_memos_scenarios.sql": "31bd3b72740f40d54ed99aed558cfe0f3e232e05a34f3064836af91a5f360822",
    "0008_customer_mappings.sql": "6948a4403021e7e334b9157e32d3078cb5a554412c3f1168f5821e98b11fb456",
    "0010_mrr_fx_by_currency.sql": "ae98a8512ba480e587372a593854826631459acd8030b35f63da153bd0c8e2ff",
}


@dataclass(frozen=True)
class Migration:
    """One numbered DDL file as it applies to a dialect."""

    version: str
    name: str
    path: Path

    def _code(self) -> str:
        """The file without comment and blank lines: what the database executes."""
        lines = (line.strip() for line in self.path.read_text().splitlines())
        return "\n".join(line for line in lines if line and not line.startswith("--"))

    def statements(self, wh: Warehouse) -> list[str]:
        """The file's statements, rewritten for the warehouse dialect."""
        text = self._code()
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
        """sha256 of the statements (comments ignored), to detect edits of an applied migration."""
        return _CHECKSUM_SCHEME + hashlib.sha256(self._code().encode()).hexdigest()

    def matches(self, stored: str) -> bool:
        """Whether a stored checksum (this scheme, or a legacy whole-file one) is this file's."""
        if stored.startswith(_CHECKSUM_SCHEME):
            return stored == self.checksum()
        whole_file = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return stored in (whole_file, _LEGACY_FILE_SHA256.get(self.path.name))


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
                if not mig.matches(row[0]):
                    raise WarehouseError(
                        f"migration {mig.path.name} changed after it was applied; "
                        "add a new numbered file instead of editing an applied one"
                    )
                if row[0] != mig.checksum():
                    conn.execute(
                        wh.text(
                            "UPDATE app.schema_migrations SET checksum = :c WHERE version = :v"
                        ),
                        {"c": mig.checksum(), "v": mig.version},
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


_MIGRATED: dict[str, Warehouse] = {}


def warehouse_for(url: str) -> Warehouse:
    """One migrated Warehouse per URL per process (engines are pooled and thread-safe)."""
    if url not in _MIGRATED:
        wh = Warehouse(url)
        apply_migrations(wh)
        _MIGRATED[url] = wh
    return _MIGRATED[url]

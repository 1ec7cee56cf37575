"""Warehouse connection, layer-qualified table names and portable upserts.

Layers are PostgreSQL schemas (`raw.stripe_invoices`); SQLite has no schemas, so the same table is
`raw__stripe_invoices` there. Every name goes through `Warehouse.name` so code never hard-codes one.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

LAYERS = ("app", "raw", "core", "mart")
_QUALIFIED = re.compile(r"\b(app|raw|core|mart)\.([a-z_][a-z0-9_]*)\b")
# Columns holding JSON documents; SQLite stores them as TEXT, PostgreSQL as JSONB.
_JSON_COLUMN = re.compile(r"^(payload|.*_json)$")


class WarehouseError(RuntimeError):
    """The warehouse is unreachable, misconfigured or its schema is not what the code expects."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's implicit transactions skip DDL and SELECT; we issue BEGIN ourselves (see _begin)
    # so that migrations and window replacements are atomic.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # Write transactions take the write lock up front (IMMEDIATE), so two writers wait on the busy
    # timeout instead of failing on a lock upgrade; reads stay deferred and never block in WAL mode.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


class Warehouse:
    """A handle on the warehouse at one SQLAlchemy URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = sa.make_url(url)
        if self.url.drivername == "postgresql":
            # A bare postgresql:// would silently pick a driver; name psycopg 3 explicitly.
            self.url = self.url.set(drivername="postgresql+psycopg")
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise WarehouseError(
                f"unsupported warehouse {self.dialect!r}: use sqlite or postgresql"
            )
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "json_serializer": json_text}
        if self.dialect == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        self._tables: dict[str, sa.Table] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Warehouse({self.url.render_as_string(hide_password=True)!r})"

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded default."""
        return self.dialect == "sqlite"

    def name(self, qualified: str) -> str:
        """Physical name of `layer.table` on this dialect (`raw__x` on SQLite)."""
        layer, _, table = qualified.partition(".")
        if layer not in LAYERS or not table:
            raise WarehouseError(f"table names are layer-qualified (raw.x), got {qualified!r}")
        return f"{layer}__{table}" if self.is_sqlite else qualified

    def sql(self, text: str) -> str:
        """Rewrite layer-qualified names in hand-written SQL for this dialect."""
        if not self.is_sqlite:
            return text
        # Rewrite outside single-quoted literals only: 'raw.stripe_charges' as a value stays as is.
        parts = text.split("'")
        for i in range(0, len(parts), 2):
            parts[i] = _QUALIFIED.sub(lambda m: f"{m.group(1)}__{m.group(2)}", parts[i])
        return "'".join(parts)

    def text(self, text: str) -> sa.TextClause:
        """`sa.text` of hand-written SQL with layer-qualified names rewritten."""
        return sa.text(self.sql(text))

    def table(self, qualified: str) -> sa.Table:
        """The reflected table `layer.name` (cached); JSON columns typed for this dialect."""
        with self._lock:
            if qualified in self._tables:
                return self._tables[qualified]
            layer, _, name = qualified.partition(".")
            md = sa.MetaData()
            try:
                if self.is_sqlite:
                    tbl = sa.Table(self.name(qualified), md, autoload_with=self.engine)
                else:
                    tbl = sa.Table(name, md, schema=layer, autoload_with=self.engine)
            except sa.exc.NoSuchTableError as exc:
                raise WarehouseError(
                    f"table {qualified} does not exist: run `finance-pipeline migrate` first"
                ) from exc
            for col in tbl.columns:
                if _JSON_COLUMN.match(col.name) and self.is_sqlite:
                    col.type = sa.JSON()
            self._tables[qualified] = tbl
            return tbl

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One write transaction: everything inside commits together or not at all."""
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("write", None)

    def upsert(
        self,
        conn: Connection,
        qualified: str,
        rows: Sequence[Mapping[str, Any]],
        key: Sequence[str],
        *,
        update: Iterable[str] | None = None,
    ) -> int:
        """Insert rows, replacing existing ones with the same key; returns rows written."""
        if not rows:
            return 0
        tbl = self.table(qualified)
        ins = (postgresql.insert if not self.is_sqlite else sqlite.insert)(tbl)
        cols = list(update) if update is not None else [c for c in rows[0] if c not in key]
        stmt = (
            ins.on_conflict_do_update(
                index_elements=list(key), set_={c: ins.excluded[c] for c in cols}
            )
            if cols
            else ins.on_conflict_do_nothing(index_elements=list(key))
        )
        total = 0
        # Chunk so one statement stays well under driver parameter limits.
        for start in range(0, len(rows), 1000):
            conn.execute(stmt, list(rows[start : start + 1000]))
            total += len(rows[start : start + 1000])
        return total

    def insert_new(
        self,
        conn: Connection,
        qualified: str,
        rows: Sequence[Mapping[str, Any]],
        key: Sequence[str],
    ) -> int:
        """Insert only rows whose key is not stored yet; returns how many were new."""
        if not rows:
            return 0
        tbl = self.table(qualified)
        ins = (postgresql.insert if not self.is_sqlite else sqlite.insert)(tbl)
        # RETURNING counts what was really inserted; executemany rowcounts differ between drivers.
        stmt = ins.on_conflict_do_nothing(index_elements=list(key)).returning(tbl.c[key[0]])
        inserted = 0
        for start in range(0, len(rows), 1000):
            res = conn.execute(stmt, list(rows[start : start + 1000]))
            inserted += len(res.all())
        return inserted

    def scalar(self, sql: str, **params: Any) -> Any:
        """Run a one-value query with layer-qualified names."""
        with self.engine.connect() as conn:
            return conn.execute(self.text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Run a query with layer-qualified names and return plain dict rows."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(self.text(sql), params)]

    def dispose(self) -> None:
        """Close pooled connections (tests drop databases afterwards)."""
        self.engine.dispose()


def _json_default(value: Any) -> Any:
    # The Stripe SDK turns `*_decimal` strings into Decimal; store them back as exact strings.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_text(doc: Any) -> str:
    """JSON for JSON/JSONB columns, with Decimals as exact strings (as Stripe sends them)."""
    return json.dumps(doc, default=_json_default, separators=(",", ":"))


def dumps(doc: Any) -> str:
    """Canonical JSON (sorted keys, compact) so checksums of payloads are stable."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)

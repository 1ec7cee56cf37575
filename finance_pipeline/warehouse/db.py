"""Warehouse connection, layer-qualified table names and portable upserts.

Layers are PostgreSQL schemas (`raw.stripe_invoices`); SQLite has no schemas, so the same table is
`raw__stripe_invoices` there. Every name goes through `Warehouse.name` so code never hard-codes one.
Reads (`rows`, `rows_in`, `read`, `scalar`) return JSON, dates and booleans decoded on both dialects
(`warehouse.decode`), so callers never see how a dialect stores them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import operator
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.engine.cursor import CursorFetchStrategy

from finance_pipeline.warehouse.decode import JSON_COLUMN, Decoder, sqlite_decoders

LAYERS = ("app", "raw", "core", "mart")
_QUALIFIED = re.compile(r"\b(app|raw|core|mart)\.([a-z_][a-z0-9_]*)\b")


class WarehouseError(RuntimeError):
    """The warehouse is unreachable, misconfigured or its schema is not what the code expects."""


class JsonText(str):
    """A JSON document already encoded (by `json_doc`): JSON columns store it as-is, not re-encoded."""

    __slots__ = ()


# Rows per executemany call: bounds the parameter list a driver holds at once.
_UPSERT_CHUNK = 1000
# Bind parameters per IN list: far below SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500
# Rows fetched from the driver per call when reading a result.
_FETCH_BATCH = 5000


@dataclass(frozen=True)
class _UpsertPlan:
    """A compiled driver-level upsert for one table and column list, reused for every batch."""

    # One row's INSERT ... ON CONFLICT, run with executemany: SQLite reuses one prepared
    # statement and psycopg pipelines the rows (measured faster than multi-row VALUES or unnest).
    sql: str
    getter: Callable[[Mapping[str, Any]], Any]
    # (position, converter) for columns whose values the driver cannot take as they are.
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]


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


# A pooled PostgreSQL connection idle longer than this is pinged before use (see _ping_when_idle).
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it sat idle over PING_AFTER_IDLE_SECONDS.

    SQLAlchemy's pool_pre_ping pings on every checkout: a round trip per query, a third of the
    API's round trips on its short reads. Connections are lost while idle (a server restart, an
    idle timeout), so only those are checked; a failed ping discards the connection and the pool
    hands out a fresh one, as pre-ping does. A connection that broke within the last seconds of
    use fails its next statement instead (one error; SQLAlchemy then replaces the pool).
    """

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(_dbapi: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # a new connection, or one just used
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"idle connection lost: {exc}") from exc


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
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        else:
            _ping_when_idle(self.engine)
        # `rows` and `scalar` of a lone SELECT run on PostgreSQL in autocommit: one round trip
        # instead of BEGIN, the statement and ROLLBACK. A single statement is its own
        # transaction with its own snapshot either way, so the answer is the same.
        self._reads: Engine = (
            self.engine
            if self.dialect == "sqlite"
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._tables: dict[str, sa.Table] = {}
        self._plans: dict[tuple[Any, ...], _UpsertPlan | None] = {}
        # Result column names -> the decoders of their encoded columns (SQLite only).
        self._decoders: dict[tuple[str, ...], tuple[tuple[int, Decoder], ...]] = {}
        self._lock = threading.Lock()
        # SQLite has one writer at a time: threads of this process queue here for it instead of
        # polling in SQLite's busy handler (sleeps of up to 100 ms after the lock is free).
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        # Set by `queue_writers_across_processes`: the same queue for other processes' writers.
        self._write_fd: int | None = None
        self._write_depth = 0

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
                if JSON_COLUMN.match(col.name) and self.is_sqlite:
                    col.type = sa.JSON()
            self._tables[qualified] = tbl
            return tbl

    def queue_writers_across_processes(self) -> None:
        """SQLite: writers of every process that calls this on the same file queue on one lock
        file (a blocking `flock`, woken when it is free) instead of polling in SQLite's busy
        handler. For a sync split over processes (`StripeStreamSync.sync_many`)."""
        database = self.url.database
        if self._write_lock is None or not database or database == ":memory:":
            return
        with self._write_lock:
            if self._write_fd is not None:
                return
            digest = hashlib.sha256(str(Path(database).resolve()).encode()).hexdigest()[:24]
            path = Path(tempfile.gettempdir()) / f"finance_pipeline-sqlite-{digest}.lock"
            self._write_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One write transaction: everything inside commits together or not at all."""
        if self._write_lock is None:
            with self._transaction() as conn:
                yield conn
            return
        # Bounded like SQLite's busy timeout: past it, SQLite's own locking decides as before.
        acquired = self._write_lock.acquire(timeout=60)
        fd = self._write_fd if acquired else None
        try:
            if fd is not None:
                self._write_depth += 1
                if self._write_depth == 1:
                    fcntl.flock(fd, fcntl.LOCK_EX)
            with self._transaction() as conn:
                yield conn
        finally:
            if fd is not None:
                self._write_depth -= 1
                if self._write_depth == 0:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            if acquired:
                self._write_lock.release()

    def lock_windows(
        self, conn: Connection, tables: Iterable[str], workspace_ids: Iterable[str]
    ) -> None:
        """Hold each (table, workspace) a window replacement rewrites until `conn`'s transaction ends.

        Two runs restating the same window at once (a double click, a schedule beside a backfill,
        any run the queue's one-run-per-workspace limit does not see) each delete the window and
        insert it again. Under PostgreSQL's READ COMMITTED the second delete cannot see the first
        one's uncommitted inserts, so the second insert then hits the primary key (the run fails)
        or, in a table without one, doubles the rows. A transaction-scoped advisory lock taken
        before the delete makes the second wait for the first to commit; its delete (a new
        statement, a new snapshot) then sees and replaces the first one's rows. Keys are taken in
        sorted order, so two transactions never wait on each other. SQLite needs none: a write
        transaction holds the database's single write lock from BEGIN IMMEDIATE on.
        """
        if self.is_sqlite:
            return
        ids = tuple(workspace_ids)
        keys = sorted({_window_lock_key(t, w) for t in tables for w in ids})
        for key in keys:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
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
        """Insert rows, replacing existing ones with the same key; returns rows written.

        Every row must have the columns of the first one. Values of JSON columns may be
        `JsonText` (encoded once by the caller) or any JSON-able object.
        """
        if not rows:
            return 0
        columns = tuple(rows[0])
        upd = tuple(update) if update is not None else None
        plan = self._upsert_plan(qualified, columns, tuple(key), upd)
        if plan is None:
            if not key:
                conn.execute(self.table(qualified).insert(), list(rows))
                return len(rows)
            return self._upsert_core(conn, qualified, rows, key, upd)
        getter, converters = plan.getter, plan.converters
        total = 0
        for start in range(0, len(rows), _UPSERT_CHUNK):
            chunk = rows[start : start + _UPSERT_CHUNK]
            try:
                params = [getter(r) for r in chunk]
            except KeyError as exc:
                raise WarehouseError(
                    f"upsert into {qualified}: a row lacks column {exc.args[0]!r} that the "
                    f"first row has; every row must have the same columns"
                ) from None
            if converters:
                converted = []
                for values in params:
                    values = list(values)
                    for i, convert in converters:
                        values[i] = convert(values[i])
                    converted.append(tuple(values))
                params = converted
            conn.exec_driver_sql(plan.sql, params)
            total += len(chunk)
        return total

    def _upsert_plan(
        self,
        qualified: str,
        columns: tuple[str, ...],
        key: tuple[str, ...],
        update: tuple[str, ...] | None,
    ) -> _UpsertPlan | None:
        """The cached driver-level statement for this column list (None: use SQLAlchemy Core)."""
        cache_key = (qualified, columns, key, update)
        plan = self._plans.get(cache_key, False)
        if plan is not False:
            return plan
        tbl = self.table(qualified)
        unknown = [c for c in columns if c not in tbl.c]
        if unknown:
            raise WarehouseError(f"{qualified} has no column(s) {', '.join(unknown)}")
        dialect = self.engine.dialect
        built: _UpsertPlan | None = None
        # A type that rewrites its bind in SQL cannot go through a plain placeholder.
        if not any(tbl.c[c].type._has_bind_expression for c in columns):
            prep = dialect.identifier_preparer
            mark = "?" if self.is_sqlite else "%s"
            cols = [tbl.c[c] for c in columns]
            set_cols = list(update) if update is not None else [c for c in columns if c not in key]
            conflict = ", ".join(prep.quote(k) for k in key)
            action = (
                "DO UPDATE SET "
                + ", ".join(f"{prep.quote(c)} = excluded.{prep.quote(c)}" for c in set_cols)
                if set_cols
                else "DO NOTHING"
            )
            head = (
                f"INSERT INTO {prep.format_table(tbl)} "
                f"({', '.join(prep.quote(c.name) for c in cols)}) VALUES "
            )
            row = f"({', '.join(mark for _ in cols)})"
            # No key: a plain insert (into a window the caller has just cleared).
            tail = f" ON CONFLICT ({conflict}) {action}" if key else ""
            converters = []
            for i, col in enumerate(cols):
                process = col.type._cached_bind_processor(dialect)
                if isinstance(col.type, sa.JSON):
                    converters.append((i, self._json_converter(process)))
                elif process is not None:
                    converters.append((i, process))
            getter = (
                operator.itemgetter(*columns)
                if len(columns) > 1
                else lambda row, only=columns[0]: (row[only],)
            )
            built = _UpsertPlan(head + row + tail, getter, tuple(converters))
        with self._lock:
            self._plans[cache_key] = built
        return built

    def _json_converter(self, process: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
        """Driver value of a JSON column: pre-encoded JsonText as-is, anything else as SQLAlchemy would."""
        if self.is_sqlite:

            def convert(value: Any) -> Any:
                if type(value) is JsonText:
                    return str(value)
                return process(value) if process is not None else value

            return convert
        from psycopg.types.json import Jsonb

        def convert_pg(value: Any) -> Any:
            if type(value) is JsonText:
                return Jsonb(value, dumps=str)
            return process(value) if process is not None else value

        return convert_pg

    def _upsert_core(
        self,
        conn: Connection,
        qualified: str,
        rows: Sequence[Mapping[str, Any]],
        key: Sequence[str],
        update: Iterable[str] | None,
    ) -> int:
        """The portable SQLAlchemy Core upsert, for tables the driver-level path cannot serve."""
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
        plain = [
            {k: json.loads(v) if type(v) is JsonText else v for k, v in r.items()} for r in rows
        ]
        total = 0
        # Chunk so one statement stays well under driver parameter limits.
        for start in range(0, len(plain), _UPSERT_CHUNK):
            conn.execute(stmt, plain[start : start + _UPSERT_CHUNK])
            total += len(plain[start : start + _UPSERT_CHUNK])
        return total

    def json_field(self, column: str, key: str) -> str:
        """SQL for one top-level field of a JSON column, NULL when absent: reading a field of a
        large payload without decoding it whole. Alias it `<name>_json` and reads decode it."""
        # SQLite's -> (3.38+) returns JSON text like PostgreSQL's jsonb ->, strings quoted.
        return f"{column} -> '{key}'"

    def insert(self, conn: Connection, qualified: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert rows through the cached driver-level statement (no per-row SQLAlchemy work);
        every row must have the first one's columns. For bulk rewrites of a cleared window."""
        return self.upsert(conn, qualified, rows, key=())

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

    def _engine_for(self, sql: str) -> Engine:
        """Where a lone statement runs: a SELECT on the autocommit engine, anything else
        (a write, whose caller may rely on it being rolled back) on the plain one."""
        return self._reads if sql.lstrip()[:6].upper() == "SELECT" else self.engine

    def scalar(self, sql: str, **params: Any) -> Any:
        """Run a one-value query with layer-qualified names; the value decoded (None: no row)."""
        with self._engine_for(sql).connect() as conn:
            result = conn.execute(self.text(sql), params)
            decoders = self._decoders_for(tuple(result.keys()))
            row = result.first()
        if row is None:
            return None
        value = row[0]
        if value is not None and decoders and decoders[0][0] == 0:
            value = decoders[0][1](value)
        return value

    def write_scalar(self, sql: str, **params: Any) -> Any:
        """Run one write statement as a transaction of its own; its first value (RETURNING),
        None without a returned row.

        On PostgreSQL the statement runs in autocommit: the server commits it as it ends, so the
        row locks it takes are held for the statement alone, not until this process sends a
        COMMIT (a round trip later, or much later when its thread waits for the GIL or a CPU
        meanwhile: every writer of the same row waits that long too)."""
        if self.is_sqlite:
            with self.begin() as db:
                result = db.execute(self.text(sql), params)
                row = result.first() if result.returns_rows else None
        else:
            with self._reads.connect() as conn:
                result = conn.execute(self.text(sql), params)
                row = result.first() if result.returns_rows else None
        return None if row is None else row[0]

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Run a query with layer-qualified names and return plain dict rows, values decoded."""
        with self._engine_for(sql).connect() as conn:
            return self.read(conn, sql, **params)

    def read(self, conn: Connection, sql: str, **params: Any) -> list[dict[str, Any]]:
        """`rows` on a given connection (inside a write transaction, say): decoded dict rows."""
        return self._decoded(conn.execute(self.text(sql), params))

    def _decoders_for(self, keys: tuple[str, ...]) -> tuple[tuple[int, Decoder], ...]:
        if not self.is_sqlite:
            return ()  # psycopg returns jsonb, date, boolean and numeric as Python objects
        decoders = self._decoders.get(keys)
        if decoders is None:
            decoders = self._decoders[keys] = sqlite_decoders(keys)
        return decoders

    def stream(self, sql: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """`rows` a page at a time from one cursor (a server-side one on PostgreSQL), for a
        caller that processes and drops each page: memory bounded by a page, not by the table,
        at the cost of one query. The connection stays open until the pages are consumed."""
        # A server-side cursor lives in a transaction: the plain engine, not the autocommit one.
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn = conn.execution_options(stream_results=True, max_row_buffer=_FETCH_BATCH)
            yield from self._pages(conn.execute(self.text(sql), params))

    def _decoded(self, result: Result[Any]) -> list[dict[str, Any]]:
        """Dict rows of a result, with SQLite's encoded columns decoded (one pass, no copies on
        PostgreSQL): the per-row work is what the callers' own decoding used to be."""
        out: list[dict[str, Any]] = []
        for page in self._pages(result):
            out += page
        return out

    def _pages(self, result: Result[Any]) -> Iterator[list[dict[str, Any]]]:
        """The decoded dict rows of a result, a fetched batch at a time."""
        keys = tuple(result.keys())
        decoders = self._decoders_for(keys)
        # The driver's own tuples, fetched in batches: a SQLAlchemy Row per fetched row was a
        # third of the read cost of a full rebuild (text queries have no result processors).
        # Only a plain cursor result is read from the driver: a buffered one (RETURNING, streamed
        # results) holds rows SQLAlchemy has already fetched.
        plain = type(result.cursor_strategy) is CursorFetchStrategy and result.cursor is not None
        fetch = result.cursor.fetchmany if plain else result.fetchmany
        try:
            while batch := fetch(_FETCH_BATCH):
                if not decoders:
                    yield [dict(zip(keys, row, strict=True)) for row in batch]
                    continue
                page = []
                for row in batch:
                    values = list(row)
                    for i, decode in decoders:
                        value = values[i]
                        if value is not None:
                            values[i] = decode(value)
                    page.append(dict(zip(keys, values, strict=True)))
                yield page
        finally:
            result.close()

    def rows_in(
        self, sql: str, column: str, ids: Collection[str] | None, **params: Any
    ) -> list[dict[str, Any]]:
        """`sql` (ending in a WHERE clause) for every row, or, given `ids`, for the rows whose
        `column` is one of them, read in chunks of bind parameters (no order: callers sort)."""
        if ids is None:
            return self.rows(sql, **params)
        out: list[dict[str, Any]] = []
        todo = sorted(set(ids))
        for start in range(0, len(todo), _IN_CHUNK):
            names = {f"in_{i}": v for i, v in enumerate(todo[start : start + _IN_CHUNK])}
            out += self.rows(
                f"{sql} AND {column} IN ({', '.join(':' + n for n in names)})", **params, **names
            )
        return out

    def dispose(self) -> None:
        """Close pooled connections (tests drop databases afterwards)."""
        self.engine.dispose()


def _window_lock_key(table: str, workspace_id: str) -> int:
    """The signed 64-bit advisory lock id of one table's rows of one workspace."""
    digest = hashlib.sha256(f"window|{table}|{workspace_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _json_default(value: Any) -> Any:
    # The Stripe SDK turns `*_decimal` strings into Decimal; store them back as exact strings.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One encoder for every document: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def json_text(doc: Any) -> str:
    """JSON for JSON/JSONB columns, with Decimals as exact strings (as Stripe sends them)."""
    return _ENCODER.encode(doc)


def json_doc(doc: Any) -> JsonText:
    """`doc` encoded once for a JSON column (same text as json_text); upsert stores it as-is."""
    return JsonText(_ENCODER.encode(doc))


def dumps(doc: Any) -> str:
    """Canonical JSON (sorted keys, compact) so checksums of payloads are stable."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)

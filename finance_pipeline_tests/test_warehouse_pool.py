"""Pooled PostgreSQL connections are pinged only after sitting idle, and a connection lost while
idle is replaced before use (warehouse.db._ping_when_idle)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from finance_pipeline.warehouse import db
from finance_pipeline.warehouse.db import Warehouse

pytestmark = pytest.mark.postgres


def _pings(wh: Warehouse) -> list[str]:
    seen: list[str] = []
    real = wh.engine.dialect.do_ping

    def counting(dbapi: object) -> bool:
        seen.append("ping")
        return real(dbapi)

    wh.engine.dialect.do_ping = counting  # type: ignore[method-assign]
    return seen


def test_a_connection_just_used_is_not_pinged(pg_url: str) -> None:
    wh = Warehouse(pg_url)
    try:
        pings = _pings(wh)
        for _ in range(5):
            assert wh.scalar("SELECT 1") == 1
        assert pings == []
    finally:
        wh.dispose()


def test_a_connection_lost_while_idle_is_replaced(
    pg_url: str, pg_admin: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = Warehouse(pg_url)
    try:
        pid = wh.scalar("SELECT pg_backend_pid()")
        with pg_admin.connect() as c:
            c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # "idle long enough"
        pings = _pings(wh)
        # The ping finds the dead connection; the pool connects afresh and the query runs.
        assert wh.scalar("SELECT pg_backend_pid()") != pid
        assert pings == ["ping"]  # the new connection is not pinged
    finally:
        wh.dispose()


def test_lone_selects_run_in_autocommit_and_writes_do_not(pg_url: str) -> None:
    wh = Warehouse(pg_url)
    try:
        # In autocommit the statement is its own transaction: it started with the statement.
        assert wh.scalar("SELECT now() = statement_timestamp()") is True
        assert wh.rows("  select now() = statement_timestamp() AS same") == [{"same": True}]
        # Anything else keeps the plain connection, whose transaction is rolled back on close.
        with wh.engine.begin() as c:
            c.execute(sa.text("CREATE TABLE t_autocommit (x INT)"))
        assert wh.rows("INSERT INTO t_autocommit VALUES (1) RETURNING x") == [{"x": 1}]
        assert wh.scalar("SELECT COUNT(*) FROM t_autocommit") == 0
    finally:
        wh.dispose()

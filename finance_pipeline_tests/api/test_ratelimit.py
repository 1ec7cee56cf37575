"""The rate-limit count (`api/ratelimit.py`): one atomic count per request, shared by every thread
and worker, kept off the WAL on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from finance_pipeline.api import ratelimit
from finance_pipeline.warehouse.db import Warehouse

NOW = 1_800_000_030.0  # 30 s into a one-minute window


def test_hits_are_counted_once_each_and_over_the_limit_told_when_to_retry(
    warehouse: Warehouse,
) -> None:
    assert [ratelimit.hit(warehouse, "k", 2, now=NOW) for _ in range(3)] == [None, None, 30]
    # Another bucket, and the next window, count from zero.
    assert ratelimit.hit(warehouse, "other", 2, now=NOW) is None
    assert ratelimit.hit(warehouse, "k", 2, now=NOW + 60) is None
    assert ratelimit.over(warehouse, "k", 2, now=NOW) == 30
    assert ratelimit.over(warehouse, "k", 2, now=NOW + 60) is None


def test_concurrent_hits_each_read_their_own_count(warehouse: Warehouse) -> None:
    """Threads counting at once (a worker's thread pool) get every count exactly once: the
    upsert and the count it returns are one statement."""
    limit = 30
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: ratelimit.hit(warehouse, "busy", limit, now=NOW), range(40))
        )
    assert answers.count(None) == limit
    assert answers.count(30) == 10
    stored = warehouse.scalar("SELECT hits FROM app.rate_limit_windows WHERE bucket = 'busy'")
    assert stored == 40


def test_first_hit_of_a_window_sweeps_windows_long_over(warehouse: Warehouse) -> None:
    with warehouse.begin() as db:
        warehouse.insert(
            db,
            "app.rate_limit_windows",
            [
                {"bucket": "old", "window_start": 0, "hits": 5},
                {"bucket": "recent", "window_start": int(NOW) - 120, "hits": 5},
            ],
        )
    ratelimit.hit(warehouse, "k", 10, now=NOW)
    left = warehouse.rows("SELECT bucket FROM app.rate_limit_windows ORDER BY bucket")
    assert [r["bucket"] for r in left] == ["k", "recent"]


def test_write_scalar_commits_the_statement_and_returns_its_value(warehouse: Warehouse) -> None:
    sql = (
        "INSERT INTO app.rate_limit_windows (bucket, window_start, hits)"
        " VALUES (:b, 60, 7) RETURNING hits"
    )
    assert warehouse.write_scalar(sql, b="x") == 7
    # Committed: a new connection (another worker) sees it.
    other = Warehouse(warehouse.url.render_as_string(hide_password=False))
    try:
        assert other.scalar("SELECT hits FROM app.rate_limit_windows WHERE bucket = 'x'") == 7
    finally:
        other.dispose()
    assert (
        warehouse.write_scalar("DELETE FROM app.rate_limit_windows WHERE bucket = 'none'") is None
    )


@pytest.mark.postgres
def test_the_counts_write_no_wal_on_postgresql(pg_url: str) -> None:
    """Unlogged: a count never waits for WAL space or a flush behind the runs' bulk writes."""
    from finance_pipeline.warehouse.migrate import apply_migrations

    wh = Warehouse(pg_url)
    try:
        apply_migrations(wh)
        persistence = wh.scalar(
            "SELECT relpersistence FROM pg_class WHERE oid = 'app.rate_limit_windows'::regclass"
        )
        assert persistence == "u"
        # Its indexes too (PostgreSQL makes them unlogged with the table).
        index_persistence = wh.rows(
            "SELECT DISTINCT c.relpersistence FROM pg_index i JOIN pg_class c"
            " ON c.oid = i.indexrelid WHERE i.indrelid = 'app.rate_limit_windows'::regclass"
        )
        assert [r["relpersistence"] for r in index_persistence] == ["u"]
    finally:
        wh.dispose()

"""Shared fixtures: warehouses on SQLite and PostgreSQL (own databases, dropped after), the Stripe stand-in."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from finance_pipeline_dev.production import fresh_pg_database, pg_admin_engine

from finance_pipeline.warehouse import Warehouse, apply_migrations

pytest_plugins = ["finance_pipeline_dev.pytest_plugin", "finance_pipeline_tests.fuzz.cases"]

PG_ADMIN_URL = os.environ.get(
    "FP_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_admin() -> sa.Engine | None:
    return pg_admin_engine(PG_ADMIN_URL)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    """An AUTOCOMMIT engine on the server's maintenance DB; CI fails rather than skips without it."""
    eng = _pg_admin()
    if eng is None:
        if os.environ.get("CI"):
            pytest.fail(
                "PostgreSQL is not reachable on 127.0.0.1:5432; Postgres tests must run in CI"
            )
        pytest.skip("PostgreSQL not reachable (start it with pg_ctlcluster ... main start)")
    yield eng
    eng.dispose()


@contextlib.contextmanager
def fresh_warehouse(kind: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    """A migrated warehouse of the given kind for a module-scoped fixture: a SQLite file in
    `folder`, or a PostgreSQL database of its own; disposed (and the database dropped) on exit."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{folder / 'warehouse.sqlite'}"
        else:
            url = stack.enter_context(fresh_pg_database(request.getfixturevalue("pg_admin")))
        wh = Warehouse(url)
        stack.callback(wh.dispose)
        apply_migrations(wh)
        yield wh


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with fresh_pg_database(pg_admin) as url:
        yield url


def make_warehouse(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Warehouse:
    """A migrated warehouse of the given kind for one test."""
    if kind == "sqlite":
        wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    else:
        wh = Warehouse(request.getfixturevalue("pg_url"))
    apply_migrations(wh)
    request.addfinalizer(wh.dispose)
    return wh


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """A migrated warehouse, once on SQLite and once on PostgreSQL."""
    return make_warehouse(request.param, tmp_path, request)


@pytest.fixture
def sqlite_warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """A migrated SQLite warehouse (for tests where the dialect does not matter)."""
    return make_warehouse("sqlite", tmp_path, request)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own data dir and a fixed master key; no test touches data/."""
    from finance_pipeline.settings import get_settings

    monkeypatch.setenv("FP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FP_SECRET_KEY", "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q=")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()

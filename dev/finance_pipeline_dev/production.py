"""A production deployment for tests and benchmarks: fresh PostgreSQL databases, and the env vars
that point a process at them as Dagster's storage and the warehouse (README, "Embedded default or
production"; docs/scaling.md)."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from finance_pipeline.settings import PROJECT_ROOT

# dagster.yaml names the server's port itself; the DAGSTER_PG_* variables cannot move it.
DAGSTER_PG_PORT = 5432


def pg_admin_engine(url: str) -> sa.Engine | None:
    """An AUTOCOMMIT engine on the server's maintenance database, as `postgres` or else as
    `root` (a trust-auth server has either); None when the server cannot be reached."""
    for candidate in (url, url.replace("postgres@", "root@")):
        eng = sa.create_engine(candidate, isolation_level="AUTOCOMMIT")
        try:
            with eng.connect() as c:
                c.execute(sa.text("SELECT 1"))
            return eng
        except sa.exc.OperationalError:
            eng.dispose()
    return None


def production_env(
    warehouse_url: str, dagster_db_url: str, *, dagster_home: Path | None = None
) -> dict[str, str]:
    """The env vars that point a process (or a subprocess, a celery worker) at a production
    deployment: FP_DEPLOYMENT=production, the warehouse at `warehouse_url`, and the project's
    dagster.yaml with its DAGSTER_PG_* taken from the SQLAlchemy URL `dagster_db_url`.

    DAGSTER_HOME is the project's folder, or `dagster_home` with dagster.yaml copied into it (so
    the files Dagster keeps beside it, compute logs among them, stay out of the checkout).
    """
    db = sa.make_url(dagster_db_url)
    if db.port not in (None, DAGSTER_PG_PORT):
        raise ValueError(
            f"dagster.yaml connects to port {DAGSTER_PG_PORT}; {db.render_as_string()} uses "
            f"{db.port}"
        )
    home = PROJECT_ROOT
    if dagster_home is not None:
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        home = dagster_home
    return {
        "FP_DEPLOYMENT": "production",
        "FP_WAREHOUSE_URL": warehouse_url,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USER": db.username or "postgres",
        # Empty means none: a trust or ~/.pgpass server (dagster.yaml fails on an unset variable).
        "DAGSTER_PG_PASSWORD": db.password or "",
        "DAGSTER_PG_HOST": db.host or "127.0.0.1",
        "DAGSTER_PG_DB": db.database or "",
    }


@contextlib.contextmanager
def fresh_pg_database(admin: sa.Engine | str, prefix: str = "fp_test") -> Iterator[str]:
    """A new PostgreSQL database of its own (its URL), dropped on exit; `admin` is an engine or
    URL on the server's maintenance database."""
    owned = None if isinstance(admin, sa.Engine) else sa.create_engine(admin)
    engine = (owned or admin).execution_options(isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with engine.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if owned is not None:
            owned.dispose()

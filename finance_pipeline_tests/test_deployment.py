"""Production mode needs only what the README lists: a password-less PostgreSQL works without
DAGSTER_PG_PASSWORD, and a missing required setting is one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from finance_pipeline.settings import get_settings

PG_VARS = ("DAGSTER_PG_USER", "DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_PASSWORD")


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """FP_DEPLOYMENT=production with no warehouse URL and no DAGSTER_PG_* (restored after)."""
    monkeypatch.setenv("FP_DEPLOYMENT", "production")
    for var in (*PG_VARS, "FP_WAREHOUSE_URL"):
        # Set first so the removal is recorded, and undone, even when it was unset.
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    get_settings.cache_clear()
    return monkeypatch


def test_a_missing_production_setting_is_one_line_naming_it(
    production: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from finance_pipeline_dev.cli import main as dev_main

    from finance_pipeline.cli import main

    production.setenv("DAGSTER_PG_USER", "finance")
    production.setenv("DAGSTER_PG_HOST", "127.0.0.1")
    assert dev_main(["demo", "--no-serve"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "FP_WAREHOUSE_URL" in err and "DAGSTER_PG_DB" in err and "DAGSTER_PG_USER" not in err
    # The operator CLI needs the warehouse only, and never falls back to SQLite in production.
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FP_WAREHOUSE_URL" in err and "DAGSTER_PG" not in err
    assert not (get_settings().data_dir / "warehouse.sqlite").exists()


@pytest.mark.postgres
def test_a_password_less_postgres_needs_no_dagster_pg_password(
    production: pytest.MonkeyPatch, pg_url: str
) -> None:
    from dagster import DagsterInstance

    from finance_pipeline.deployment import dagster_home

    url = sa.engine.make_url(pg_url)
    assert not url.password  # the test server trusts local connections
    production.setenv("FP_WAREHOUSE_URL", pg_url)
    production.setenv("DAGSTER_PG_USER", url.username or "")
    production.setenv("DAGSTER_PG_HOST", url.host or "")
    production.setenv("DAGSTER_PG_DB", url.database or "")
    get_settings.cache_clear()
    home = dagster_home(get_settings())
    instance = DagsterInstance.from_config(str(home))
    try:
        assert instance.get_runs() == []  # the PostgreSQL run storage answers
    finally:
        instance.dispose()


def test_the_production_env_of_tests_and_benchmarks(tmp_path: Path) -> None:
    from finance_pipeline_dev.production import production_env

    from finance_pipeline.settings import PROJECT_ROOT

    wh = "postgresql+psycopg://app@db/finance"
    env = production_env(wh, "postgresql+psycopg2://dg:s3cret@dbhost/dagster")
    assert env == {
        "FP_DEPLOYMENT": "production",
        "FP_WAREHOUSE_URL": wh,
        "DAGSTER_HOME": str(PROJECT_ROOT),
        "DAGSTER_PG_USER": "dg",
        "DAGSTER_PG_PASSWORD": "s3cret",
        "DAGSTER_PG_HOST": "dbhost",
        "DAGSTER_PG_DB": "dagster",
    }
    # Its own home: the project's dagster.yaml copied there; no password means an empty one.
    home = tmp_path / "home"
    env = production_env(wh, "postgresql://postgres@127.0.0.1:5432/dg", dagster_home=home)
    assert (env["DAGSTER_HOME"], env["DAGSTER_PG_PASSWORD"]) == (str(home), "")
    assert (home / "dagster.yaml").read_text() == (PROJECT_ROOT / "dagster.yaml").read_text()
    # dagster.yaml names port 5432: another port is refused rather than silently ignored.
    with pytest.raises(ValueError, match="5432"):
        production_env(wh, "postgresql://postgres@127.0.0.1:6543/dg")

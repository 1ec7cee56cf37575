"""Warehouse foundation on SQLite and PostgreSQL: migrations, layer names, upserts, tenancy."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from finance_pipeline.secrets import decrypt_secret
from finance_pipeline.tenancy import (
    connect_stripe,
    create_organization,
    create_workspace,
    list_workspaces,
    stripe_connections,
)
from finance_pipeline.warehouse import Warehouse, WarehouseError, apply_migrations
from finance_pipeline.warehouse.migrate import discover


def test_migrations_apply_once_and_rerun_is_harmless(warehouse: Warehouse) -> None:
    assert apply_migrations(warehouse) == []  # the fixture already applied them
    versions = [r["version"] for r in warehouse.rows("SELECT version FROM app.schema_migrations")]
    assert versions == [m.version for m in discover(warehouse)]
    for table in ("raw.stripe_invoices", "raw.sync_state", "app.workspaces", "raw.fx_rates"):
        assert warehouse.scalar(f"SELECT COUNT(*) FROM {table}") == 0


def test_layers_are_schemas_on_postgres_and_prefixes_on_sqlite(warehouse: Warehouse) -> None:
    insp = sa.inspect(warehouse.engine)
    if warehouse.is_sqlite:
        assert "raw__stripe_invoices" in insp.get_table_names()
        assert warehouse.name("mart.mrr_daily") == "mart__mrr_daily"
    else:
        assert {"app", "raw", "core", "mart"} <= set(insp.get_schema_names())
        assert "stripe_invoices" in insp.get_table_names(schema="raw")


def test_edited_applied_migration_is_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    (sql_dir / "9001_a.sql").write_text("CREATE TABLE IF NOT EXISTS raw.t_a (id TEXT PRIMARY KEY);")
    apply_migrations(warehouse, sql_dir)
    (sql_dir / "9001_a.sql").write_text("CREATE TABLE IF NOT EXISTS raw.t_b (id TEXT PRIMARY KEY);")
    with pytest.raises(WarehouseError, match="changed after it was applied"):
        apply_migrations(warehouse, sql_dir)


def test_reworded_comment_keeps_an_applied_migration_valid(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    path = sql_dir / "9003_c.sql"
    path.write_text("-- first words\nCREATE TABLE IF NOT EXISTS raw.t_c (id TEXT PRIMARY KEY);\n")
    assert apply_migrations(warehouse, sql_dir) == ["9003"]
    path.write_text("-- other words\n\nCREATE TABLE IF NOT EXISTS raw.t_c (id TEXT PRIMARY KEY);")
    assert apply_migrations(warehouse, sql_dir) == []


def test_legacy_whole_file_checksums_are_accepted_and_upgraded(warehouse: Warehouse) -> None:
    """Warehouses migrated when checksums covered the whole file keep migrating after comments
    were reworded: the recorded hashes of those files are accepted and replaced."""
    from finance_pipeline.warehouse.migrate import _LEGACY_FILE_SHA256

    by_name = {m.path.name: m for m in discover(warehouse)}
    legacy = {by_name[name].version: digest for name, digest in _LEGACY_FILE_SHA256.items()}
    set_checksum = "UPDATE app.schema_migrations SET checksum = :c WHERE version = :v"
    with warehouse.begin() as conn:
        for version, digest in legacy.items():
            conn.execute(warehouse.text(set_checksum), {"c": digest, "v": version})
    assert apply_migrations(warehouse) == []
    stored = {
        r["version"]: r["checksum"]
        for r in warehouse.rows("SELECT version, checksum FROM app.schema_migrations")
    }
    assert stored == {m.version: m.checksum() for m in by_name.values()}
    with warehouse.begin() as conn:
        conn.execute(warehouse.text(set_checksum), {"c": "0" * 64, "v": next(iter(legacy))})
    with pytest.raises(WarehouseError, match="changed after it was applied"):
        apply_migrations(warehouse)


def test_failed_migration_leaves_nothing_behind(warehouse: Warehouse, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    (sql_dir / "9002_bad.sql").write_text(
        "CREATE TABLE raw.half_done (id TEXT PRIMARY KEY);\nCREATE TABLE raw.half_done (id TEXT);"
    )
    with pytest.raises(sa.exc.DBAPIError):
        apply_migrations(warehouse, sql_dir)
    assert "half_done" not in " ".join(
        sa.inspect(warehouse.engine).get_table_names(schema=None if warehouse.is_sqlite else "raw")
    )
    assert (
        warehouse.scalar("SELECT COUNT(*) FROM app.schema_migrations WHERE version = '9002'") == 0
    )


def test_upsert_replaces_by_key_and_money_is_int64(warehouse: Warehouse) -> None:
    big = 9_000_000_000_000_000_000  # > 2^62: micro-units of very large amounts stay exact
    row = {
        "workspace_id": "ws_1",
        "external_id": "x1",
        "name": "AWS",
        "amount_micros": big,
        "currency": "usd",
        "category": "INFRASTRUCTURE",
        "is_recurring": True,
        "note": None,
        "date": __import__("datetime").date(2024, 1, 15),
        "customer_tag": None,
        "source": "test",
        "ingested_at": 1,
    }
    with warehouse.begin() as db:
        warehouse.upsert(db, "raw.cost_records", [row], key=("workspace_id", "external_id"))
        warehouse.upsert(
            db, "raw.cost_records", [{**row, "name": "AWS EU"}], key=("workspace_id", "external_id")
        )
    rows = warehouse.rows("SELECT name, amount_micros, date FROM raw.cost_records")
    assert rows == [{"name": "AWS EU", "amount_micros": big, "date": rows[0]["date"]}]
    assert str(rows[0]["date"]) == "2024-01-15"


def test_workspace_with_encrypted_stripe_key(warehouse: Warehouse) -> None:
    org = create_organization(warehouse, "Acme", "ceo@acme.test")
    ws = create_workspace(
        warehouse,
        org,
        "Acme EU",
        reporting_currency="EUR",
        time_zone="Europe/Paris",
        cash_on_hand_micros=50_000 * 10**6,
    )
    connect_stripe(
        warehouse,
        ws,
        account_id="acct_1",
        livemode=False,
        api_key="sk_test_abcdefgh1234",
        api_base="http://127.0.0.1:1",
    )
    [w] = list_workspaces(warehouse)
    assert (w.reporting_currency, w.time_zone, w.cash_on_hand_micros) == (
        "eur",
        "Europe/Paris",
        50_000_000_000,
    )
    assert w.settings["discount_mode"] == "all_active"
    stored = warehouse.rows("SELECT key_ciphertext, key_hint FROM app.stripe_connections")[0]
    assert "abcdefgh1234" not in stored["key_ciphertext"]
    assert stored["key_hint"] == "sk_test_****1234"
    assert decrypt_secret(stored["key_ciphertext"]) == "sk_test_abcdefgh1234"
    [conn] = stripe_connections(warehouse)
    assert conn.api_key == "sk_test_abcdefgh1234" and conn.livemode is False


def test_live_key_on_test_connection_is_refused(sqlite_warehouse: Warehouse) -> None:
    org = create_organization(sqlite_warehouse, "Acme")
    ws = create_workspace(sqlite_warehouse, org, "Acme")
    with pytest.raises(ValueError, match="live-mode key"):
        connect_stripe(
            sqlite_warehouse, ws, account_id="acct_1", livemode=False, api_key="sk_live_zzzz9999"
        )


def test_unknown_time_zone_is_a_clear_error(sqlite_warehouse: Warehouse) -> None:
    org = create_organization(sqlite_warehouse, "Acme")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        create_workspace(sqlite_warehouse, org, "Acme", time_zone="Mars/Olympus")

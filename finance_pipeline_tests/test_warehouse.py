"""Warehouse foundation on SQLite and PostgreSQL: migrations, layer names, upserts, tenancy."""

from __future__ import annotations

from datetime import date
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
from finance_pipeline.warehouse.db import json_doc
from finance_pipeline.warehouse.decode import declared_kinds
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
        "date": date(2024, 1, 15),
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
    assert rows == [{"name": "AWS EU", "amount_micros": big, "date": date(2024, 1, 15)}]


def test_reads_come_back_decoded_on_both_dialects(warehouse: Warehouse) -> None:
    """JSON, DATE and BOOLEAN columns read as Python objects whatever the dialect stores."""
    payload = {"id": "cus_1", "metadata": {"k": "v"}, "tags": ["a"], "email": "a@b.c", "n": None}
    row = {
        "workspace_id": "ws_1",
        "id": "cus_1",
        "account_id": "acct_1",
        "livemode": False,
        "created": 1,
        "email": "a@b.c",
        "name": "A",
        "currency": "usd",
        "deleted": True,
        "payload": json_doc(payload),
        "synced_at": 2,
    }
    fx = {"base": "usd", "currency": "eur", "date": date(2026, 3, 1), "rate": "1.1"}
    with warehouse.begin() as db:
        warehouse.upsert(db, "raw.stripe_customers", [row], key=("workspace_id", "id"))
        warehouse.upsert(db, "core.fx_rates", [fx], key=("base", "currency", "date"))
        # Inside a transaction too (reads of rows written in it).
        [inside] = warehouse.read(db, "SELECT payload, deleted FROM raw.stripe_customers")
    assert inside == {"payload": payload, "deleted": True}
    [got] = warehouse.rows(
        "SELECT livemode, deleted, payload,"
        f" {warehouse.json_field('payload', 'metadata')} AS metadata_json,"
        f" {warehouse.json_field('payload', 'email')} AS email_json,"
        f" {warehouse.json_field('payload', 'n')} AS n_json,"
        f" {warehouse.json_field('payload', 'absent')} AS absent_json"
        " FROM raw.stripe_customers"
    )
    assert got == {
        "livemode": False,
        "deleted": True,
        "payload": payload,
        "metadata_json": {"k": "v"},
        "email_json": "a@b.c",
        "n_json": None,
        "absent_json": None,
    }
    assert type(got["livemode"]) is bool
    assert warehouse.rows_in("SELECT date FROM core.fx_rates WHERE 1 = 1", "base", {"usd"}) == [
        {"date": date(2026, 3, 1)}
    ]
    assert warehouse.scalar("SELECT payload FROM raw.stripe_customers") == payload
    assert warehouse.scalar("SELECT date FROM core.fx_rates") == date(2026, 3, 1)
    assert warehouse.scalar("SELECT date FROM core.fx_rates WHERE base = 'none'") is None


def test_every_column_name_has_one_type_in_the_ddl() -> None:
    """Reads decode by column name, so the DDL must give a name the same type in every table."""
    kinds = declared_kinds()
    assert kinds["payload"] == "json" and kinds["day"] == "date" and kinds["livemode"] == "bool"
    assert kinds["runway_months"] == "plain"  # exact decimals are TEXT on both dialects


def test_a_name_with_two_types_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_x.sql").write_text(
        "CREATE TABLE raw.a (day DATE, x_json JSONB);\nCREATE TABLE raw.b (day TEXT);"
    )
    with pytest.raises(ValueError, match="day has several types"):
        declared_kinds(tmp_path)
    (tmp_path / "0001_x.sql").write_text("CREATE TABLE raw.a (meta_json TEXT);")
    with pytest.raises(ValueError, match="meta_json is named like JSON"):
        declared_kinds(tmp_path)


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

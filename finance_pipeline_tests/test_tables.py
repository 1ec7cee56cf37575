"""The table metadata (warehouse/tables.py) against the DDL, on SQLite and PostgreSQL: the column
schemas the UI shows and the schema checks compare with can never drift from what `sql/` creates."""

from __future__ import annotations

import dagster as dg
import pytest

from finance_pipeline.definitions import defs
from finance_pipeline.warehouse import Warehouse
from finance_pipeline.warehouse.tables import APP_TABLES, COMPANIONS, TABLES, schema_problems

DESCRIBED = {**TABLES, **{t.name: t for ts in COMPANIONS.values() for t in ts}, **APP_TABLES}


def test_every_asset_table_is_described_and_nothing_else() -> None:
    graph = defs.resolve_asset_graph()
    # The report assets write files (and catalogue rows), not a table of their own.
    keys = {
        ".".join(k.path) for k in graph.get_all_asset_keys() if graph.get(k).group_name != "reports"
    }
    assert set(TABLES) == keys


@pytest.mark.parametrize("name", sorted(DESCRIBED))
def test_metadata_is_complete(name: str) -> None:
    table = DESCRIBED[name]
    assert table.description and all(c.description for c in table.columns)
    assert len(set(table.column_names)) == len(table.columns)
    assert set(table.primary_key) <= set(table.column_names)
    assert all(not c.nullable for c in table.columns if c.name in table.primary_key)


def test_metadata_matches_the_migrated_ddl(warehouse: Warehouse) -> None:
    problems = {name: schema_problems(warehouse, t) for name, t in DESCRIBED.items()}
    assert {n: p for n, p in problems.items() if p} == {}


def test_schema_problems_name_each_difference(sqlite_warehouse: Warehouse) -> None:
    wh = sqlite_warehouse
    with wh.begin() as db:
        db.execute(wh.text("ALTER TABLE mart.alerts ADD COLUMN surprise TEXT"))
        db.execute(wh.text("ALTER TABLE mart.alerts DROP COLUMN message"))
    assert schema_problems(wh, TABLES["mart.alerts"]) == [
        "missing column message",
        "unexpected column surprise",
    ]


def test_definitions_show_the_column_schema_before_any_run() -> None:
    graph = defs.resolve_asset_graph()
    for name, table in TABLES.items():
        node = graph.get(dg.AssetKey(name.split(".")))
        schema = node.metadata["dagster/column_schema"]
        assert isinstance(schema, dg.TableSchema), name
        assert [c.name for c in schema.columns] == list(table.column_names)


def test_a_drifted_table_fails_its_blocking_schema_check(sqlite_warehouse: Warehouse) -> None:
    from finance_pipeline.core.assets import ledger
    from finance_pipeline.table_checks import schema_checks
    from finance_pipeline_tests.dagster_runs import warehouse_resources

    wh = sqlite_warehouse
    with wh.begin() as db:
        db.execute(wh.text("ALTER TABLE core.ledger ADD COLUMN surprise TEXT"))
    result = dg.materialize(
        [ledger, *schema_checks([ledger])],
        resources=warehouse_resources(wh),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    [check] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "schema_matches_metadata"
    ]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.ERROR
    assert "unexpected column surprise" in check.metadata["problems"].value

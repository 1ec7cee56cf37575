"""Dagster metadata and blocking schema checks generated from the table descriptions.

`warehouse/tables.py` describes every table an asset writes. From it, this module gives each asset
its `dagster/column_schema` (on the definition, so the UI shows it before any run; not repeated on
each materialization, which a backfill stores once per day), every materialization its
`dagster/row_count`, and one blocking multi-asset check per assets
definition that compares the live tables with their description. One check node per definition
(not one for all tables) keeps the blocking edges acyclic: a mart waits only for the checks of
the tables it reads.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from finance_pipeline.resources import WarehouseResource
from finance_pipeline.warehouse.tables import COMPANIONS, Table, schema_problems, table_for

SCHEMA_CHECK = "schema_matches_metadata"


def table_of(key: dg.AssetKey) -> Table:
    """The described table an asset key mirrors (`["mart", "mrr_daily"]` -> mart.mrr_daily)."""
    return table_for(".".join(key.path))


def column_schema(table: Table) -> dg.TableSchema:
    """The Dagster column schema of a described table (types as in the DDL)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type.lower(),
                description=c.description,
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in table.columns
        ],
        constraints=dg.TableConstraints(other=[f"primary key ({', '.join(table.primary_key)})"]),
    )


def table_metadata(key: dg.AssetKey, row_count: int) -> dict[str, Any]:
    """Materialization metadata every asset carries: the row count (what it counts is said in the
    asset's description). The column schema is the definition's: a range run stores its
    metadata once per day, and the schema was 60% of each such event (bench/README.md)."""
    table_of(key)  # every materialized asset mirrors a described table
    return {"dagster/row_count": dg.MetadataValue.int(int(row_count))}


def _with_schema(spec: dg.AssetSpec) -> dg.AssetSpec:
    table = table_of(spec.key)
    description = (spec.description or table.description).rstrip()
    return spec.replace_attributes(
        description=f"{description}\n\n{table.row_count_description}",
    ).merge_attributes(
        metadata={"dagster/column_schema": column_schema(table), "dagster/table_name": table.name}
    )


def with_table_metadata(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets with their column schema and row-count meaning in the definition metadata."""
    return list(dg.map_asset_specs(_with_schema, assets))


def _schema_check(assets_def: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    """The blocking schema check of every table one assets definition writes."""
    keys = sorted(assets_def.keys, key=lambda k: k.path)

    @dg.multi_asset_check(
        name=f"{assets_def.node_def.name}_schema",
        specs=[
            dg.AssetCheckSpec(
                SCHEMA_CHECK,
                asset=key,
                blocking=True,
                description=f"The live table {table_of(key).name} (and the tables the asset "
                "writes beside it) has the described columns (none missing or extra), type "
                "families, nullability and primary key.",
            )
            for key in keys
        ],
        can_subset=True,
    )
    def _check(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.AssetCheckResult]:
        wh = warehouse.get()
        for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.path):
            table = table_of(check_key.asset_key)
            problems = schema_problems(wh, table)
            for companion in COMPANIONS.get(table.name, ()):
                problems += [f"{companion.name}: {p}" for p in schema_problems(wh, companion)]
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=SCHEMA_CHECK,
                passed=not problems,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "table": table.name,
                    "columns_expected": len(table.columns),
                    "problems": dg.MetadataValue.md(
                        "\n".join(f"- {p}" for p in problems) or "none"
                    ),
                },
            )

    return _check


def schema_checks(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetChecksDefinition]:
    """One blocking schema check node per assets definition."""
    return [_schema_check(a) for a in assets]

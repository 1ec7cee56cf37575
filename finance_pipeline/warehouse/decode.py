"""Read values decoded to the same Python types on both dialects, by column name, from the DDL.

PostgreSQL's driver already returns JSONB as dicts and lists, DATE as `date`, BOOLEAN as `bool` and
NUMERIC as `Decimal`; SQLite returns JSON and dates as text and booleans as 0/1. The DDL in `sql/`
declares every column's type, and a column name means one type in every table (checked when the
catalogue is built), so a SQLite result column is decoded by its name alone: the DDL's type, or
JSON for `payload` and any `*_json` name (e.g. an alias of `Warehouse.json_field`). Exact decimals
that the DDL stores as TEXT (runway_months, margin_percent, confidence) stay strings on both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"
# Columns holding JSON documents; SQLite stores them as TEXT, PostgreSQL as JSONB.
JSON_COLUMN = re.compile(r"^(payload|.*_json)$")
# `name TYPE` in CREATE TABLE and ADD COLUMN (column names are lower case, types upper case).
_DECLARATION = re.compile(
    r"\b([a-z_][a-z0-9_]*)\s+(JSONB|JSON|DATE|TIMESTAMPTZ|TIMESTAMP|BOOLEAN|NUMERIC|DECIMAL"
    r"|BIGINT|INTEGER|SMALLINT|TEXT|REAL|DOUBLE)\b"
)
_KIND_OF_TYPE = {
    "JSONB": "json",
    "JSON": "json",
    "DATE": "date",
    "TIMESTAMPTZ": "datetime",
    "TIMESTAMP": "datetime",
    "BOOLEAN": "bool",
    "NUMERIC": "decimal",
    "DECIMAL": "decimal",
}

Decoder = Callable[[Any], Any]


def _json(value: Any) -> Any:
    if type(value) is not str:
        return value
    # Empty lists are most of the JSON fields read (discount and tax lists): no parser call.
    return [] if value == "[]" else json.loads(value)


def _date(value: Any) -> Any:
    # [:10]: a datetime bound into a DATE column is stored with its time on SQLite.
    return date.fromisoformat(value[:10]) if type(value) is str else value


def _datetime(value: Any) -> Any:
    return datetime.fromisoformat(value) if type(value) is str else value


def _decimal(value: Any) -> Any:
    # SQLite gives NUMERIC as int or float; str() of a float is its shortest exact repr.
    return value if type(value) is Decimal else Decimal(str(value))


_DECODERS: dict[str, Decoder] = {
    "json": _json,
    "date": _date,
    "datetime": _datetime,
    "bool": bool,
    "decimal": _decimal,
}


def declared_kinds(sql_dir: Path = SQL_DIR) -> dict[str, str]:
    """Column name -> kind ("json", "date", "datetime", "bool", "decimal", "plain") from the DDL.

    Raises ValueError when one name has two kinds: reads decode by name, so it must be unique.
    """
    seen: dict[str, dict[str, str]] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        for name, sql_type in _DECLARATION.findall(text):
            kind = _KIND_OF_TYPE.get(sql_type, "plain")
            seen.setdefault(name, {}).setdefault(kind, path.name)
    conflicts = []
    for name, kinds in sorted(seen.items()):
        if JSON_COLUMN.match(name) and set(kinds) != {"json"}:
            conflicts.append(f"{name} is named like JSON but declared {kinds}")
        elif len(kinds) > 1:
            conflicts.append(f"{name} has several types {kinds}")
    if conflicts:
        raise ValueError(
            "reads decode columns by name, so a name must have one type in every table: "
            + "; ".join(conflicts)
        )
    return {name: next(iter(kinds)) for name, kinds in seen.items()}


@cache
def _sqlite_decoders_by_name() -> dict[str, Decoder]:
    return {name: _DECODERS[kind] for name, kind in declared_kinds().items() if kind in _DECODERS}


def sqlite_decoders(keys: Sequence[str]) -> tuple[tuple[int, Decoder], ...]:
    """(position, decoder) for the result columns that SQLite returns encoded; () when none."""
    by_name = _sqlite_decoders_by_name()
    out = []
    for i, key in enumerate(keys):
        decoder = by_name.get(key) or (_json if JSON_COLUMN.match(key) else None)
        if decoder is not None:
            out.append((i, decoder))
    return tuple(out)

"""Cursor pagination for every list endpoint: `limit` (default 20, 1-100; more is a 422) and
`starting_after` (the id of the last item of the previous page), ordered by id, with `has_more`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from finance_pipeline.warehouse.db import Warehouse

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageParams:
    """Which page a list request asks for."""

    limit: int
    starting_after: str | None


def page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Max results to return (1-100)")
    ] = DEFAULT_LIMIT,
    starting_after: Annotated[
        str | None,
        Query(
            min_length=1, max_length=255, description="ID of the last item from the previous page"
        ),
    ] = None,
) -> PageParams:
    """Dependency: the `limit` and `starting_after` query parameters."""
    return PageParams(limit, starting_after)


T = TypeVar("T")


class ListResponse(BaseModel, Generic[T]):
    """One page of a list: the items and whether more follow."""

    data: list[T]
    has_more: bool


def fetch_page(
    wh: Warehouse, sql: str, page: PageParams, *, id_column: str = "id", **params: Any
) -> tuple[list[dict[str, Any]], bool]:
    """Rows of `sql` (a SELECT ending in its WHERE clause, which scopes it to the caller's
    organization) for one page, ordered by `id_column`; returns (rows, has_more)."""
    where = ""
    if page.starting_after is not None:
        where = f" AND {id_column} > :page_after"
        params["page_after"] = page.starting_after
    rows = wh.rows(
        f"{sql}{where} ORDER BY {id_column} LIMIT :page_limit", **params, page_limit=page.limit + 1
    )
    return rows[: page.limit], len(rows) > page.limit

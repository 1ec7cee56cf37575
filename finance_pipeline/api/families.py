"""The API families (one per seed document), their path prefixes and error dialects.

A family is mounted with `include_family`; errors of any request under its prefix (the longest
prefix wins, so `/api/v1/products` is the 001 products API and not the 003 margins API's `/api`)
are rendered in its dialect, including unknown paths, validation errors and the rate limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI

from finance_pipeline.api.errors import DEFAULT_DIALECT, ErrorDialect


@dataclass(frozen=True)
class Family:
    """One API family: a title for the docs, the path prefix it owns, its error dialect."""

    title: str
    prefix: str
    dialect: ErrorDialect = field(default=DEFAULT_DIALECT)

    def router(self, **kwargs: Any) -> APIRouter:
        """A router for (part of) this family: its prefix and tag, and every route documenting
        the dialect's error model for the error statuses."""
        return APIRouter(
            prefix=self.prefix,
            tags=[self.title],
            responses=self.dialect.openapi_responses(),
            **kwargs,
        )

    def owns(self, path: str) -> bool:
        """Whether a request path is under this family's prefix."""
        return path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")


V1 = Family("004 v1 API", "/v1")
PLATFORM_FINANCE = Family("000 platform finance API", "/api/v1/platform/finance")
PRODUCTS = Family("001 products API", "/api/v1/products")
WORKSPACE_ANALYTICS = Family("002 workspace analytics API", "/api/v1/client/workspace")
MARGINS = Family("003 margins API", "/api")


def include_family(app: FastAPI, family: Family, router: APIRouter) -> None:
    """Mount a family's router and register its dialect for every path under its prefix."""
    app.include_router(router)
    families: list[Family] = app.state.families
    if family not in families:
        families.append(family)
        families.sort(key=lambda f: len(f.prefix), reverse=True)


def dialect_for(app: Any, path: str) -> ErrorDialect:
    """The error dialect of the family owning `path` (the 004 envelope when none does)."""
    for family in getattr(app.state, "families", ()):
        if family.owns(path):
            return family.dialect
    return DEFAULT_DIALECT

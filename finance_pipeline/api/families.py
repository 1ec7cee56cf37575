"""The API families (one per seed document), their path prefixes and error dialects.

A family is mounted with `include_family`; errors of any request under its prefix (the longest
prefix wins, so `/api/v1/products` is the 001 products API and not the 003 margins API's `/api`)
are rendered in its dialect, including unknown paths, validation errors and the rate limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from finance_pipeline.api.analytics.dialect import AnalyticsDialect
from finance_pipeline.api.errors import DEFAULT_DIALECT, ApiError, ErrorDialect
from finance_pipeline.api.margins.dialect import MARGINS_DIALECT
from finance_pipeline.api.platform_finance.dialect import PlatformFinanceDialect


@dataclass(frozen=True)
class Family:
    """One API family: a title for the docs, the path prefix it owns, its error dialect."""

    title: str
    prefix: str
    dialect: ErrorDialect = field(default=DEFAULT_DIALECT)

    def router(self, **kwargs: Any) -> APIRouter:
        """A router for (part of) this family: its prefix and tag, every route documenting the
        dialect's error model for the error statuses, and unknown query parameters refused."""
        dependencies = [Depends(reject_unknown_query), *kwargs.pop("dependencies", [])]
        return APIRouter(
            prefix=self.prefix,
            tags=[self.title],
            responses=self.dialect.openapi_responses(),
            dependencies=dependencies,
            **kwargs,
        )

    def owns(self, path: str) -> bool:
        """Whether a request path is under this family's prefix."""
        return path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")


V1 = Family("004 v1 API", "/v1")
PLATFORM_FINANCE = Family(
    "000 platform finance API", "/api/v1/platform/finance", dialect=PlatformFinanceDialect()
)
PRODUCTS = Family("001 products API", "/api/v1/products")
WORKSPACE_ANALYTICS = Family(
    "002 workspace analytics API", "/api/v1/client/workspace", dialect=AnalyticsDialect()
)
MARGINS = Family("003 margins API", "/api", dialect=MARGINS_DIALECT)


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


def reject_unknown_query(request: Request) -> None:
    """Dependency: 400 `parameter_unknown` for a query parameter the route does not declare (a
    misspelt `limt` fails loudly instead of being ignored). Declared means: in the OpenAPI
    document, so the check and the schema can never disagree."""
    if not request.query_params:
        return
    declared = _declared_query(request.app, request.method, request.url.path)
    if declared is None:
        return  # a route outside the schema: nothing to check against
    for name in request.query_params:
        if name not in declared:
            raise ApiError(
                400, "parameter_unknown", f"Received unknown parameter: {name}.", param=name
            )


def _declared_query(app: FastAPI, method: str, path: str) -> frozenset[str] | None:
    """The query parameters the OpenAPI operation matching this request declares."""
    table = getattr(app.state, "declared_query", None)
    if table is None:
        table = []
        for template, ops in app.openapi().get("paths", {}).items():
            # Literal paths first: /v1/x/new wins over /v1/x/{id}.
            pattern = re.compile(
                "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            )
            for op_method, op in ops.items():
                names = frozenset(
                    p["name"] for p in op.get("parameters", []) if p.get("in") == "query"
                )
                table.append((template.count("{"), op_method.upper(), pattern, names))
        table.sort(key=lambda row: row[0])
        app.state.declared_query = table
    for _, op_method, pattern, names in table:
        if op_method == method and pattern.match(path):
            return names
    return None

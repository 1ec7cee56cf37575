"""The FastAPI application: one conventions layer (request ids, errors by family, auth, rate limit,
idempotency) beneath the families' routers (docs/api.md)."""

from __future__ import annotations

import gc
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from finance_pipeline.api.context import ApiContext, request_id
from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.families import (
    MARGINS,
    PLATFORM_FINANCE,
    PRODUCTS,
    V1,
    WORKSPACE_ANALYTICS,
    dialect_for,
    include_family,
)
from finance_pipeline.api.idempotency import IdempotencyMiddleware
from finance_pipeline.api.middleware import RequestBodyMiddleware, RequestContextMiddleware
from finance_pipeline.settings import Settings, get_settings
from finance_pipeline.warehouse import warehouse_for


def create_app(settings: Settings) -> FastAPI:
    """The API on the warehouse of `settings` (migrated on start-up if needed)."""
    from finance_pipeline.api import products
    from finance_pipeline.api.analytics import routes as analytics
    from finance_pipeline.api.margins import router as margins_router
    from finance_pipeline.api.platform_finance import router as platform_finance_router
    from finance_pipeline.api.v1 import router as v1_router

    # Swagger UI's script and stylesheet are served by the app itself, not a CDN, so /docs works on
    # a machine without internet access.
    app = FastAPIOffline(
        title="finance_pipeline API",
        version="1",
        description="Read API over the finance marts; conventions in docs/api.md.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.ctx = ApiContext(settings, warehouse_for(settings.resolved_warehouse_url))
    app.state.families = []
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Added last = outermost: the request id exists before the body is read, and an oversized or
    # non-JSON body is refused before idempotency and routing run.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestBodyMiddleware)
    app.add_middleware(RequestContextMiddleware)
    include_family(app, V1, v1_router())
    include_family(app, PLATFORM_FINANCE, platform_finance_router())
    include_family(app, PRODUCTS, products.router())
    include_family(app, WORKSPACE_ANALYTICS, analytics.router())
    include_family(app, MARGINS, margins_router())
    return app


def app_from_settings() -> FastAPI:
    """Factory for uvicorn (`--factory`): the app from FP_* settings, one per worker process."""
    from finance_pipeline.deployment import check_production

    settings = get_settings()
    # Production never serves from the embedded SQLite nor signs with a per-machine key file.
    check_production(settings, dagster=False, api=True)
    app = create_app(settings)
    # Everything built so far (modules, the app, its routes) lives as long as the process: moved
    # out of the collector's view, a full collection no longer walks it. Requests that build
    # large answers (the margin table's thousands of rows) set off several full collections each,
    # and walking the startup objects was half their CPU.
    gc.freeze()
    return app


def serve(host: str, port: int, workers: int = 1) -> None:
    """Run the API with uvicorn; each worker builds its own app from the settings."""
    import uvicorn

    uvicorn.run(
        "finance_pipeline.api.app:app_from_settings",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
    )


def _render(request: Request, err: ApiError) -> JSONResponse:
    return dialect_for(request.app, request.url.path).response(err, request_id(request))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _render(request, exc)


def _param(loc: tuple[Any, ...]) -> str | None:
    """`("body", "expenses", 0, "amount_cents")` -> `expenses[0].amount_cents`."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"type": "", "loc": (), "msg": "Invalid request."}
    if first["type"] == "json_invalid":
        err = ApiError(400, "invalid_json", "The request body is not valid JSON.")
        return _render(request, err)
    param = _param(tuple(first.get("loc", ())))
    if first["type"] == "missing":
        code = "missing_field"
        message = f"{param} is required." if param else "A request body is required."
    else:
        code = "invalid_field"
        message = f"{param}: {first['msg']}." if param else f"{first['msg']}."
    extra = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return _render(request, ApiError(422, code, message + extra, param=param))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "route_not_found", 405: "method_not_allowed"}
    err = ApiError(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        str(exc.detail),
        headers=dict(exc.headers or {}),
    )
    return _render(request, err)

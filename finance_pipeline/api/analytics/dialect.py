"""The 002 workspace analytics API's error dialect (kept apart so `api.families` can import it)."""

from __future__ import annotations

from typing import ClassVar

from fastapi.responses import JSONResponse

from finance_pipeline.api.errors import ApiError, ErrorDialect


class AnalyticsDialect(ErrorDialect):
    """The default envelope, but every invalid request is a 400, as the seed lists its errors (it
    shows no 422): a request FastAPI itself refuses is answered 400 like the analytics' own."""

    statuses: ClassVar = (400, 401, 403, 404, 429, 500, 503)

    def response(self, err: ApiError, request_id: str) -> JSONResponse:
        """422 -> 400, same code and param."""
        if err.status == 422:
            err = ApiError(400, err.code, err.message, param=err.param, headers=err.headers)
        return super().response(err, request_id)

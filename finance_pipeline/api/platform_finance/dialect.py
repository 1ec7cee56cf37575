"""The 000 platform finance API's envelope: `{"success": true, "data": ...}`, and for errors
`{"success": false, "error": {type, code, message, param, request_id}}` (the default error body
under the seed's `success` flag). The seed lists 400 for invalid parameters, so validation errors
are 400 here (codes `missing_field` / `invalid_field`), never 422."""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, Literal, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from finance_pipeline.api.errors import ApiError, ErrorBody, ErrorDialect

T = TypeVar("T")


class PlatformFinanceEnvelope(BaseModel, Generic[T]):
    """A successful answer: `success` is true and `data` holds it."""

    success: Literal[True] = True
    data: T


class PlatformFinanceError(BaseModel):
    """A failed request: `success` is false and `error` says why."""

    success: Literal[False] = False
    error: ErrorBody


class PlatformFinanceDialect(ErrorDialect):
    """Errors in the seed's `success` envelope; request validation failures are 400."""

    model = PlatformFinanceError
    statuses = (400, 401, 403, 404, 409, 429, 500, 503)

    def body(self, err: ApiError, request_id: str) -> dict[str, Any]:
        """`{"success": false, "error": {...}}`."""
        return {"success": False, **super().body(err, request_id)}

    def response(self, err: ApiError, request_id: str) -> JSONResponse:
        """As the default, with 422 answered as 400 (the seed's "Invalid parameters")."""
        if err.status == 422:
            err = dataclasses.replace(err, status=400, type="invalid_request")
        return super().response(err, request_id)


#: Short name for the routes: `Envelope[MrrData]`.
Envelope = PlatformFinanceEnvelope

"""Errors of the read API, rendered in the dialect of the family a request belongs to.

Routes and dependencies raise `ApiError` (a status, a type and code, a message, the offending
parameter); the app's handlers turn it, request validation failures, unknown paths and unhandled
exceptions into the family's envelope, always with the request id. The default dialect is the
004 v1 API's `{"error": {type, code, message, param, request_id}}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

# Error types of the default dialect, by HTTP status (docs/api.md, Errors).
TYPE_BY_STATUS = {
    400: "invalid_request",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    413: "invalid_request",
    415: "invalid_request",
    422: "invalid_request",
    429: "rate_limited",
    500: "api_error",
    502: "upstream_error",
    503: "api_error",
}


@dataclass
class ApiError(Exception):
    """An error response: HTTP status, machine-readable type and code, a sentence, the field."""

    status: int
    code: str
    message: str
    param: str | None = None
    type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if self.type is None:
            self.type = TYPE_BY_STATUS.get(self.status, "api_error")


def not_found(what: str, param: str | None = None) -> ApiError:
    """404 for a resource that does not exist or that another organization owns (never 403)."""
    return ApiError(404, "resource_missing", f"No such {what}.", param=param)


class ErrorBody(BaseModel):
    """One error: what kind, which code, a human sentence, the parameter at fault, the request."""

    type: str = Field(examples=["invalid_request"])
    code: str = Field(examples=["missing_field"])
    message: str = Field(examples=["name is required."])
    param: str | None = Field(default=None, examples=["name"])
    request_id: str = Field(examples=["req_3f9a0c..."])


class ErrorEnvelope(BaseModel):
    """The 004 v1 API's error envelope, the default for every family that shows no other."""

    error: ErrorBody


class ErrorDialect:
    """How a family renders errors; subclass and override `body` (and `model` for OpenAPI)."""

    model: ClassVar[type[BaseModel]] = ErrorEnvelope
    #: Statuses every route of the family documents with `model` in OpenAPI.
    statuses: ClassVar[Sequence[int]] = (400, 401, 403, 404, 409, 422, 429, 500, 503)

    def body(self, err: ApiError, request_id: str) -> dict[str, Any]:
        """The JSON body of one error."""
        return {
            "error": {
                "type": err.type,
                "code": err.code,
                "message": err.message,
                "param": err.param,
                "request_id": request_id,
            }
        }

    def response(self, err: ApiError, request_id: str) -> JSONResponse:
        """The full response of one error (status, headers, body)."""
        return JSONResponse(
            self.body(err, request_id), status_code=err.status, headers=dict(err.headers)
        )

    def openapi_responses(self) -> dict[int | str, dict[str, Any]]:
        """`responses=` for a router: every error status documented with this dialect's model."""
        return {s: {"model": self.model, "description": _DESCRIPTIONS[s]} for s in self.statuses}


_DESCRIPTIONS = {
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing or invalid bearer token",
    403: "The token's role lacks the right",
    404: "Not found, or owned by another organization",
    409: "Conflict (e.g. Idempotency-Key reused with a different body)",
    422: "Validation error",
    429: "Rate limit exceeded (see Retry-After)",
    500: "Unexpected server error",
    502: "Upstream dependency unavailable",
    503: "The database is unavailable for a moment (see Retry-After); nothing was written",
}

DEFAULT_DIALECT = ErrorDialect()

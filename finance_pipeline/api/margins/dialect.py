"""The 003 margins API's error dialect: the default envelope with the margins API's codes.

The margins API shows no error body of its own, only codes per status: 400 `validation_error`
(every malformed input, body or query, so no 422), 401 `authentication_required`, 403 `forbidden`
(role or tier), 404 `not_found`, 409 `conflict`, 400 `stripe_validation_failed`. Codes of the
shared layer are translated to those; the rest (idempotency, rate limit) keep their own. OpenAPI
still lists 422 with the envelope, as every family does (FastAPI's own 422 model would otherwise
show), though this family answers 400 instead.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from finance_pipeline.api.errors import ApiError, ErrorDialect

# Shared-layer code -> margins API code, for every status but 401 (always authentication_required).
_CODES = {
    "missing_field": "validation_error",
    "invalid_field": "validation_error",
    "invalid_json": "validation_error",
    "parameter_unknown": "validation_error",
    "insufficient_role": "forbidden",
    "workspace_scoped_key": "forbidden",
    "resource_missing": "not_found",
    "route_not_found": "not_found",
}


class MarginsDialect(ErrorDialect):
    """The default envelope; 422 becomes 400 validation_error, codes as the margins API names them."""

    def response(self, err: ApiError, request_id: str) -> JSONResponse:
        """The error with the margins API's status and code."""
        status = 400 if err.status == 422 else err.status
        code = "authentication_required" if status == 401 else _CODES.get(err.code, err.code)
        translated = ApiError(status, code, err.message, param=err.param, headers=dict(err.headers))
        return super().response(translated, request_id)


MARGINS_DIALECT = MarginsDialect()

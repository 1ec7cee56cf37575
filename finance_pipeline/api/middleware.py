"""The outermost layer of every request: its id, and no stack trace ever reaching a client."""

from __future__ import annotations

import logging
import re

from sqlalchemy import exc as sa_exc
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.families import dialect_for
from finance_pipeline.tenancy import new_id

log = logging.getLogger("finance_pipeline.api")

HEADER = "X-Request-Id"
# A client's id is kept when it is short and plain (it is echoed in headers and logs).
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# While the database is away (a restart, a failover), clients retry after this many seconds; the
# pool replaces broken connections by itself, so the first request after it is back succeeds.
RETRY_AFTER_SECONDS = 2


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached or dropped the connection (as opposed
    to a bad statement): a refused or lost connection, a pool timeout, a server shutting down."""
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError)
    return False


class RequestContextMiddleware:
    """Gives each request an id (the client's X-Request-Id when sane, else `req_...`), sends it
    back on every response, and turns an unhandled exception into the family's 500 envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), ""
        )
        rid = offered if _SANE_ID.match(offered) else new_id("req")
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            unavailable = database_unavailable(exc)
            if unavailable:
                # Expected while PostgreSQL restarts: one line, not a stack trace per request.
                log.warning(
                    "database unavailable in %s %s (request %s): %s",
                    scope["method"],
                    scope["path"],
                    rid,
                    type(exc).__name__,
                )
            else:
                log.exception(
                    "unhandled error in %s %s (request %s)", scope["method"], scope["path"], rid
                )
            if started:
                raise  # the response is under way: the server closes the connection
            err = (
                ApiError(
                    503,
                    "database_unavailable",
                    "The database is unavailable for a moment; nothing was written. Retry "
                    f"in {RETRY_AFTER_SECONDS} s.",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
                if unavailable
                else ApiError(500, "internal_error", "An unexpected error occurred.")
            )
            await dialect_for(scope["app"], scope["path"]).response(err, rid)(
                scope, receive, send_with_id
            )

"""The outermost layer of every request: its id, and no stack trace ever reaching a client."""

from __future__ import annotations

import logging
import re

from sqlalchemy import exc as sa_exc
from starlette.datastructures import Headers, MutableHeaders
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


def _body_problem(content_type: str | None, body: bytes) -> ApiError | None:
    """Why a non-empty body is not one the API reads (JSON in UTF-8), or None."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        shown = f"Content-Type {media!r}" if media else "no Content-Type"
        return ApiError(
            415,
            "unsupported_media_type",
            f"The request body was sent with {shown}; send JSON with Content-Type: "
            "application/json.",
            param="Content-Type",
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return ApiError(
                415,
                "unsupported_media_type",
                f"The body's charset is {charset!r}; the API reads JSON encoded in UTF-8.",
                param="Content-Type",
            )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ApiError(
            400,
            "invalid_json",
            f"The request body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset "
            f"{exc.start}); send JSON encoded in UTF-8.",
        )
    if b"\x00" in body:  # UTF-16/32 text: JSON never holds a raw NUL, UTF-8 JSON cannot
        return ApiError(
            400,
            "invalid_json",
            "The request body holds NUL bytes (UTF-16 or UTF-32 text?); send JSON encoded in UTF-8.",
        )
    return None


# Where RequestBodyMiddleware keeps the body it read, in the request's scope state.
_BODY = "request_body"


def request_body(scope: Scope) -> bytes:
    """The request's body as RequestBodyMiddleware read it. Layers inside it (idempotency hashes
    the body) take it from here, so the body is buffered once and the route still reads it."""
    try:
        return scope["state"][_BODY]
    except KeyError:
        raise RuntimeError("request_body() runs inside RequestBodyMiddleware") from None


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the buffered body on as one message, then passes on what the
    client sends next (a disconnect)."""
    handed = False

    async def replay() -> Message:
        nonlocal handed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class RequestBodyMiddleware:
    """Reads each request's body once, before any route or the idempotency layer sees it, and
    refuses what the API never takes: more than FP_API_MAX_BODY_BYTES (413, from Content-Length
    without reading it when declared), a body that is not JSON (415) or not UTF-8 (400). A refused
    request reaches no route, so nothing is written. Otherwise the body is kept on the scope
    (`request_body`) and handed on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int = scope["app"].state.ctx.settings.api_max_body_bytes
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, _too_large(limit, f"{int(declared):,} bytes"))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before the body was complete: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, _too_large(limit, "over the limit"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _body_problem(headers.get("content-type"), body) if body else None
        if problem is not None:
            await self._refuse(scope, receive, send, problem)
            return
        scope.setdefault("state", {})[_BODY] = body
        await self.app(scope, _replaying(body, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, err: ApiError) -> None:
        rid = scope.get("state", {}).get("request_id", "")
        await dialect_for(scope["app"], scope["path"]).response(err, rid)(scope, receive, send)


def _too_large(limit: int, size: str) -> ApiError:
    return ApiError(
        413,
        "request_too_large",
        f"The request body is {size}; at most {limit:,} bytes are accepted. Split the data into "
        "several requests.",
    )

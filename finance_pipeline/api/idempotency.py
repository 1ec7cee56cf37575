"""`Idempotency-Key` on POST and PATCH, stored in the warehouse so it holds across workers.

The first request with a key inserts its row before it runs; that insert is the lock (a second
request with the same key, in any worker, finds the row and does not run). The response is stored
on the row and replayed for 24 h (setting api_idempotency_ttl_seconds) to the same caller sending
the same key with the same method, path and body; another body, method or path answers 409, and so
does a request whose twin is still running. 5xx, 401 and 429 responses are not stored, so a retry
runs again. A key still in progress after the lease (api_idempotency_lease_seconds) belongs to a
request that is gone (its worker killed, or the database lost before the key could be freed): a
retry takes it over and runs. Stored bodies are encrypted with the master key (FP_SECRET_KEY): a replayed response
may hold a credential (an access token, an API key shown once), which the warehouse never holds
in the clear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finance_pipeline.api.auth import authenticate
from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.families import dialect_for
from finance_pipeline.api.middleware import database_unavailable, request_body
from finance_pipeline.secrets import decrypt_secret, encrypt_secret
from finance_pipeline.settings import Settings
from finance_pipeline.warehouse.db import Warehouse

HEADER = "idempotency-key"
METHODS = frozenset({"POST", "PATCH"})
_SANE_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_NOT_STORED = frozenset({401, 429})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """A key's row: the request it was first used with and, once done, its response."""

    request_method: str
    request_path: str
    body_sha256: str
    status_code: int | None
    response_content_type: str | None
    response_body: str | None


def body_sha256(body: bytes) -> str:
    """sha256 of a request body; JSON is canonicalized first (key order and spacing ignored)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


def claim(
    wh: Warehouse,
    principal: str,
    key: str,
    method: str,
    path: str,
    sha: str,
    ttl: int,
    lease: int = 120,
) -> Stored | None:
    """Take the key for this request (None: it is ours, run the request), or the row already
    holding it (completed, or in progress when status_code is None). An in-progress row older
    than `lease` seconds is taken over."""
    now = int(time.time())
    with wh.begin() as db:
        # Expired keys (this one included) are forgotten before the insert.
        db.execute(
            wh.text("DELETE FROM app.idempotency_keys WHERE created_at < :old"),
            {"old": now - ttl},
        )
        inserted = wh.insert_new(
            db,
            "app.idempotency_keys",
            [
                {
                    "principal": principal,
                    "idempotency_key": key,
                    "request_method": method,
                    "request_path": path,
                    "body_sha256": sha,
                    "created_at": now,
                }
            ],
            key=("principal", "idempotency_key"),
        )
        if inserted:
            return None
        # Abandoned (no answer within the lease): the request that took it never finished, and
        # never wrote, since an answer is stored or the key freed whenever it ends. Take it over.
        taken = db.execute(
            wh.text(
                "UPDATE app.idempotency_keys SET request_method = :m, request_path = :q,"
                " body_sha256 = :h, created_at = :now WHERE principal = :p"
                " AND idempotency_key = :k AND status_code IS NULL AND created_at < :stale"
            ),
            {
                "m": method,
                "q": path,
                "h": sha,
                "now": now,
                "p": principal,
                "k": key,
                "stale": now - lease,
            },
        ).rowcount
        if taken:
            return None
        row = wh.read(
            db,
            "SELECT request_method, request_path, body_sha256, status_code,"
            " response_content_type, response_body FROM app.idempotency_keys"
            " WHERE principal = :p AND idempotency_key = :k",
            p=principal,
            k=key,
        )
    if not row:  # deleted between the insert and the read: a race with the expiry; retry
        return claim(wh, principal, key, method, path, sha, ttl)
    return Stored(**row[0])


def complete(
    wh: Warehouse,
    settings: Settings,
    principal: str,
    key: str,
    status: int,
    content_type: str | None,
    body: str,
) -> None:
    """Store the response (body encrypted) of the request that holds the key."""
    body = encrypt_secret(body, settings)
    with wh.begin() as db:
        db.execute(
            wh.text(
                "UPDATE app.idempotency_keys SET status_code = :s, response_content_type = :c,"
                " response_body = :b WHERE principal = :p AND idempotency_key = :k"
            ),
            {"s": status, "c": content_type, "b": body, "p": principal, "k": key},
        )


def release(wh: Warehouse, principal: str, key: str) -> None:
    """Forget a key whose request failed, so that a retry runs again."""
    with wh.begin() as db:
        db.execute(
            wh.text(
                "DELETE FROM app.idempotency_keys WHERE principal = :p AND idempotency_key = :k"
            ),
            {"p": principal, "k": key},
        )


class IdempotencyMiddleware:
    """ASGI middleware applying `Idempotency-Key` to every POST and PATCH of every family."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        key = request.headers.get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        dialect = dialect_for(scope["app"], scope["path"])
        rid = scope.get("state", {}).get("request_id", "")
        if not _SANE_KEY.match(key):
            err = ApiError(
                400,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 visible ASCII characters.",
                param="Idempotency-Key",
            )
            await dialect.response(err, rid)(scope, receive, send)
            return
        owner = await self._owner(request)
        if owner is None:  # a bad credential: the route answers 401, nothing to store
            await self.app(scope, receive, send)
            return
        body = request_body(scope)
        wh: Warehouse = scope["app"].state.ctx.wh
        ttl: int = scope["app"].state.ctx.settings.api_idempotency_ttl_seconds
        method, path, sha = scope["method"], scope["path"], body_sha256(body)
        lease: int = scope["app"].state.ctx.settings.api_idempotency_lease_seconds
        stored = await run_in_threadpool(claim, wh, owner, key, method, path, sha, ttl, lease)
        if stored is not None:
            await self._answer_existing(stored, (method, path, sha), dialect, rid, scope, send)
            return
        # The body was taken from the scope, not from `receive`: the route still reads it there.
        await self._run_and_store(scope, receive, send, owner, key)

    async def _owner(self, request: Request) -> str | None:
        """Whose keys these are: the credential's identity, or the client address without one."""
        if "authorization" not in request.headers:
            host = request.client.host if request.client else "unknown"
            return f"anonymous@{host}"
        try:
            principal = await run_in_threadpool(authenticate, request)
        except ApiError:
            return None
        return principal.key

    async def _answer_existing(
        self,
        stored: Stored,
        request: tuple[str, str, str],
        dialect: Any,
        rid: str,
        scope: Scope,
        send: Send,
    ) -> None:
        if (stored.request_method, stored.request_path, stored.body_sha256) != request:
            err = ApiError(
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request body (or path).",
                param="Idempotency-Key",
            )
            response: Response = dialect.response(err, rid)
        elif stored.status_code is None:
            err = ApiError(
                409,
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being processed; retry later.",
                param="Idempotency-Key",
            )
            response = dialect.response(err, rid)
        else:
            settings = scope["app"].state.ctx.settings
            body = decrypt_secret(stored.response_body, settings) if stored.response_body else ""
            response = Response(
                content=body.encode(),
                status_code=stored.status_code,
                media_type=stored.response_content_type,
                headers={"Idempotent-Replayed": "true"},
            )
        await response(scope, _no_body, send)

    async def _run_and_store(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        owner: str,
        key: str,
    ) -> None:
        wh: Warehouse = scope["app"].state.ctx.wh
        settings: Settings = scope["app"].state.ctx.settings
        # The response is held back until it is stored: a client retrying the moment it
        # receives the response must find it completed, not still in progress.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, receive, hold)
        except BaseException:
            await run_in_threadpool(release, wh, owner, key)
            raise
        start = next((m for m in held if m["type"] == "http.response.start"), None)
        status = start["status"] if start else 500
        content_type = next(
            (
                v.decode("latin-1")
                for k, v in (start or {}).get("headers", [])
                if k.lower() == b"content-type"
            ),
            None,
        )
        raw = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        try:
            text: str | None = raw.decode()
        except UnicodeDecodeError:
            text = None
        try:
            if status >= 500 or status in _NOT_STORED or text is None:
                await run_in_threadpool(release, wh, owner, key)
            else:
                await run_in_threadpool(
                    complete, wh, settings, owner, key, status, content_type, text
                )
        except Exception as exc:
            if not database_unavailable(exc) or status >= 500:
                raise
            # The request's own writes committed: its answer stands, whatever the key's row
            # says (a 503 here would tell the client nothing was written). The key stays in
            # progress until the lease ends; a retry then runs again, and ingests skip
            # the rows they already stored (external_id).
            log.warning("Idempotency-Key answer not stored (database unavailable): %s", exc)
        for message in held:
            await send(message)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}

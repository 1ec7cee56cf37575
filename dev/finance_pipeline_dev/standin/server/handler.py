"""HTTP plumbing: the keep-alive request handler (the Stripe API behind faults and the request
log, or the control plane) and the threaded server that tracks its open connections."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from finance_pipeline_dev.standin import shapes
from finance_pipeline_dev.standin.faults import Decision, error_body, fault_response
from finance_pipeline_dev.standin.store import StoreError, redact_key

from .api import _Engine
from .control import _control_dispatch, _control_error
from .params import ApiError, parse_query

if TYPE_CHECKING:
    from .inprocess import StandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # the request log replaces stderr access logs

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.track(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path
        body = self._read_body()
        if path.startswith("/_standin/") or path == "/_standin":
            self._control(method, path, split.query, body)
            return
        self._api(method, path, split.query)

    # ---------------------------------------------------------------- Stripe API

    def _api(self, method: str, path: str, query: str) -> None:
        engine = self.server.engine
        started = time.perf_counter()
        request_id = "req_" + secrets.token_hex(7)
        entry: dict[str, Any] = {
            "time": time.time(),
            "clock": engine.store.now(),
            "method": method,
            "path": path,
            "query": unquote(query),
            "account": None,
            "key_prefix": None,
            "status": None,
            "fault": None,
            "request_id": request_id,
            "stripe_version": self.headers.get("Stripe-Version"),
            "stripe_account": self.headers.get("Stripe-Account"),
            "idempotency_key": self.headers.get("Idempotency-Key"),
        }
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if key:
            entry["key_prefix"] = redact_key(key)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": self.headers.get("Stripe-Version") or shapes.API_VERSION,
        }
        decision = engine.faults.decide(path) if path.startswith("/v1") else Decision()
        entry["fault"] = decision.kind
        if decision.delay_ms:
            time.sleep(decision.delay_ms / 1000.0)
        if decision.kind == "drop":
            self._log(entry, started)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if decision.kind not in (None, "slow"):
            status, extra, payload = fault_response(decision, request_id)
            headers.update(extra)
        else:
            status, payload = self._serve_api(method, path, query, request_id, entry)
        entry["status"] = status
        # logged before the response goes out, so a client that got it also finds it logged
        self._log(entry, started)
        try:
            self._send(status, payload, headers)
        except OSError:  # the client gave up (e.g. its timeout hit during a slow fault)
            with engine.log_lock:
                entry["client_gone"] = True
            self.close_connection = True

    def _log(self, entry: dict[str, Any], started: float) -> None:
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        self.server.engine.record(entry)

    def _serve_api(
        self, method: str, path: str, query: str, request_id: str, entry: dict[str, Any]
    ) -> tuple[int, bytes]:
        engine = self.server.engine
        try:
            auth = engine.authenticate(self.headers)
            entry["account"] = auth.account
            return 200, engine.handle_api(method, path, parse_query(query), auth)
        except ApiError as err:
            return err.status, error_body(
                err.status,
                err.type,
                err.message,
                code=err.code,
                param=err.param,
                request_id=request_id,
            )
        except StoreError as err:
            return 400, error_body(400, "invalid_request_error", str(err), request_id=request_id)
        except Exception as err:  # a stand-in bug must look like Stripe's 500, not a hang
            return 500, error_body(
                500,
                "api_error",
                f"stand-in internal error: {type(err).__name__}: {err}",
                request_id=request_id,
            )

    # ---------------------------------------------------------------- control plane

    def _control(self, method: str, path: str, query: str, body: bytes) -> None:
        standin = self.server.standin
        try:
            payload = json.loads(body) if body else {}
            result = _control_dispatch(standin, method, path, parse_query(query), payload)
            self._send(200, json.dumps(result, separators=(",", ":")).encode())
        except LookupError as err:
            self._send(404, _control_error(str(err)))
        except (ValueError, TypeError, StoreError) as err:
            self._send(400, _control_error(str(err)))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], engine: _Engine, standin: StandIn) -> None:
        self.engine = engine
        self.standin = standin
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # broken client connections are normal under fault injection; stay quiet

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

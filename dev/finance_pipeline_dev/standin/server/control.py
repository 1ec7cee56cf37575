"""The ``/_standin/`` control plane: its dispatch inside the server, and ``RemoteStandIn``, the
client that drives a stand-in served by another process through it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .inprocess import StandIn


def _control_error(message: str) -> bytes:
    return json.dumps({"error": {"type": "standin_error", "message": message}}).encode()


def _control_dispatch(
    standin: StandIn, method: str, path: str, query: dict[str, Any], body: Any
) -> Any:
    route = path.rstrip("/").removeprefix("/_standin")
    if route == "/health":
        return {"ok": True, "now": standin.now()}
    if route == "/clock":
        if method == "POST":
            if "advance" in body:
                standin.advance_clock(int(body["advance"]))
            elif "now" in body:
                standin.set_clock(None if body["now"] is None else int(body["now"]))
            else:
                raise ValueError("POST /_standin/clock needs 'now' or 'advance'")
        return {"now": standin.now(), "frozen": standin.store.clock.frozen}
    if route == "/time_travel":
        if method == "POST":
            if "enabled" not in body:
                raise ValueError("POST /_standin/time_travel needs 'enabled'")
            standin.set_time_travel(bool(body["enabled"]))
        return {"enabled": standin.store.time_travel, "now": standin.now()}
    if route == "/faults":
        if method == "POST":
            standin.configure_faults(**body)
        return standin.faults.snapshot()
    if route == "/faults/fail_next" and method == "POST":
        standin.fail_next(
            int(body.get("n", 1)),
            str(body["kind"]),
            delay_ms=int(body.get("delay_ms", 0)),
            path_prefix=body.get("path_prefix"),
        )
        return standin.faults.snapshot()
    if route == "/faults/reset" and method == "POST":
        standin.reset_faults()
        return standin.faults.snapshot()
    if route == "/requests":
        if method == "DELETE":
            standin.clear_requests()
            return {"requests": []}
        return {"requests": standin.requests()}
    if route == "/requests/clear" and method == "POST":
        standin.clear_requests()
        return {"requests": []}
    if route == "/load" and method == "POST":
        standin.load(body)
        return {"ok": True}
    if route == "/dump":
        return standin.dump()
    if route == "/objects" and method == "POST":
        return standin.create(str(body["account"]), body["object"], body.get("event_type"))
    if route.startswith("/objects/") and method == "POST":
        return standin.update(
            str(body["account"]), route[len("/objects/") :], body["changes"], body.get("event_type")
        )
    if route.startswith("/objects/") and method == "DELETE":
        return standin.delete(
            str(query.get("account") or body.get("account")),
            route[len("/objects/") :],
            query.get("event_type") or body.get("event_type"),
        )
    raise LookupError(f"unknown control endpoint {method} {path}")


class RemoteStandIn:
    """Drives a stand-in served elsewhere (e.g. by ``serve.py``) through ``/_standin/``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}/_standin{route}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise RuntimeError(f"stand-in control call {method} {route} failed: {detail}") from err

    def now(self) -> int:
        """The remote clock."""
        return int(self._call("GET", "/clock")["now"])

    def set_clock(self, now: int | None) -> None:
        """Freeze the remote clock at ``now`` (None: real time)."""
        self._call("POST", "/clock", {"now": now})

    def advance_clock(self, seconds: int) -> int:
        """Advance the remote clock; returns the new now."""
        return int(self._call("POST", "/clock", {"advance": seconds})["now"])

    def set_time_travel(self, enabled: bool) -> None:
        """Serve the remote account as of its clock (True) or its final state (False)."""
        self._call("POST", "/time_travel", {"enabled": enabled})

    def time_travel(self) -> bool:
        """Whether the remote stand-in serves the account as of its clock."""
        return bool(self._call("GET", "/time_travel")["enabled"])

    def configure_faults(self, **settings: Any) -> dict[str, Any]:
        """Update remote fault settings."""
        return dict(self._call("POST", "/faults", settings))

    def fail_next(
        self, n: int, kind: str, *, delay_ms: int = 0, path_prefix: str | None = None
    ) -> None:
        """Fail the next ``n`` remote API requests with ``kind``."""
        self._call(
            "POST",
            "/faults/fail_next",
            {"n": n, "kind": kind, "delay_ms": delay_ms, "path_prefix": path_prefix},
        )

    def reset_faults(self) -> None:
        """Turn all remote faults off."""
        self._call("POST", "/faults/reset", {})

    def requests(self) -> list[dict[str, Any]]:
        """The remote request log."""
        return list(self._call("GET", "/requests")["requests"])

    def clear_requests(self) -> None:
        """Empty the remote request log."""
        self._call("DELETE", "/requests")

    def load(self, doc: Mapping[str, Any]) -> None:
        """Replace the remote state with a fixture document."""
        self._call("POST", "/load", dict(doc))

    def dump(self) -> dict[str, Any]:
        """The remote state as a fixture document."""
        return dict(self._call("GET", "/dump"))

    def create(
        self, account: str, obj: Mapping[str, Any], event_type: str | None = None
    ) -> dict[str, Any]:
        """Add an object remotely (optionally with an event)."""
        return dict(
            self._call(
                "POST", "/objects", {"account": account, "object": obj, "event_type": event_type}
            )
        )

    def update(
        self, account: str, object_id: str, changes: Mapping[str, Any], event_type: str | None
    ) -> dict[str, Any] | None:
        """Change a remote object and emit ``event_type``; returns the event."""
        return self._call(
            "POST",
            f"/objects/{object_id}",
            {"account": account, "changes": dict(changes), "event_type": event_type},
        )

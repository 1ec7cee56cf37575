"""``StandIn``, the in-process handle: serves a store from a background thread, hands out SDK
clients, and offers every control-plane operation as a method."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finance_pipeline_dev.standin import shapes
from finance_pipeline_dev.standin.faults import FaultInjector
from finance_pipeline_dev.standin.store import Store

from .api import _Engine
from .handler import _Server


class StandIn:
    """An in-process stand-in: ``StandIn(store).start() -> url``; also a context manager.

    ``store`` may be a Store, a fixture dict or a path to a fixture JSON file (None: empty).
    Every control-plane operation is a method here (clock, faults, request log, load/dump,
    create/update objects with events).
    """

    def __init__(
        self,
        store: Store | Mapping[str, Any] | str | Path | None = None,
        *,
        seed: int = 0,
        log_limit: int = 100_000,
    ) -> None:
        if isinstance(store, Store):
            self.store = store
        elif store is None:
            self.store = Store(seed=seed)
        else:
            self.store = Store.load(store, seed=seed)
        self.faults = FaultInjector(seed)
        self._engine = _Engine(self.store, self.faults, log_limit)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns the base URL (``http://127.0.0.1:PORT``)."""
        if self._server is not None:
            return self.url
        self._server = _Server((host, port), self._engine, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"stripe-standin:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start``)."""
        if self._server is None:
            raise RuntimeError("stand-in is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to pass as ``base_addresses={"api": url}``."""
        if self._server is None:
            raise RuntimeError("stand-in is not running")
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def client(
        self,
        api_key: str,
        *,
        stripe_account: str | None = None,
        max_network_retries: int = 0,
        timeout: float = 30.0,
    ) -> Any:
        """A real ``stripe.StripeClient`` pointed at this stand-in (pinned API version)."""
        import stripe

        return stripe.StripeClient(
            api_key,
            stripe_account=stripe_account,
            stripe_version=shapes.API_VERSION,
            base_addresses={"api": self.url},
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    # ---------------------------------------------------------------- control plane

    def now(self) -> int:
        """The stand-in clock (unix seconds)."""
        return self.store.now()

    def set_clock(self, now: int | None) -> None:
        """Freeze the clock at ``now`` (None: follow real time)."""
        self.store.clock.set(now)

    def advance_clock(self, seconds: int) -> int:
        """Move the clock forward; returns the new now."""
        return self.store.clock.advance(seconds)

    def set_time_travel(self, enabled: bool) -> None:
        """Serve the account as of the clock (True) or its stored final state (False)."""
        self.store.set_time_travel(enabled)

    def configure_faults(self, **settings: Any) -> dict[str, Any]:
        """Update fault settings (see ``faults.FaultConfig``); returns the full snapshot."""
        self.faults.configure(**settings)
        return self.faults.snapshot()

    def fail_next(
        self, n: int, kind: str, *, delay_ms: int = 0, path_prefix: str | None = None
    ) -> None:
        """Fail the next ``n`` API requests (optionally under ``path_prefix``) with ``kind``."""
        self.faults.fail_next(n, kind, delay_ms=delay_ms, path_prefix=path_prefix)

    def reset_faults(self) -> None:
        """Turn all faults and the rate limit off."""
        self.faults.reset()

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first (copies; keys appear only redacted)."""
        with self._engine.log_lock:
            return [dict(e) for e in self._engine.log]

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._engine.log_lock:
            self._engine.log.clear()

    def load(self, doc_or_path: Mapping[str, Any] | str | Path) -> None:
        """Replace the whole state with a fixture document."""
        self.store.restore(doc_or_path)

    def dump(self) -> dict[str, Any]:
        """The whole state as a fixture document."""
        return self.store.dump()

    def create(
        self, account: str, obj: Mapping[str, Any], event_type: str | None = None
    ) -> dict[str, Any]:
        """Add an object (optionally emitting ``event_type``); see ``Store.create``."""
        return self.store.create(account, obj, event_type)

    def update(
        self, account: str, object_id: str, changes: Mapping[str, Any], event_type: str | None
    ) -> dict[str, Any] | None:
        """Change an object and emit ``event_type`` (with previous_attributes); see Store.update."""
        return self.store.update(account, object_id, changes, event_type)

    def delete(
        self, account: str, object_id: str, event_type: str | None = None
    ) -> dict[str, Any] | None:
        """Delete an object (retrieve then shows ``deleted: true``); see ``Store.delete``."""
        return self.store.delete(account, object_id, event_type)

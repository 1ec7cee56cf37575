"""Fault injection for the stand-in: Stripe-shaped errors, slowness, drops and rate limits.

Decisions are deterministic for a given seed and request order: every request draws the same number
of random values, so a sequential client sees the same faults on every run.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: Fault kinds and the HTTP status each produces (None: no response at all / normal response).
FAULT_STATUS: dict[str, int | None] = {
    "rate_limit": 429,
    "lock_timeout": 429,
    "server_error": 500,
    "bad_gateway": 502,
    "service_unavailable": 503,
    "slow": None,
    "drop": None,
}
FAULT_KINDS = tuple(FAULT_STATUS)
_ALIASES = {
    "429": "rate_limit",
    "500": "server_error",
    "502": "bad_gateway",
    "503": "service_unavailable",
}
#: Kinds used by ``error_rate`` when no mix is configured.
DEFAULT_ERROR_MIX: dict[str, float] = {
    "rate_limit": 1.0,
    "lock_timeout": 1.0,
    "server_error": 1.0,
    "service_unavailable": 1.0,
    "drop": 1.0,
}

_RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. You can learn more about rate limits here "
    "https://docs.stripe.com/rate-limits."
)
_LOCK_TIMEOUT_MESSAGE = (
    "This object cannot be accessed right now because another API request or Stripe process is "
    "currently accessing it. If you see this error intermittently, retry the request. If you see "
    "this error frequently and are making multiple concurrent requests to a single object, make "
    "your requests serially or at a lower rate. See https://docs.stripe.com/rate-limits for more "
    "information."
)


def canonical_kind(kind: str) -> str:
    """Validate a fault kind (accepting "429"/"500"/"502"/"503" aliases)."""
    kind = _ALIASES.get(str(kind), str(kind))
    if kind not in FAULT_STATUS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
    return kind


@dataclass
class FaultConfig:
    """Runtime fault settings (all off by default).

    error_rate: fraction of requests failing with a kind drawn from ``error_mix`` (weights).
    delay_ms: added to every response. slow_rate/slow_ms: a fraction of requests is that slow.
    latency_ms: the network round trip (real Stripe across the internet: ~150 ms), added to every
    API response, errors and 429s included; unlike the faults, ``reset`` keeps it.
    rate_limit_rps/rate_limit_burst: server-side token bucket; excess gets 429 + Retry-After.
    path_prefix: when set, faults (not the rate limit) only hit paths starting with it.
    """

    error_rate: float = 0.0
    error_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ERROR_MIX))
    delay_ms: int = 0
    slow_rate: float = 0.0
    slow_ms: int = 0
    rate_limit_rps: float | None = None
    rate_limit_burst: float | None = None
    path_prefix: str | None = None
    seed: int = 0
    latency_ms: int = 0

    def validate(self) -> None:
        """Reject nonsensical settings early (at configure time, not mid-request)."""
        if not 0.0 <= self.error_rate <= 1.0 or not 0.0 <= self.slow_rate <= 1.0:
            raise ValueError("error_rate and slow_rate must be within [0, 1]")
        if self.delay_ms < 0 or self.slow_ms < 0 or self.latency_ms < 0:
            raise ValueError("delays must be >= 0 ms")
        if self.rate_limit_rps is not None and self.rate_limit_rps <= 0:
            raise ValueError("rate_limit_rps must be > 0 (or None to disable)")
        self.error_mix = {canonical_kind(k): float(w) for k, w in self.error_mix.items()}
        if self.error_rate and not any(w > 0 for w in self.error_mix.values()):
            raise ValueError("error_mix needs a positive weight")


@dataclass(frozen=True)
class Decision:
    """What to do with one request: ``kind`` None means serve it (after ``delay_ms``)."""

    kind: str | None = None
    delay_ms: int = 0
    retry_after: int | None = None
    source: str | None = None  # "fail_next", "error_rate", "slow", "rate_limit"


class FaultInjector:
    """Decides per request whether and how to fail; configurable while the server runs."""

    def __init__(self, seed: int = 0, latency_ms: int = 0) -> None:
        self._lock = threading.Lock()
        self._config = FaultConfig(seed=seed, latency_ms=latency_ms)
        self._config.validate()
        self._rand = random.Random(seed)
        self._queue: deque[tuple[str, int, str | None]] = deque()
        self._tokens = 0.0
        self._last_refill = time.monotonic()

    # ------------------------------------------------------------------ configuration

    def configure(self, **settings: Any) -> FaultConfig:
        """Update some settings (see FaultConfig); a new ``seed`` restarts the random sequence."""
        with self._lock:
            current = asdict(self._config)
            unknown = set(settings) - set(current)
            if unknown:
                raise ValueError(f"unknown fault settings: {sorted(unknown)}")
            current.update(settings)
            cfg = FaultConfig(**current)
            cfg.validate()
            if "seed" in settings:
                self._rand = random.Random(cfg.seed)
            if (
                cfg.rate_limit_rps != self._config.rate_limit_rps
                or cfg.rate_limit_burst != self._config.rate_limit_burst
            ):
                self._tokens = self._burst(cfg)
                self._last_refill = time.monotonic()
            self._config = cfg
            return FaultConfig(**asdict(cfg))

    def reset(self) -> None:
        """Turn every fault off, clear queued failures and restart the seeded sequence.

        The latency stays: it models the network, not a fault.
        """
        with self._lock:
            seed, latency = self._config.seed, self._config.latency_ms
            self._config = FaultConfig(seed=seed, latency_ms=latency)
            self._rand = random.Random(seed)
            self._queue.clear()

    def fail_next(
        self, n: int, kind: str, *, delay_ms: int = 0, path_prefix: str | None = None
    ) -> None:
        """Fail the next ``n`` matching requests with ``kind`` (queued after earlier fail_next)."""
        kind = canonical_kind(kind)
        if n < 1:
            raise ValueError("n must be >= 1")
        with self._lock:
            for _ in range(n):
                self._queue.append((kind, int(delay_ms), path_prefix))

    @property
    def config(self) -> FaultConfig:
        """A copy of the current settings."""
        with self._lock:
            return FaultConfig(**asdict(self._config))

    def snapshot(self) -> dict[str, Any]:
        """Settings plus pending fail_next entries, JSON-ready."""
        with self._lock:
            return {
                **asdict(self._config),
                "pending": [
                    {"kind": k, "delay_ms": d, "path_prefix": p} for k, d, p in self._queue
                ],
            }

    # ------------------------------------------------------------------ per request

    def decide(self, path: str) -> Decision:
        """The fault (if any) for a request to ``path``; consumes rate-limit tokens.

        The decision (and the rate limit's count) is taken on arrival; the latency is then spent
        before the response leaves, in the request's own server thread.
        """
        decision = self._decide(path)
        latency = self._config.latency_ms
        if latency:
            decision = replace(decision, delay_ms=decision.delay_ms + latency)
        return decision

    def _decide(self, path: str) -> Decision:
        with self._lock:
            cfg = self._config
            r_err, r_kind, r_slow = self._rand.random(), self._rand.random(), self._rand.random()
            if cfg.rate_limit_rps is not None:
                now = time.monotonic()
                burst = self._burst(cfg)
                self._tokens = min(
                    burst, self._tokens + (now - self._last_refill) * cfg.rate_limit_rps
                )
                self._last_refill = now
                if self._tokens < 1.0:
                    wait = (1.0 - self._tokens) / cfg.rate_limit_rps
                    return Decision("rate_limit", 0, max(1, math.ceil(wait)), "rate_limit")
                self._tokens -= 1.0
            for i, (kind, delay, prefix) in enumerate(self._queue):
                if prefix is None or path.startswith(prefix):
                    del self._queue[i]
                    delay = delay or (cfg.slow_ms if kind == "slow" else 0)
                    return Decision(kind, delay + cfg.delay_ms, None, "fail_next")
            if cfg.path_prefix is not None and not path.startswith(cfg.path_prefix):
                return Decision(None, 0)
            if cfg.error_rate and r_err < cfg.error_rate:
                return Decision(self._pick(cfg.error_mix, r_kind), cfg.delay_ms, None, "error_rate")
            if cfg.slow_rate and r_slow < cfg.slow_rate:
                return Decision("slow", cfg.slow_ms + cfg.delay_ms, None, "slow")
            return Decision(None, cfg.delay_ms)

    @staticmethod
    def _burst(cfg: FaultConfig) -> float:
        if cfg.rate_limit_rps is None:
            return 0.0
        return float(cfg.rate_limit_burst or max(1.0, cfg.rate_limit_rps))

    @staticmethod
    def _pick(mix: Mapping[str, float], r: float) -> str:
        total = sum(w for w in mix.values() if w > 0)
        acc = 0.0
        for kind, weight in mix.items():
            if weight <= 0:
                continue
            acc += weight / total
            if r < acc:
                return kind
        return next(k for k, w in reversed(mix.items()) if w > 0)


def error_body(
    status: int,
    type_: str,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    request_id: str | None = None,
) -> bytes:
    """Stripe's error envelope ``{"error": {type, code, message, param, ...}}`` as JSON bytes."""
    err: dict[str, Any] = {"message": message, "type": type_}
    if code is not None:
        err["code"] = code
        err["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
    if param is not None:
        err["param"] = param
    if request_id is not None:
        err["request_log_url"] = (
            f"https://dashboard.stripe.com/test/logs/{request_id}?t={int(time.time())}"
        )
    return json.dumps({"error": err}, separators=(",", ":")).encode("utf-8")


def fault_response(decision: Decision, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """Status, extra headers and body for an error fault (not for slow/drop)."""
    kind = decision.kind
    headers: dict[str, str] = {}
    if kind == "rate_limit":
        if decision.retry_after is not None:
            headers["Retry-After"] = str(decision.retry_after)
        return (
            429,
            headers,
            error_body(
                429,
                "invalid_request_error",
                _RATE_LIMIT_MESSAGE,
                code="rate_limit",
                request_id=request_id,
            ),
        )
    if kind == "lock_timeout":
        headers["Stripe-Should-Retry"] = "true"
        return (
            429,
            headers,
            error_body(
                429,
                "invalid_request_error",
                _LOCK_TIMEOUT_MESSAGE,
                code="lock_timeout",
                request_id=request_id,
            ),
        )
    status = FAULT_STATUS.get(str(kind))
    if status is None:
        raise ValueError(f"fault {kind!r} has no error response")
    message = {
        500: "An unknown error occurred",
        502: "Bad gateway: the upstream server did not respond in time.",
        503: "The service is temporarily unavailable. Please try again later.",
    }[status]
    return status, headers, error_body(status, "api_error", message, request_id=request_id)

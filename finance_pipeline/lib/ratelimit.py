"""Client-side rate limiting and retry backoff for calls to rate-limited APIs such as Stripe.

Stripe allows 100 read requests/s in live mode (25 in test mode) and its SDK never retries a plain
429, so the pipeline paces itself with a token bucket and backs off on 429/5xx on its own.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class TokenBucket:
    """Allows `rate` acquisitions per second on average with bursts up to `burst`; thread-safe.

    Waiters reserve their slot under the lock, so concurrent callers are spaced `1 / rate` apart
    instead of waking together. `hold` stops everyone for a while (a server's Retry-After).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        # Tokens accrue from here on; a hold moves it into the future.
        self._last = clock()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self, tokens: float = 1.0) -> float:
        """Block until `tokens` are available; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            if now > self._last:
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
            self._tokens -= tokens
            wait = self._last - now
            if self._tokens < 0:
                wait += -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
            with self._lock:
                self.waited_seconds += wait
            return wait
        return 0.0

    def hold(self, seconds: float) -> None:
        """Let nobody through for `seconds` from now, then resume at `rate` with no burst."""
        if seconds <= 0:
            return
        with self._lock:
            now = self._clock()
            if now > self._last:
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = max(self._last, now + seconds)
            # Slots already reserved stay reserved (after the hold); nothing is saved up.
            self._tokens = min(self._tokens, 0.0)


@dataclass
class BackoffPolicy:
    """Exponential backoff with full jitter, capped, honouring a server's Retry-After."""

    base_seconds: float = 0.25
    max_seconds: float = 20.0
    max_attempts: int = 8
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** (attempt - 1)))
        jittered = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None and retry_after >= 0:
            return min(self.max_seconds, max(retry_after, jittered))
        return jittered


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None when absent or unparsable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None

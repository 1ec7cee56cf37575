"""Client-side rate limiting for calls to Stripe: a token bucket that sleeps until a slot is free.

Stripe allows 100 read requests/s in live mode (25 in test mode) and its SDK never retries a plain
429, so the pipeline paces itself with a token bucket and backs off (`lib.backoff`) on its own.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# (tokens, last, sent, sent_at) of a bucket shared through a file, as native doubles.
_STATE = struct.Struct("=dddd")
# A stored `last` this far past now cannot be a hold (backoff caps far below it): the file
# outlived a reboot (monotonic clocks restart), so it starts afresh.
_STALE_FUTURE_SECONDS = 600.0


class TokenBucket:
    """Allows `rate` acquisitions per second on average with bursts up to `burst`; thread-safe.

    Waiters reserve their slot under the lock, so concurrent callers are spaced `1 / rate` apart
    instead of waking together. With `max_late`, requests then leave only as the requests
    already sent allow: at most `max_late * rate` beyond the rate in any window, so callers that
    all wake up late (a starved process) go out spaced, not as one burst, and no slot is
    thrown away. `hold` stops everyone for a while (a server's Retry-After).

    With `state_file`, every bucket (in any process on this host) opened on the same file is one
    bucket: its state lives in the file, read and written under an exclusive `flock`. Processes
    that call the same Stripe account at once then share its rate instead of each taking all of it.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_late: float | None = None,
        state_file: str | os.PathLike[str] | None = None,
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
        # Times a caller waited for room among the requests already sent (it woke up late).
        self.requeued = 0
        self.max_late = max_late
        # Departures: a bucket of `max_late * rate` tokens refilled at `rate`.
        self._sent = self._sent_cap = max(1.0, (max_late or 0.0) * rate)
        self._sent_at = self._last
        self.state_file = None if state_file is None else Path(state_file)
        self._fd: int | None = None
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.state_file, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        """Release the state file (a bucket without one has nothing to release)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @contextmanager
    def _state(self) -> Iterator[None]:
        """The bucket's state, current and exclusively held, for one update."""
        with self._lock:
            if self._fd is None:
                yield
                return
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                raw = os.pread(self._fd, _STATE.size, 0)
                if len(raw) == _STATE.size:
                    tokens, last, sent, sent_at = _STATE.unpack(raw)
                    if last - self._clock() < _STALE_FUTURE_SECONDS:
                        self._tokens, self._last = tokens, last
                        self._sent, self._sent_at = sent, sent_at
                yield
                os.pwrite(
                    self._fd, _STATE.pack(self._tokens, self._last, self._sent, self._sent_at), 0
                )
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def acquire(self, tokens: float = 1.0) -> float:
        """Block until `tokens` are available; returns the seconds waited."""
        wait = self.reserve(tokens)
        if wait > 0:
            self._sleep(wait)
            with self._lock:
                self.waited_seconds += wait
        return wait + self.depart(tokens)

    def reserve(self, tokens: float = 1.0) -> float:
        """Reserve the next slot for `tokens`; returns the seconds until it (sleep, then
        `depart`)."""
        with self._state():
            now = self._clock()
            if now > self._last:
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
            self._tokens -= tokens
            wait = self._last - now
            if self._tokens < 0:
                wait += -self._tokens / self.rate
        return wait

    def depart(self, tokens: float = 1.0) -> float:
        """With `max_late`: wait until the requests already sent leave room for `tokens` more
        (see the class); returns the seconds waited."""
        if self.max_late is None:
            return 0.0
        waited = 0.0
        while True:
            with self._state():
                now = self._clock()
                if now > self._sent_at:
                    self._sent = min(self._sent_cap, self._sent + (now - self._sent_at) * self.rate)
                    self._sent_at = now
                # (a hair of tolerance: a refill of exactly the time slept may round just below)
                if self._sent >= tokens - 1e-9:
                    self._sent -= tokens
                    return waited
                wait = (tokens - self._sent) / self.rate
            with self._lock:
                self.requeued += 1
                self.waited_seconds += wait
            self._sleep(wait)
            waited += wait

    def hold(self, seconds: float) -> None:
        """Let nobody through for `seconds` from now, then resume at `rate` with no burst."""
        if seconds <= 0:
            return
        with self._state():
            now = self._clock()
            if now > self._last:
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = max(self._last, now + seconds)
            # Slots already reserved stay reserved (after the hold); nothing is saved up.
            self._tokens = min(self._tokens, 0.0)

"""Client-side rate limiting for calls to Stripe: a token bucket that sleeps until a slot is free.

Stripe allows 100 read requests/s in live mode (25 in test mode) and its SDK never retries a plain
429, so the pipeline paces itself with a token bucket and backs off (`lib.backoff`) on its own.
"""

from __future__ import annotations

import fcntl
import itertools
import marshal
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# (tokens, last, sent, sent_at) of a bucket shared through a file, as native doubles.
_STATE = struct.Struct("=dddd")
# After it, the weighted queue (see `TokenBucket.enqueue`), its byte length first. `marshal`:
# every process on the file runs this interpreter, and it is several times cheaper than JSON
# for a list read and written at every check of every waiter.
_QUEUE_LEN = struct.Struct("=I")
# A waiter whose promised check-in is this late is gone (its thread or process died): its
# ticket is dropped so it cannot hold the queue.
_TICKET_DEAD_SECONDS = 10.0
_TICKET_IDS = itertools.count()
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

    With a `flow` (e.g. the stream a request reads for) and its `weight`, `acquire` serves by
    weighted fair queuing instead of first come, first served: while several flows wait, each
    gets a share of the rate proportional to its weight, whatever the number of its waiters
    (self-clocked fair queuing: a ticket's virtual finish is `max(V, flow's last) + tokens /
    weight`, the smallest goes first, V is the finish of the last one served). The queue is
    kept with the bucket's state, so it spans processes.
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
        # The weighted queue: virtual time, each flow's last finish, and the waiting tickets
        # [id, flow, finish, tokens, due] (due: when its waiter said it would check again).
        self._vtime = 0.0
        self._finish: dict[str, float] = {}
        self._tickets: list[list] = []
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
                        self._read_queue()
                yield
                queue = marshal.dumps((self._vtime, self._finish, self._tickets))
                os.pwrite(
                    self._fd,
                    _STATE.pack(self._tokens, self._last, self._sent, self._sent_at)
                    + _QUEUE_LEN.pack(len(queue))
                    + queue,
                    0,
                )
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _read_queue(self) -> None:
        """The weighted queue as stored after the bucket's state (none in an older file)."""
        assert self._fd is not None
        raw = os.pread(self._fd, _QUEUE_LEN.size, _STATE.size)
        if len(raw) < _QUEUE_LEN.size:
            self._vtime, self._finish, self._tickets = 0.0, {}, []
            return
        (size,) = _QUEUE_LEN.unpack(raw)
        try:
            queue = marshal.loads(os.pread(self._fd, size, _STATE.size + _QUEUE_LEN.size))
            self._vtime, self._finish, self._tickets = queue
        except (EOFError, ValueError, TypeError):
            # Another interpreter's format (an upgrade while a sync ran): the queue restarts.
            self._vtime, self._finish, self._tickets = 0.0, {}, []

    def acquire(self, tokens: float = 1.0, flow: str | None = None, weight: float = 1.0) -> float:
        """Block until `tokens` are available; returns the seconds waited. With a `flow`, in
        weighted fair order among the flows waiting (see the class)."""
        if flow is not None:
            ticket = self.enqueue(flow, weight, tokens)
            wait = waited = self.take(ticket)
            while wait > 0:
                self._sleep(wait)
                try:
                    wait = self.take(ticket)
                except KeyError:
                    # Dropped as dead (this thread was starved for that long): queue again.
                    ticket = self.enqueue(flow, weight, tokens)
                    wait = self.take(ticket)
                waited += wait
            with self._lock:
                self.waited_seconds += waited
            return waited + self.depart(tokens)
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

    def enqueue(self, flow: str, weight: float, tokens: float = 1.0) -> int:
        """Queue a request of `flow` for `tokens`; returns its ticket (then `take` it)."""
        if weight <= 0:
            raise ValueError("weight must be positive")
        # Unique among the processes on the file (a pid fits in 32 bits).
        ticket = os.getpid() << 32 | next(_TICKET_IDS)
        with self._state():
            now = self._clock()
            start = max(self._vtime, self._finish.get(flow, 0.0))
            finish = start + tokens / weight
            self._finish[flow] = finish
            self._tickets.append([ticket, flow, finish, tokens, now])
            self._tickets.sort(key=lambda t: t[2])
        return ticket

    def take(self, ticket: int) -> float:
        """0 when `ticket` went through (its tokens taken), else the seconds to sleep before
        trying again. A ticket goes when the bucket holds its tokens and every ticket ahead
        of it (smaller finish) is overdue, i.e. its waiter woke up late: the slot is not lost
        to a starved thread, which keeps its place."""
        with self._state():
            now = self._clock()
            if now > self._last:
                # While requests wait, one more slot is kept: the head's waiter woke up late
                # (a loaded CPU), the next goes that much sooner instead of the slot being lost.
                cap = self.burst + (1.0 if len(self._tickets) > 1 else 0.0)
                self._tokens = min(cap, self._tokens + (now - self._last) * self.rate)
                self._last = now
            grace = 1.0 / self.rate
            # Tickets of waiters that died are dropped (theirs would never be taken).
            self._tickets = [
                t for t in self._tickets if t[0] == ticket or now - t[4] < _TICKET_DEAD_SECONDS
            ]
            ahead = 0.0
            blocked = False
            for t in self._tickets:
                if t[0] == ticket:
                    break
                ahead += t[3]
                blocked = blocked or now <= t[4] + grace
            else:
                raise KeyError(f"unknown rate limiter ticket {ticket}")
            mine = t
            if not blocked and self._last <= now and self._tokens >= mine[3] - 1e-9:
                self._tokens -= mine[3]
                self._tickets.remove(mine)
                self._vtime = max(self._vtime, mine[2])
                # Flows served up to now restart from the virtual time (nothing saved up).
                self._finish = {f: v for f, v in self._finish.items() if v > self._vtime}
                return 0.0
            # Departures go at `rate` at most: its turn cannot come before those ahead left.
            wait = max(0.0, self._last - now) + max(0.0, ahead + mine[3] - self._tokens) / self.rate
            wait = max(wait, grace / 4)
            mine[4] = now + wait
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

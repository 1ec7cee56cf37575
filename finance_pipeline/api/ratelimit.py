"""Request rate limits counted in the warehouse, so every API worker shares one count.

Fixed one-minute windows: each request upserts its (bucket, window) row and reads the new count in
one atomic statement; over the limit, the caller answers 429 with Retry-After (seconds to the
window's end).

Every request of a credential writes the same row, so whatever delays one count delays them all
(each waits for the row lock): on PostgreSQL the table is UNLOGGED (sql/0032; no WAL to write or
flush for a count: it never waits behind a run's bulk writes for the WAL, at the price of the
counts being emptied after a crash) and the upsert is one autocommit statement (the row lock is
released by the server as the statement ends, not a COMMIT round trip later).
"""

from __future__ import annotations

import math
import time

from finance_pipeline.warehouse.db import Warehouse

WINDOW_SECONDS = 60
# Failed sign-ins are counted per email over longer windows (LOGIN_WINDOW_SECONDS); windows are
# swept once well past the longest.
LOGIN_WINDOW_SECONDS = 900
_SWEEP_AFTER_SECONDS = 2 * LOGIN_WINDOW_SECONDS

_HIT = (
    "INSERT INTO app.rate_limit_windows AS w (bucket, window_start, hits)"
    " VALUES (:b, :w, 1) ON CONFLICT (bucket, window_start)"
    " DO UPDATE SET hits = w.hits + 1 RETURNING hits"
)


def _window(now: float, seconds: int) -> int:
    return int(now) - int(now) % seconds


def _retry_after(now: float, seconds: int) -> int:
    """Whole seconds until the window holding `now` ends (at least 1): the Retry-After."""
    return max(1, math.ceil(_window(now, seconds) + seconds - now))


def hit(
    wh: Warehouse,
    bucket: str,
    limit: int,
    now: float | None = None,
    *,
    window_seconds: int = WINDOW_SECONDS,
) -> int | None:
    """Count one request of `bucket`; None while within `limit` per window, else the seconds
    until the window ends (the Retry-After)."""
    now = time.time() if now is None else now
    window = _window(now, window_seconds)
    hits = int(wh.write_scalar(_HIT, b=bucket, w=window))
    if hits == 1:
        # A bucket's first request of a window sweeps windows long over (cheap, indexed); after
        # the count, so the count's row lock is never held while it runs.
        wh.write_scalar(
            "DELETE FROM app.rate_limit_windows WHERE window_start < :old",
            old=int(now) - _SWEEP_AFTER_SECONDS,
        )
    if hits <= limit:
        return None
    return _retry_after(now, window_seconds)


def over(
    wh: Warehouse,
    bucket: str,
    limit: int,
    now: float | None = None,
    *,
    window_seconds: int = WINDOW_SECONDS,
) -> int | None:
    """Whether `bucket` has used its `limit` in the current window, without counting: None if
    not, else the seconds until the window ends."""
    now = time.time() if now is None else now
    hits = wh.scalar(
        "SELECT hits FROM app.rate_limit_windows WHERE bucket = :b AND window_start = :w",
        b=bucket,
        w=_window(now, window_seconds),
    )
    if hits is None or int(hits) < limit:
        return None
    return _retry_after(now, window_seconds)

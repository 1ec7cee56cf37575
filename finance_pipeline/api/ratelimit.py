"""Request rate limits counted in the warehouse, so every API worker shares one count.

Fixed one-minute windows: each request upserts its (bucket, window) row and reads the new count in
one atomic statement; over the limit, the caller answers 429 with Retry-After (seconds to the
window's end).
"""

from __future__ import annotations

import math
import time

from finance_pipeline.warehouse.db import Warehouse

WINDOW_SECONDS = 60

_HIT = (
    "INSERT INTO app.rate_limit_windows AS w (bucket, window_start, hits)"
    " VALUES (:b, :w, 1) ON CONFLICT (bucket, window_start)"
    " DO UPDATE SET hits = w.hits + 1 RETURNING hits"
)


def hit(wh: Warehouse, bucket: str, limit: int, now: float | None = None) -> int | None:
    """Count one request of `bucket`; None while within `limit` per window, else the seconds
    until the window ends (the Retry-After)."""
    now = time.time() if now is None else now
    window = int(now) - int(now) % WINDOW_SECONDS
    with wh.begin() as db:
        if not wh.is_sqlite:
            # A count need not wait for its WAL flush: a crash could forget the last fraction of
            # a second of counts, never let a request past a count it has read. This keeps the
            # disk's fsync (milliseconds, all requests of a credential queued on the one row
            # lock) out of every request; other writes keep synchronous commit.
            db.execute(wh.text("SET LOCAL synchronous_commit = off"))
        hits = db.execute(wh.text(_HIT), {"b": bucket, "w": window}).scalar_one()
        if hits == 1:
            # A bucket's first request of a window sweeps windows long over (cheap, indexed).
            db.execute(
                wh.text("DELETE FROM app.rate_limit_windows WHERE window_start < :old"),
                {"old": window - 10 * WINDOW_SECONDS},
            )
    if hits <= limit:
        return None
    return max(1, math.ceil(window + WINDOW_SECONDS - now))

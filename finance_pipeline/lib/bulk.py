"""Bulk builds: the core tables and marts hold hundreds of thousands of rows in memory at once."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a build allocates its rows.

    Rows, dicts and specs form no reference cycles, so the collector frees nothing here, but each
    full collection walks every live object: with a growing heap of millions of rows it was most
    of a 10,000-customer rebuild's time. Reference counting still frees everything as usual; the
    collector resumes afterwards (if it was running) and catches any cycle made meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

"""Bulk builds: the core tables and marts hold hundreds of thousands of rows in memory at once."""

from __future__ import annotations

import gc
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


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


class RowSpool:
    """Rows parked on an anonymous temporary file, a pickled chunk at a time, until they are
    written: a build computes batch after batch with its memory bounded by one batch, and still
    writes everything in one short transaction at the end (nothing partial, and SQLite's single
    write lock is not held while computing)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close() or the with block
        self.count = 0

    def add(self, rows: list[Any]) -> None:
        """Park one chunk of rows (any picklable values)."""
        if rows:
            pickle.dump(rows, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self.count += len(rows)

    def chunks(self) -> Iterator[list[Any]]:
        """The parked chunks, in the order they were added."""
        self._file.seek(0)
        while True:
            try:
                yield pickle.load(self._file)
            except EOFError:
                return

    def close(self) -> None:
        """Delete the file."""
        self._file.close()

    def __enter__(self) -> RowSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The run worker of the kill suite, run as a child process: one real Dagster job on the persistent
instance at DAGSTER_HOME, against the test's warehouse. With `--kill POINT` it patches one product
function (in this process only) so that the process SIGKILLs itself at that point, after writing
`--marker`: the parent then knows the process died where intended, not before.

    python -m finance_pipeline_tests.faults.driver --job stripe_ingest --warehouse URL \
        --start 2026-08-01 --end 2026-10-31 [--kill stripe_page --marker PATH]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from finance_pipeline.definitions import defs
from finance_pipeline.resources import StripeResource, WarehouseResource
from finance_pipeline_tests.dagster_runs import range_tags

# Small pages, so a stream of a small simulated account spans several pages and checkpoints.
PAGE_SIZE = 5
# The stream killed mid-pass: it has sub-lists (lines), so a page writes two tables.
KILLED_STREAM = "invoices"
# The temp report file being fsynced when the render is killed (earlier ones are stored).
KILLED_REPORT_FILE = 3


def resources(warehouse_url: str) -> dict[str, Any]:
    """The job's resources; the clean twin run uses the same ones."""
    return {
        "warehouse": WarehouseResource(url=warehouse_url),
        "stripe": StripeResource(page_size=PAGE_SIZE),
    }


def die(marker: Path, where: str) -> None:
    """Record where, durably, then SIGKILL this process: no finally, no atexit, no Dagster
    failure event runs."""
    marker.write_text(f"{where}\npid {os.getpid()}\n")
    with marker.open("rb") as fh:
        os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _counting(original: Callable[..., Any], after: Callable[[int], None]) -> Any:
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        out = original(*args, **kwargs)
        calls += 1
        after(calls)
        return out

    return wrapper


def install(point: str, marker: Path) -> None:
    """Patch the product function of `point` so this process dies inside it."""
    if point == "stripe_page":
        from finance_pipeline.stripe_sync import engine
        from finance_pipeline.stripe_sync.engine import StripeStreamSync

        # Pages that have arrived are written up to WRITE_BATCH_PAGES at a time, one transaction
        # with the last page's checkpoint; the local stand-in answers this small account's pages
        # at once, so with the default (8) its invoices pass has too few batches for a kill
        # between two of them. One page a batch (what a slow Stripe gives) keeps the page-level
        # kill point; the multi-page batch's kill and resume are covered in
        # finance_pipeline_tests/ingest (the batched-write tests).
        engine.WRITE_BATCH_PAGES = 1

        save_state = StripeStreamSync._save_state
        pages = 0

        def checkpointed(self: Any, db: Any, stream: str, **values: Any) -> None:
            nonlocal pages
            save_state(self, db, stream, **values)
            if stream == KILLED_STREAM and values.get("cursor_json") is not None:
                pages += 1
                if pages == 2:
                    # Page 2's rows and checkpoint are written in its open transaction; page 1
                    # committed with its checkpoint; the pass has more pages to go.
                    die(marker, f"stripe {stream}: page 2 written, not committed")

        StripeStreamSync._save_state = checkpointed  # type: ignore[method-assign]
    elif point == "landing_file":
        from finance_pipeline.ingest import landing

        def second_file(calls: int) -> None:
            if calls == 2:
                die(marker, "landing: second file's rows inserted, receipt not written")

        landing.store_records = _counting(landing.store_records, second_file)
    elif point == "mart_window":
        from finance_pipeline.warehouse.db import Warehouse

        insert = Warehouse.insert

        def window_insert(self: Any, conn: Any, qualified: str, rows: Any) -> int:
            n = insert(self, conn, qualified, rows)
            if qualified == "mart.mrr_movements" and rows:
                # The window's DELETEs and the mrr_changes rows are written, uncommitted.
                die(marker, f"mrr_marts: window deleted, {n} {qualified} rows inserted")
            return n

        Warehouse.insert = window_insert  # type: ignore[method-assign]
    elif point == "report_render":
        fsync = os.fsync
        temps = 0

        def fsync_temp(fd: int) -> None:
            nonlocal temps
            fsync(fd)
            try:
                name = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return
            if os.path.basename(name).startswith(".") and name.endswith(".tmp"):
                temps += 1
                if temps == KILLED_REPORT_FILE:
                    die(marker, f"report store: temp file {name} written, not renamed")

        os.fsync = fsync_temp
    elif point == "close":
        from finance_pipeline.reports import close

        def before_freeze(*args: Any, **kwargs: Any) -> None:
            die(marker, "close: pack stored, close version not recorded")

        close.insert_close = before_freeze
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def main(argv: list[str] | None = None) -> int:
    """Run the job once; exit 0 when the run succeeded."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", required=True)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--kill")
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args(argv)
    if args.kill:
        install(args.kill, args.marker)
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(args.job).execute_in_process(
            instance=instance,
            resources=resources(args.warehouse),
            tags=range_tags(args.start, args.end) if args.start else None,
            raise_on_error=False,
        )
    print(f"run {result.run_id} {'succeeded' if result.success else 'failed'}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())

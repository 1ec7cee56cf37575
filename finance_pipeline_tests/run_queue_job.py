"""A cheap job for the run-queue test (test_run_queue.py): the real dagster-daemon launches it
through the run queue of the repo's dagster.yaml. Its one op only waits, so that the runs the
daemon lets through together are in progress together for a while."""

from __future__ import annotations

import time

import dagster as dg

# Long enough for runs launched in one dequeue pass to overlap; short to keep the test cheap.
WAIT_S = 2.0


@dg.op
def wait() -> None:
    """Stand in for a run's work."""
    time.sleep(WAIT_S)


@dg.job
def queued_job() -> None:
    wait()


defs = dg.Definitions(jobs=[queued_job])

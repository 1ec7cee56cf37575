"""The dead-run sweep's worker check: a live worker, a gone one, a zombie and a reused pid. The
sweep itself runs after real SIGKILLs in finance_pipeline_tests/faults/."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from finance_pipeline.run_sweep import worker_alive


def test_a_running_worker_is_alive() -> None:
    assert worker_alive(os.getpid(), time.time())


def test_a_worker_that_exited_is_dead() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not worker_alive(proc.pid, time.time())


def test_a_zombie_worker_is_dead() -> None:
    proc = subprocess.Popen(["true"])
    try:
        # Not reaped yet: the pid exists, in state Z.
        for _ in range(200):
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                break
            time.sleep(0.01)
        assert not worker_alive(proc.pid, time.time())
    finally:
        proc.wait()


def test_a_pid_reused_by_a_younger_process_is_not_the_worker() -> None:
    # This process began long after a run that started an hour ago: not that run's worker.
    assert not worker_alive(os.getpid(), time.time() - 3600)

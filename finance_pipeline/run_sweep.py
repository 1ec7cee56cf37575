"""Runs whose worker died without a word (SIGKILL, the OOM killer, a reboot): marked failed.

Such a run stays STARTED in Dagster's storage for ever, and it keeps what it held: its
concurrency-pool slots (the `stripe_api` pool has one, so every later Stripe step would wait) and
its place under the run queue's per-workspace limit (so that workspace's next runs would never
leave the queue). Dagster's run monitoring cannot see it: the default run launcher does not
support worker health checks. The sweep finds each STARTED run whose worker process is gone,
reports it failed (which lets the run-retry daemon retry it) and frees its slots.

A run's worker is the pid of its RUN_START event. The default launcher starts workers on the
code server's host, where the sensor below is evaluated, so the pid is checked on the right host.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster._core.launcher import DefaultRunLauncher

# A process that began this much after the run's start is another process that reused the pid.
_PID_REUSE_SLACK_S = 2.0


def _proc_started_at(pid: int) -> tuple[float, str] | None:
    """When the process began (Unix seconds) and its state letter, from /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    # Fields after the parenthesised command (which may hold spaces): state is field 3,
    # starttime (clock ticks after boot) field 22.
    rest = stat[stat.rindex(")") + 2 :].split()
    return boot + int(rest[19]) / os.sysconf("SC_CLK_TCK"), rest[0]


def worker_alive(pid: int, run_started_at: float) -> bool:
    """Whether process `pid` still exists and is the one that started a run at `run_started_at`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process of that pid: checked below where /proc tells more
    proc = _proc_started_at(pid)
    if proc is None:
        return True
    started, state = proc
    # A zombie is dead (its parent has not reaped it yet); a younger process reused the pid.
    return state not in ("Z", "X") and started <= run_started_at + _PID_REUSE_SLACK_S


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the run's worker and when the run started, from its RUN_START event."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
    ).records
    if not records:
        return None
    entry = records[0].event_log_entry
    pid = entry.dagster_event.pid if entry.dagster_event else None
    return None if pid is None else (pid, entry.timestamp)


def dead_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """STARTED runs whose worker process no longer exists."""
    out = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        worker = worker_pid(instance, record.dagster_run.run_id)
        if worker is not None and not worker_alive(*worker):
            out.append(record.dagster_run)
    return out


def sweep_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report every run with a dead worker failed and free its pool slots; their run ids."""
    swept = []
    for run in dead_runs(instance):
        pid = worker_pid(instance, run.run_id)
        instance.report_run_failed(
            run,
            f"The run's worker process ({pid[0] if pid else '?'}) is gone (killed, out of "
            "memory, or its machine restarted) without ending the run: marked failed so its "
            "concurrency slots and queue place are released. Its writes were transactions: "
            "re-run it (or let the run retry do so).",
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        swept.append(run.run_id)
    return swept


@dg.sensor(
    name="dead_run_sweep",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed every STARTED run whose worker process is gone (SIGKILL, OOM, "
    "a restart) and frees its concurrency slots, so the next run of its workspace and the "
    "Stripe pool are not blocked; the run retry then re-runs it.",
)
def dead_run_sweep(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """One sweep per evaluation, on the host whose code server launched the run workers."""
    if not isinstance(context.instance.run_launcher, DefaultRunLauncher):
        return dg.SkipReason("run workers are not local processes here: nothing to check")
    swept = sweep_dead_runs(context.instance)
    return dg.SkipReason(
        f"marked failed: {', '.join(swept)}" if swept else "no run with a dead worker"
    )

"""The production run queue (docs/scaling.md, "The run queue"): a real dagster-daemon on an
instance with the repo's dagster.yaml is given more runs for one workspace than its tag limit;
it never has more of them in progress at once than the limit, lets another workspace's run
through beside them, and all the runs finish.

The runs are all queued before the daemon starts, so its first dequeue pass sees every one of
them: what it lets through is decided by the limits alone, not by when the runs arrived. What
was in progress is read twice from the instance: by polling the run records while the daemon
works, and afterwards from each run's launch and end events (the queue counts a run from its
launch, STARTING, to its end).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._cli.job import _create_run
from dagster._cli.workspace.cli_target import (
    get_code_location_from_workspace,
    get_remote_job_from_remote_repo,
    get_remote_repository_from_code_location,
    get_workspace_from_cli_opts,
)
from dagster._core.storage.dagster_run import FINISHED_STATUSES, IN_PROGRESS_RUN_STATUSES
from dagster_shared.cli import WorkspaceOpts

from finance_pipeline.fanout import STRIPE_TAG
from finance_pipeline.settings import PROJECT_ROOT
from finance_pipeline.tenancy import WORKSPACE_TAG
from finance_pipeline_tests import run_queue_job

pytestmark = pytest.mark.slow

JOB_FILE = Path(run_queue_job.__file__)
DAEMON = Path(os.environ.get("VIRTUAL_ENV", PROJECT_ROOT / ".venv")) / "bin" / "dagster-daemon"
# All runs done within this, or the queue is stuck (a run never dequeued, a slot never freed).
FINISH_TIMEOUT_S = 600
POLL_S = 0.2


def _repo_config() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())


def _limit(config: dict[str, Any], key: str) -> dict[str, Any]:
    [entry] = [
        e for e in config["concurrency"]["runs"]["tag_concurrency_limits"] if e["key"] == key
    ]
    return entry


@contextlib.contextmanager
def _dagster_home(kind: str, root: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A DAGSTER_HOME whose dagster.yaml is the repo's: as is on PostgreSQL (its DAGSTER_PG_*
    variables naming a fresh database), without its storage section (Dagster's SQLite files in
    the folder) on SQLite."""
    home = root / "dagster_home"
    home.mkdir()
    config = _repo_config()
    with pytest.MonkeyPatch.context() as mp:
        if kind == "postgresql":
            from finance_pipeline_dev.production import fresh_pg_database

            with fresh_pg_database(request.getfixturevalue("pg_admin")) as url:
                parsed = sa.make_url(url)
                mp.setenv("DAGSTER_PG_USER", parsed.username or "postgres")
                mp.setenv("DAGSTER_PG_PASSWORD", parsed.password or "")
                mp.setenv("DAGSTER_PG_HOST", parsed.host or "127.0.0.1")
                mp.setenv("DAGSTER_PG_DB", parsed.database or "")
                (home / "dagster.yaml").write_text(yaml.safe_dump(config))
                mp.setenv("DAGSTER_HOME", str(home))
                yield home
        else:
            del config["storage"]
            (home / "dagster.yaml").write_text(yaml.safe_dump(config))
            mp.setenv("DAGSTER_HOME", str(home))
            yield home


def _queue(instance: dg.DagsterInstance, runs: list[dict[str, str]]) -> list[str]:
    """Submit one run of the cheap job per tag set, as `dagster job launch -f` would; all are
    QUEUED (the instance's run coordinator is the queue)."""
    opts = WorkspaceOpts(python_file=[str(JOB_FILE)])
    with get_workspace_from_cli_opts(instance, dg.__version__, opts) as workspace:
        location = get_code_location_from_workspace(workspace, None)
        repo = get_remote_repository_from_code_location(location, None)
        job = get_remote_job_from_remote_repo(repo, "queued_job")
        ids = []
        for tags in runs:
            run = _create_run(
                instance=instance,
                code_location=location,
                remote_repo=repo,
                remote_job=job,
                run_config={},
                tags=tags,
                op_selection=None,
                run_id=None,
            )
            assert instance.submit_run(run.run_id, workspace).status == dg.DagsterRunStatus.QUEUED
            ids.append(run.run_id)
    return ids


@contextlib.contextmanager
def _daemon(home: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`dagster-daemon run` on the instance at `home`, with the cheap job's code location; on
    exit its process group (its code server and the run workers it launched) is ended."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(DAEMON), "run", "-f", str(JOB_FILE)],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans (launch, end) open at one instant; an end before a launch at the same
    instant (the slot was freed, then taken)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_daemon_keeps_the_workspace_run_limit(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = _repo_config()
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    per_workspace = _limit(config, WORKSPACE_TAG)
    assert per_workspace["value"] == {"applyLimitPerUniqueValue": True}
    limit = per_workspace["limit"]
    # The workspace limit binds before the instance-wide one, so the test sees it, not that.
    assert limit + 1 < config["concurrency"]["runs"]["max_concurrent_runs"]

    # ws1 queues one run more than its limit; ws2 one run, which its own limit lets through
    # beside ws1's. Tagged as the schedule's fan-out tags a refresh (docs/scaling.md).
    stripe = _limit(config, STRIPE_TAG)["value"]
    tags = [{WORKSPACE_TAG: ws, STRIPE_TAG: stripe} for ws in ["ws1"] * (limit + 1) + ["ws2"]]
    with (
        _dagster_home(kind, tmp_path, request) as home,
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        ids = _queue(instance, tags)
        runs = dict(zip(ids, tags, strict=True))
        seen = 0
        log = tmp_path / "daemon.log"
        with _daemon(home, log) as daemon:
            deadline = time.monotonic() + FINISH_TIMEOUT_S
            while True:
                records = instance.get_run_records(dg.RunsFilter(run_ids=ids))
                statuses = {r.dagster_run.run_id: r.dagster_run.status for r in records}
                running = {r for r, s in statuses.items() if s in IN_PROGRESS_RUN_STATUSES}
                seen = max(seen, sum(1 for r in running if runs[r][WORKSPACE_TAG] == "ws1"))
                if all(s in FINISHED_STATUSES for s in statuses.values()):
                    break
                assert daemon.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"runs not finished: {statuses}"
                time.sleep(POLL_S)
        assert set(statuses.values()) == {dg.DagsterRunStatus.SUCCESS}, log.read_text()[-3000:]
        assert seen <= limit

        # The launch and end of each run, from its events: the queue counts it in between.
        spans: dict[str, tuple[float, float]] = {}
        for run_id in ids:
            events = {
                e.dagster_event.event_type: e.timestamp
                for e in instance.all_logs(run_id)
                if e.dagster_event is not None
            }
            # Queued by the submission, launched by the daemon.
            assert (
                events[dg.DagsterEventType.RUN_ENQUEUED] < events[dg.DagsterEventType.RUN_STARTING]
            )
            spans[run_id] = (
                events[dg.DagsterEventType.RUN_STARTING],
                events[dg.DagsterEventType.RUN_SUCCESS],
            )
        ws1 = [spans[r] for r in ids if runs[r][WORKSPACE_TAG] == "ws1"]
        assert _max_overlap(ws1) == limit, sorted(ws1)
        # Not stricter than configured: the first dequeue pass let ws2's run through beside
        # ws1's first.
        assert _max_overlap(list(spans.values())) == limit + 1, sorted(spans.values())

"""The production path beyond one machine (docs/scaling.md): a fanned-out refresh of three
workspaces runs its steps on two dagster-celery workers (Redis from Debian's redis-server, both
started by scripts/celery.sh), with the Dagster instance (the project's dagster.yaml) and the
warehouse each in a fresh PostgreSQL database, and writes exactly the core tables and marts that
the in-process run writes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster_celery import core_execution_loop
from finance_pipeline_dev.fanout_seed import seed_workspaces
from finance_pipeline_dev.production import production_env

from finance_pipeline.definitions import defs
from finance_pipeline.executors import executor_run_config
from finance_pipeline.fanout import fan_out
from finance_pipeline.settings import PROJECT_ROOT, get_settings
from finance_pipeline.tenancy import WORKSPACE_TAG
from finance_pipeline.warehouse import Warehouse, apply_migrations
from finance_pipeline_tests.conftest import fresh_pg_database
from finance_pipeline_tests.dagster_runs import range_tags

pytestmark = pytest.mark.postgres

WINDOW = ("2026-10-29", "2026-10-31")  # the daily schedule's 3-day restatement window
# What the refresh writes (requested_refresh: core tables, then the daily marts).
TABLES = (
    "core.ledger",
    "core.subscription_history",
    "mart.mrr_daily",
    "mart.mrr_movements",
    "mart.mrr_changes",
    "mart.mrr_plan_daily",
    "mart.subscription_counting",
    "mart.cfo_metrics_daily",
    "mart.revenue_daily",
    "mart.alerts",
    "mart.alert_episodes",
    "mart.advisory_memos",
)
# Write stamps (when, not what): they differ between any two runs.
STAMP = re.compile(r"(_at|write_id)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _snapshot(wh: Warehouse) -> dict[str, list[tuple]]:
    out = {}
    for name in TABLES:
        rows = wh.rows(f"SELECT * FROM {name}")
        out[name] = sorted(
            (
                tuple(sorted((k, repr(v)) for k, v in r.items() if not STAMP.search(k)))
                for r in rows
            ),
        )
    return out


@pytest.fixture
def celery_env(
    pg_admin: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """Two fresh databases (Dagster storage, warehouse), a DAGSTER_HOME with the project's
    production dagster.yaml, and Redis with two workers from scripts/celery.sh (stopped after)."""
    with fresh_pg_database(pg_admin) as dagster_url, fresh_pg_database(pg_admin) as wh_url:
        home = tmp_path / "dagster_home"
        port = _free_port()
        env = {
            **production_env(wh_url, dagster_url, dagster_home=home),
            "FP_EXECUTOR": "celery",
            "FP_FANOUT_BATCH_SIZE": "2",
            "FP_CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
            "FP_CELERY_BACKEND_URL": f"redis://127.0.0.1:{port}/1",
            "FP_CELERY_RUN_DIR": str(tmp_path / "celery"),
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        wh = Warehouse(wh_url)
        apply_migrations(wh)
        script = str(PROJECT_ROOT / "scripts" / "celery.sh")
        # Started in the background: the workers load (about a minute on a loaded machine) while
        # the test seeds the warehouse.
        starting = subprocess.Popen(["bash", script, "start", "2"], env=os.environ)

        def wait_ready() -> None:
            assert starting.wait(timeout=180) == 0, "scripts/celery.sh start failed"

        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                yield {
                    "wh": wh,
                    "instance": instance,
                    "run_dir": tmp_path / "celery",
                    "wait_ready": wait_ready,
                }
        finally:
            if starting.poll() is None:
                starting.wait(timeout=180)
            subprocess.run(["bash", script, "stop"], env=os.environ, check=False, timeout=60)
            wh.dispose()


def test_refresh_on_two_celery_workers_equals_the_in_process_run(
    celery_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    wh: Warehouse = celery_env["wh"]
    instance: dg.DagsterInstance = celery_env["instance"]
    ids = seed_workspaces(wh, 3, customers=6)
    celery_env["wait_ready"]()
    settings = get_settings()
    requests = fan_out(
        "celery_test",
        range_tags(*WINDOW),
        ids,
        settings.fanout_batch_size,
        run_config=executor_run_config(settings),
    )
    assert [r.tags[WORKSPACE_TAG] for r in requests] == [f"{ids[0]},{ids[1]}", ids[2]]
    # The run's step loop polls the workers' results once a second (dagster_celery's TICK_SECONDS)
    # and submits each newly ready step only then: about a second per level of the step graph.
    # Polling faster changes no result, only how soon the next step is sent.
    monkeypatch.setattr(core_execution_loop, "TICK_SECONDS", 0.05)
    job = ReconstructableRepository.for_module(
        "finance_pipeline.definitions", "defs", working_directory=str(PROJECT_ROOT)
    ).get_reconstructable_job("requested_refresh")

    def launch(req: dg.RunRequest) -> int:
        """One run through the workers; how many steps it ran."""
        with dg.execute_job(
            job, instance=instance, run_config=req.run_config, tags=req.tags
        ) as result:
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            return len({e.step_key for e in result.all_events if e.is_step_success})

    # One run after the other: two execute_job calls in threads of one process can deadlock on
    # Dagster's logging setup (dictConfig against a handler's lock). Each run still sends its
    # independent steps to both workers at once.
    steps = sum(launch(r) for r in requests)
    # Every step ran as a Celery task, and both workers took some.
    done = [
        len(re.findall(r"Task execute_plan\[[^\]]+\] succeeded", p.read_text()))
        for p in sorted(celery_env["run_dir"].glob("worker-*.log"))
    ]
    assert len(done) == 2 and sum(done) == steps and min(done) > 0, done
    through_celery = _snapshot(wh)
    assert {ws for ws in ids} == {
        r["workspace_id"] for r in wh.rows("SELECT DISTINCT workspace_id FROM mart.mrr_daily")
    }
    # The same refresh in process, one run over every workspace, restates the same window.
    result = defs.resolve_job_def("requested_refresh").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=range_tags(*WINDOW)
    )
    assert result.success
    in_process = _snapshot(wh)
    assert all(in_process[t] for t in ("core.ledger", "mart.mrr_daily", "mart.revenue_daily"))
    for table in TABLES:
        assert through_celery[table] == in_process[table], table

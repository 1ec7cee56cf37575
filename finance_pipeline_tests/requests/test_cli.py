"""`finance-pipeline refresh|sync|requests`: requests are written, --wait reports the run, --inline
runs it here (recorded in DAGSTER_HOME), bad requests are one clear error line."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from finance_pipeline import cli
from finance_pipeline.partitions import last_daily_partition
from finance_pipeline.requests.store import claim, finish, pending_requests
from finance_pipeline.resources import warehouse_for
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse

DAY = (last_daily_partition() - timedelta(days=3)).isoformat()


@pytest.fixture
def wh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    monkeypatch.setenv("FP_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    get_settings.cache_clear()
    wh = warehouse_for(get_settings().resolved_warehouse_url)
    create_workspace(wh, create_organization(wh, "Org", org_id="org1"), "One", workspace_id="ws1")
    return wh


def test_refresh_wait_and_list(wh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["refresh", "--workspace", "ws1", "--from", DAY, "--to", DAY]
    assert cli.main([*args, "--reason", "late invoice"]) == 0
    first, status = capsys.readouterr().out.split()
    assert first.startswith("refresh_") and status == "queued"

    def daemon() -> None:  # stands in for the sensor's run and its status sensor
        for _ in range(200):
            ids = [r["id"] for r in pending_requests(wh) if r["status"] == "queued"]
            if len(ids) == 2:
                claim(wh, ids, run_id="run-1")
                finish(wh, ids, "succeeded")
                return
            time.sleep(0.05)

    worker = threading.Thread(target=daemon)
    worker.start()
    assert cli.main([*args, "--wait", "--timeout", "30"]) == 0
    worker.join()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(" queued") and lines[1].endswith(" succeeded run run-1")
    assert cli.main(["requests", "--workspace", "ws1"]) == 0
    listed = capsys.readouterr().out.splitlines()
    [line] = [x for x in listed if x.startswith(f"{first} ")]  # same second: either order
    assert len(listed) == 2 and line.startswith(f"{first} refresh ws1 {DAY}..{DAY} succeeded")
    assert "run=run-1" in line and "reason='late invoice'" in line


def test_refresh_inline_records_the_run(wh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["refresh", "--workspace", "ws1", "--from", DAY, "--to", DAY, "--inline"]) == 0
    out = capsys.readouterr().out.split()
    assert out[1] == "queued" and out[3] == "succeeded"
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
    assert run.run_id == out[-1] and run.job_name == "requested_refresh"


def test_bad_requests_are_one_error_line(wh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["refresh", "--workspace", "ws1", "--from", DAY, "--to", "2026-01-01"]) == 1
    assert "first_day" in capsys.readouterr().err
    assert cli.main(["refresh", "--workspace", "nope", "--from", DAY, "--to", DAY]) == 1
    assert "no workspace 'nope'" in capsys.readouterr().err
    assert cli.main(["sync", "--workspace", "ws1"]) == 1
    assert "no active Stripe connection" in capsys.readouterr().err
    assert pending_requests(wh) == []
    args = ["refresh", "--workspace", "ws1", "--from", DAY, "--to", DAY, "--wait", "--timeout", "0"]
    assert cli.main(args) == 1
    assert "still queued after 0.0s (is the Dagster daemon running?" in capsys.readouterr().err
    assert cli.main(["requests", "--workspace", "ws2"]) == 0
    assert capsys.readouterr().out == "no requests\n"

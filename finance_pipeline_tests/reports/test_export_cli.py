"""`finance-pipeline export`: writes the request row; --wait prints the path once rendered."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from finance_pipeline import cli
from finance_pipeline.reports.exports import pending_exports, run_export
from finance_pipeline.resources import warehouse_for
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse

ARGS = ["export", "--workspace", "ws1", "--type", "failed_payments"]
RANGE = ["--start", "2026-09-01", "--end", "2026-09-30"]


@pytest.fixture
def wh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    monkeypatch.setenv("FP_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    get_settings.cache_clear()
    wh = warehouse_for(get_settings().resolved_warehouse_url)
    create_workspace(wh, create_organization(wh, "Org", org_id="org1"), "One", workspace_id="ws1")
    return wh


def test_export_request_and_wait(wh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*ARGS, *RANGE]) == 0
    export_id, status = capsys.readouterr().out.split()
    assert status == "processing" and pending_exports(wh) == [export_id]
    run_export(wh, get_settings().resolved_reports_dir, export_id)

    def daemon() -> None:  # stands in for the sensor's run
        for _ in range(100):
            for pending in pending_exports(wh):
                run_export(wh, get_settings().resolved_reports_dir, pending)
                return
            time.sleep(0.1)

    worker = threading.Thread(target=daemon)
    worker.start()
    assert cli.main([*ARGS, *RANGE, "--wait", "--timeout", "30"]) == 0
    worker.join()
    printed = capsys.readouterr().out.split()[-1]
    assert printed.endswith("ws1/2026-09/failed_payments-2026-09.csv") and Path(printed).is_file()


def test_export_refuses_bad_requests(wh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*ARGS, "--start", "2026-09-30", "--end", "2026-09-01"]) == 1
    assert "before" in capsys.readouterr().err
    assert cli.main([*ARGS, *RANGE, "--format", "pdf", "--wait", "--timeout", "0"]) == 1
    assert "still processing" in capsys.readouterr().err
    assert pending_exports(wh) != []


def test_reports_are_wired_into_the_definitions() -> None:
    import dagster as dg

    from finance_pipeline.definitions import defs
    from finance_pipeline.reports.exports import report_export_sensor

    job = defs.resolve_job_def("monthly_reports")
    assert {k.path[0] for k in job.asset_layer.executable_asset_keys} == {"reports"}
    assert len(job.asset_layer.executable_asset_keys) == 6
    assert defs.resolve_job_def("report_export_job") is not None
    assert report_export_sensor.default_status == dg.DefaultSensorStatus.RUNNING

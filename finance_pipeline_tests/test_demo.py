"""The demo: refuses taken ports before any work, builds every asset in dependency order with one
progress line per phase, gives the same marts when run twice, and prints commands a new shell can
run, among them a token and a request the read API answers; `stop` finds its services whatever
the data folder."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from finance_pipeline_dev.demo import run_demo


def test_demo_stops_with_a_clear_message_when_a_port_is_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A free API port: the default 8000 may be taken on this machine and would be listed too.
        code = run_demo(
            customers=5,
            months=1,
            seed=1,
            standin_port=port,
            ui_port=port,
            api_port=_free_port(),
            serve=True,
        )
        assert code == 2
        err = capsys.readouterr().err
        assert f"Port(s) {port}" in err and "--standin-port" in err
        # The read API's port too, when the demo serves.
        code = run_demo(
            customers=5,
            months=1,
            seed=1,
            standin_port=_free_port(),
            ui_port=_free_port(),
            api_port=port,
            serve=True,
        )
    assert code == 2
    err = capsys.readouterr().err
    assert f"Port(s) {port} " in err and "--api-port" in err


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Stamps of a row's write (wall-clock times, the margins month's write id); everything else must
# be equal run to run.
WRITE_STAMPS = {"created_at", "computed_at", "updated_at", "write_id"}


def _marts(url: str) -> dict[str, list[tuple]]:
    """Every mart table's rows (write stamps left out), sorted, by table name."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            tables = [
                r[0]
                for r in c.execute(
                    sa.text(
                        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'mart__%'"
                    )
                )
            ]
            out = {}
            for t in tables:
                cols = [r[1] for r in c.execute(sa.text(f"PRAGMA table_info({t})"))]
                keep = ", ".join(c_ for c_ in cols if c_ not in WRITE_STAMPS)
                out[t] = sorted(
                    (tuple(r) for r in c.execute(sa.text(f"SELECT {keep} FROM {t}"))), key=repr
                )
            return out
    finally:
        engine.dispose()


@pytest.mark.slow
def test_demo_builds_in_dependency_order_and_a_second_run_changes_no_mart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from finance_pipeline.settings import get_settings

    # run_demo sets these for its own process; the test restores them.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.delenv("FP_DEPLOYMENT", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    args = {
        "customers": 10,
        "months": 2,
        "seed": 3,
        "ui_port": _free_port(),
        "api_port": _free_port(),
        "serve": False,
    }
    assert run_demo(standin_port=_free_port(), **args) == 0
    first_out = capsys.readouterr().out
    # Dependency order, whatever the data: the alerts were materialized after the margins.
    instance = dg.DagsterInstance.from_config(str(get_settings().data_dir / "dagster_home"))
    try:
        last = {
            name: instance.get_latest_materialization_event(dg.AssetKey(["mart", name])).timestamp
            for name in ("customer_margins_monthly", "alerts", "advisory_memos")
        }
    finally:
        instance.dispose()
    assert last["customer_margins_monthly"] < last["alerts"] < last["advisory_memos"]
    url = get_settings().resolved_warehouse_url
    first = _marts(url)
    assert run_demo(standin_port=_free_port(), **args) == 0
    second = _marts(url)
    second_out = capsys.readouterr().out

    assert first["mart__mrr_daily"] and first["mart__customer_margins_monthly"]
    assert {t: len(rows) for t, rows in second.items()} == {
        t: len(rows) for t, rows in first.items()
    }
    for table in first:
        assert second[table] == first[table], table
    # The 1st-of-month margin alerts read the monthly margins, so those are built first: when a
    # customer's health tier changed from one closed month to the next, the first run has alerts.
    with sa.create_engine(url).connect() as c:
        tiers = c.execute(
            sa.text(
                "SELECT workspace_id, stripe_customer_id, month, health_tier"
                " FROM mart__customer_margins_monthly ORDER BY 1, 2, 3"
            )
        ).all()
        margin_alerts = c.execute(
            sa.text("SELECT COUNT(*) FROM mart__alerts WHERE type = 'margin_threshold_crossed'")
        ).scalar()
    changed = any(
        a[:2] == b[:2] and a.health_tier != b.health_tier for a, b in itertools.pairwise(tiers)
    )
    assert margin_alerts > 0 if changed else margin_alerts == 0

    # One progress line per phase, no Dagster event lines; the backfill spans only the data.
    phases = [line for line in first_out.splitlines() if line.startswith("[")]
    assert [p.split("]")[0] for p in phases] == [f"[{n}/8" for n in range(1, 9)]
    assert "] month_end_close " in first_out and "Close " in first_out
    assert all(" done in " in p for p in phases)
    assert " - dagster - " not in first_out
    start = date.fromisoformat(first_out.split("] rebuild_marts ")[1][:10])
    assert start.day == 1 and date.today() - start < timedelta(days=3 * 31 + 2)  # not 2023-01-01

    _check_the_printed_api_token(tmp_path, first_out, second_out, args["api_port"])


def _printed_commands(out: str) -> list[str]:
    return [line.split("$ ", 1)[1] for line in out.splitlines() if line.startswith("  $ ")]


def _check_the_printed_api_token(tmp_path: Path, first_out: str, out: str, api_port: int) -> None:
    """The export and curl lines the demo printed work verbatim in a new shell against the read
    API serving the warehouse the demo built, as the demo's owner key (the org is on the pro
    tier); the key an earlier run printed is revoked. With --no-serve the demo starts no API,
    so the demo's own service function starts it alone."""
    from finance_pipeline_dev.demo import start_api, stop_services

    from finance_pipeline.settings import get_settings

    assert any(line.startswith("  Read API ") and "--no-serve" in line for line in out.splitlines())
    export = next(c for c in _printed_commands(out) if c.startswith("export FP_DEMO_TOKEN="))
    curl = next(c for c in _printed_commands(out) if c.startswith("curl "))
    old = next(c for c in _printed_commands(first_out) if c.startswith("export FP_DEMO_TOKEN="))
    token, old_token = export.split("=", 1)[1], old.split("=", 1)[1]
    assert token != old_token
    settings = get_settings()
    try:
        api = start_api(settings, api_port, dict(os.environ))
        shell = {"HOME": os.environ["HOME"], "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            ["bash", "-c", f"{export}\n{curl}"],
            env=shell,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "mrr_cents" in json.loads(proc.stdout), proc.stdout
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=api, timeout=60) as client:
            mrr = client.get(
                "/api/v1/platform/finance/mrr", headers={**auth, "X-Workspace-Id": "ws_demo_1"}
            )
            assert mrr.status_code == 200 and mrr.json()["success"] is True, mrr.text
            # The 003 margins API needs the pro tier the demo gives its organization.
            margins = client.get("/api/margins", headers={**auth, "X-Workspace-Id": "ws_demo_2"})
            assert margins.status_code == 200, margins.text
            revoked = client.get("/v1/workspaces", headers={"Authorization": f"Bearer {old_token}"})
            assert revoked.status_code == 401
    finally:
        stop_services(settings)


def test_the_commands_the_demo_prints_work_verbatim_in_a_new_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finance_pipeline_dev.demo import where_to_look

    from finance_pipeline.settings import get_settings

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    lines = where_to_look(get_settings(), ui="http://ui", standin_url="http://standin", serve=True)
    commands = [line.split("$ ", 1)[1] for line in lines if line.startswith("  $ ")]
    assert any(c.endswith("demo.sh stop") for c in commands)
    # A new shell: not in the project folder, only the system PATH (no uv, no .venv/bin).
    shell = {
        "HOME": os.environ["HOME"],
        "PATH": "/usr/bin:/bin",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "FP_UV_LINK_DIR": str(tmp_path),  # bootstrap must not link uv into /usr/local/bin here
    }
    for command in commands:
        words = [w for w in shlex.split(command) if "=" not in w.split("/")[0]]
        assert Path(words[0]).is_absolute() and os.access(words[0], os.X_OK), command
        if "<" in command:
            continue  # a template (a file name to fill in)
        proc = subprocess.run(
            ["bash", "-c", command],
            env=shell,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"


def test_stop_finds_a_demo_started_with_another_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finance_pipeline_dev.cli import main

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    demo_dir = tmp_path / "elsewhere"
    # A service run through its shebang, as dagster-daemon is: /proc shows the interpreter first.
    script = tmp_path / "daemon"
    script.write_text("#!/usr/bin/env python3\nimport time\ntime.sleep(300)\n")
    script.chmod(0o755)
    # A demo with FP_DATA_DIR=elsewhere starts two services, from a process that then exits.
    starter = (
        "import sys; from finance_pipeline_dev.demo import _start_service; "
        "from finance_pipeline.settings import get_settings; "
        "print(_start_service(get_settings(), 'stripe_standin', "
        "[sys.executable, '-c', 'import time; time.sleep(300)'], {})); "
        f"print(_start_service(get_settings(), 'dagster_daemon', [{str(script)!r}], {{}}))"
    )
    env = {**os.environ, "FP_DATA_DIR": str(demo_dir)}
    out = subprocess.run(
        [sys.executable, "-c", starter], env=env, capture_output=True, text=True, check=True
    ).stdout
    pids = [int(p) for p in out.split()]
    try:
        time.sleep(0.5)  # let env exec the interpreter
        assert all(_running(pid) for pid in pids)
        # `stop` from a shell without FP_DATA_DIR (the test's own data folder is another one).
        assert main(["stop"]) == 0
        for _ in range(50):
            if not any(_running(pid) for pid in pids):
                break
            time.sleep(0.1)
        assert not any(_running(pid) for pid in pids)
    finally:
        for pid in pids:  # never leave a test's sleeper behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert list((demo_dir / "run").glob("*.pid")) == []
    assert main(["stop"]) == 0  # nothing left: says so, still succeeds


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

"""The demo: refuses taken ports before any work, builds every asset in dependency order with one
progress line per phase, gives the same marts when run twice, and prints commands a new shell can
run, among them a token and a request the read API answers; `stop` finds its services whatever
the data folder."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from finance_pipeline_dev.demo import run_demo

from finance_pipeline_tests.api.conftest import TEST_SECRET_KEY


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


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """The demo run twice into one data folder (--no-serve, 10 customers, 2 months): what it
    printed and built each time."""

    folder: Path  # holds the data folder (data/) and the demo registry (state/)
    api_port: int
    first_out: str
    second_out: str
    first_marts: dict[str, list[tuple]]
    second_marts: dict[str, list[tuple]]
    last_materialized: dict[str, float]
    warehouse_url: str

    @property
    def data(self) -> Path:
        """The demo's data folder (FP_DATA_DIR)."""
        return self.folder / "data"

    def enter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point this test's settings at the demo's data folder (as the demo's shell would be)."""
        from finance_pipeline.settings import get_settings

        monkeypatch.setenv("FP_DATA_DIR", str(self.data))
        monkeypatch.setenv("DAGSTER_HOME", str(self.data / "dagster_home"))
        monkeypatch.setenv("XDG_STATE_HOME", str(self.folder / "state"))
        monkeypatch.delenv("FP_DEPLOYMENT", raising=False)
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """One demo run (twice, the second a re-run) shared by the tests that check what it built,
    printed and left behind."""
    from finance_pipeline.settings import get_settings

    folder = tmp_path_factory.mktemp("demo")
    args = {
        "customers": 10,
        "months": 2,
        "seed": 3,
        "ui_port": _free_port(),
        "api_port": _free_port(),
        "serve": False,
    }
    with pytest.MonkeyPatch.context() as mp:
        # run_demo sets DAGSTER_HOME and FP_DEPLOYMENT for its own process; this restores them.
        mp.setenv("FP_DATA_DIR", str(folder / "data"))
        mp.setenv("FP_SECRET_KEY", TEST_SECRET_KEY)
        mp.setenv("DAGSTER_HOME", str(folder))
        mp.delenv("FP_DEPLOYMENT", raising=False)
        mp.setenv("XDG_STATE_HOME", str(folder / "state"))
        get_settings.cache_clear()
        outs = []
        marts = []
        for _ in range(2):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert run_demo(standin_port=_free_port(), **args) == 0
            outs.append(out.getvalue())
            if not marts:
                last = _last_materialized(get_settings().data_dir / "dagster_home")
            marts.append(_marts(get_settings().resolved_warehouse_url))
        url = get_settings().resolved_warehouse_url
    get_settings.cache_clear()
    yield DemoRun(folder, args["api_port"], *outs, *marts, last, url)


def _last_materialized(dagster_home: Path) -> dict[str, float]:
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        return {
            name: instance.get_latest_materialization_event(dg.AssetKey(["mart", name])).timestamp
            for name in ("customer_margins_monthly", "alerts", "advisory_memos")
        }
    finally:
        instance.dispose()


@pytest.mark.slow
def test_demo_builds_in_dependency_order_and_a_second_run_changes_no_mart(
    demo: DemoRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo.enter(monkeypatch)
    first_out, second_out = demo.first_out, demo.second_out
    first, second = demo.first_marts, demo.second_marts
    url = demo.warehouse_url
    # Dependency order, whatever the data: the alerts were materialized after the margins.
    last = demo.last_materialized
    assert last["customer_margins_monthly"] < last["alerts"] < last["advisory_memos"]

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

    _check_the_printed_api_token(demo.folder, first_out, second_out, demo.api_port)


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


#: Where the simulated Stripe keeps its accounts, keys included (the stand-in plays Stripe, which
#: holds a real key): the simulator writes it, not the product.
STRIPE_SIDE = "demo"


@pytest.mark.slow
def test_no_secret_the_demo_used_is_left_in_clear_anywhere(
    demo: DemoRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything the demo left behind (warehouse, Dagster storage and compute logs, reports,
    landing files, run logs and pid files, its printed output) and everything the Dagster UI
    shows of its runs (GraphQL: run configs, tags, backfills, event logs with their metadata and
    errors) holds none of its Stripe keys, API keys (this run's and the revoked one), the
    owner's access token, the JWT signing key, the master key or a webhook secret, once the
    demo's read API was used as its README says: a login, reads with the token and the key, a
    webhook secret stored, and refused requests that carry the secrets."""
    from finance_pipeline_dev.demo import (
        DEMO_OWNER_EMAIL,
        DEMO_OWNER_PASSWORD,
        start_api,
        stop_services,
    )

    from finance_pipeline.settings import get_settings
    from finance_pipeline_tests.secret_scan import joined, leaks, ui_answers, written_files

    demo.enter(monkeypatch)
    tokens = [
        c.split("=", 1)[1]
        for out in (demo.first_out, demo.second_out)
        for c in _printed_commands(out)
        if c.startswith("export FP_DEMO_TOKEN=")
    ]
    fixture = json.loads((demo.data / STRIPE_SIDE / "stripe_fixture.json").read_text())
    stripe_keys = [k for account in fixture["accounts"].values() for k in account["keys"]]
    assert len(stripe_keys) == 2 and len(tokens) == 2
    webhook_secret = "whsec_demo_" + os.urandom(12).hex()
    settings = get_settings()
    bodies: list[str] = []
    try:
        api = start_api(settings, _free_port(), dict(os.environ))
        with httpx.Client(base_url=api, timeout=60) as client:

            def call(method: str, url: str, status: int, **kwargs: object) -> dict:
                r = client.request(method, url, **kwargs)
                bodies.append(r.text)
                assert r.status_code == status, r.text
                return r.json() if r.content else {}

            login = {"email": DEMO_OWNER_EMAIL, "password": DEMO_OWNER_PASSWORD}
            access_token = call("POST", "/v1/auth/login", 200, json=login)["access_token"]
            ws1 = {"X-Workspace-Id": "ws_demo_1"}
            for credential in (access_token, tokens[1]):
                auth = {"Authorization": f"Bearer {credential}", **ws1}
                call("GET", "/api/v1/platform/finance/mrr", 200, headers=auth)
            owner = {"Authorization": f"Bearer {access_token}", **ws1}
            call(
                "PUT",
                "/api/v1/platform/finance/stripe/webhook-secret",
                200,
                json={"secret": webhook_secret},
                headers=owner,
            )
            # Refused requests carrying the secrets: their errors and logs must not echo them.
            call("GET", "/v1/workspaces", 401, headers={"Authorization": f"Bearer {tokens[0]}"})
            call("GET", "/v1/workspaces", 401, headers={"Authorization": f"Bearer {tokens[1]}x"})
            call("GET", "/v1/workspaces", 401, headers={"Authorization": f"Bearer {access_token}x"})
            call(
                "PUT",
                "/api/v1/platform/finance/stripe/webhook-secret",
                400,
                json={"secret": "x" + webhook_secret},  # not a whsec_ secret
                headers=owner,
            )
    finally:
        stop_services(settings)

    secrets = {
        **{f"Stripe key of account {n}": key for n, key in enumerate(stripe_keys, 1)},
        "revoked API key of the first run": tokens[0],
        "API key": tokens[1],
        "owner's access token": access_token,
        "webhook secret": webhook_secret,
        "JWT signing key": (demo.data / ".jwt_secret").read_text().strip(),
        "master key": TEST_SECRET_KEY,
    }
    places = {
        path: content
        for path, content in written_files(demo.data).items()
        if Path(path).relative_to(demo.data).parts[0] != STRIPE_SIDE
    }
    kinds = {Path(p).relative_to(demo.data).parts[0] for p in places}
    assert {"warehouse.sqlite", "dagster_home", "reports", "landing", "run"} <= kinds, kinds
    assert any("compute_logs" in p or p.endswith((".out", ".err")) for p in places)
    # The printed key is the one line meant to show it (README: "prints it as export ...").
    for n, out in enumerate((demo.first_out, demo.second_out), 1):
        shown = [line for line in out.splitlines() if "export FP_DEMO_TOKEN=" not in line]
        places[f"demo output {n}"] = "\n".join(shown).encode()
    places["API answers"] = joined(bodies[1:])  # the first shows the access token it issues
    ui = ui_answers(demo.data / "dagster_home")
    assert len(ui) > 1 and b"ws_demo_1" in joined(v.decode() for v in ui.values())
    places.update(ui)
    # The secrets are real values the scan can find: the Stripe keys where Stripe keeps them.
    assert leaks({"Stripe key": stripe_keys[0]}, {"fixture": json.dumps(fixture).encode()})
    assert leaks(secrets, places) == []


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

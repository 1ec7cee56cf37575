"""Background processes of the demo and the soak bench: how they are started, the commands of the
services both run (the Stripe stand-in, the read API, the Dagster daemon), and the wait until one
answers."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finance_pipeline.settings import PROJECT_ROOT

# The virtualenv's scripts (finance-pipeline, dagster-daemon, dagster-webserver).
BIN = Path(sys.executable).parent


def start_in_session(
    cmd: list[str], log: Path, env: dict[str, str], cwd: Path = PROJECT_ROOT
) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session, stdin closed, stdout and stderr appended to `log`. Its own
    process group, so a signal to the group reaches its children too (`dagster dev` and the
    daemon's code servers ignore signals sent only to the parent)."""
    with log.open("ab") as out:  # the child holds its own copy of the descriptor
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def standin_command(port: int, fixture: Path) -> list[str]:
    """The Stripe stand-in serving the simulated history in `fixture` on 127.0.0.1:port."""
    return [
        sys.executable,
        "-m",
        "finance_pipeline_dev.standin.serve",
        "--port",
        str(port),
        "--fixture",
        str(fixture),
    ]


def wait_for_standin(url: str, fixture: Mapping[str, Any], timeout: float) -> None:
    """Until the stand-in at `url` answers an account read with the fixture's unrestricted key
    (the history is loaded once it does)."""
    key = next(
        k
        for account in fixture["accounts"].values()
        for k, v in account["keys"].items()
        if v.get("permissions") is None
    )
    wait_http(f"{url}/v1/account", timeout, {"Authorization": f"Bearer {key}"})


def api_command(port: int, workers: int | None = None) -> list[str]:
    """`finance-pipeline api` on 127.0.0.1:port (uvicorn; `workers` processes when given)."""
    cmd = [str(BIN / "finance-pipeline"), "api", "--host", "127.0.0.1", "--port", str(port)]
    return cmd if workers is None else [*cmd, "--workers", str(workers)]


def daemon_command() -> list[str]:
    """The Dagster daemon (schedules, sensors, run queue) over the project's workspace.yaml; run
    it from DAGSTER_HOME so that folder's dagster.yaml is the instance's."""
    return [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")]


def wait_http(url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    """Until `url` answers a GET with a success status; RuntimeError after `timeout` seconds."""
    deadline = time.time() + timeout
    last: Exception | None = None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=5):
                return
        except Exception as exc:
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s: {last}")


def proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process on the host, read from /proc."""
    out: dict[int, tuple[int, str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        out[int(d.name)] = (ppid, cmd.strip())
    return out

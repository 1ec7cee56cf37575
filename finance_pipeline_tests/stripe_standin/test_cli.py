"""The serve command: a subprocess serving a fixture file to the real SDK, stopped by SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import stripe
from finance_pipeline_dev.standin import serve, shapes
from finance_pipeline_dev.standin.server import RemoteStandIn

from finance_pipeline_tests.stripe_standin.sample import sample_fixture


def _read_banner(proc: subprocess.Popen[str], timeout: float = 20.0) -> tuple[str, str]:
    """The served URL and the whole start-up banner (up to the control-plane line)."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    url, banner = "", []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        banner.append(line)
        if line.startswith("stripe stand-in listening on "):
            url = line.split(" on ", 1)[1].strip()
        if line.startswith("control plane:"):
            return url, "".join(banner)
    proc.kill()
    raise AssertionError(f"serve did not start: {proc.stderr.read() if proc.stderr else ''}")


def test_serve_fixture_file(tmp_path: Path) -> None:
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(sample_fixture()))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finance_pipeline_dev.standin.serve",
            "--port",
            "0",
            "--fixture",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, banner = _read_banner(proc)
        assert "key sk_test_**** -> account acct_1StandInTest00001 (full access)" in banner
        assert "sk_test_standin" not in banner  # the key is never printed in clear
        client = stripe.StripeClient(
            "sk_test_standin",
            stripe_version=shapes.API_VERSION,
            base_addresses={"api": url},
        )
        inv = client.v1.invoices.retrieve("in_A1")
        assert inv.lines.total_count == 25
        assert len(list(client.v1.customers.list().auto_paging_iter())) == 3
        assert RemoteStandIn(url).requests()[-1]["path"] == "/v1/customers"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stripe stand-in stopped" in out


def test_serve_reports_bad_fixture(tmp_path: Path, capsys: Any) -> None:
    assert serve.main(["--port", "0", "--fixture", str(tmp_path / "missing.json")]) == 2
    assert "cannot load fixture" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"accounts": {"acct_x": {"objects": [{"id": "x"}]}}}')
    assert serve.main(["--port", "0", "--fixture", str(bad)]) == 2


SIM_MODULE = "finance_pipeline_dev.simulator"


def test_serve_simulated_history_uses_simulator(monkeypatch: Any) -> None:
    calls: list[dict[str, int]] = []

    def simulate(*, seed: int, customers: int, months: int) -> Any:
        calls.append({"seed": seed, "customers": customers, "months": months})
        return types.SimpleNamespace(fixture=sample_fixture())

    monkeypatch.setitem(sys.modules, SIM_MODULE, types.SimpleNamespace(simulate=simulate))
    stop, started = threading.Event(), threading.Event()
    urls: list[str] = []

    def ready(standin: Any) -> None:
        urls.append(standin.url)
        started.set()

    argv = ["--port", "0", "--seed", "7", "--customers", "3", "--months", "2"]
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(serve.run(argv, stop=stop, ready=ready)))
    thread.start()
    try:
        assert started.wait(10)
        client = stripe.StripeClient(
            "sk_test_standin", stripe_version=shapes.API_VERSION, base_addresses={"api": urls[0]}
        )
        assert client.v1.subscriptions.retrieve("sub_A").customer == "cus_A"
    finally:
        stop.set()
        thread.join(10)
    assert result == [0]
    assert calls == [{"seed": 7, "customers": 3, "months": 2}]


def test_serve_without_simulator_fails_clearly(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setitem(sys.modules, SIM_MODULE, None)  # makes the import fail
    assert serve.main(["--port", "0"]) == 2
    assert "pass --fixture PATH" in capsys.readouterr().err


def _serve_in_thread(argv: list[str], check: Any) -> None:
    """Run the serve command in a thread, call `check(standin)` while it serves, then stop it."""
    stop, started = threading.Event(), threading.Event()
    handles: list[Any] = []

    def ready(standin: Any) -> None:
        handles.append(standin)
        started.set()

    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(serve.run(argv, stop=stop, ready=ready)))
    thread.start()
    try:
        assert started.wait(10)
        check(handles[0])
    finally:
        stop.set()
        thread.join(10)
    assert result == [0]


def test_serve_latency_flag_and_env(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(sample_fixture()))

    def timed_request(expected_ms: int) -> Any:
        def check(standin: Any) -> None:
            assert standin.faults.config.latency_ms == expected_ms
            client = stripe.StripeClient(
                "sk_test_standin",
                stripe_version=shapes.API_VERSION,
                base_addresses={"api": standin.url},
            )
            started = time.perf_counter()
            client.v1.customers.list()
            assert time.perf_counter() - started >= expected_ms / 1000

        return check

    monkeypatch.setenv("STANDIN_LATENCY_MS", "120")
    _serve_in_thread(["--port", "0", "--fixture", str(path)], timed_request(120))
    assert "latency: 120 ms per API response" in capsys.readouterr().out
    # The flag wins over the environment.
    _serve_in_thread(
        ["--port", "0", "--fixture", str(path), "--latency-ms", "200"], timed_request(200)
    )
    monkeypatch.delenv("STANDIN_LATENCY_MS")
    _serve_in_thread(["--port", "0", "--fixture", str(path)], timed_request(0))
    assert serve.main(["--port", "0", "--fixture", str(path), "--latency-ms", "-5"]) == 2

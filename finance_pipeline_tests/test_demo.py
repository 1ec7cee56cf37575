"""The demo command refuses to start when its ports are taken, before any work."""

from __future__ import annotations

import socket

import pytest
from finance_pipeline_dev.demo import run_demo


def test_demo_stops_with_a_clear_message_when_a_port_is_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run_demo(customers=5, months=1, seed=1, standin_port=port, ui_port=port, serve=True)
    assert code == 2
    err = capsys.readouterr().err
    assert f"Port(s) {port}" in err and "--standin-port" in err

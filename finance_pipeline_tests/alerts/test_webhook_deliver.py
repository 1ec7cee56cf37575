"""Signed webhook delivery of alerts: retries with the shared backoff, dedupe by alert id, and a
real POST to a local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from finance_pipeline.alerts.delivery import WEBHOOK_BACKOFF, deliver, requests_sender
from finance_pipeline.lib.alerts import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    Alert,
    alert_id,
    verify_signature,
)

DAY = date(2026, 2, 28)
WS = "ws_1"
SECRET = "whsec_test"


def make_alert(kind: str = "runway_low", subject: str = "") -> Alert:
    return Alert(
        alert_id(WS, DAY, kind, subject),
        WS,
        DAY,
        kind,
        "warn",
        "msg",
        {"runway_months": Decimal("5.50")},
        subject,
    )


class FakeSender:
    def __init__(self, outcomes: list[int | Exception]) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.calls.append((url, body, headers))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def run_deliver(outcomes: list[int | Exception], alerts: list[Alert], delivered: set[str]):
    sender = FakeSender(outcomes)
    sleeps: list[float] = []
    report = deliver(
        alerts,
        "https://hooks.example/x",
        SECRET,
        sender,
        delivered,
        sleep=sleeps.append,
        clock=lambda: 1_700_000_000.0,
    )
    return report, sender, sleeps


def test_deliver_retries_5xx_and_connection_errors() -> None:
    a = make_alert()
    delivered: set[str] = set()
    report, sender, sleeps = run_deliver([500, ConnectionError("reset"), 429, 200], [a], delivered)
    assert report.delivered == [a.id] and report.failed == {}
    assert report.attempts == {a.id: 4}
    # The shared backoff: jittered within the upper half of 1, 2, 4 s.
    assert [s / 2**i for i, s in enumerate(sleeps)] == pytest.approx([0.75] * 3, abs=0.25)
    assert delivered == {a.id}
    url, body, headers = sender.calls[-1]
    assert url == "https://hooks.example/x"
    assert headers[ALERT_ID_HEADER] == a.id
    assert verify_signature(SECRET, headers[SIGNATURE_HEADER], body, now=1_700_000_000)
    event = json.loads(body)
    assert event["id"] == a.id and event["type"] == "runway_low"
    assert event["data"]["payload"] == {"runway_months": 5.5}


def test_deliver_gives_up_after_max_attempts_and_on_4xx() -> None:
    a, b = make_alert("runway_low"), make_alert("mrr_decline")
    delivered: set[str] = set()
    report, _, sleeps = run_deliver([503] * 5 + [404], [a, b], delivered)
    assert report.failed == {a.id: "HTTP 503", b.id: "HTTP 404"}
    assert report.attempts == {a.id: 5, b.id: 1}
    assert [s / 2**i for i, s in enumerate(sleeps)] == pytest.approx([0.75] * 4, abs=0.25)
    assert delivered == set() and report.delivered == []


def test_deliver_dedupes_by_alert_id() -> None:
    a, b = make_alert("runway_low"), make_alert("margin_threshold_crossed", "cus_1")
    delivered = {a.id}
    report, sender, _ = run_deliver([200, 200], [a, b, b], delivered)
    assert report.duplicates == [a.id, b.id]
    assert report.delivered == [b.id]
    assert len(sender.calls) == 1
    assert delivered == {a.id, b.id}


def test_deliver_survives_a_broken_sender() -> None:
    a, b = make_alert("runway_low"), make_alert("mrr_decline")
    report, _, sleeps = run_deliver([RuntimeError("bug"), 200], [a, b], set())
    assert report.failed == {a.id: "sender error: RuntimeError: bug"}
    assert report.delivered == [b.id] and sleeps == []


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[int], list[bool]]]:
    statuses = [500, 200]
    verified: list[bool] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            verified.append(verify_signature(SECRET, self.headers[SIGNATURE_HEADER], body))
            self.send_response(statuses.pop(0))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", statuses, verified
    finally:
        server.shutdown()
        server.server_close()


def test_deliver_with_requests_to_local_server(
    hook_server: tuple[str, list[int], list[bool]],
) -> None:
    url, statuses, verified = hook_server
    a = make_alert()
    report = deliver([a], url, SECRET, requests_sender(timeout=5), set(), sleep=lambda s: None)
    assert report.delivered == [a.id] and report.attempts == {a.id: 2}
    assert verified == [True, True] and statuses == []


def test_webhook_backoff_is_capped_and_honours_retry_after() -> None:
    assert all(30.0 <= WEBHOOK_BACKOFF.delay(n) <= 60.0 for n in (7, 12, 40))
    assert WEBHOOK_BACKOFF.delay(1, retry_after=5.0) == 5.0
    assert WEBHOOK_BACKOFF.delay(1, retry_after=600.0) == 60.0

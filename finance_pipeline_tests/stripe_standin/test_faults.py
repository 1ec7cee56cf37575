"""Injected faults as the SDK sees them, the server-side rate limit, and the request log."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import stripe
from finance_pipeline_dev.standin.faults import FaultInjector


def test_plain_429_is_rate_limit_without_should_retry(stripe_standin: Any) -> None:
    stripe_standin.fail_next(1, "rate_limit")
    client = stripe_standin.client(max_network_retries=2)
    with pytest.raises(stripe.RateLimitError) as exc:
        client.v1.customers.list()  # the SDK never retries a plain 429
    # the SDK does not copy ``code`` onto RateLimitError: it is in the JSON body
    assert exc.value.http_status == 429 and exc.value.code is None
    assert exc.value.json_body["error"]["code"] == "rate_limit"
    assert "stripe-should-retry" not in {k.lower() for k in exc.value.headers}
    assert exc.value.request_id and exc.value.request_id.startswith("req_")
    assert client.v1.customers.list().data == []
    assert [e["status"] for e in stripe_standin.requests()] == [429, 200]


def test_lock_timeout_carries_should_retry(stripe_standin: Any) -> None:
    stripe_standin.fail_next(1, "lock_timeout")
    with pytest.raises(stripe.RateLimitError) as exc:
        stripe_standin.client().v1.customers.list()
    assert exc.value.json_body["error"]["code"] == "lock_timeout"
    assert exc.value.headers["Stripe-Should-Retry"] == "true"
    # a client with retries honours the header and succeeds on the second attempt
    stripe_standin.fail_next(1, "lock_timeout")
    assert stripe_standin.client(max_network_retries=1).v1.customers.list().data == []
    assert [e["fault"] for e in stripe_standin.requests()] == ["lock_timeout", "lock_timeout", None]


@pytest.mark.parametrize(
    ("kind", "status"), [("server_error", 500), ("bad_gateway", 502), ("503", 503)]
)
def test_server_errors(stripe_standin: Any, kind: str, status: int) -> None:
    stripe_standin.fail_next(1, kind)
    with pytest.raises(stripe.APIError) as exc:
        stripe_standin.client().v1.customers.list()
    assert exc.value.http_status == status
    assert json.loads(exc.value.http_body)["error"]["type"] == "api_error"


def test_dropped_connection_and_slow_response(stripe_standin: Any) -> None:
    stripe_standin.fail_next(1, "drop")
    client = stripe_standin.client()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.list()
    assert client.v1.customers.list().data == []  # next request on a fresh connection works
    stripe_standin.fail_next(1, "slow", delay_ms=300)
    started = time.perf_counter()
    assert client.v1.customers.list().data == []
    assert time.perf_counter() - started >= 0.3
    stripe_standin.fail_next(1, "slow", delay_ms=800)
    with pytest.raises(stripe.APIConnectionError):
        stripe_standin.client(timeout=0.2).v1.customers.list()
    deadline = time.monotonic() + 3
    while len(stripe_standin.requests()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # the 800 ms request is still sleeping server-side
    log = stripe_standin.requests()
    assert [(e["fault"], e["status"]) for e in log] == [
        ("drop", None),
        (None, 200),
        ("slow", 200),
        ("slow", 200),
    ]
    assert log[2]["duration_ms"] >= 300 and log[3]["duration_ms"] >= 800


def test_fail_next_path_prefix(stripe_standin: Any) -> None:
    stripe_standin.fail_next(2, "server_error", path_prefix="/v1/invoices")
    client = stripe_standin.client()
    assert client.v1.customers.list().data == []
    with pytest.raises(stripe.APIError):
        client.v1.invoices.list()
    with pytest.raises(stripe.APIError):
        client.v1.invoices.list()
    assert client.v1.invoices.list().data == []


def _outcomes(standin: Any, n: int) -> list[str]:
    client = standin.client(timeout=5)
    out = []
    for _ in range(n):
        try:
            client.v1.customers.list({"limit": 1})
            out.append("ok")
        except stripe.StripeError as exc:
            out.append(f"{type(exc).__name__}:{exc.http_status}")
    return out


def test_error_rate_is_seeded_and_mixed(stripe_standin: Any) -> None:
    stripe_standin.configure_faults(error_rate=0.5, seed=7)
    first = _outcomes(stripe_standin, 40)
    stripe_standin.configure_faults(seed=7)
    second = _outcomes(stripe_standin, 40)
    assert first == second
    failures = [o for o in first if o != "ok"]
    assert 8 <= len(failures) <= 32
    assert {"RateLimitError:429", "APIError:500", "APIError:503", "APIConnectionError:None"} <= set(
        failures
    )
    stripe_standin.reset_faults()
    assert _outcomes(stripe_standin, 5) == ["ok"] * 5


def test_server_side_rate_limit_caps_throughput(stripe_standin: Any) -> None:
    stripe_standin.configure_faults(rate_limit_rps=10, rate_limit_burst=3)
    client = stripe_standin.client()
    ok = limited = 0
    retry_after: set[str] = set()
    started = time.perf_counter()
    while time.perf_counter() - started < 0.5:
        try:
            client.v1.customers.list({"limit": 1})
            ok += 1
        except stripe.RateLimitError as exc:
            limited += 1
            retry_after.add(exc.headers["Retry-After"])
    elapsed = time.perf_counter() - started
    assert limited > 0 and retry_after == {"1"}
    assert 3 <= ok <= 3 + 10 * elapsed + 1
    stripe_standin.configure_faults(rate_limit_rps=None)
    assert _outcomes(stripe_standin, 10) == ["ok"] * 10


def test_request_log_content(stripe_standin: Any) -> None:
    client = stripe_standin.client()
    client.v1.customers.list({"limit": 3, "created": {"gte": 5}})
    with pytest.raises(stripe.PermissionError):
        stripe_standin.client(stripe_standin.restricted_key).v1.charges.list()
    entries = stripe_standin.requests()
    first = entries[0]
    assert first["method"] == "GET" and first["path"] == "/v1/customers"
    assert first["query"] == "limit=3&created[gte]=5"
    assert first["account"] == stripe_standin.account_id
    assert first["key_prefix"] == "sk_test_****"  # too short to show a suffix
    assert first["status"] == 200 and first["fault"] is None
    assert first["stripe_version"] == "2026-10-28.endive"
    assert isinstance(first["time"], float) and first["clock"] == stripe_standin.now()
    assert entries[1]["key_prefix"] == "rk_test_****cted" and entries[1]["status"] == 403
    dumped = json.dumps(entries)
    assert stripe_standin.api_key not in dumped and stripe_standin.restricted_key not in dumped
    stripe_standin.clear_requests()
    assert stripe_standin.requests() == []


def test_injector_validates_and_is_deterministic() -> None:
    with pytest.raises(ValueError):
        FaultInjector().fail_next(1, "teapot")
    with pytest.raises(ValueError):
        FaultInjector().configure(error_rate=1.5)
    with pytest.raises(ValueError):
        FaultInjector().configure(colour="red")
    a, b = FaultInjector(3), FaultInjector(3)
    for inj in (a, b):
        inj.configure(error_rate=0.3, slow_rate=0.2, slow_ms=1)
    seq_a = [a.decide("/v1/x").kind for _ in range(200)]
    assert seq_a == [b.decide("/v1/x").kind for _ in range(200)]
    assert 30 <= sum(k not in (None, "slow") for k in seq_a) <= 90


def test_latency_delays_each_response_without_blocking_others(stripe_standin: Any) -> None:
    stripe_standin.configure_faults(latency_ms=250)
    client = stripe_standin.client()
    started = time.perf_counter()
    client.v1.customers.list({"limit": 1})
    assert time.perf_counter() - started >= 0.25
    # Eight requests at once, each on its own connection: served side by side, so together they
    # take about one latency, far less than the 2 s they would take one after another.
    clients = [stripe_standin.client() for _ in range(8)]
    durations: list[float] = []

    def call(c: Any) -> None:
        t = time.perf_counter()
        c.v1.customers.list({"limit": 1})
        durations.append(time.perf_counter() - t)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert len(durations) == 8 and min(durations) >= 0.25
    assert elapsed < 1.5
    # A 429 is a round trip too; resetting the faults keeps the network's latency.
    stripe_standin.fail_next(1, "rate_limit")
    started = time.perf_counter()
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list({"limit": 1})
    assert time.perf_counter() - started >= 0.25
    stripe_standin.reset_faults()
    assert stripe_standin.configure_faults()["latency_ms"] == 250
    stripe_standin.configure_faults(latency_ms=0)
    started = time.perf_counter()
    client.v1.customers.list({"limit": 1})
    assert time.perf_counter() - started < 0.25
    with pytest.raises(ValueError):
        FaultInjector(latency_ms=-1)

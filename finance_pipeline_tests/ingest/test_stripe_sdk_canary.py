"""Canary for the private Stripe SDK internals the gateway relies on (stripe_sync/gateway.py).

The gateway skips StripeObject construction by calling the client's own requestor. Those names are
private and may change in any SDK release, so `stripe` is pinned exactly in pyproject.toml. When an
upgrade breaks one of these tests, fix `StripeGateway._request_json` (or drop the fast path: the
gateway falls back to the public `raw_request` when `client._requestor` looks different).
"""

from __future__ import annotations

import importlib
import inspect
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe

from finance_pipeline.stripe_sync.gateway import StripeGateway
from finance_pipeline.stripe_sync.version import STRIPE_API_VERSION

UPGRADE_HINT = (
    "The installed stripe SDK changed a private internal that StripeGateway._request_json uses; "
    "adapt stripe_sync/gateway.py (or let it fall back to client.raw_request) before upgrading."
)


def test_extract_options_from_dict_splits_request_options_from_params() -> None:
    """Request options (Stripe-Account, ...) leave the params; the rest is sent as query params."""
    module = importlib.import_module("stripe._request_options")
    extract_options_from_dict = getattr(module, "extract_options_from_dict", None)
    assert extract_options_from_dict is not None, (
        f"stripe._request_options.extract_options_from_dict is gone. {UPGRADE_HINT}"
    )
    assert list(inspect.signature(extract_options_from_dict).parameters) == ["d"], UPGRADE_HINT
    options, rest = extract_options_from_dict(
        {"limit": 3, "expand": ["data.x"], "stripe_account": "acct_1"}
    )
    assert options.get("stripe_account") == "acct_1", UPGRADE_HINT
    assert rest == {"limit": 3, "expand": ["data.x"]}, UPGRADE_HINT


def test_client_requestor_has_request_raw_and_interpret_response() -> None:
    """`client._requestor.request_raw(...)` and `._interpret_response(...)` with these arguments."""
    client = stripe.StripeClient("sk_test_canary", stripe_version=STRIPE_API_VERSION)
    requestor = getattr(client, "_requestor", None)
    assert requestor is not None, f"StripeClient._requestor is gone. {UPGRADE_HINT}"
    raw = inspect.signature(requestor.request_raw).parameters
    for name in ("method", "url", "params", "options", "base_address", "api_mode", "usage"):
        assert name in raw, f"request_raw lost its {name!r} parameter. {UPGRADE_HINT}"
    interpret = list(inspect.signature(requestor._interpret_response).parameters)
    assert interpret == ["rbody", "rcode", "rheaders", "api_mode"], UPGRADE_HINT


@pytest.fixture
def fake_stripe() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local endpoint: 200 with a list page on /v1/customers, a Stripe 404 error elsewhere."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            seen.append({"path": url.path, "query": parse_qs(url.query), **dict(self.headers)})
            if url.path == "/v1/customers":
                status, body = 200, {"object": "list", "data": [{"id": "cus_1"}], "has_more": True}
            else:
                status = 404
                body = {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_gateway_fast_path_sends_what_raw_request_would(
    fake_stripe: tuple[str, list[dict[str, Any]]],
) -> None:
    """Through the private requestor: key, pinned version, Stripe-Account, bracket-encoded params,
    a plain-dict page, and the SDK's error mapping (404 -> InvalidRequestError -> None)."""
    url, seen = fake_stripe
    gw = StripeGateway("sk_test_canary", api_base=url, stripe_account="acct_9", rate_limit_rps=1000)
    assert gw._requestor is not None, f"the gateway lost its fast path. {UPGRADE_HINT}"
    objects, has_more = gw.list_page("customers", {"limit": 1, "expand": ["data.x"]})
    assert objects == [{"id": "cus_1"}] and has_more is True
    assert type(objects[0]) is dict, f"the fast path must decode to plain dicts. {UPGRADE_HINT}"
    req = seen[0]
    assert req["Authorization"] == "Bearer sk_test_canary", UPGRADE_HINT
    assert req["Stripe-Version"] == STRIPE_API_VERSION, UPGRADE_HINT
    assert req["Stripe-Account"] == "acct_9", UPGRADE_HINT
    assert req["query"] == {"limit": ["1"], "expand[0]": ["data.x"]}, UPGRADE_HINT
    assert gw.retrieve("customers", "cus_missing") is None, UPGRADE_HINT
    assert gw.stats.errors_by_status == {"404": 1}, UPGRADE_HINT


def test_stripe_error_exposes_what_the_retry_loop_reads() -> None:
    """The backoff reads http_status, code, headers (Retry-After, Stripe-Should-Retry)."""
    exc = stripe.RateLimitError(
        "slow down", http_status=429, headers={"Retry-After": "2"}, code="rate_limit"
    )
    assert isinstance(exc, stripe.StripeError), UPGRADE_HINT
    assert (exc.http_status, exc.code, exc.headers["Retry-After"]) == (429, "rate_limit", "2")
    assert hasattr(exc, "user_message"), UPGRADE_HINT

"""Advisory memo (v1 API): rule-based fallback; OpenAI-compatible provider vs a local stub."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from finance_pipeline.advisory.provider import OpenAICompatibleProvider
from finance_pipeline.lib.advisory import (
    MemoDraft,
    MemoProviderError,
    format_cents,
    parse_memo_answer,
    rule_based_memo,
    write_memo,
)
from finance_pipeline.lib.alerts import Alert

AS_OF = date(2026, 2, 28)
WORKSPACE = {"id": "ws_1", "name": "Acme Corp"}
SEED_METRICS: dict[str, Any] = {
    "as_of": "2026-02-28",
    "currency": "USD",
    "gross_revenue_cents_30d": 2_400_000,
    "refunds_cents_30d": -80_000,
    "net_revenue_cents_30d": 2_320_000,
    "mrr_cents": 2_150_000,
    "arr_cents": 25_800_000,
    "burn_cents_30d": 480_000,
    "recurring_burn_cents_30d": 350_000,
    "one_time_expenses_cents_30d": 130_000,
    "cash_on_hand_cents": 5_000_000,
    "runway_months": Decimal("14.29"),
    "runway_days": Decimal("428.57"),
    "warnings": [],
    "skipped_currencies": {},
}
ALERT = Alert(
    "al_1",
    "ws_1",
    AS_OF,
    "refund_spike",
    "warn",
    "Refund volume is 2.3x the previous 30 days.",
    {"ratio": Decimal("2.30")},
)


def test_format_cents() -> None:
    assert format_cents(2_320_000) == "$23,200.00"
    assert format_cents(-80_000) == "-$800.00"
    assert format_cents(5, "eur") == "0.05 EUR"


def test_rule_based_memo_cites_the_numbers() -> None:
    memo = rule_based_memo(SEED_METRICS, [ALERT.to_dict()])
    assert memo == MemoDraft(
        summary=(
            "Runway is 14.29 months at a recurring burn of $3,500.00 per 30 days. "
            "Net revenue over the last 30 days was $23,200.00 "
            "(gross $24,000.00, refunds -$800.00). "
            "MRR is $21,500.00 (ARR $258,000.00). 1 active alert."
        ),
        suggestions=[
            "One-time expenses were $1,300.00 in the last 30 days; they count in burn but not in "
            "runway."
        ],
        risks=["Refund volume is 2.3x the previous 30 days."],
    )


def test_rule_based_memo_low_runway_missing_cash_refunds_and_fx() -> None:
    low = {**SEED_METRICS, "cash_on_hand_cents": 875_000, "runway_months": Decimal("2.5")}
    memo = rule_based_memo(low, [])
    assert memo.suggestions[0] == (
        "Runway is 2.50 months: reduce recurring expenses (recurring burn $3,500.00 per 30 days) "
        "or raise cash."
    )
    no_cash = {
        **SEED_METRICS,
        "cash_on_hand_cents": None,
        "runway_months": None,
        "refunds_cents_30d": -240_001,  # just above 10 % of gross
        "skipped_currencies": {"eur": 2},
        "one_time_expenses_cents_30d": 0,
    }
    memo = rule_based_memo(no_cash, [])
    assert memo.summary.startswith("Cash on hand is not set, so runway cannot be computed.")
    assert memo.suggestions == [
        "Set cash on hand on the workspace so runway and forecasts can be computed.",
        "Refunds are 10.00% of gross revenue (-$2,400.01); review their causes.",
        "Add FX rates: entries were left out of the totals for EUR (2).",
    ]


def test_empty_metrics_do_not_crash() -> None:
    memo = rule_based_memo({"currency": "USD", "cash_on_hand_cents": None}, [])
    assert "MRR is $0.00 (ARR $0.00). 0 active alerts." in memo.summary


def test_no_provider_falls_back_like_the_seed() -> None:
    out = write_memo(WORKSPACE, AS_OF, SEED_METRICS, [ALERT], None)
    assert out["provider"] == "fallback" and out["model"] is None and out["ai_available"] is False
    assert out["ai_error"] == {
        "type": "configuration_error",
        "code": "ai_not_configured",
        "message": "No AI provider is configured.",
    }
    assert out["grounding"] == {
        "workspace_name": "Acme Corp",
        "alert_count": 1,
        "alerts": [{**ALERT.to_dict(), "payload": {"ratio": 2.3}}],
        "metrics": {**SEED_METRICS, "runway_months": 14.29, "runway_days": 428.57},
    }
    assert out["summary"].startswith("Runway is 14.29 months")
    assert (out["workspace_id"], out["as_of"]) == ("ws_1", "2026-02-28")
    json.dumps(out)  # the whole response is plain JSON


def test_unconfigured_provider_reports_configuration_error() -> None:
    provider = OpenAICompatibleProvider("http://127.0.0.1:9", None, "m")
    out = write_memo(WORKSPACE, AS_OF, SEED_METRICS, [], provider)
    assert out["ai_error"]["type"] == "configuration_error"
    assert "api_key" in out["ai_error"]["message"]


def test_parse_memo_answer() -> None:
    fenced = '```json\n{"summary": "S", "suggestions": ["a"], "risks": []}\n```'
    assert parse_memo_answer(fenced) == MemoDraft("S", ["a"], [])
    for bad in ("no json", '{"summary": ""}', '{"summary": "x", "risks": [1]}', "{bad json}"):
        with pytest.raises(MemoProviderError) as info:
            parse_memo_answer(bad)
        assert info.value.code == "ai_invalid_response"


# --- HTTP provider against a local stub ----------------------------------------------------------

GOOD_ANSWER = {
    "summary": "Runway is 14.29 months.",
    "suggestions": ["Keep burn flat."],
    "risks": [],
}


@pytest.fixture
def stub() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"mode": "ok", "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            mode = state["mode"]
            if mode == "timeout":
                time.sleep(1.0)
            if mode == "500":
                payload, status = b'{"error": "boom"}', 500
            elif mode == "garbage":
                payload, status = b"<html>not json</html>", 200
            elif mode == "prose":
                content = "Sure! Here is your memo: runway looks fine."
                payload = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
                status = 200
            else:
                content = json.dumps(GOOD_ANSWER)
                payload = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
                status = 200
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state["base_url"] = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def provider_for(stub: dict[str, Any], timeout: float = 5.0) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(stub["base_url"], "sk-test", "mistral-7b", timeout=timeout)


def test_http_provider_success(stub: dict[str, Any]) -> None:
    out = write_memo(WORKSPACE, AS_OF, SEED_METRICS, [ALERT], provider_for(stub))
    assert out["ai_available"] is True and out["ai_error"] is None
    assert (out["provider"], out["model"]) == ("openai_compatible", "mistral-7b")
    assert (out["summary"], out["suggestions"], out["risks"]) == (
        "Runway is 14.29 months.",
        ["Keep burn flat."],
        [],
    )
    [req] = stub["requests"]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "mistral-7b"
    system, user = req["body"]["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    # The user message is exactly the grounding JSON, nothing else.
    assert json.loads(user["content"]) == out["grounding"]


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("500", "ai_http_error"),
        ("garbage", "ai_invalid_response"),
        ("prose", "ai_invalid_response"),
    ],
)
def test_http_provider_failures_fall_back(stub: dict[str, Any], mode: str, code: str) -> None:
    stub["mode"] = mode
    out = write_memo(WORKSPACE, AS_OF, SEED_METRICS, [ALERT], provider_for(stub))
    assert (out["provider"], out["model"], out["ai_available"]) == ("fallback", None, False)
    assert out["ai_error"]["type"] == "upstream_error" and out["ai_error"]["code"] == code
    assert out["summary"].startswith("Runway is 14.29 months at a recurring burn of $3,500.00")
    assert out["risks"] == ["Refund volume is 2.3x the previous 30 days."]


def test_http_provider_timeout_falls_back(stub: dict[str, Any]) -> None:
    stub["mode"] = "timeout"
    started = time.monotonic()
    out = write_memo(WORKSPACE, AS_OF, SEED_METRICS, [], provider_for(stub, timeout=0.2))
    assert time.monotonic() - started < 0.9
    assert out["ai_error"]["code"] == "ai_timeout"
    assert out["ai_available"] is False


def test_unreachable_provider_falls_back() -> None:
    provider = OpenAICompatibleProvider("http://127.0.0.1:1", "k", "m", timeout=2)
    out = write_memo(WORKSPACE, AS_OF, SEED_METRICS, [], provider)
    assert out["ai_error"]["code"] == "ai_unavailable"

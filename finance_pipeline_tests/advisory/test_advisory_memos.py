"""mart.advisory_memos through Dagster on a hand-built ledger (SQLite and PostgreSQL): the rule-based
memo of the v1 API example exactly, the AI provider (a local OpenAI-compatible stub) asked on the
last day of a window only, AI failures falling back, an empty workspace, re-runs replacing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest

from finance_pipeline.advisory.assets import advisory_memos
from finance_pipeline.advisory.memos import provider_from_settings
from finance_pipeline.alerts.assets import alerts
from finance_pipeline.lib.advisory import write_memo
from finance_pipeline.lib.alerts import alert_id
from finance_pipeline.metrics.cfo_assets import cfo_marts
from finance_pipeline.settings import Settings, get_settings
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import materialize_days
from finance_pipeline_tests.metrics.test_cfo_revenue_alerts import _ledger, _mrr

AS_OF = date(2026, 2, 28)
C = 10_000  # micros per cent

# The v1 API example (as in metrics/test_cfo_revenue_alerts.py): gross 2,400,000, refunds
# -80,000, recurring expenses 2,670,000 (a fee included), one-time 130,000, cash 5,000,000.
SEED_LEDGER = [
    (date(2026, 2, 10), "gross_revenue", None, 1_500_000, "usd"),
    (date(2026, 2, 1), "manual_revenue", "recurring", 900_000, "usd"),
    (date(2026, 2, 12), "refund", None, -80_000, "usd"),
    (date(2026, 2, 1), "expense", "recurring_expense", 2_600_000, "usd"),
    (date(2026, 1, 30), "fee", None, 70_000, "usd"),
    (date(2026, 2, 15), "expense", "one_time_expense", 130_000, "usd"),
]
SEED_SUMMARY = (
    "Runway is 14.29 months at a recurring burn of $3,500.00 per 30 days. "
    "Net revenue over the last 30 days was $23,200.00 (gross $24,000.00, refunds -$800.00). "
    "MRR is $21,500.00 (ARR $258,000.00). 1 active alert."
)
ONE_TIME_SUGGESTION = (
    "One-time expenses were $1,300.00 in the last 30 days; they count in burn but not in runway."
)
REFUND_RISK = "Refunds were issued after none in the previous 30 days."
NO_AI = {
    "type": "configuration_error",
    "code": "ai_not_configured",
    "message": "No AI provider is configured.",
}
SKIPPED = {
    "type": "skipped",
    "code": "ai_skipped_backfill",
    "message": "Only the last day of a run's window asks the AI provider; this day's memo is the "
    "rule-based one.",
}
AI_ANSWER = {
    "summary": "Runway is 14.29 months; refunds appeared this month.",
    "suggestions": ["Review the February refund."],
    "risks": ["Refund volume rose from zero."],
}


def _workspace(wh: Warehouse, ws: str, cash_cents: int | None) -> None:
    create_organization(wh, "o", org_id="o")
    create_workspace(
        wh,
        "o",
        f"{ws} Inc",
        workspace_id=ws,
        cash_on_hand_micros=None if cash_cents is None else cash_cents * C,
    )


def _seed(wh: Warehouse, ws: str = "ws_seed", cash_cents: int = 5_000_000) -> None:
    _workspace(wh, ws, cash_cents)
    _ledger(wh, ws, SEED_LEDGER)
    _mrr(wh, ws, AS_OF, 21_500_000_000)


def _run(
    wh: Warehouse, start: date, end: date, assets: list | None = None
) -> dg.ExecuteInProcessResult:
    return materialize_days(assets or [cfo_marts, alerts, advisory_memos], wh, start, end, True)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _memos(wh: Warehouse, ws: str) -> dict[str, dict[str, Any]]:
    rows = wh.rows("SELECT * FROM mart.advisory_memos WHERE workspace_id = :w ORDER BY day", w=ws)
    out = {}
    for r in rows:
        for k in ("suggestions_json", "risks_json", "ai_error_json", "inputs_json"):
            r[k] = _json(r[k])
        r["ai_available"] = bool(r["ai_available"])
        out[str(r["day"])[:10]] = r
    return out


def _memo_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    # A partition-range run records one materialization per day, all with the run's metadata.
    mats = result.asset_materializations_for_node("advisory_memos")
    assert {m.asset_key for m in mats} == {dg.AssetKey(["mart", "advisory_memos"])}
    mat = mats[-1]
    return {k: v.value for k, v in mat.metadata.items()}


@pytest.fixture
def ai_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A local OpenAI-compatible chat-completions server, configured through the FP_AI_* env vars."""
    state: dict[str, Any] = {"mode": "ok", "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            if state["mode"] == "500":
                payload, status = b'{"error": "boom"}', 500
            else:
                content = json.dumps(AI_ANSWER)
                payload = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
                status = 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("FP_AI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("FP_AI_API_KEY", "sk-test")
    monkeypatch.setenv("FP_AI_MODEL", "mistralai/Mistral-7B-Instruct-v0.2")
    monkeypatch.setenv("FP_AI_PROVIDER_NAME", "huggingface")
    monkeypatch.setenv("FP_AI_TIMEOUT_SECONDS", "5")
    get_settings.cache_clear()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        get_settings.cache_clear()


def test_rule_based_memos_of_the_seed_example(warehouse: Warehouse) -> None:
    wh = warehouse
    _seed(wh)
    result = _run(wh, AS_OF - timedelta(days=2), AS_OF)
    memos = _memos(wh, "ws_seed")
    assert list(memos) == ["2026-02-26", "2026-02-27", "2026-02-28"]
    last = memos["2026-02-28"]
    assert last["summary"] == SEED_SUMMARY
    assert last["suggestions_json"] == [ONE_TIME_SUGGESTION]
    assert last["risks_json"] == [REFUND_RISK]
    assert (last["provider"], last["model"], last["ai_available"]) == ("fallback", None, False)
    # No FP_AI_* variable: the last day reports the missing configuration, older days the policy.
    assert last["ai_error_json"] == NO_AI
    assert memos["2026-02-26"]["ai_error_json"] == SKIPPED
    assert memos["2026-02-27"]["ai_error_json"] == SKIPPED
    # The grounding is that day's stored metrics row and alert rows, nothing else.
    assert last["inputs_json"] == {
        "workspace_name": "ws_seed Inc",
        "alert_count": 1,
        "alerts": [
            {
                "id": alert_id("ws_seed", AS_OF, "refund_spike"),
                "type": "refund_spike",
                "severity": "warn",
                "message": REFUND_RISK,
                "payload": {
                    "ratio": None,
                    "refunds_cents_30d": -80_000,
                    "refunds_cents_prior_30d": 0,
                },
                "workspace_id": "ws_seed",
                "day": "2026-02-28",
            }
        ],
        "metrics": {
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
            "runway_months": 14.29,
            "runway_days": 428.57,
            "warnings": [],
            "total_expenses_cents_30d": 2_800_000,
            "recurring_expenses_cents_30d": 2_670_000,
            "skipped_currencies": {},
        },
    }
    # Feb 26: no MRR row that day (MRR 0) and the same 30-day totals.
    assert memos["2026-02-26"]["summary"] == SEED_SUMMARY.replace(
        "MRR is $21,500.00 (ARR $258,000.00)", "MRR is $0.00 (ARR $0.00)"
    )
    meta = _memo_metadata(result)
    assert (meta["days"], meta["window"], meta["memos_written"], meta["ai_calls"]) == (
        3,
        "2026-02-26..2026-02-28",
        3,
        0,
    )
    assert meta["latest_summary"] == (
        "**2026-02-28**\n\n| workspace | provider | alerts | summary |\n|---|---|---|---|\n"
        f"| ws_seed | fallback | 1 | {SEED_SUMMARY} |"
    )
    assert meta["summary"] == SEED_SUMMARY
    assert meta["ai_errors_on_last_day"] == {"ws_seed": NO_AI}


def test_ai_is_asked_on_the_last_day_of_a_backfill_only(
    warehouse: Warehouse, ai_stub: dict[str, Any]
) -> None:
    wh = warehouse
    _seed(wh)
    _workspace(wh, "ws_empty", None)
    result = _run(wh, date(2026, 2, 1), AS_OF)
    # 28 days x 2 workspaces, 2 HTTP calls: one per workspace, for Feb 28.
    meta = _memo_metadata(result)
    assert (meta["memos_written"], meta["ai_calls"], meta["ai_available_on_last_day"]) == (56, 2, 2)
    assert len(ai_stub["requests"]) == 2
    for req in ai_stub["requests"]:
        assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
        assert req["body"]["model"] == "mistralai/Mistral-7B-Instruct-v0.2"
        grounding = json.loads(req["body"]["messages"][1]["content"])
        assert grounding["metrics"]["as_of"] == "2026-02-28"
    for ws in ("ws_seed", "ws_empty"):
        memos = _memos(wh, ws)
        assert len(memos) == 28
        last = memos.pop("2026-02-28")
        assert (last["provider"], last["model"], last["ai_available"], last["ai_error_json"]) == (
            "huggingface",
            "mistralai/Mistral-7B-Instruct-v0.2",
            True,
            None,
        )
        assert (last["summary"], last["suggestions_json"], last["risks_json"]) == (
            AI_ANSWER["summary"],
            AI_ANSWER["suggestions"],
            AI_ANSWER["risks"],
        )
        assert {(m["provider"], m["ai_available"]) for m in memos.values()} == {("fallback", False)}
        assert all(m["ai_error_json"] == SKIPPED for m in memos.values())
    # The AI's memo is grounded in exactly what the prompt carried.
    sent = {
        json.loads(r["body"]["messages"][1]["content"])["workspace_name"]: json.loads(
            r["body"]["messages"][1]["content"]
        )
        for r in ai_stub["requests"]
    }
    assert _memos(wh, "ws_seed")["2026-02-28"]["inputs_json"] == sent["ws_seed Inc"]

    # The provider fails on a re-run of the last day: the day's memo is replaced by the rule-based
    # one with the provider's error; the other days are untouched and nothing is duplicated.
    ai_stub["mode"] = "500"
    _run(wh, AS_OF, AS_OF, [advisory_memos])
    assert len(ai_stub["requests"]) == 4
    memos = _memos(wh, "ws_seed")
    assert len(memos) == 28
    last = memos["2026-02-28"]
    assert (last["provider"], last["model"], last["ai_available"]) == ("fallback", None, False)
    assert last["ai_error_json"] == {
        "type": "upstream_error",
        "code": "ai_http_error",
        "message": "The AI provider returned HTTP 500.",
    }
    assert last["summary"] == SEED_SUMMARY
    assert memos["2026-02-27"]["ai_error_json"] == SKIPPED
    assert wh.scalar("SELECT COUNT(*) FROM mart.advisory_memos") == 56


def test_empty_workspaces_get_clean_memos(warehouse: Warehouse) -> None:
    wh = warehouse
    _workspace(wh, "ws_nocash", None)
    _workspace(wh, "ws_cash", 1_000_000)
    assert _run(wh, AS_OF, AS_OF).success
    nocash = _memos(wh, "ws_nocash")["2026-02-28"]
    assert nocash["summary"] == (
        "Cash on hand is not set, so runway cannot be computed. "
        "Net revenue over the last 30 days was $0.00 (gross $0.00, refunds $0.00). "
        "MRR is $0.00 (ARR $0.00). 0 active alerts."
    )
    assert nocash["suggestions_json"] == [
        "Set cash on hand on the workspace so runway and forecasts can be computed."
    ]
    assert nocash["risks_json"] == []
    assert nocash["inputs_json"]["metrics"]["warnings"][0]["code"] == "missing_cash"
    cash = _memos(wh, "ws_cash")["2026-02-28"]
    assert cash["summary"] == (
        "Net revenue covers recurring expenses (recurring burn $0.00 over 30 days), so runway is "
        "not limited by burn. Net revenue over the last 30 days was $0.00 (gross $0.00, refunds "
        "$0.00). MRR is $0.00 (ARR $0.00). 0 active alerts."
    )
    assert (cash["suggestions_json"], cash["risks_json"]) == ([], [])


def test_days_without_metrics_write_no_memo_and_do_not_fail(warehouse: Warehouse) -> None:
    wh = warehouse
    _workspace(wh, "ws_new", 1_000_000)
    result = _run(wh, AS_OF - timedelta(days=1), AS_OF, [advisory_memos])
    assert result.success
    assert wh.scalar("SELECT COUNT(*) FROM mart.advisory_memos") == 0
    meta = _memo_metadata(result)
    assert (meta["memos_written"], meta["days_without_metrics"]) == (0, {"ws_new": 2})


def test_rerun_replaces_the_days_memo(warehouse: Warehouse) -> None:
    wh = warehouse
    _seed(wh)
    _run(wh, AS_OF, AS_OF)
    first = _memos(wh, "ws_seed")["2026-02-28"]
    assert first["summary"] == SEED_SUMMARY
    # Cash drops to 875,000: 875,000 / 350,000 = 2.5 months, a critical runway alert listed first.
    _workspace(wh, "ws_seed", 875_000)
    _run(wh, AS_OF, AS_OF)
    memos = _memos(wh, "ws_seed")
    assert list(memos) == ["2026-02-28"]
    again = memos["2026-02-28"]
    assert again["summary"] == (
        "Runway is 2.50 months at a recurring burn of $3,500.00 per 30 days. "
        "Net revenue over the last 30 days was $23,200.00 (gross $24,000.00, refunds -$800.00). "
        "MRR is $21,500.00 (ARR $258,000.00). 2 active alerts."
    )
    assert again["suggestions_json"] == [
        "Runway is 2.50 months: reduce recurring expenses (recurring burn $3,500.00 per 30 days) "
        "or raise cash.",
        ONE_TIME_SUGGESTION,
    ]
    assert again["risks_json"] == ["Runway is below 6 months (2.5).", REFUND_RISK]


def test_provider_from_settings() -> None:
    assert provider_from_settings(Settings()) is None
    # A partial configuration is reported, not silently ignored; the key never shows.
    partial = provider_from_settings(Settings(ai_api_key="sk-secret"))
    memo = write_memo({"id": "ws", "name": "W"}, AS_OF, {"currency": "USD"}, [], partial)
    assert memo["ai_error"] == {
        "type": "configuration_error",
        "code": "ai_not_configured",
        "message": "The AI provider is not configured: missing base_url, model.",
    }
    assert "sk-secret" not in json.dumps(memo)

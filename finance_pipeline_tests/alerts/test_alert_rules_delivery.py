"""mart.alerts' margin-tier and Stripe-sync rules and its webhook delivery, through Dagster on SQLite
and PostgreSQL (docs/metrics.md §14): margin tier changes fire on the 1st for the month just closed,
sync health on the live day only (boundaries of the delay threshold), and the latest day's alerts
reach a local stub endpoint signed, retried after a 500, and never twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pytest

from finance_pipeline.alerts import assets as alert_assets
from finance_pipeline.alerts.assets import alerts
from finance_pipeline.alerts.delivery import (
    WebhookConfigError,
    clear_alert_webhook,
    set_alert_webhook,
    webhook_config,
)
from finance_pipeline.lib.alerts import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    alert_id,
    episode_id,
    event_id,
    verify_signature,
)
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.tenancy import connect_stripe, create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.alerts.webhook_stub import WebhookStub
from finance_pipeline_tests.dagster_runs import materialize_days

C = 10_000  # micros per cent
MARCH_1 = date(2026, 3, 1)
# The pinned "now": 06:00 UTC on Mar 2, when the daily refresh has evaluated Mar 1 (a live day).
NOW = int(datetime(2026, 3, 2, 6, tzinfo=UTC).timestamp())
DAY = 86_400
SECRET = "whsec_test_0123456789abcdef"
MARGIN = "margin_threshold_crossed"


@pytest.fixture(autouse=True)
def _pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alert_assets, "clock", lambda: NOW)


def _workspace(wh: Warehouse, ws: str, cash_cents: int | None = None, **settings: Any) -> None:
    create_organization(wh, "o", org_id="o")
    create_workspace(
        wh,
        "o",
        ws,
        workspace_id=ws,
        cash_on_hand_micros=None if cash_cents is None else cash_cents * C,
        settings=settings or None,
    )


def _run(wh: Warehouse, start: date, end: date) -> dg.ExecuteInProcessResult:
    return materialize_days([alerts], wh, start, end)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _alerts(wh: Warehouse, ws: str, kind: str | None = None) -> list[dict[str, Any]]:
    rows = wh.rows(
        "SELECT * FROM mart.alerts WHERE workspace_id = :w AND (CAST(:t AS TEXT) IS NULL"
        " OR type = :t) ORDER BY day, type, subject",
        w=ws,
        t=kind,
    )
    for r in rows:
        r["payload_json"] = _json(r["payload_json"])
        r["day"] = str(r["day"])[:10]
    return rows


def _check(result: dg.ExecuteInProcessResult) -> Any:
    [ev] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return ev


def _meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    # A partition range records one materialization per partition, all with the run's metadata.
    mats = result.asset_materializations_for_node("alerts")
    return {k: v.value for k, v in mats[-1].metadata.items()}


def _margins(wh: Warehouse, ws: str, month: str, rows: list[tuple[str, str | None, str]]) -> None:
    """rows: (customer id, margin percent or None, health tier); names "Name <id>", tag = id."""
    with wh.begin() as db:
        db.execute(
            wh.table("mart.customer_margins_monthly").insert(),
            [
                {
                    "workspace_id": ws,
                    "month": month,
                    "customer_key": cus,
                    "stripe_customer_id": cus,
                    "customer_name": f"Name {cus}",
                    "tag_value": cus,
                    "revenue_micros": 100 * C,
                    "cost_micros": 0,
                    "margin_micros": 100 * C,
                    "margin_percent": pct,
                    "health_tier": tier,
                    "projected_margin_percent": None,
                    "projected_tier_worsening": False,
                    "budget_suggestion_micros": None,
                    "sort_order": i,
                    "sparkline_json": [],
                    "row_json": {},
                }
                for i, (cus, pct, tier) in enumerate(rows)
            ],
        )


def _recurring_expense(wh: Warehouse, ws: str, day: date, cents: int) -> None:
    with wh.begin() as db:
        db.execute(
            wh.table("core.ledger").insert(),
            [
                {
                    "workspace_id": ws,
                    "entry_id": f"{ws}-e1",
                    "day": day,
                    "kind": "expense",
                    "subtype": "recurring_expense",
                    "amount_micros": cents * C,
                    "currency": "usd",
                    "amount_reporting_micros": cents * C,
                    "reporting_currency": "usd",
                    "source_table": "test",
                    "source_id": f"{ws}-e1",
                }
            ],
        )


# --- margin tier changes -------------------------------------------------------------------------


def test_margin_tier_changes_fire_on_the_first_for_the_month_just_closed(
    warehouse: Warehouse,
) -> None:
    wh = warehouse
    for ws in ("ws_m", "ws_empty", "ws_one_month"):
        _workspace(wh, ws)
    _margins(
        wh,
        "ws_m",
        "2026-01",
        [
            ("cus_a", "60", "healthy"),
            ("cus_b", "20", "at_risk"),
            ("cus_c", "10", "critical"),
            ("cus_d", "70", "healthy"),
            ("cus_gone", "90", "healthy"),
        ],
    )
    _margins(
        wh,
        "ws_m",
        "2026-02",
        [
            ("cus_a", "35.5", "at_risk"),  # worsening: warn
            ("cus_b", "19.99", "critical"),  # just under the 20 % bound: into critical
            ("cus_c", "50", "healthy"),  # exactly the inclusive healthy bound: improvement, warn
            ("cus_d", "50.01", "healthy"),  # same tier: nothing
            ("cus_new", None, "critical"),  # no previous tier: nothing
        ],
    )
    # Only February is stored: nothing to compare with, no alert and no crash.
    _margins(wh, "ws_one_month", "2026-02", [("cus_x", "5", "critical")])
    result = _run(wh, date(2026, 2, 27), date(2026, 3, 2))
    assert result.success
    got = _alerts(wh, "ws_m")
    assert [(a["day"], a["subject"], a["severity"]) for a in got] == [
        ("2026-03-01", "cus_a", "warn"),
        ("2026-03-01", "cus_b", "critical"),
        ("2026-03-01", "cus_c", "warn"),
    ]
    a, b, _ = got
    assert a["alert_id"] == alert_id("ws_m", MARCH_1, MARGIN, "cus_a")
    assert a["type"] == MARGIN
    assert a["message"] == "Margin tier of Name cus_a changed from healthy to at_risk (35.5%)."
    assert a["payload_json"] == {
        "stripeCustomerId": "cus_a",
        "tagValue": "cus_a",
        "period": "2026-02",
        "previousTier": "healthy",
        "newTier": "at_risk",
        "marginPercent": "35.5",
    }
    assert b["message"] == "Margin tier of Name cus_b changed from at_risk to critical (19.99%)."
    assert _alerts(wh, "ws_empty") == [] and _alerts(wh, "ws_one_month") == []
    # A window without a first-of-month day reads no margins at all.
    assert alert_assets.margin_tier_changes(wh, "ws_m", [date(2026, 3, 2)]) == {}


# --- sync health ---------------------------------------------------------------------------------


def _sync_state(wh: Warehouse, ws: str, last_success: int, error: str | None = None) -> None:
    connect_stripe(wh, ws, account_id=f"acct_{ws}", livemode=False, api_key="sk_test_abcd1234")
    with wh.begin() as db:
        db.execute(
            wh.table("raw.sync_state").insert(),
            [
                {
                    "workspace_id": ws,
                    "stream": s,
                    "last_success_at": last_success,
                    "status": "error" if error and s == "invoices" else "ok",
                    "last_error": error if s == "invoices" else None,
                    "objects_total": 7 if s == "invoices" else 0,
                }
                for s in STREAMS
            ],
        )


def test_sync_health_fires_on_the_live_day_with_the_delay_threshold(warehouse: Warehouse) -> None:
    wh = warehouse
    due = NOW - 300  # last sync one schedule (a day) before that: exactly 300 s late now
    cases = {
        "ws_ok": (due - DAY, None, {}),  # 300 s past due is not > 300 s: healthy
        "ws_late": (due - DAY - 1, None, {}),  # 301 s: delayed
        "ws_err": (NOW - 60, "card_error: boom", {}),  # a failing stream: error
        "ws_patient": (due - DAY - 1, None, {"alert_thresholds": {"sync_delay_seconds": 301}}),
    }
    for ws, (last, err, settings) in cases.items():
        _workspace(wh, ws, **settings)
        _sync_state(wh, ws, last, err)
    _workspace(wh, "ws_nostripe")  # no connection: no sync health at all
    assert _run(wh, date(2026, 2, 27), MARCH_1).success
    assert _alerts(wh, "ws_ok") == [] and _alerts(wh, "ws_patient") == []
    assert _alerts(wh, "ws_nostripe") == []
    [late] = _alerts(wh, "ws_late")
    assert (late["day"], late["type"], late["severity"], late["message"]) == (
        "2026-03-01",
        "sync_unhealthy",
        "warn",
        "Stripe sync is delayed.",
    )
    assert late["alert_id"] == alert_id("ws_late", MARCH_1, "sync_unhealthy")
    last_iso = "2026-03-01T05:54:59Z"
    assert late["payload_json"] == {
        "last_sync": last_iso,
        "sync_health": "delayed",
        "health_reason": f"no complete sync since {last_iso}, next was due 2026-03-02T05:54:59Z",
        "next_sync_due": "2026-03-02T05:54:59Z",
        "delay_threshold_seconds": 300,
        "invoices_synced": 7,
        "failed_payments": 0,
        "pending_webhooks": 0,
        "last_webhook_event": None,
    }
    [err] = _alerts(wh, "ws_err")
    assert (err["day"], err["severity"], err["message"]) == (
        "2026-03-01",
        "critical",
        "Stripe sync is failing.",
    )
    assert err["payload_json"]["sync_health"] == "error"
    assert err["payload_json"]["health_reason"] == "invoices: card_error: boom"

    # Three days later Mar 1 is history: restating it keeps the sync alert seen while it was live.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alert_assets, "clock", lambda: NOW + 3 * DAY)
        assert _run(wh, date(2026, 2, 28), MARCH_1).success
    assert [a["alert_id"] for a in _alerts(wh, "ws_late")] == [late["alert_id"]]
    # Re-evaluated while live and healthy again, it is gone.
    with wh.begin() as db:
        db.execute(
            wh.text(
                "UPDATE raw.sync_state SET last_success_at = :t WHERE workspace_id = 'ws_late'"
            ),
            {"t": NOW - 60},
        )
    assert _run(wh, MARCH_1, MARCH_1).success
    assert _alerts(wh, "ws_late") == []


def test_never_synced_connection_is_delayed_after_the_threshold(
    sqlite_warehouse: Warehouse,
) -> None:
    wh = sqlite_warehouse
    _workspace(wh, "ws_new")
    connect_stripe(wh, "ws_new", account_id="acct_n", livemode=False, api_key="sk_test_abcd1234")
    ws = next(w for w in alert_assets.scoped_workspaces(wh) if w.id == "ws_new")
    th = alert_assets.thresholds_from_settings(ws.settings)
    with wh.begin() as db:
        db.execute(wh.text("UPDATE app.stripe_connections SET created_at = :t"), {"t": NOW - 300})
    assert alert_assets.stripe_sync_health(wh, ws, th, NOW)["sync_health"] == "healthy"
    status = alert_assets.stripe_sync_health(wh, ws, th, NOW + 1)
    assert (status["sync_health"], status["health_reason"]) == (
        "delayed",
        "no complete sync since the connection at 2026-03-02T05:55:00Z",
    )


# --- webhook delivery ----------------------------------------------------------------------------


@pytest.fixture
def stub() -> Iterator[WebhookStub]:
    s = WebhookStub()
    yield s
    s.close()


def _hooked(wh: Warehouse, ws: str, url: str, **kw: Any) -> None:
    """A workspace with 1.67 months of runway (critical) every day of late Feb / early March,
    and one customer falling from healthy to critical in February."""
    _workspace(wh, ws, cash_cents=100_000)
    _recurring_expense(wh, ws, date(2026, 2, 20), 60_000)
    _margins(wh, ws, "2026-01", [("cus_a", "60", "healthy")])
    _margins(wh, ws, "2026-02", [("cus_a", "5", "critical")])
    if url:
        set_alert_webhook(wh, ws, url, secret=SECRET, **kw)


def _deliveries(wh: Warehouse) -> list[dict[str, Any]]:
    rows = wh.rows(
        "SELECT workspace_id, alert_id, day, type, status, attempts, last_error,"
        " delivered_at IS NOT NULL AS has_delivered_at FROM app.alert_deliveries"
        " ORDER BY workspace_id, type"
    )
    for r in rows:
        r["day"] = str(r["day"])[:10]
        r["has_delivered_at"] = bool(r["has_delivered_at"])
    return rows


def _episode_id(ws: str, kind: str, opened: date, subject: str = "") -> str:
    return episode_id(ws, kind, subject, opened)


def test_episode_events_are_signed_retried_and_never_sent_twice(
    warehouse: Warehouse, stub: WebhookStub
) -> None:
    wh = warehouse
    _hooked(wh, "ws_hook", stub.url)
    _hooked(wh, "ws_plain", "")  # the same alerts, no webhook configured
    stored = _json(wh.scalar("SELECT settings_json FROM app.workspaces WHERE id = 'ws_hook'"))[
        "alert_webhook"
    ]
    assert SECRET not in json.dumps(stored) and stored["secret_hint"] == "whsec_test_****cdef"
    assert webhook_config({"alert_webhook": stored}).secret == SECRET

    stub.statuses = [500]  # the first POST fails, its retry succeeds
    result = _run(wh, date(2026, 2, 27), MARCH_1)
    assert result.success
    # Alerts of every day are stored; only the episodes live on Mar 1 (the window's last, live
    # day) are announced: the runway episode opened Feb 27, the margin one on Mar 1.
    assert len(_alerts(wh, "ws_hook", "runway_low")) == 3
    runway_ep = _episode_id("ws_hook", "runway_low", date(2026, 2, 27))
    margin_ep = _episode_id("ws_hook", MARGIN, MARCH_1, "cus_a")
    runway_open = event_id(runway_ep, "alert.opened", "critical")
    margin_open = event_id(margin_ep, "alert.opened", "critical")
    assert [h[ALERT_ID_HEADER] for h, _ in stub.requests] == [margin_open, margin_open, runway_open]
    for headers, body in stub.requests:
        assert headers["Content-Type"] == "application/json"
        assert verify_signature(SECRET, headers[SIGNATURE_HEADER], body)
        assert not verify_signature("wrong-secret", headers[SIGNATURE_HEADER], body)
    event = json.loads(stub.requests[2][1])
    assert event["id"] == runway_open and event["type"] == "alert.opened"
    assert event["data"] == {
        "id": alert_id("ws_hook", MARCH_1, "runway_low"),
        "type": "runway_low",
        "severity": "critical",
        "message": "Runway is below 6 months (1.67).",
        "payload": {
            "runway_months": "1.67",
            "cash_on_hand_cents": 100_000,
            "recurring_burn_cents_30d": 60_000,
        },
        "workspace_id": "ws_hook",
        "day": "2026-03-01",
        "subject": None,
        "previous_severity": None,
        "episode": {
            "id": runway_ep,
            "status": "active",
            "opened_on": "2026-02-27",
            "last_active_on": "2026-03-01",
            "resolved_on": None,
            "peak_severity": "critical",
            "severity": "critical",
        },
    }
    margin_event = json.loads(stub.requests[0][1])
    assert margin_event["data"]["payload"]["newTier"] == "critical"
    assert margin_event["data"]["episode"]["status"] == "opened"
    assert _deliveries(wh) == [
        {
            "workspace_id": "ws_hook",
            "alert_id": runway_open if runway_open < margin_open else margin_open,
            "day": "2026-03-01",
            "type": "alert.opened",
            "status": "delivered",
            "attempts": 1 if runway_open < margin_open else 2,
            "last_error": None,
            "has_delivered_at": True,
        },
        {
            "workspace_id": "ws_hook",
            "alert_id": margin_open if runway_open < margin_open else runway_open,
            "day": "2026-03-01",
            "type": "alert.opened",
            "status": "delivered",
            "attempts": 2 if runway_open < margin_open else 1,
            "last_error": None,
            "has_delivered_at": True,
        },
    ]
    assert _meta(result)["webhook"] == {
        "ws_hook": {"delivered": 2, "failed": 0, "events": {"alert.opened": 2}}
    }
    check = _check(result)
    assert check.check_name == "webhook_delivered" and check.passed

    # A re-materialization (a restatement of the same days) re-stores the alerts, sends nothing.
    again = _run(wh, date(2026, 2, 28), MARCH_1)
    assert again.success and len(stub.requests) == 3
    assert _meta(again)["webhook"] == {"ws_hook": {"delivered": 0, "failed": 0, "events": {}}}
    # A backfill whose last day is not live anymore sends nothing either.
    old = _run(wh, date(2026, 2, 1), date(2026, 2, 27))
    assert old.success and len(stub.requests) == 3
    assert _meta(old)["webhook"] == {
        "ws_hook": {"skipped": "window ends 2026-02-27, not the workspace's current day"}
    }
    # That backfill found the runway alert active since Feb 20, when the expense started: the
    # episode now opens Feb 20 (a new id, ids derive from the opening day), but what was sent
    # under its Feb 27 id counts, so it is not announced again. The margin episode, a one-day
    # fact of Mar 1, is resolved on Mar 2: one alert.resolved.
    [opened_on] = [
        str(r["opened_on"])[:10]
        for r in wh.rows(
            "SELECT opened_on FROM mart.alert_episodes"
            " WHERE workspace_id = 'ws_hook' AND type = 'runway_low'"
        )
    ]
    assert opened_on == "2026-02-20"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alert_assets, "clock", lambda: NOW + DAY)
        nxt = _run(wh, date(2026, 3, 2), date(2026, 3, 2))
        assert nxt.success and len(stub.requests) == 4
        resolved = json.loads(stub.requests[3][1])
        assert resolved["id"] == event_id(margin_ep, "alert.resolved")
        assert resolved["type"] == "alert.resolved"
        assert resolved["data"]["episode"]["resolved_on"] == "2026-03-02"
        assert resolved["data"]["message"].startswith("Resolved: Margin tier of Name cus_a")
        # Mar 3: the runway alert repeats, nothing is sent; a re-run of Mar 3 neither.
        mp.setattr(alert_assets, "clock", lambda: NOW + 2 * DAY)
        assert _run(wh, date(2026, 3, 3), date(2026, 3, 3)).success
        assert _run(wh, date(2026, 3, 3), date(2026, 3, 3)).success
        assert len(stub.requests) == 4
    # Turned off, nothing is sent even for unannounced episodes.
    clear_alert_webhook(wh, "ws_hook")
    with wh.begin() as db:
        db.execute(wh.text("DELETE FROM app.alert_deliveries"))
    assert _run(wh, MARCH_1, MARCH_1).success and len(stub.requests) == 4


def test_failing_endpoint_does_not_fail_the_alerts_and_warns(
    warehouse: Warehouse, stub: WebhookStub
) -> None:
    wh = warehouse
    _hooked(wh, "ws_hook", stub.url, max_attempts=2)
    stub.default = 500
    result = _run(wh, MARCH_1, MARCH_1)
    assert result.success
    assert {a["type"] for a in _alerts(wh, "ws_hook")} == {"runway_low", MARGIN}
    # Two attempts at the first event; the endpoint is then taken as down, the second not sent.
    assert len(stub.requests) == 2
    check = _check(result)
    assert (check.check_name, check.passed, check.severity) == (
        "webhook_delivered",
        False,
        dg.AssetCheckSeverity.WARN,
    )
    assert check.metadata["failed"].value == 2
    margin_open = event_id(
        _episode_id("ws_hook", MARGIN, MARCH_1, "cus_a"), "alert.opened", "critical"
    )
    runway_open = event_id(
        _episode_id("ws_hook", "runway_low", MARCH_1), "alert.opened", "critical"
    )

    def log() -> list[tuple[str, str, int, str | None]]:
        return sorted(
            (r["alert_id"], r["status"], r["attempts"], r["last_error"]) for r in _deliveries(wh)
        )

    assert log() == sorted(
        [
            (margin_open, "failed", 2, "HTTP 500"),
            (runway_open, "failed", 0, "not sent: endpoint failing (HTTP 500)"),
        ]
    )
    # The endpoint recovers: the next run delivers both; attempts add up across runs.
    stub.default = 200
    again = _run(wh, MARCH_1, MARCH_1)
    assert again.success and _check(again).passed and len(stub.requests) == 4
    assert log() == sorted(
        [(margin_open, "delivered", 3, None), (runway_open, "delivered", 1, None)]
    )


def test_webhook_configuration_is_validated(sqlite_warehouse: Warehouse) -> None:
    wh = sqlite_warehouse
    _workspace(wh, "ws_cfg")
    with pytest.raises(WebhookConfigError, match="http"):
        set_alert_webhook(wh, "ws_cfg", "ftp://example.com/x", secret=SECRET)
    with pytest.raises(WebhookConfigError, match="exactly one"):
        set_alert_webhook(wh, "ws_cfg", "https://example.com/x")
    with pytest.raises(WebhookConfigError, match="max_attempts"):
        set_alert_webhook(wh, "ws_cfg", "https://example.com/x", secret=SECRET, max_attempts=0)
    with pytest.raises(WebhookConfigError, match="unknown"):
        webhook_config({"alert_webhook": {"url": "https://example.com/x", "secret": SECRET}})
    assert webhook_config({}) is None and webhook_config({"alert_webhook": None}) is None
    # A malformed setting shows up as a failed delivery, not a failed run.
    with wh.begin() as db:
        db.execute(
            wh.text("UPDATE app.workspaces SET settings_json = :s WHERE id = 'ws_cfg'"),
            {"s": json.dumps({"alert_webhook": {"url": "https://example.com/x"}})},
        )
    result = _run(wh, MARCH_1, MARCH_1)
    assert result.success and not _check(result).passed
    assert _check(result).metadata["failed"].value == 1


# --- episodes ------------------------------------------------------------------------------------


def _expense(wh: Warehouse, ws: str, entry: str, day: date, cents: int) -> None:
    with wh.begin() as db:
        db.execute(
            wh.table("core.ledger").insert(),
            [
                {
                    "workspace_id": ws,
                    "entry_id": entry,
                    "day": day,
                    "kind": "expense",
                    "subtype": "recurring_expense",
                    "amount_micros": cents * C,
                    "currency": "usd",
                    "amount_reporting_micros": cents * C,
                    "reporting_currency": "usd",
                    "source_table": "test",
                    "source_id": entry,
                }
            ],
        )


def _escalating(wh: Warehouse, ws: str) -> None:
    """Cash 1,000.00; 200.00 of recurring expenses from Feb 20 (runway 5 months: warn), another
    200.00 from Mar 2 (2.5 months: critical); the first leaves the 30 days on Mar 22 (warn again),
    the second on Apr 1 (no burn: no alert). One customer's tier falls on Mar 1."""
    _workspace(wh, ws, cash_cents=100_000)
    _expense(wh, ws, f"{ws}-e1", date(2026, 2, 20), 20_000)
    _expense(wh, ws, f"{ws}-e2", date(2026, 3, 2), 20_000)
    _margins(wh, ws, "2026-01", [("cus_a", "60", "healthy")])
    _margins(wh, ws, "2026-02", [("cus_a", "35", "at_risk")])


def _episodes(wh: Warehouse) -> list[dict[str, Any]]:
    rows = wh.rows("SELECT * FROM mart.alert_episodes ORDER BY workspace_id, type, opened_on")
    for r in rows:
        for k in ("opened_on", "last_active_on", "resolved_on"):
            r[k] = None if r[k] is None else str(r[k])[:10]
        for k in ("first_payload_json", "last_payload_json"):
            r[k] = _json(r[k])
    return rows


def _snapshot(wh: Warehouse) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    alerts_rows = [
        {k: (bool(v) if k == "opens_episode" else v) for k, v in r.items() if k != "created_at"}
        for ws in ("ws_ep", "ws_ep2")
        for r in _alerts(wh, ws)
    ]
    return _episodes(wh), alerts_rows


def test_episodes_are_the_same_whatever_the_order_and_split_of_runs(warehouse: Warehouse) -> None:
    wh = warehouse
    _escalating(wh, "ws_ep")
    _workspace(wh, "ws_ep2", cash_cents=50_000)
    _expense(wh, "ws_ep2", "ws_ep2-e1", date(2026, 3, 10), 20_000)
    first, last = date(2026, 2, 25), date(2026, 4, 3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alert_assets, "clock", lambda: NOW + 60 * DAY)  # no day is live
        assert _run(wh, first, last).success
        one_run = _snapshot(wh)
        with wh.begin() as db:
            for t in ("mart.alerts", "mart.alert_episodes", "mart.alert_evaluated_days"):
                db.execute(wh.text(f"DELETE FROM {t}"))
        # Later days first, then the start, the middle, and a re-run across a boundary.
        for a, b in (
            (date(2026, 3, 10), last),
            (first, MARCH_1),
            (date(2026, 3, 2), date(2026, 3, 9)),
            (date(2026, 3, 1), date(2026, 3, 3)),
            (date(2026, 3, 31), date(2026, 4, 1)),
        ):
            assert _run(wh, a, b).success
    assert _snapshot(wh) == one_run
    episodes, rows = one_run
    runway = [e for e in episodes if e["workspace_id"] == "ws_ep" and e["type"] == "runway_low"]
    [ep] = runway
    assert ep["episode_id"] == episode_id("ws_ep", "runway_low", "", first)
    assert (ep["opened_on"], ep["last_active_on"], ep["resolved_on"], ep["status"]) == (
        "2026-02-25",
        "2026-03-31",
        "2026-04-01",
        "resolved",
    )
    assert (ep["peak_severity"], ep["severity"], ep["first_severity"]) == (
        "critical",
        "warn",
        "warn",
    )
    assert ep["first_message"] == "Runway is below 6 months (5)."
    assert ep["last_message"] == "Runway is below 6 months (5)."
    assert ep["first_alert_id"] == alert_id("ws_ep", first, "runway_low")
    assert ep["last_payload_json"]["recurring_burn_cents_30d"] == 20_000
    # The margin crossing of Mar 1 is a one-day episode, resolved on Mar 2.
    [margin] = [e for e in episodes if e["workspace_id"] == "ws_ep" and e["type"] == MARGIN]
    assert (margin["subject"], margin["opened_on"], margin["resolved_on"]) == (
        "cus_a",
        "2026-03-01",
        "2026-03-02",
    )
    # ws_ep2: 500.00 of cash against 200.00 a month from Mar 10: 2.5 months, critical, still
    # running on the last evaluated day (Apr 3): opened, not resolved.
    [ep2] = [e for e in episodes if e["workspace_id"] == "ws_ep2"]
    assert (ep2["opened_on"], ep2["last_active_on"], ep2["resolved_on"], ep2["status"]) == (
        "2026-03-10",
        "2026-04-03",
        None,
        "active",
    )
    # Every daily row names its episode; only the first day opened it.
    runway_rows = [r for r in rows if r["workspace_id"] == "ws_ep" and r["type"] == "runway_low"]
    assert len(runway_rows) == 35
    assert {r["episode_id"] for r in runway_rows} == {ep["episode_id"]}
    assert [r["day"] for r in runway_rows if r["opens_episode"]] == ["2026-02-25"]


def test_severity_rise_is_sent_as_escalated_and_the_end_as_resolved(
    warehouse: Warehouse, stub: WebhookStub
) -> None:
    wh = warehouse
    _escalating(wh, "ws_ep")
    set_alert_webhook(wh, "ws_ep", stub.url, secret=SECRET)

    def at(day: date, start: date | None = None) -> list[dict[str, Any]]:
        """Run start..day at 06:00 UTC the next day (day is live); the events sent."""
        before = len(stub.requests)
        now = int(datetime(day.year, day.month, day.day, 6, tzinfo=UTC).timestamp()) + DAY
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(alert_assets, "clock", lambda: now)
            assert _run(wh, start or day, day).success
        return [json.loads(body) for _, body in stub.requests[before:]]

    runway_ep = episode_id("ws_ep", "runway_low", "", date(2026, 2, 20))
    opened = at(MARCH_1, date(2026, 2, 20))
    assert [(e["type"], e["data"]["type"], e["data"]["severity"]) for e in opened] == [
        ("alert.opened", MARGIN, "warn"),
        ("alert.opened", "runway_low", "warn"),
    ]
    assert opened[1]["data"]["episode"]["id"] == runway_ep
    # Mar 2: runway turns critical -> escalated from warn; the margin episode resolves.
    mar2 = at(date(2026, 3, 2))
    assert [(e["type"], e["data"]["type"]) for e in mar2] == [
        ("alert.resolved", MARGIN),
        ("alert.escalated", "runway_low"),
    ]
    esc = mar2[1]
    assert esc["id"] == event_id(runway_ep, "alert.escalated", "critical")
    assert (esc["data"]["severity"], esc["data"]["previous_severity"]) == ("critical", "warn")
    assert esc["data"]["message"] == "Runway is below 6 months (2.5)."
    # Daily repeats send nothing; neither does the fall back to warn on Mar 22.
    assert at(date(2026, 3, 3)) == []
    assert at(date(2026, 3, 22), date(2026, 3, 4)) == []
    # Apr 1: no burn left, the episode is resolved, once.
    [res] = at(date(2026, 4, 1), date(2026, 3, 23))
    assert res["id"] == event_id(runway_ep, "alert.resolved")
    assert res["data"]["episode"] == {
        "id": runway_ep,
        "status": "resolved",
        "opened_on": "2026-02-20",
        "last_active_on": "2026-03-31",
        "resolved_on": "2026-04-01",
        "peak_severity": "critical",
        "severity": "warn",
    }
    assert at(date(2026, 4, 1)) == []
    logged = wh.rows("SELECT type, status FROM app.alert_deliveries ORDER BY type")
    assert [(r["type"], r["status"]) for r in logged] == [
        ("alert.escalated", "delivered"),
        ("alert.opened", "delivered"),
        ("alert.opened", "delivered"),
        ("alert.resolved", "delivered"),
        ("alert.resolved", "delivered"),
    ]

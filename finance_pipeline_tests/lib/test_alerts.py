"""Alert rules (docs/metrics.md §14, v1 API) at their exact thresholds; signed webhook delivery."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from finance_pipeline.lib.alerts import (
    Alert,
    AlertThresholds,
    RestatedClose,
    alert_id,
    evaluate_alerts,
    sign_payload,
    sync_health,
    verify_signature,
)
from finance_pipeline.lib.close import FigureDiff
from finance_pipeline.lib.margins import TierChange

DAY = date(2026, 2, 28)
WS = "ws_1"
M = 1_000_000_000  # 1,000.00 (100,000 cents) in micros


def metrics(
    cash: int | None = None, burn: int = 0, net: int = 0, refunds: int = 0
) -> dict[str, Any]:
    return {
        "cash_on_hand_cents": cash,
        "recurring_burn_cents_30d": burn,
        "net_revenue_cents_30d": net,
        "refunds_cents_30d": refunds,
    }


def evaluate(today: dict[str, Any], prior: dict[str, Any] | None = None, **kw: Any) -> list[Alert]:
    args: dict[str, Any] = {
        "mrr_today_micros": 0,
        "mrr_30_ago_micros": 0,
        "has_recurring": True,
        **kw,
    }
    return evaluate_alerts(WS, DAY, today, prior, **args)


def kinds(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.type, a.severity) for a in alerts]


def test_runway_low_seed_example() -> None:
    [a] = evaluate(metrics(cash=250_000, burn=100_000))
    assert (a.type, a.severity) == ("runway_low", "critical")
    assert a.message == "Runway is below 6 months (2.5)."
    assert a.payload == {
        "runway_months": Decimal("2.50"),
        "cash_on_hand_cents": 250_000,
        "recurring_burn_cents_30d": 100_000,
    }
    assert a.to_dict() == {
        "id": alert_id(WS, DAY, "runway_low"),
        "type": "runway_low",
        "severity": "critical",
        "message": "Runway is below 6 months (2.5).",
        "payload": a.payload,
        "workspace_id": WS,
        "day": "2026-02-28",
    }


@pytest.mark.parametrize(
    ("cash", "expected"),
    [
        (600_000, []),  # exactly 6 months: not below 6
        (599_999, [("runway_low", "warn")]),
        (300_000, [("runway_low", "warn")]),  # exactly 3 months: warn, not critical
        (299_999, [("runway_low", "critical")]),
    ],
)
def test_runway_thresholds_are_strict(cash: int, expected: list[tuple[str, str]]) -> None:
    assert kinds(evaluate(metrics(cash=cash, burn=100_000))) == expected


def test_no_runway_alert_without_cash_or_burn() -> None:
    assert evaluate(metrics(cash=None, burn=100_000)) == []
    assert evaluate(metrics(cash=1, burn=0)) == []
    assert evaluate(metrics(cash=1, burn=-5)) == []


def test_configurable_thresholds() -> None:
    t = AlertThresholds(runway_warn_months=12, runway_critical_months=9)
    [a] = evaluate(metrics(cash=1_000_000, burn=100_000), thresholds=t)
    assert (a.severity, a.message) == ("warn", "Runway is below 12 months (10).")


@pytest.mark.parametrize(
    ("today", "has_recurring", "fires"),
    [
        (92 * M // 100, True, False),  # exactly 8 %
        (92 * M // 100 - 1, True, True),
        (90 * M // 100, False, False),  # no recurring revenue
        (M, True, False),
    ],
)
def test_mrr_decline_strictly_above_8_percent(today: int, has_recurring: bool, fires: bool) -> None:
    alerts = evaluate(
        metrics(), mrr_today_micros=today, mrr_30_ago_micros=M, has_recurring=has_recurring
    )
    assert kinds(alerts) == ([("mrr_decline", "warn")] if fires else [])


def test_mrr_decline_message_and_zero_base() -> None:
    [a] = evaluate(metrics(), mrr_today_micros=9 * M // 10, mrr_30_ago_micros=M)
    assert a.message == "MRR fell 10% vs 30 days ago."
    assert a.payload == {
        "decline_percent": Decimal("10.00"),
        "mrr_cents": 90_000,
        "mrr_cents_30d_ago": 100_000,
    }
    assert evaluate(metrics(), mrr_today_micros=0, mrr_30_ago_micros=0) == []


@pytest.mark.parametrize(
    ("prior", "today", "fires"),
    [
        (100_000, 92_000, False),  # exactly 8 %
        (100_000, 91_999, True),
        (100_000, 150_000, False),
        (0, -10, False),  # no base to fall from
        (-100, -500, False),
    ],
)
def test_revenue_decline(prior: int, today: int, fires: bool) -> None:
    alerts = evaluate(metrics(net=today), metrics(net=prior))
    assert kinds(alerts) == ([("revenue_decline", "warn")] if fires else [])


def test_revenue_decline_payload() -> None:
    [a] = evaluate(metrics(net=75_000), metrics(net=100_000))
    assert a.message == "Net revenue fell 25% vs the previous 30 days."
    assert a.payload["decline_percent"] == Decimal("25.00")


@pytest.mark.parametrize(
    ("prior", "today", "fires"),
    [
        (-50_000, -100_000, False),  # exactly 2x
        (-50_000, -100_001, True),
        (-24_999, -50_000, True),  # just above 2x, exactly at the 500.00 minimum
        (-25_000, -50_000, False),  # at the minimum but exactly 2x
        (0, -50_000, True),  # the minimum reached after no refunds at all
        (0, -49_999, False),  # one cent short of the minimum after none
        (0, -1, False),  # a tiny refund after none is not a spike any more
        (0, 0, False),
    ],
)
def test_refund_spike_strictly_above_twice_and_at_least_the_minimum(
    prior: int, today: int, fires: bool
) -> None:
    alerts = evaluate(metrics(refunds=today), metrics(refunds=prior))
    assert kinds(alerts) == ([("refund_spike", "warn")] if fires else [])


@pytest.mark.parametrize(
    ("minimum", "prior", "today", "fires"),
    [
        (0, 0, -1, True),  # no minimum: any refund after none (the old rule)
        (0, 0, 0, False),  # still needs a refund
        (1_000, 0, -999, False),
        (1_000, 0, -1_000, True),
        (1_000, -500, -1_000, False),  # at the minimum, exactly 2x
        (1_000, -499, -1_000, True),
    ],
)
def test_refund_spike_minimum_is_configurable(
    minimum: int, prior: int, today: int, fires: bool
) -> None:
    t = AlertThresholds(refund_spike_min_cents=minimum)
    alerts = evaluate(metrics(refunds=today), metrics(refunds=prior), thresholds=t)
    assert kinds(alerts) == ([("refund_spike", "warn")] if fires else [])


def test_refund_spike_payload() -> None:
    [a] = evaluate(metrics(refunds=-115_000), metrics(refunds=-50_000))
    assert a.message == "Refund volume is 2.3x the previous 30 days."
    assert a.payload == {
        "ratio": Decimal("2.30"),
        "refunds_cents_30d": -115_000,
        "refunds_cents_prior_30d": -50_000,
    }
    [b] = evaluate(metrics(refunds=-50_000), metrics(refunds=0))
    assert b.payload["ratio"] is None
    assert b.message == "Refunds were issued after none in the previous 30 days."


def test_margin_threshold_crossed() -> None:
    changes = [
        TierChange("cus_b", "Beta", "beta", "2026-02", "at_risk", "critical", Decimal("12.50")),
        TierChange("cus_a", None, "acme", "2026-02", "healthy", "at_risk", Decimal("45.00")),
        TierChange("cus_c", "New", None, "2026-02", None, "critical", None),  # no previous tier
        TierChange("cus_d", "Dee", None, "2026-02", "critical", "healthy", Decimal("50.00")),
        TierChange("cus_e", "Same", None, "2026-02", "healthy", "healthy", Decimal("70.00")),
    ]
    alerts = evaluate(metrics(), margin_tier_changes=changes)
    assert [(a.subject, a.severity) for a in alerts] == [
        ("cus_a", "warn"),
        ("cus_b", "critical"),
        ("cus_d", "warn"),
    ]
    assert alerts[0].message == "Margin tier of acme changed from healthy to at_risk (45%)."
    assert alerts[1].message == "Margin tier of Beta changed from at_risk to critical (12.5%)."
    assert alerts[1].payload["newTier"] == "critical"
    assert len({a.id for a in alerts}) == 3


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("healthy", []),
        (None, []),
        ("delayed", [("sync_unhealthy", "warn")]),
        ("error", [("sync_unhealthy", "critical")]),
        (
            {"sync_health": "error", "last_sync": "2025-12-04T12:05:00Z"},
            [("sync_unhealthy", "critical")],
        ),
    ],
)
def test_sync_unhealthy(status: Any, expected: list[tuple[str, str]]) -> None:
    alerts = evaluate(metrics(), sync_status=status)
    assert kinds(alerts) == expected
    if isinstance(status, dict):
        assert alerts[0].payload == status


def test_unknown_sync_status_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown sync health"):
        evaluate(metrics(), sync_status="slow")


def test_sync_health_classification() -> None:
    due = datetime(2026, 2, 28, 10, tzinfo=UTC)
    assert sync_health(due, None, due + timedelta(seconds=300)) == "healthy"  # not > 5 min yet
    assert sync_health(due, None, due + timedelta(seconds=301)) == "delayed"
    assert sync_health(due, due - timedelta(days=1), due + timedelta(minutes=6)) == "delayed"
    assert sync_health(due, due + timedelta(minutes=1), due + timedelta(hours=1)) == "healthy"
    assert sync_health(due, due, due, errored=True) == "error"


def test_empty_inputs_and_stable_ids() -> None:
    assert evaluate(metrics(), None) == []
    args = {"mrr_today_micros": 1, "mrr_30_ago_micros": M, "sync_status": "error"}
    first = evaluate(metrics(cash=1, burn=1), metrics(net=5, refunds=0), **args)
    again = evaluate(metrics(cash=1, burn=1), metrics(net=5, refunds=0), **args)
    assert first == again
    assert [a.type for a in first] == [
        "runway_low",
        "mrr_decline",
        "revenue_decline",
        "sync_unhealthy",
    ]
    assert all(a.id.startswith("al_") and len(a.id) == 27 for a in first)
    assert alert_id(WS, DAY, "runway_low") != alert_id(WS, DAY + timedelta(days=1), "runway_low")
    assert alert_id(WS, DAY, "x", "cus_1") != alert_id(WS, DAY, "x", "cus_2")
    assert alert_id(WS, DAY, "x") != alert_id("ws_2", DAY, "x")


# --- restated closed months ----------------------------------------------------------------------

REFUND = (
    FigureDiff("Revenue: refunds", "-100.00", "-220.00", "-120.00"),
    FigureDiff("Revenue: net of refunds", "2400.00", "2280.00", "-120.00"),
    FigureDiff("KPI: Net revenue retention", "101.2", "100.1", "-1.1"),
)


def restated(
    detected_on: date,
    reclosed_on: date | None = None,
    diffs: tuple[FigureDiff, ...] = REFUND,
    version: int = 1,
    rid: str = "rst_1",
) -> RestatedClose:
    at = int(
        datetime(detected_on.year, detected_on.month, detected_on.day, 9, tzinfo=UTC).timestamp()
    )
    return RestatedClose(
        rid, "2026-01", f"close_v{version}", version, at, detected_on, reclosed_on, diffs, "USD"
    )


def test_close_restated_stands_from_detection_until_the_re_close() -> None:
    r = restated(date(2026, 2, 10), reclosed_on=date(2026, 2, 28))
    assert evaluate(metrics(), restated_closes=[r]) == []  # DAY is the re-close day
    on = evaluate_alerts(WS, date(2026, 2, 27), metrics(), None, 0, 0, False, restated_closes=[r])
    [a] = on
    assert (a.type, a.subject, a.severity) == ("close_restated", "2026-01", "critical")
    assert a.id == alert_id(WS, date(2026, 2, 27), "close_restated", "2026-01")
    assert a.message == (
        "Closed month 2026-01 restated: net revenue -120.00 USD, refunds -120.00 USD vs as-closed"
        " (3 figures changed, close version 1)."
    )
    assert a.payload["diff"][0] == {
        "metric": "Revenue: refunds",
        "as_closed": "-100.00",
        "restated": "-220.00",
        "change": "-120.00",
    }
    assert (a.payload["figures_changed"], a.payload["restatement_id"]) == (3, "rst_1")
    assert a.payload["detected_at"] == "2026-02-10T09:00:00Z"
    # Not before its detection; still standing while the month is not closed again.
    assert evaluate(metrics(), restated_closes=[restated(DAY + timedelta(days=1))]) == []
    assert len(evaluate(metrics(), restated_closes=[restated(date(2026, 1, 5))])) == 1
    # Re-closed the day it was found: it stood on that day only.
    same = restated(DAY, reclosed_on=DAY)
    assert len(evaluate(metrics(), restated_closes=[same])) == 1


def test_close_restated_newest_supersedes_and_severity_is_the_headline_move() -> None:
    # 120.00 of 2,400.00 net revenue is exactly 5 %: critical (inclusive); 4.99 % is warn.
    assert evaluate(metrics(), restated_closes=[restated(DAY)])[0].severity == "critical"
    small = (FigureDiff("Revenue: net of refunds", "2400.00", "2280.01", "-119.99"),)
    [warn] = evaluate(metrics(), restated_closes=[restated(DAY, diffs=small)])
    assert warn.severity == "warn"
    lower = AlertThresholds(restatement_critical_pct=Fraction("4.99"))
    crit = evaluate(metrics(), restated_closes=[restated(DAY, diffs=small)], thresholds=lower)
    assert crit[0].severity == "critical"
    # A rate-only restatement is warn and names no amount.
    rate = (REFUND[2],)
    [only] = evaluate(metrics(), restated_closes=[restated(DAY, diffs=rate)])
    assert (only.severity, only.message) == (
        "warn",
        "Closed month 2026-01 restated: 1 figure changed vs as-closed (close version 1).",
    )
    # Closing MRR from zero is critical whatever the threshold.
    mrr = (FigureDiff("MRR roll-forward: Closing MRR (2026-01-31)", "0.00", "1.00", "+1.00"),)
    [first] = evaluate(metrics(), restated_closes=[restated(DAY, diffs=mrr)])
    assert first.severity == "critical" and "MRR +1.00 USD" in first.message
    # One alert per month: the newest restatement (of the newest close version) stands.
    older = restated(date(2026, 2, 1), rid="rst_a")
    newer = restated(date(2026, 2, 20), diffs=small, rid="rst_b")
    [a] = evaluate(metrics(), restated_closes=[newer, older])
    assert a.payload["restatement_id"] == "rst_b"
    v2 = restated(date(2026, 2, 25), diffs=rate, version=2, rid="rst_c")
    [b] = evaluate(metrics(), restated_closes=[older, v2])
    assert b.payload["close_version"] == 2


# --- webhooks ------------------------------------------------------------------------------------

SECRET = "whsec_test"


def test_sign_and_verify() -> None:
    body = b'{"a":1}'
    header = sign_payload(SECRET, 1_700_000_000, body)
    expected = hmac.new(b"whsec_test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature(SECRET, header, body, now=1_700_000_000)
    assert verify_signature(SECRET, header, body.decode(), now=1_700_000_300)  # at tolerance
    assert not verify_signature(SECRET, header, body, now=1_700_000_301)  # stale
    assert not verify_signature(SECRET, header, b'{"a":2}', now=1_700_000_000)  # tampered
    assert not verify_signature("other", header, body, now=1_700_000_000)
    assert not verify_signature(SECRET, "garbage", body, now=1_700_000_000)
    assert not verify_signature(SECRET, "t=abc,v1=00", body, now=1_700_000_000)
    rotated = f"{header},v1={'0' * 64}"
    assert verify_signature(SECRET, rotated, body, now=1_700_000_000)

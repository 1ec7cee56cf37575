"""Alert rules for day D (metrics.md §14, seeds/004 shapes) and signed webhook payloads.

Rules compare exact values against configurable thresholds; "fell > 8 %" and "> 2x" are strict,
"runway < 6" is strict (exactly 6.00 months does not fire). Alert ids are derived from
(workspace, day, type, subject), so re-evaluating a day yields the same ids and replaces that day's
set instead of duplicating it; they also dedupe webhook deliveries.

Webhooks carry a Stripe-like signature header `t=<unix ts>,v1=<hex HMAC-SHA256(secret, "t.body")>`;
the body and signature are built here, the POSTs and retries are `alerts.delivery`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.margins import TierChange
from finance_pipeline.lib.money import round_half_away

SIGNATURE_HEADER = "X-Finance-Signature"
ALERT_ID_HEADER = "X-Finance-Alert-Id"


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Configurable alert thresholds; defaults are the seeds/004 ones."""

    runway_warn_months: int | Fraction = 6
    runway_critical_months: int | Fraction = 3
    mrr_decline_pct: int | Fraction = 8
    revenue_decline_pct: int | Fraction = 8
    refund_spike_ratio: int | Fraction = 2
    sync_delay_seconds: int = 300


DEFAULT_THRESHOLDS = AlertThresholds()


@dataclass(frozen=True, slots=True)
class Alert:
    """One active alert of a workspace on a day (seeds/004 alert object without org/created_at)."""

    id: str
    workspace_id: str
    day: date
    type: str
    severity: str
    message: str
    payload: dict[str, Any]
    subject: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The seeds/004 alert fields this module owns (the API adds org_id and created_at)."""
        return {
            "id": self.id,
            "type": self.type,
            "severity": self.severity,
            "message": self.message,
            "payload": self.payload,
            "workspace_id": self.workspace_id,
            "day": self.day.isoformat(),
        }


def alert_id(workspace_id: str, day: date, alert_type: str, subject: str = "") -> str:
    """Deterministic alert id "al_<24 hex>" from (workspace, day, type, subject)."""
    key = "\x1f".join((workspace_id, day.isoformat(), alert_type, subject))
    return "al_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _two(value: Fraction) -> Decimal:
    return Decimal(round_half_away(value * 100)).scaleb(-2)


def _fmt(value: Decimal | Fraction | int) -> str:
    """A number for messages: 2 decimals at most, trailing zeros dropped (2.50 -> "2.5")."""
    d = _two(Fraction(value)) if not isinstance(value, Decimal) else value
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _decline(before: int | Fraction, now: int | Fraction) -> Fraction | None:
    if before <= 0:
        return None
    return Fraction(before - now) * 100 / before


def evaluate_alerts(
    workspace_id: str,
    day: date,
    metrics_today: Mapping[str, Any],
    metrics_prior: Mapping[str, Any] | None,
    mrr_today_micros: int,
    mrr_30_ago_micros: int,
    has_recurring: bool,
    margin_tier_changes: Iterable[TierChange] = (),
    sync_status: str | Mapping[str, Any] | None = None,
    thresholds: AlertThresholds = DEFAULT_THRESHOLDS,
) -> list[Alert]:
    """All alerts active on `day` (§14), in a stable order.

    `metrics_today` / `metrics_prior` are cfo_metrics() results for D and D-30 (the 30 days before).
    `sync_status` is "healthy" | "delayed" | "error" or a seeds/000 sync-status object with
    `sync_health`. Tier changes without a previous tier (a new customer) do not alert.
    """
    alerts: list[Alert] = []

    def add(
        kind: str, severity: str, message: str, payload: dict[str, Any], subject: str = ""
    ) -> None:
        alerts.append(
            Alert(
                alert_id(workspace_id, day, kind, subject),
                workspace_id,
                day,
                kind,
                severity,
                message,
                payload,
                subject,
            )
        )

    cash = metrics_today.get("cash_on_hand_cents")
    burn = metrics_today.get("recurring_burn_cents_30d") or 0
    if cash is not None and burn > 0:
        months = Fraction(cash, burn)
        if months < thresholds.runway_warn_months:
            critical = months < thresholds.runway_critical_months
            add(
                "runway_low",
                "critical" if critical else "warn",
                f"Runway is below {_fmt(Fraction(thresholds.runway_warn_months))} months "
                f"({_fmt(months)}).",
                {
                    "runway_months": _two(months),
                    "cash_on_hand_cents": cash,
                    "recurring_burn_cents_30d": burn,
                },
            )

    mrr_drop = _decline(mrr_30_ago_micros, mrr_today_micros)
    if has_recurring and mrr_drop is not None and mrr_drop > thresholds.mrr_decline_pct:
        add(
            "mrr_decline",
            "warn",
            f"MRR fell {_fmt(mrr_drop)}% vs 30 days ago.",
            {
                "decline_percent": _two(mrr_drop),
                "mrr_cents": round_half_away(Fraction(mrr_today_micros, 10_000)),
                "mrr_cents_30d_ago": round_half_away(Fraction(mrr_30_ago_micros, 10_000)),
            },
        )

    if metrics_prior is not None:
        now_net = metrics_today["net_revenue_cents_30d"]
        prior_net = metrics_prior["net_revenue_cents_30d"]
        rev_drop = _decline(prior_net, now_net)
        if rev_drop is not None and rev_drop > thresholds.revenue_decline_pct:
            add(
                "revenue_decline",
                "warn",
                f"Net revenue fell {_fmt(rev_drop)}% vs the previous 30 days.",
                {
                    "decline_percent": _two(rev_drop),
                    "net_revenue_cents_30d": now_net,
                    "net_revenue_cents_prior_30d": prior_net,
                },
            )
        refunds_now = -metrics_today["refunds_cents_30d"]
        refunds_prior = -metrics_prior["refunds_cents_30d"]
        if refunds_now > 0 and refunds_now > thresholds.refund_spike_ratio * refunds_prior:
            ratio = Fraction(refunds_now, refunds_prior) if refunds_prior > 0 else None
            add(
                "refund_spike",
                "warn",
                (
                    f"Refund volume is {_fmt(ratio)}x the previous 30 days."
                    if ratio is not None
                    else "Refunds were issued after none in the previous 30 days."
                ),
                {
                    "ratio": None if ratio is None else _two(ratio),
                    "refunds_cents_30d": -refunds_now,
                    "refunds_cents_prior_30d": -refunds_prior,
                },
            )

    for ch in sorted(margin_tier_changes, key=lambda c: c.stripe_customer_id):
        if ch.from_tier is None or ch.from_tier == ch.to_tier:
            continue
        who = ch.customer_name or ch.tag_value or ch.stripe_customer_id
        pct = "" if ch.margin_percent is None else f" ({_fmt(ch.margin_percent)}%)"
        add(
            "margin_threshold_crossed",
            "critical" if ch.to_tier == "critical" else "warn",
            f"Margin tier of {who} changed from {ch.from_tier} to {ch.to_tier}{pct}.",
            {
                "stripeCustomerId": ch.stripe_customer_id,
                "tagValue": ch.tag_value,
                "period": ch.period,
                "previousTier": ch.from_tier,
                "newTier": ch.to_tier,
                "marginPercent": ch.margin_percent,
            },
            subject=ch.stripe_customer_id,
        )

    status = sync_status.get("sync_health") if isinstance(sync_status, Mapping) else sync_status
    if status in ("delayed", "error"):
        payload = dict(sync_status) if isinstance(sync_status, Mapping) else {"sync_health": status}
        add(
            "sync_unhealthy",
            "critical" if status == "error" else "warn",
            "Stripe sync is failing." if status == "error" else "Stripe sync is delayed.",
            payload,
        )
    elif status not in (None, "healthy"):
        raise ValueError(f"unknown sync health {status!r}: expected healthy, delayed or error")
    return alerts


def sync_health(
    scheduled_at: datetime,
    last_completed_at: datetime | None,
    now: datetime,
    errored: bool = False,
    delay_seconds: int = DEFAULT_THRESHOLDS.sync_delay_seconds,
) -> str:
    """seeds/000 sync health: error if failing, delayed if a run due at `scheduled_at` has not
    completed more than `delay_seconds` later, else healthy."""
    if errored:
        return "error"
    done = last_completed_at is not None and last_completed_at >= scheduled_at
    if not done and now - scheduled_at > timedelta(seconds=delay_seconds):
        return "delayed"
    return "healthy"


# --- webhooks ------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # 2-decimal percents/months only; money is integer cents
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Fraction):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def alert_body(alert: Alert, timestamp: int) -> bytes:
    """The webhook JSON body for one alert (compact, sorted keys, UTF-8)."""
    event = {"id": alert.id, "type": alert.type, "created": timestamp, "data": alert.to_dict()}
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=_json_default).encode()


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign_payload(secret: str | bytes, timestamp: int, body: str | bytes) -> str:
    """The signature header value `t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">`."""
    mac = hmac.new(_as_bytes(secret), f"{timestamp}.".encode() + _as_bytes(body), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str | bytes,
    header: str,
    body: str | bytes,
    now: int | None = None,
    tolerance_seconds: int = 300,
) -> bool:
    """True iff one v1 signature in `header` matches and its timestamp is within the tolerance."""
    try:
        parts = [p.split("=", 1) for p in header.split(",")]
        ts = int(next(v for k, v in parts if k.strip() == "t"))
        sigs = [v.strip() for k, v in parts if k.strip() == "v1"]
    except (ValueError, StopIteration):
        return False
    current = int(time.time()) if now is None else now
    if abs(current - ts) > tolerance_seconds:
        return False
    expected = sign_payload(secret, ts, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, s) for s in sigs)

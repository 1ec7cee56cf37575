"""Alert rules for day D (docs/metrics.md §14, v1 API shapes) and signed webhook payloads.

Rules compare exact values against configurable thresholds; "fell > 8 %" and "> 2x" are strict,
"runway < 6" is strict (exactly 6.00 months does not fire); a refund spike also needs the 30-day
refunds to reach `refund_spike_min_cents` (inclusive). Alert ids are derived from
(workspace, day, type, subject), so re-evaluating a day yields the same ids and replaces that day's
set instead of duplicating it; they also dedupe webhook deliveries.

Episodes: consecutive local days on which the same alert (workspace, type, subject) is active form
one episode (opened, active, resolved on the first evaluated day without it), derived from the
day-sets alone so any order or split of evaluation runs yields the same episodes. Webhooks send
episode events (alert.opened, alert.escalated, alert.resolved), not daily repeats.

Webhooks carry a Stripe-like signature header `t=<unix ts>,v1=<hex HMAC-SHA256(secret, "t.body")>`;
the body and signature are built here, the POSTs and retries are `alerts.delivery`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.close import FigureDiff, diff_json
from finance_pipeline.lib.margins import TierChange
from finance_pipeline.lib.money import round_half_away

SIGNATURE_HEADER = "X-Finance-Signature"
ALERT_ID_HEADER = "X-Finance-Alert-Id"


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Configurable alert thresholds; defaults are the v1 API ones."""

    runway_warn_months: int | Fraction = 6
    runway_critical_months: int | Fraction = 3
    mrr_decline_pct: int | Fraction = 8
    revenue_decline_pct: int | Fraction = 8
    refund_spike_ratio: int | Fraction = 2
    # A spike needs this much refunded in the 30 days (reporting-currency cents): one small refund
    # after a quiet month is not worth a person's attention.
    refund_spike_min_cents: int = 50_000
    sync_delay_seconds: int = 300
    # A restated closed month is critical when its closing MRR or net revenue moved by at least
    # this percent of the as-closed value.
    restatement_critical_pct: int | Fraction = 5


DEFAULT_THRESHOLDS = AlertThresholds()


@dataclass(frozen=True, slots=True)
class Alert:
    """One active alert of a workspace on a day (v1 API alert object without org/created_at)."""

    id: str
    workspace_id: str
    day: date
    type: str
    severity: str
    message: str
    payload: dict[str, Any]
    subject: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The v1 API alert fields this module owns (the API adds org_id and created_at)."""
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
    restated_closes: Iterable[RestatedClose] = (),
) -> list[Alert]:
    """All alerts active on `day` (§14), in a stable order.

    `metrics_today` / `metrics_prior` are cfo_metrics() results for D and D-30 (the 30 days before).
    `sync_status` is "healthy" | "delayed" | "error" or a platform finance API sync status with
    `sync_health`. Tier changes without a previous tier (a new customer) do not alert.
    `restated_closes` are the workspace's recorded restatements; those standing on `day` alert.
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
        if (
            refunds_now > 0
            and refunds_now >= thresholds.refund_spike_min_cents
            and refunds_now > thresholds.refund_spike_ratio * refunds_prior
        ):
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

    for r in standing_restatements(restated_closes, day):
        add(CLOSE_RESTATED, *restatement_alert(r, thresholds), subject=r.month)

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


# --- restated closed months ----------------------------------------------------------------------

CLOSE_RESTATED = "close_restated"
# Pack figures (label prefixes, as in the close manifest) a restatement message names, in order; the
# first two decide the severity.
RESTATED_FIGURES = (
    ("MRR roll-forward: Closing MRR", "MRR"),
    ("Revenue: net of refunds", "net revenue"),
    ("Revenue: refunds", "refunds"),
    ("Revenue: revenue", "revenue"),
    ("Revenue: expenses", "expenses"),
    ("Margins: margin", "margin"),
)
_HEADLINES = 2
_NAMED_MAX = 3


@dataclass(frozen=True, slots=True)
class RestatedClose:
    """One recorded restatement of a closed month (app.restatements) as the close_restated rule
    reads it: when it was detected and when the restated close stopped standing."""

    restatement_id: str
    month: str
    close_id: str
    close_version: int
    detected_at: int  # Unix seconds
    detected_on: date  # the workspace's local day of detected_at
    # The local day the month's next version was closed (the restatement dealt with); None while
    # the restated close is still the month's latest.
    reclosed_on: date | None
    diffs: tuple[FigureDiff, ...]
    currency: str  # the reporting currency of the money figures (ISO code, as displayed)

    def stands_on(self, day: date) -> bool:
        """Active from its detection day until the day before the re-close, and always on the
        detection day itself (a restatement re-closed the day it was found was still found)."""
        if day < self.detected_on:
            return False
        return self.reclosed_on is None or day < self.reclosed_on or day == self.detected_on


def standing_restatements(restated: Iterable[RestatedClose], day: date) -> list[RestatedClose]:
    """Per month, the newest restatement standing on `day` (a newer one of the same close, or of
    the month's next close, supersedes the older), by month."""
    newest: dict[str, RestatedClose] = {}
    for r in restated:
        if not r.stands_on(day):
            continue
        held = newest.get(r.month)
        rank = (r.close_version, r.detected_at, r.restatement_id)
        if held is None or rank > (held.close_version, held.detected_at, held.restatement_id):
            newest[r.month] = r
    return [newest[m] for m in sorted(newest)]


def _figure(diffs: Iterable[FigureDiff], prefix: str) -> FigureDiff | None:
    return next((d for d in diffs if d.metric.startswith(prefix)), None)


def _material(d: FigureDiff, pct: int | Fraction) -> bool:
    """Whether a figure moved by at least `pct` percent of its as-closed value (any move of a
    figure closed at zero, or one that appeared or disappeared)."""
    if d.as_closed is None or d.restated is None:
        return True
    before = Fraction(Decimal(d.as_closed))
    change = Fraction(Decimal(d.restated)) - before
    if before == 0:
        return change != 0
    return abs(change) * 100 >= abs(before) * pct


def restatement_alert(
    r: RestatedClose, thresholds: AlertThresholds = DEFAULT_THRESHOLDS
) -> tuple[str, str, dict[str, Any]]:
    """The close_restated alert's severity, message and payload (§14).

    Critical when the month's closing MRR or its revenue net of refunds moved by at least
    `restatement_critical_pct` percent of the as-closed value; warn otherwise.
    """
    headline = [_figure(r.diffs, prefix) for prefix, _ in RESTATED_FIGURES[:_HEADLINES]]
    pct = thresholds.restatement_critical_pct
    critical = any(d is not None and _material(d, pct) for d in headline)
    named = [
        f"{name} {d.change} {r.currency}"
        for prefix, name in RESTATED_FIGURES
        if (d := _figure(r.diffs, prefix)) is not None and d.change is not None
    ][:_NAMED_MAX]
    n = len(r.diffs)
    counted = f"{n} figure{'s' if n != 1 else ''} changed"
    version = f"close version {r.close_version}"
    message = (
        f"Closed month {r.month} restated: {', '.join(named)} vs as-closed ({counted}, {version})."
        if named
        else f"Closed month {r.month} restated: {counted} vs as-closed ({version})."
    )
    payload = {
        "month": r.month,
        "close_id": r.close_id,
        "close_version": r.close_version,
        "restatement_id": r.restatement_id,
        "detected_at": datetime.fromtimestamp(r.detected_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reporting_currency": r.currency,
        "figures_changed": n,
        "diff": diff_json(r.diffs),
    }
    return ("critical" if critical else "warn", message, payload)


def sync_health(
    scheduled_at: datetime,
    last_completed_at: datetime | None,
    now: datetime,
    errored: bool = False,
    delay_seconds: int = DEFAULT_THRESHOLDS.sync_delay_seconds,
) -> str:
    """Platform finance API sync health: error if failing, delayed if a run due at `scheduled_at` has not
    completed more than `delay_seconds` later, else healthy."""
    if errored:
        return "error"
    done = last_completed_at is not None and last_completed_at >= scheduled_at
    if not done and now - scheduled_at > timedelta(seconds=delay_seconds):
        return "delayed"
    return "healthy"


# --- episodes ------------------------------------------------------------------------------------
# Consecutive local days on which the same alert (workspace, type, subject) is active form one
# episode: opened on its first day, active while it continues, resolved on the first evaluated day
# it is absent. A day never evaluated is unknown: it neither continues nor resolves an episode.

SEVERITY_RANK = {"warn": 1, "critical": 2}
EPISODE_EVENTS = ("alert.opened", "alert.escalated", "alert.resolved")
EpisodeKey = tuple[str, str, str]  # (workspace_id, type, subject)


def _rank(severity: str) -> int:
    return SEVERITY_RANK.get(severity, 0)


def episode_id(workspace_id: str, alert_type: str, subject: str, opened_on: date) -> str:
    """Deterministic episode id "ep_<24 hex>": the same episode keeps its id across re-runs."""
    key = "\x1f".join((workspace_id, alert_type, subject, opened_on.isoformat()))
    return "ep_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Episode:
    """One run of consecutive active days of an alert; `first` / `last` are its first and latest
    daily alerts (messages and payloads), `severity` the latest day's, `peak_severity` the worst."""

    id: str
    workspace_id: str
    type: str
    subject: str
    opened_on: date
    last_active_on: date
    resolved_on: date | None
    peak_severity: str
    severity: str
    first: Alert
    last: Alert

    @property
    def key(self) -> EpisodeKey:
        """The alert the episode is of."""
        return (self.workspace_id, self.type, self.subject)

    @property
    def status(self) -> str:
        """resolved once a later evaluated day lacks the alert; opened on a one-day episode still
        running; active afterwards."""
        if self.resolved_on is not None:
            return "resolved"
        return "opened" if self.opened_on == self.last_active_on else "active"


def alert_episodes(alerts: Iterable[Alert], evaluated: Collection[date]) -> list[Episode]:
    """The episodes of a workspace's daily alerts, ordered by (type, subject, opened_on).

    `evaluated` holds the days whose alerts were evaluated (days with alerts count as evaluated):
    an episode whose next day is not among them stays open, as nothing is known of that day.
    """
    by_key: dict[EpisodeKey, dict[date, Alert]] = {}
    for a in alerts:
        days = by_key.setdefault((a.workspace_id, a.type, a.subject), {})
        if a.day in days:
            raise ValueError(f"two {a.type} alerts of {a.subject or 'the workspace'} on {a.day}")
        days[a.day] = a
    out: list[Episode] = []
    for key in sorted(by_key):
        days = by_key[key]
        run: list[Alert] = []
        for d in sorted(days):
            if run and d != run[-1].day + timedelta(days=1):
                out.append(_episode(run, evaluated))
                run = []
            run.append(days[d])
        out.append(_episode(run, evaluated))
    return out


def _episode(run: list[Alert], evaluated: Collection[date]) -> Episode:
    first, last = run[0], run[-1]
    after = last.day + timedelta(days=1)
    # max() keeps the first day reaching the peak on ties.
    peak = max(run, key=lambda a: _rank(a.severity)).severity
    return Episode(
        episode_id(first.workspace_id, first.type, first.subject, first.day),
        first.workspace_id,
        first.type,
        first.subject,
        first.day,
        last.day,
        after if after in evaluated else None,
        peak,
        last.severity,
        first,
        last,
    )


def episode_spans(
    touching: Iterable[tuple[EpisodeKey, date, date]], start: date, end: date
) -> dict[EpisodeKey, tuple[date, date]]:
    """Per alert, the days whose episodes must be rebuilt after start..end was re-evaluated.

    `touching` holds (key, opened_on, last_active_on) of the stored episodes that overlap
    start-1..end+1 (a window can extend, merge or resolve exactly those); each such alert's span
    grows to cover them whole. Alerts first seen in the window get their span from
    `refresh_episodes`. Episodes outside every span stay valid as stored.
    """
    spans: dict[EpisodeKey, tuple[date, date]] = {}
    for key, opened, last in touching:
        lo, hi = spans.get(key, (start, end))
        spans[key] = (min(lo, opened), max(hi, last))
    return spans


def refresh_episodes(
    touching: Iterable[tuple[EpisodeKey, date, date]],
    alerts: Iterable[Alert],
    evaluated: Collection[date],
    start: date,
    end: date,
) -> tuple[dict[EpisodeKey, tuple[date, date]], list[Episode]]:
    """The episodes replacing the `touching` ones after start..end was re-evaluated.

    `alerts` are the stored daily alerts of the workspace over at least the union of the spans
    (`episode_spans`) and `evaluated` the evaluated days over it plus one day. Returns each rebuilt
    alert's span (every stored episode of that alert inside it is replaced) and the new episodes.
    Since the result depends only on the stored days, any order or split of runs ends the same.
    """
    batch = list(alerts)
    spans = episode_spans(touching, start, end)
    for a in batch:
        if start <= a.day <= end:
            spans.setdefault((a.workspace_id, a.type, a.subject), (start, end))
    inside = [
        a
        for a in batch
        if (span := spans.get((a.workspace_id, a.type, a.subject))) and span[0] <= a.day <= span[1]
    ]
    return spans, alert_episodes(inside, evaluated)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A webhook event about an episode; quacks like an Alert for delivery (id, type, day,
    to_dict), its id deterministic so the delivery log sends each event once."""

    id: str
    type: str
    day: date
    episode: Episode
    previous_severity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event's data: the episode's latest alert (v1 API fields) and the episode."""
        ep = self.episode
        message = ep.last.message
        if self.type == "alert.resolved":
            message = f"Resolved: {message}"
        return {
            "id": ep.last.id,
            "type": ep.type,
            "severity": ep.severity,
            "message": message,
            "payload": ep.last.payload,
            "workspace_id": ep.workspace_id,
            "day": self.day.isoformat(),
            "subject": ep.subject or None,
            "previous_severity": self.previous_severity,
            "episode": {
                "id": ep.id,
                "status": ep.status,
                "opened_on": ep.opened_on.isoformat(),
                "last_active_on": ep.last_active_on.isoformat(),
                "resolved_on": None if ep.resolved_on is None else ep.resolved_on.isoformat(),
                "peak_severity": ep.peak_severity,
                "severity": ep.severity,
            },
        }


def event_id(episode: str, event: str, severity: str = "") -> str:
    """Deterministic event id "ae_<24 hex>"; opened and escalated events carry the severity sent,
    which is how the delivery log tells what a person was last told."""
    key = "\x1f".join((episode, event, severity))
    return "ae_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def candidate_event_ids(ep: Episode) -> dict[str, tuple[str, str, str]]:
    """Every event id this alert could have been announced under during the episode's days ->
    (episode id, event type, severity).

    Besides the episode's own id, the ids it would have had opening on any later day of it: a
    backfill or restatement that moves the opening earlier (or joins two episodes) must not
    announce again what a person was already told.
    """
    severities = sorted({*SEVERITY_RANK, ep.severity, ep.peak_severity})
    out: dict[str, tuple[str, str, str]] = {}
    d = ep.opened_on
    while d <= ep.last_active_on:
        eid = ep.id if d == ep.opened_on else episode_id(ep.workspace_id, ep.type, ep.subject, d)
        out[event_id(eid, "alert.resolved")] = (eid, "alert.resolved", "")
        for kind in ("alert.opened", "alert.escalated"):
            out.update({event_id(eid, kind, s): (eid, kind, s) for s in severities})
        d += timedelta(days=1)
    return out


def episode_events(
    episodes: Iterable[Episode], day: date, delivered: Collection[str]
) -> list[AlertEvent]:
    """The webhook events due on `day` given the event ids already `delivered`.

    An episode active on `day` that was never announced is `alert.opened` (on its first day, or
    later when an earlier delivery failed); once announced, a severity above the highest one sent
    is `alert.escalated`; an announced episode resolved on `day` is `alert.resolved`. Daily
    repeats send nothing. What was sent under an id the episode had before a restatement counts,
    unless that earlier episode was also told resolved.
    """
    events: list[AlertEvent] = []
    for ep in episodes:
        by_id: dict[str, list[tuple[str, str]]] = {}
        for eid, (ep_id, kind, sev) in candidate_event_ids(ep).items():
            if eid in delivered:
                by_id.setdefault(ep_id, []).append((kind, sev))
        sent = [
            ks
            for ep_id, kss in by_id.items()
            if ep_id == ep.id or ("alert.resolved", "") not in kss
            for ks in kss
        ]
        if not sent:
            if ep.last_active_on == day:
                events.append(
                    AlertEvent(
                        event_id(ep.id, "alert.opened", ep.severity), "alert.opened", day, ep
                    )
                )
            continue
        told = max((s for kind, s in sent if kind != "alert.resolved"), key=_rank, default="")
        if ep.last_active_on == day and _rank(ep.severity) > _rank(told):
            eid = event_id(ep.id, "alert.escalated", ep.severity)
            events.append(AlertEvent(eid, "alert.escalated", day, ep, told or None))
        elif ep.resolved_on == day:
            eid = event_id(ep.id, "alert.resolved")
            if eid not in delivered:
                events.append(AlertEvent(eid, "alert.resolved", day, ep))
    return events


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

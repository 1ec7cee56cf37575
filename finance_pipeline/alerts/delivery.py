"""Optional per-workspace webhook delivery of alerts (docs/metrics.md §14): signed, deduped POSTs.

A workspace opts in with the settings key "alert_webhook":
`{"url": "https://...", "secret_ciphertext": "<Fernet>", "secret_hint": "whsec_****abcd",
"max_attempts": 5}`; instead of `secret_ciphertext`, `secret_ref` ("env:NAME") names an
environment variable. The secret is encrypted like Stripe keys (`finance_pipeline.secrets`) and never
stored in clear or logged. Bodies and signatures come from `lib.alerts`; this module sends them
(`deliver`: retries with the shared `lib.backoff` policy) and keeps the configuration and the
delivery log `app.alert_deliveries`, in which an alert id recorded as delivered is never sent again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from finance_pipeline.lib.alerts import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    Alert,
    alert_body,
    sign_payload,
)
from finance_pipeline.lib.backoff import BackoffPolicy
from finance_pipeline.secrets import decrypt_secret, encrypt_secret, mask_key, resolve_key_ref
from finance_pipeline.settings import Settings
from finance_pipeline.warehouse.db import Warehouse

SETTINGS_KEY = "alert_webhook"
DEFAULT_MAX_ATTEMPTS = 5
# Attempts stop here even if a workspace asks for more: ~1+2+4+...+60 s of backoff is enough.
MAX_ATTEMPTS_CAP = 10
_CONFIG_KEYS = {"url", "secret_ciphertext", "secret_ref", "secret_hint", "max_attempts"}


class WebhookConfigError(ValueError):
    """A workspace's "alert_webhook" setting is malformed (400 for the API)."""


@dataclass(frozen=True)
class WebhookConfig:
    """A workspace's resolved webhook endpoint; `secret` is the plaintext signing secret."""

    url: str
    secret: str = field(repr=False)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


def _check_url(url: Any) -> str:
    if not isinstance(url, str):
        raise WebhookConfigError("alert_webhook.url must be an http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WebhookConfigError("alert_webhook.url must be an http(s) URL")
    return url


def _check_attempts(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS_CAP:
        raise WebhookConfigError(
            f"alert_webhook.max_attempts must be an integer from 1 to {MAX_ATTEMPTS_CAP}"
        )
    return value


def webhook_config(
    ws_settings: Mapping[str, Any], settings: Settings | None = None
) -> WebhookConfig | None:
    """The workspace's webhook endpoint with its secret decrypted, or None when not configured."""
    raw = ws_settings.get(SETTINGS_KEY)
    if not raw:
        return None
    if not isinstance(raw, Mapping):
        raise WebhookConfigError("alert_webhook must be an object")
    unknown = sorted(set(raw) - _CONFIG_KEYS)
    if unknown:
        raise WebhookConfigError(f"unknown alert_webhook key(s) {', '.join(unknown)}")
    url = _check_url(raw.get("url"))
    cipher, ref = raw.get("secret_ciphertext"), raw.get("secret_ref")
    if bool(cipher) == bool(ref):
        raise WebhookConfigError("alert_webhook needs exactly one of secret_ciphertext, secret_ref")
    secret = decrypt_secret(cipher, settings) if cipher else resolve_key_ref(ref)
    return WebhookConfig(
        url, secret, _check_attempts(raw.get("max_attempts", DEFAULT_MAX_ATTEMPTS))
    )


def _load_settings(value: Any) -> dict[str, Any]:
    return dict(json.loads(value) if isinstance(value, str) else value or {})


def _write_setting(wh: Warehouse, workspace_id: str, value: dict[str, Any] | None) -> None:
    with wh.begin() as db:
        row = db.execute(
            wh.text("SELECT settings_json FROM app.workspaces WHERE id = :w"), {"w": workspace_id}
        ).first()
        if row is None:
            raise KeyError(f"workspace {workspace_id} does not exist")
        current = _load_settings(row[0])
        if value is None:
            current.pop(SETTINGS_KEY, None)
        else:
            current[SETTINGS_KEY] = value
        tbl = wh.table("app.workspaces")
        db.execute(
            tbl.update()
            .where(tbl.c.id == workspace_id)
            .values(settings_json=current, updated_at=int(time.time()))
        )


def set_alert_webhook(
    wh: Warehouse,
    workspace_id: str,
    url: str,
    *,
    secret: str | None = None,
    secret_ref: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Configure a workspace's alert webhook; the secret is stored encrypted (or as a reference).

    Returns the stored setting, which holds no plaintext and is safe to show.
    """
    if (secret is None) == (secret_ref is None):
        raise WebhookConfigError("give exactly one of secret or secret_ref")
    plaintext = secret if secret is not None else resolve_key_ref(secret_ref or "")
    if not plaintext:
        raise WebhookConfigError("the webhook secret must not be empty")
    value: dict[str, Any] = {
        "url": _check_url(url),
        "secret_hint": mask_key(plaintext),
        "max_attempts": _check_attempts(max_attempts),
    }
    if secret is not None:
        value["secret_ciphertext"] = encrypt_secret(secret, settings)
    else:
        value["secret_ref"] = secret_ref
    _write_setting(wh, workspace_id, value)
    return value


def clear_alert_webhook(wh: Warehouse, workspace_id: str) -> None:
    """Turn a workspace's alert webhook off (its delivery log is kept)."""
    _write_setting(wh, workspace_id, None)


def redact_url(text: str, url: str) -> str:
    """`text` with the URL's query string and userinfo masked (tokens in URLs stay out of logs)."""
    parts = urlsplit(url)
    if not parts.query and "@" not in parts.netloc:
        return text
    safe = urlunsplit(
        (parts.scheme, parts.hostname or "", parts.path, "***" if parts.query else "", "")
    )
    text = text.replace(url, safe)
    return text.replace(parts.query, "***") if parts.query else text


Sender = Callable[[str, bytes, dict[str, str]], int]


# Webhook retries: 0.5-1 s, 1-2 s, 2-4 s, ... capped at 60 s (the shared lib.backoff policy).
WEBHOOK_BACKOFF = BackoffPolicy(base_seconds=1.0, max_seconds=60.0)


@dataclass(slots=True)
class DeliveryReport:
    """Outcome of a webhook delivery batch, per alert id."""

    delivered: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)


def deliver(
    alerts: Iterable[Alert],
    url: str,
    secret: str | bytes,
    sender: Sender,
    already_delivered: set[str],
    max_attempts: int = 5,
    backoff: Callable[[int], float] = WEBHOOK_BACKOFF.delay,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    retry_exceptions: tuple[type[BaseException], ...] = (OSError,),
) -> DeliveryReport:
    """POST each alert not yet delivered, signed; retry 5xx, 429 and connection errors.

    `sender(url, body, headers) -> status code` does the HTTP call (see requests_sender). Ids that
    succeed are added to `already_delivered` (the caller persists it), which is how re-runs dedupe.
    Other 4xx responses fail at once; each attempt is signed with a fresh timestamp.
    """
    report = DeliveryReport()
    for alert in alerts:
        if alert.id in already_delivered:
            report.duplicates.append(alert.id)
            continue
        reason = ""
        for attempt in range(1, max_attempts + 1):
            report.attempts[alert.id] = attempt
            ts = int(clock())
            body = alert_body(alert, ts)
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign_payload(secret, ts, body),
                ALERT_ID_HEADER: alert.id,
            }
            retry = False
            try:
                status = int(sender(url, body, headers))
            except retry_exceptions as exc:
                reason, retry = f"connection error: {type(exc).__name__}: {exc}", True
            except Exception as exc:  # a sender bug must not stop the other alerts
                reason = f"sender error: {type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    reason = ""
                    break
                reason = f"HTTP {status}"
                retry = status == 429 or status >= 500
            if not retry:
                break
            if attempt < max_attempts:
                sleep(backoff(attempt))
        if reason:
            report.failed[alert.id] = reason
        else:
            report.delivered.append(alert.id)
            already_delivered.add(alert.id)
    return report


def requests_sender(timeout: float = 10.0) -> Sender:
    """A Sender that POSTs with `requests` (connection errors are OSError subclasses: retried)."""

    def send(url: str, body: bytes, headers: dict[str, str]) -> int:
        return requests.post(url, data=body, headers=headers, timeout=timeout).status_code

    return send


def delivered_ids(wh: Warehouse, workspace_id: str, alerts: Iterable[Alert]) -> set[str]:
    """Which of these alerts the log records as delivered (ids embed the day: read those days)."""
    batch = list(alerts)
    if not batch:
        return set()
    rows = wh.rows(
        "SELECT alert_id FROM app.alert_deliveries WHERE workspace_id = :w"
        " AND day >= :a AND day <= :b AND status = 'delivered'",
        w=workspace_id,
        a=min(a.day for a in batch),
        b=max(a.day for a in batch),
    )
    return {r["alert_id"] for r in rows} & {a.id for a in batch}


def deliver_alerts(
    wh: Warehouse,
    workspace_id: str,
    alerts: Iterable[Alert],
    config: WebhookConfig,
    *,
    sender: Sender | None = None,
    sleep: Callable[[float], None] = time.sleep,
    backoff: Callable[[int], float] = WEBHOOK_BACKOFF.delay,
) -> DeliveryReport:
    """POST each alert not delivered before, record every outcome in app.alert_deliveries.

    When one alert exhausts its attempts on a retryable failure (connection error, 5xx, 429) the
    endpoint is taken as down: the rest are recorded as failed without being sent, so a dead
    endpoint costs one alert's backoff, not every alert's.
    """
    batch = list(alerts)
    send = sender or requests_sender()
    done = delivered_ids(wh, workspace_id, batch)
    report = DeliveryReport()
    endpoint_down = ""
    for alert in batch:
        if endpoint_down and alert.id not in done:
            report.failed[alert.id] = f"not sent: endpoint failing ({endpoint_down})"
            report.attempts[alert.id] = 0
            continue
        one = deliver(
            [alert],
            config.url,
            config.secret,
            send,
            done,
            max_attempts=config.max_attempts,
            backoff=backoff,
            sleep=sleep,
        )
        report.delivered += one.delivered
        report.duplicates += one.duplicates
        report.attempts.update(one.attempts)
        for aid, reason in one.failed.items():
            report.failed[aid] = redact_url(reason, config.url)
            if one.attempts.get(aid) == config.max_attempts:
                endpoint_down = report.failed[aid]
    _log(wh, workspace_id, batch, report)
    return report


def _log(wh: Warehouse, workspace_id: str, batch: list[Alert], report: DeliveryReport) -> None:
    """Upsert one delivery-log row per alert attempted (attempts accumulate across runs)."""
    tried = [a for a in batch if a.id in report.delivered or a.id in report.failed]
    if not tried:
        return
    now = int(time.time())
    with wh.begin() as db:
        before = {
            r.alert_id: r
            for r in db.execute(
                wh.text(
                    "SELECT alert_id, attempts, first_attempt_at FROM app.alert_deliveries"
                    " WHERE workspace_id = :w AND day >= :a AND day <= :b"
                ),
                {"w": workspace_id, "a": min(a.day for a in tried), "b": max(a.day for a in tried)},
            )
        }
        rows = []
        for a in tried:
            prev = before.get(a.id)
            ok = a.id in report.delivered
            rows.append(
                {
                    "workspace_id": workspace_id,
                    "alert_id": a.id,
                    "day": a.day,
                    "type": a.type,
                    "status": "delivered" if ok else "failed",
                    "attempts": (prev.attempts if prev else 0) + report.attempts.get(a.id, 0),
                    "last_error": None if ok else report.failed[a.id],
                    "first_attempt_at": prev.first_attempt_at if prev else now,
                    "last_attempt_at": now,
                    "delivered_at": now if ok else None,
                }
            )
        wh.upsert(db, "app.alert_deliveries", rows, key=("workspace_id", "alert_id"))

"""Stripe webhooks of a workspace: its signing secret (stored encrypted, like its API key), the
events Stripe delivers (signature verified with the stripe SDK, one row per event id so a
redelivery is a no-op), each asking for a prompt Stripe sync (docs/requests.md), and what the
platform finance API's `stripe-sync-status` reports about them.

An event is **pending** while the sync request it asked for has not finished (queued or running);
several events arriving before a sync starts share its one queued request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from finance_pipeline.requests.store import pending_requests, request_sync
from finance_pipeline.secrets import decrypt_secret, encrypt_secret
from finance_pipeline.settings import Settings
from finance_pipeline.stripe_sync.extract import EXTRACTORS
from finance_pipeline.stripe_sync.health import DELAY_TOLERANCE_SECONDS, sync_status
from finance_pipeline.warehouse.db import Warehouse, json_doc

SECRET_PREFIX = "whsec_"
# Stripe's own default: a signature older than this is refused (replayed captures).
SIGNATURE_TOLERANCE_SECONDS = 300


class WebhookError(ValueError):
    """A webhook delivery or secret the workspace refuses; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery: the event, whether it was new, the sync request it asked for."""

    event_id: str
    type: str
    duplicate: bool
    request_id: str | None


def set_webhook_secret(
    wh: Warehouse, workspace_id: str, secret: str, settings: Settings | None = None
) -> None:
    """Store the workspace's webhook signing secret (`whsec_...`), encrypted; needs a connection."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX) or len(secret) < 16:
        raise WebhookError(
            "invalid_secret", f"a webhook signing secret starts with {SECRET_PREFIX}"
        )
    with wh.begin() as db:
        changed = db.execute(
            wh.text(
                "UPDATE app.stripe_connections SET webhook_secret_ciphertext = :c, updated_at = :t"
                " WHERE workspace_id = :w"
            ),
            {"c": encrypt_secret(secret, settings), "t": int(time.time()), "w": workspace_id},
        ).rowcount
    if not changed:
        raise WebhookError("stripe_not_connected", "the workspace has no Stripe connection")


def webhook_secret(
    wh: Warehouse, workspace_id: str, settings: Settings | None = None
) -> str | None:
    """The workspace's signing secret, None without an active connection or a secret."""
    rows = wh.rows(
        "SELECT webhook_secret_ciphertext AS c FROM app.stripe_connections"
        " WHERE workspace_id = :w AND status = 'active'",
        w=workspace_id,
    )
    if not rows or not rows[0]["c"]:
        return None
    return decrypt_secret(rows[0]["c"], settings)


def receive(
    wh: Warehouse,
    workspace_id: str,
    payload: bytes,
    signature: str | None,
    *,
    settings: Settings | None = None,
    now: int | None = None,
) -> Delivery:
    """Verify and record one delivery, and ask for a Stripe sync unless it is a redelivery.

    Raises WebhookError `webhook_not_configured` (no secret), `invalid_signature` (missing, wrong
    or stale `Stripe-Signature`) or `invalid_event` (not a Stripe event of this account's mode).
    """
    secret = webhook_secret(wh, workspace_id, settings)
    if secret is None:
        raise WebhookError("webhook_not_configured", "no webhook secret for this workspace")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature or "", secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
        ).to_dict()
    except stripe.SignatureVerificationError as exc:
        raise WebhookError("invalid_signature", f"Stripe-Signature: {exc.user_message}") from exc
    except ValueError as exc:
        raise WebhookError("invalid_event", "the payload is not a JSON Stripe event") from exc
    if event.get("object") != "event" or not str(event.get("id", "")).startswith("evt_"):
        raise WebhookError("invalid_event", "the payload is not a Stripe event")
    if not isinstance(event.get("created"), int) or not isinstance(event.get("type"), str):
        raise WebhookError("invalid_event", "the event has no created time or type")
    [conn] = wh.rows(
        "SELECT account_id, livemode FROM app.stripe_connections WHERE workspace_id = :w",
        w=workspace_id,
    )
    if bool(event.get("livemode")) != bool(conn["livemode"]):
        raise WebhookError("invalid_event", "the event's mode differs from the connection's")
    received = int(time.time()) if now is None else now
    event_id, event_type = event["id"], event["type"]
    with wh.begin() as db:
        # The key is the lock: of two concurrent deliveries of one event, one inserts.
        new = wh.insert_new(
            db,
            "app.stripe_webhook_events",
            [
                {
                    "workspace_id": workspace_id,
                    "event_id": event_id,
                    "type": event_type,
                    "created": event["created"],
                    "received_at": received,
                    "request_id": None,
                }
            ],
            key=("workspace_id", "event_id"),
        )
        if new:
            # The same row the sync's events stream writes; a row it already wrote stays as is.
            row = {
                "workspace_id": workspace_id,
                "id": event_id,
                "account_id": conn["account_id"],
                "livemode": bool(conn["livemode"]),
                "created": event["created"],
                "payload": json_doc(event),
                "synced_at": received,
                **EXTRACTORS["event"](event),
            }
            wh.insert_new(db, "raw.stripe_events", [row], key=("workspace_id", "id"))
    if not new:
        [old] = wh.rows(
            "SELECT request_id FROM app.stripe_webhook_events"
            " WHERE workspace_id = :w AND event_id = :e",
            w=workspace_id,
            e=event_id,
        )
        if old["request_id"] is not None:
            return Delivery(event_id, event_type, True, old["request_id"])
        # Recorded, but its sync was never asked for: the first delivery lost the database
        # in between (and got a 5xx, so Stripe redelivers). Ask now, or the change waits for
        # the next scheduled sync while the event counts as pending forever.
    request_id = _sync_request(wh, workspace_id, event_id)
    with wh.begin() as db:
        db.execute(
            wh.text(
                "UPDATE app.stripe_webhook_events SET request_id = :r"
                " WHERE workspace_id = :w AND event_id = :e"
            ),
            {"r": request_id, "w": workspace_id, "e": event_id},
        )
    return Delivery(event_id, event_type, not new, request_id)


def _sync_request(wh: Warehouse, workspace_id: str, event_id: str) -> str:
    """A queued Stripe sync of the workspace (it will read this event's change too), else a new
    one: a burst of events asks for one sync, not one each."""
    for r in pending_requests(wh, workspace_id):
        if r["kind"] == "stripe_sync" and r["status"] == "queued":
            return r["id"]
    return request_sync(wh, workspace_id, reason=f"webhook {event_id}", requested_by="webhook")


def webhook_summary(wh: Warehouse, workspace_id: str) -> dict[str, Any]:
    """`pending_webhooks` (events whose sync has not finished), the oldest pending one's arrival
    (Unix seconds), and `last_webhook_event` (the latest delivered: id, type, timestamp)."""
    [pending] = wh.rows(
        "SELECT COUNT(*) AS n, MIN(e.received_at) AS oldest FROM app.stripe_webhook_events e"
        " LEFT JOIN app.pipeline_requests r ON r.id = e.request_id"
        " WHERE e.workspace_id = :w AND (r.status IS NULL OR r.status IN ('queued', 'running'))",
        w=workspace_id,
    )
    last = wh.rows(
        "SELECT event_id, type, created FROM app.stripe_webhook_events WHERE workspace_id = :w"
        " ORDER BY created DESC, received_at DESC, event_id DESC LIMIT 1",
        w=workspace_id,
    )
    return {
        "pending_webhooks": int(pending["n"] or 0),
        "oldest_pending_received_at": pending["oldest"],
        "last_webhook_event": None
        if not last
        else {
            "id": last[0]["event_id"],
            "type": last[0]["type"],
            "timestamp": datetime.fromtimestamp(last[0]["created"], UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        },
    }


def platform_sync_status(
    wh: Warehouse, workspace_id: str, *, now: int | None = None
) -> dict[str, Any]:
    """The platform finance API's `stripe-sync-status` data: the sync health of
    `health.sync_status` with the webhook counts. A webhook still pending after the delay
    tolerance (5 minutes) makes an otherwise healthy sync `delayed` (the seed: "behind by 5+
    minutes"); `last_webhook_event` is the latest delivered event, else the latest Stripe event
    the sync read, as `health.sync_status` reports it."""
    now = int(time.time()) if now is None else now
    status = sync_status(wh, workspace_id, now=now)
    hooks = webhook_summary(wh, workspace_id)
    health = status["sync_health"]
    oldest = hooks["oldest_pending_received_at"]
    if health == "healthy" and oldest is not None and now - oldest >= DELAY_TOLERANCE_SECONDS:
        health = "delayed"
    return {
        "last_sync": status["last_sync"],
        "sync_health": health,
        "invoices_synced": status["invoices_synced"],
        "failed_payments": status["failed_payments"],
        "pending_webhooks": hooks["pending_webhooks"],
        "last_webhook_event": hooks["last_webhook_event"] or status["last_webhook_event"],
    }

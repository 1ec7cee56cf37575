"""Stripe sync health per workspace (platform finance API `stripe-sync-status`), from sync state."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.warehouse.db import Warehouse

# The daily refresh is the schedule a sync is measured against; 5 minutes late is `delayed`.
DEFAULT_SCHEDULE_SECONDS = 86400
DELAY_TOLERANCE_SECONDS = 300


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sync_status(
    wh: Warehouse,
    workspace_id: str,
    *,
    now: int | None = None,
    schedule_seconds: int = DEFAULT_SCHEDULE_SECONDS,
) -> dict[str, Any]:
    """Health (`healthy` | `delayed` | `error`), last sync, counts and the newest Stripe event."""
    now = int(time.time()) if now is None else now
    states = {
        r["stream"]: r
        for r in wh.rows("SELECT * FROM raw.sync_state WHERE workspace_id = :w", w=workspace_id)
    }
    errors = {s: r["last_error"] for s, r in states.items() if r["status"] == "error"}
    successes = [states[s]["last_success_at"] for s in STREAMS if s in states]
    complete = len(successes) == len(STREAMS) and all(x is not None for x in successes)
    # A workspace is only as fresh as its stalest stream.
    last_sync = min(successes) if complete else None
    if errors:
        health, reason = "error", "; ".join(f"{s}: {e}" for s, e in sorted(errors.items()))
    elif last_sync is None:
        health, reason = "delayed", "not every stream has completed a sync yet"
    elif now - last_sync > schedule_seconds + DELAY_TOLERANCE_SECONDS:
        health, reason = "delayed", f"last complete sync {now - last_sync} s ago"
    else:
        health, reason = "healthy", None
    event = wh.rows(
        "SELECT id, type, created FROM raw.stripe_events WHERE workspace_id = :w"
        " ORDER BY created DESC, id DESC LIMIT 1",
        w=workspace_id,
    )
    failed = wh.scalar(
        "SELECT COUNT(*) FROM raw.stripe_charges WHERE workspace_id = :w AND status = 'failed'",
        w=workspace_id,
    )
    return {
        "workspace_id": workspace_id,
        "last_sync": _iso(last_sync),
        "sync_health": health,
        "health_reason": reason,
        "invoices_synced": int(states.get("invoices", {}).get("objects_total") or 0),
        "failed_payments": int(failed or 0),
        "pending_webhooks": 0,
        "last_webhook_event": None
        if not event
        else {
            "id": event[0]["id"],
            "type": event[0]["type"],
            "timestamp": _iso(event[0]["created"]),
        },
        "streams": {
            s: {
                "status": r["status"],
                "last_success_at": _iso(r["last_success_at"]),
                "objects_total": r["objects_total"],
                "last_error": r["last_error"],
            }
            for s, r in sorted(states.items())
        },
    }

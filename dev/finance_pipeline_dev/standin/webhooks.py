"""Webhook deliveries from the stand-in, signed the way Stripe signs them: the
``Stripe-Signature`` header is ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<payload>">`` under
the endpoint's signing secret (``whsec_...``), so the product verifies them with the real SDK."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` value for ``payload`` signed with ``secret`` at ``timestamp``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def deliver(
    url: str,
    event: Mapping[str, Any],
    secret: str,
    *,
    timestamp: int | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """POST one event to a webhook endpoint as Stripe would (JSON body, signed header)."""
    payload = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature_header(payload, secret, timestamp),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    if client is not None:
        return client.post(url, content=payload, headers=headers)
    return httpx.post(url, content=payload, headers=headers, timeout=30)

"""What every Stripe object builder shares: the pinned API version, ids, embedded lists."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any

API_VERSION = "2026-10-28.endive"
EMBEDDED_LIST_LIMIT = 10

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, rand: Any = None) -> str:
    """A Stripe-looking id (``cus_...``); pass a ``random.Random`` for reproducible ids."""
    if rand is None:
        body = "".join(secrets.choice(_ALPHABET) for _ in range(24))
    else:
        body = "".join(rand.choice(_ALPHABET) for _ in range(24))
    return f"{prefix}_{body}"


def _meta(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return dict(metadata or {})


def _apply(obj: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    obj.update(overrides)
    return obj


def list_object(
    data: list[dict[str, Any]], url: str, *, total_count: bool = True
) -> dict[str, Any]:
    """An embedded Stripe list holding ALL items (the stand-in truncates it to 10 when serving)."""
    lst: dict[str, Any] = {"object": "list", "data": data, "has_more": False, "url": url}
    if total_count:
        lst["total_count"] = len(data)
    return lst

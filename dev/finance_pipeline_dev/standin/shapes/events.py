"""Builder for events: the account's change log, each holding a snapshot of its object."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .common import API_VERSION


def make_event(
    id: str,
    *,
    type: str,
    created: int,
    data_object: Mapping[str, Any],
    previous_attributes: Mapping[str, Any] | None = None,
    livemode: bool = False,
    api_version: str = API_VERSION,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    pending_webhooks: int = 0,
    account: str | None = None,
) -> dict[str, Any]:
    """An event; ``data.object`` is the full snapshot after the change (``account``: Connect)."""
    data: dict[str, Any] = {"object": copy.deepcopy(dict(data_object))}
    if previous_attributes is not None:
        data["previous_attributes"] = copy.deepcopy(dict(previous_attributes))
    obj: dict[str, Any] = {
        "id": id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": pending_webhooks,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": type,
    }
    if account is not None:
        obj["account"] = account
    return obj

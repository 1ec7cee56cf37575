"""The stand-in's state: accounts, API keys, Stripe objects per account, and a controllable clock.

Objects are indexed per account and type in Stripe's list order (``created`` desc, then insertion
order desc) so list pages, cursors and ``created`` windows cost O(log n + page size). Serialized
JSON per object is cached until the object changes. All methods are thread-safe.

Time travel (``Store(time_travel=True)`` or fixture key ``"time_travel": true``): the read path
serves each account as it was at the store clock. Objects created later do not exist, events
after the clock are invisible, and an object with events is the ``data.object`` of its latest
event at or before the clock. Per account, the events' snapshots are indexed by object and time
(built lazily, dropped on any change), so a lookup is a dict access plus a bisect.

Modules: ``records`` (errors, clock, key/account records, list index), ``state`` (``Store``:
loading, accounts, writes), ``reads`` (its read path) and ``time_travel``; import from here.
"""

from __future__ import annotations

from .records import (
    EVENT_RETENTION_SECONDS,
    ID_PREFIX,
    RESOURCE_OF_OBJECT,
    RESOURCES,
    SUBLISTS,
    AccountData,
    Clock,
    KeyInfo,
    StoreError,
    UnknownCursor,
    redact_key,
)
from .state import Store

__all__ = [
    "EVENT_RETENTION_SECONDS",
    "ID_PREFIX",
    "RESOURCES",
    "RESOURCE_OF_OBJECT",
    "SUBLISTS",
    "AccountData",
    "Clock",
    "KeyInfo",
    "Store",
    "StoreError",
    "UnknownCursor",
    "redact_key",
]

"""The store's building blocks: its errors, the clock, API key and account records, the
per-type list index, the time-travel history record, and fixture/key helpers."""

from __future__ import annotations

import bisect
import copy
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finance_pipeline_dev.standin import shapes

EVENT_RETENTION_SECONDS = 30 * 86400

#: Stripe ``object`` value -> permission/resource name used by restricted keys.
RESOURCE_OF_OBJECT: dict[str, str] = {
    "customer": "customers",
    "product": "products",
    "price": "prices",
    "coupon": "coupons",
    "subscription": "subscriptions",
    "subscription_item": "subscription_items",
    "invoice": "invoices",
    "invoice_payment": "invoice_payments",
    "charge": "charges",
    "refund": "refunds",
    "credit_note": "credit_notes",
    "event": "events",
    "balance_transaction": "balance_transactions",
    "account": "account",
}
RESOURCES = frozenset(RESOURCE_OF_OBJECT.values())

#: Id prefixes used when ``create`` has to invent an id.
ID_PREFIX: dict[str, str] = {
    "customer": "cus",
    "product": "prod",
    "price": "price",
    "coupon": "co",
    "subscription": "sub",
    "subscription_item": "si",
    "invoice": "in",
    "line_item": "il",
    "invoice_payment": "inpay",
    "charge": "ch",
    "refund": "re",
    "credit_note": "cn",
    "credit_note_line_item": "cnli",
    "event": "evt",
    "balance_transaction": "txn",
    "discount": "di",
}

# Embedded sub-lists: object type -> (field, url builder). They are stored whole, served capped.
SUBLISTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "invoice": ("lines", shapes.invoice_lines_url),
    "subscription": ("items", shapes.subscription_items_url),
    "credit_note": ("lines", shapes.credit_note_lines_url),
}

_LOW = -(10**18)
_HIGH = 10**18


class StoreError(ValueError):
    """A fixture or mutation that the store cannot accept (bad shape, duplicate id, unknown id)."""


class UnknownCursor(LookupError):
    """A ``starting_after``/``ending_before`` id that is not an object of the listed type."""


class Clock:
    """The stand-in's notion of "now": real time unless frozen at a set unix timestamp."""

    def __init__(self, now: int | None = None) -> None:
        self._fixed = None if now is None else int(now)
        self._lock = threading.Lock()

    def now(self) -> int:
        """Current stand-in time in unix seconds."""
        with self._lock:
            return self._fixed if self._fixed is not None else int(time.time())

    @property
    def frozen(self) -> bool:
        """True when the clock was set explicitly (it then only moves when advanced)."""
        return self._fixed is not None

    def set(self, now: int | None) -> None:
        """Freeze the clock at ``now`` (unix seconds), or return to real time with ``None``."""
        with self._lock:
            self._fixed = None if now is None else int(now)

    def advance(self, seconds: int) -> int:
        """Move the clock forward (freezing it if it followed real time); returns the new now."""
        with self._lock:
            base = self._fixed if self._fixed is not None else int(time.time())
            self._fixed = base + int(seconds)
            return self._fixed


@dataclass(frozen=True)
class KeyInfo:
    """An API key: the account it authenticates as and its read permissions (None = all)."""

    key: str
    account_id: str
    permissions: frozenset[str] | None


class _TypeIndex:
    """Ids of one object type in list order: ascending (-created, -seq) == newest first."""

    __slots__ = ("ids", "keys")

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []
        self.ids: list[str] = []

    def add(self, key: tuple[int, int], obj_id: str) -> None:
        pos = bisect.bisect_left(self.keys, key)
        self.keys.insert(pos, key)
        self.ids.insert(pos, obj_id)

    def remove(self, key: tuple[int, int]) -> None:
        pos = bisect.bisect_left(self.keys, key)
        if pos < len(self.keys) and self.keys[pos] == key:
            del self.keys[pos]
            del self.ids[pos]

    def position(self, key: tuple[int, int]) -> int | None:
        pos = bisect.bisect_left(self.keys, key)
        if pos < len(self.keys) and self.keys[pos] == key:
            return pos
        return None

    def window(self, created: Mapping[str, int] | None) -> tuple[int, int]:
        """Index range [lo, hi) of objects whose ``created`` satisfies the gt/gte/lt/lte bounds."""
        lo, hi = 0, len(self.keys)
        if not created:
            return lo, hi
        uppers = [created["lte"]] if "lte" in created else []
        if "lt" in created:
            uppers.append(created["lt"] - 1)
        lowers = [created["gte"]] if "gte" in created else []
        if "gt" in created:
            lowers.append(created["gt"] + 1)
        upper = min(uppers, default=None)
        lower = max(lowers, default=None)
        if upper is not None:
            lo = bisect.bisect_left(self.keys, (-upper, _LOW))
        if lower is not None:
            hi = bisect.bisect_right(self.keys, (-lower, _HIGH))
        return lo, max(lo, hi)


@dataclass
class AccountData:
    """One Stripe account: its keys, connected accounts and objects (insertion-ordered)."""

    id: str
    livemode: bool = False
    keys: dict[str, frozenset[str] | None] = field(default_factory=dict)
    connected_accounts: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    index: dict[str, _TypeIndex] = field(default_factory=dict)
    item_parent: dict[str, str] = field(default_factory=dict)
    cache: dict[str, bytes] = field(default_factory=dict)
    next_seq: int = 0
    # Time-travel index (built on first use while time travel is on; None after any change).
    history: _History | None = None


_ABSENT: dict[str, Any] = {}


@dataclass
class _History:
    """An account's objects through time, as recorded by its events (for time travel).

    ``snapshots[oid]`` holds the object's events ordered by (created, insertion) and their
    ``created`` values for bisecting. ``index`` lists per type the live objects plus deleted ones
    whose deletion event is known (they exist before it). Derived objects (balance transactions
    whose status depends on the clock, states before an object's first event) are made once and
    kept here, so their serialized JSON can be cached by identity.
    """

    snapshots: dict[str, tuple[list[int], list[dict[str, Any]]]]
    index: dict[str, _TypeIndex]
    keys: dict[str, tuple[int, int]]
    item_parent: dict[str, str]
    derived: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rendered: dict[int, tuple[Mapping[str, Any], bytes]] = field(default_factory=dict)
    cache: tuple[int, dict[str, dict[str, Any]]] = (-1, {})


def _sort_key(obj: Mapping[str, Any], seq: int) -> tuple[int, int]:
    return (-int(obj.get("created") or 0), -seq)


def _deep_merge(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _dumps(obj: Any) -> bytes:
    # ASCII escapes: the C encoder's fastest path; clients decode the same strings
    return json.dumps(obj, separators=(",", ":")).encode("ascii")


def _permissions(raw: Any) -> frozenset[str] | None:
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        raw = raw.get("permissions")
        if raw is None:
            return None
    return frozenset(str(p) for p in raw)


def _is_deletion(event: Mapping[str, Any]) -> bool:
    """An event that removes its object (``customer.subscription.deleted`` only cancels)."""
    inner = (event.get("data") or {}).get("object") or {}
    return str(event.get("type", "")).endswith(".deleted") and inner.get("object") != "subscription"


def redact_key(key: str) -> str:
    """A key safe to log or show: mode prefix plus at most its last 4 characters.

    ``sk_test_51Habc...wxyz`` -> ``sk_test_****wxyz``; short keys keep no suffix at all.
    """
    parts = key.split("_", 2)
    if len(parts) == 3 and parts[0] in ("sk", "rk", "pk") and parts[1] in ("test", "live"):
        prefix, rest = f"{parts[0]}_{parts[1]}_", parts[2]
    else:
        prefix, rest = "", key
    tail = rest[-4:] if len(rest) >= 12 else ""
    return f"{prefix}****{tail}"


def _read_doc(doc_or_path: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(doc_or_path, Mapping):
        return doc_or_path
    with open(doc_or_path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, Mapping):
        raise StoreError(f"{doc_or_path}: fixture must be a JSON object")
    return doc

"""The stand-in's state: accounts, API keys, Stripe objects per account, and a controllable clock.

Objects are indexed per account and type in Stripe's list order (``created`` desc, then insertion
order desc) so list pages, cursors and ``created`` windows cost O(log n + page size). Serialized
JSON per object is cached until the object changes. All methods are thread-safe.

Time travel (``Store(time_travel=True)`` or fixture key ``"time_travel": true``): the read path
serves each account as it was at the store clock. Objects created later do not exist, events
after the clock are invisible, and an object with events is the ``data.object`` of its latest
event at or before the clock. Per account, the events' snapshots are indexed by object and time
(built lazily, dropped on any change), so a lookup is a dict access plus a bisect.
"""

from __future__ import annotations

import bisect
import copy
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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


class Store:
    """All stand-in state: ``Store.load(doc_or_path)``, or ``Store()`` plus ``add_account``."""

    def __init__(
        self, clock: Clock | int | None = None, *, seed: int = 0, time_travel: bool = False
    ) -> None:
        self.clock = clock if isinstance(clock, Clock) else Clock(clock)
        self._accounts: dict[str, AccountData] = {}
        self._keys: dict[str, KeyInfo] = {}
        self._lock = threading.RLock()
        self._rand = random.Random(seed)
        self._time_travel = bool(time_travel)

    @property
    def time_travel(self) -> bool:
        """True when API reads show every account as of the store clock (not its final state)."""
        return self._time_travel

    def set_time_travel(self, enabled: bool) -> None:
        """Serve accounts as of the clock (True) or in their stored final state (False)."""
        self._time_travel = bool(enabled)

    # ------------------------------------------------------------------ loading / dumping

    @classmethod
    def load(
        cls,
        doc_or_path: Mapping[str, Any] | str | Path,
        *,
        seed: int = 0,
        time_travel: bool | None = None,
    ) -> Store:
        """A new store holding a fixture document (dict, or path to a JSON file).

        ``time_travel`` None follows the fixture's ``"time_travel"`` key (default off).
        """
        store = cls(seed=seed)
        store.restore(doc_or_path)
        if time_travel is not None:
            store.set_time_travel(time_travel)
        return store

    def restore(self, doc_or_path: Mapping[str, Any] | str | Path) -> None:
        """Replace all accounts, keys, objects and the clock with a fixture document.

        A ``"time_travel"`` key in the document sets the flag; without one it is left as is.
        """
        doc = _read_doc(doc_or_path)
        with self._lock:
            self._accounts.clear()
            self._keys.clear()
            self.clock.set(doc.get("clock"))
            self.merge(doc, set_clock=False)

    def merge(self, doc_or_path: Mapping[str, Any] | str | Path, *, set_clock: bool = True) -> None:
        """Add the fixture's accounts (which must not exist yet) to the current state."""
        doc = _read_doc(doc_or_path)
        accounts = doc.get("accounts")
        if not isinstance(accounts, Mapping):
            raise StoreError("fixture needs an 'accounts' mapping")
        with self._lock:
            if set_clock and doc.get("clock") is not None:
                self.clock.set(doc["clock"])
            if "time_travel" in doc:
                self.set_time_travel(bool(doc["time_travel"]))
            for acct_id, spec in accounts.items():
                self.add_account(
                    acct_id,
                    livemode=bool(spec.get("livemode", False)),
                    keys=spec.get("keys") or {},
                    connected_accounts=spec.get("connected_accounts") or [],
                    profile=spec.get("account"),
                )
                self.put_many(acct_id, spec.get("objects") or [], replace=False)

    def dump(self) -> dict[str, Any]:
        """The whole state as a fixture document (``Store.load(store.dump())`` round-trips)."""
        with self._lock:
            accounts: dict[str, Any] = {}
            for acct in self._accounts.values():
                spec: dict[str, Any] = {
                    "livemode": acct.livemode,
                    "keys": {
                        k: {"permissions": None if p is None else sorted(p)}
                        for k, p in acct.keys.items()
                    },
                    "connected_accounts": list(acct.connected_accounts),
                    "objects": [copy.deepcopy(o) for o in acct.objects.values()],
                }
                if acct.profile is not None:
                    spec["account"] = copy.deepcopy(acct.profile)
                accounts[acct.id] = spec
            doc: dict[str, Any] = {"accounts": accounts}
            if self.clock.frozen:
                doc["clock"] = self.clock.now()
            if self._time_travel:
                doc["time_travel"] = True
            return doc

    # ------------------------------------------------------------------ accounts and keys

    def add_account(
        self,
        account_id: str,
        *,
        livemode: bool = False,
        keys: Mapping[str, Any] | None = None,
        connected_accounts: Iterable[str] = (),
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        """Register an account with its keys ({key: {"permissions": [...] | None}})."""
        with self._lock:
            if account_id in self._accounts:
                raise StoreError(f"account {account_id!r} already exists")
            self._accounts[account_id] = AccountData(
                id=account_id,
                livemode=livemode,
                connected_accounts=list(connected_accounts),
                profile=None if profile is None else dict(profile),
            )
            for key, perms in (keys or {}).items():
                self.add_key(account_id, key, _permissions(perms))

    def add_key(self, account_id: str, key: str, permissions: Iterable[str] | None = None) -> None:
        """Let ``key`` authenticate as ``account_id``; ``permissions`` None means full access."""
        with self._lock:
            acct = self._account(account_id)
            if key in self._keys:
                raise StoreError(f"API key {redact_key(key)} is already registered")
            perms = None if permissions is None else frozenset(permissions)
            acct.keys[key] = perms
            self._keys[key] = KeyInfo(key, account_id, perms)

    def authenticate(self, key: str) -> KeyInfo | None:
        """The key's account and permissions, or None for an unknown key."""
        with self._lock:
            return self._keys.get(key)

    def account_ids(self) -> list[str]:
        """Ids of all accounts, in fixture order."""
        with self._lock:
            return list(self._accounts)

    def account_info(self, account_id: str) -> AccountData | None:
        """The account record (internal structure; treat as read-only)."""
        with self._lock:
            return self._accounts.get(account_id)

    def keys(self) -> dict[str, KeyInfo]:
        """All registered API keys."""
        with self._lock:
            return dict(self._keys)

    def account_object(self, account_id: str) -> dict[str, Any]:
        """The ``/v1/account`` object (a fixture ``account`` entry overrides its fields)."""
        with self._lock:
            acct = self._account(account_id)
            obj = shapes.make_account(account_id)
            if acct.profile:
                obj.update(copy.deepcopy(acct.profile))
            obj["id"] = account_id
            obj["object"] = "account"
            return obj

    def _account(self, account_id: str) -> AccountData:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise StoreError(f"unknown account {account_id!r}") from None

    # ------------------------------------------------------------------ objects

    def now(self) -> int:
        """The stand-in clock's current unix time."""
        return self.clock.now()

    def new_id(self, object_type: str) -> str:
        """A fresh, reproducible (seeded) id for an object type."""
        with self._lock:
            return shapes.new_id(ID_PREFIX.get(object_type, object_type[:4]), self._rand)

    def put(self, account_id: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Add or replace an object (no event). Returns a copy of what is stored."""
        with self._lock:
            self.put_many(account_id, [obj], replace=True)
            return copy.deepcopy(self._account(account_id).objects[str(obj["id"])])

    def put_many(
        self, account_id: str, objs: Iterable[Mapping[str, Any]], *, replace: bool = True
    ) -> int:
        """Bulk add (or replace, if ``replace``) objects without events; returns the count."""
        with self._lock:
            acct = self._account(account_id)
            acct.history = None
            # New objects are indexed in one sort at the end (fixtures hold 10^5 objects).
            fresh: dict[str, dict[str, tuple[int, int]]] = {}
            count = 0
            for raw in objs:
                obj = self._normalize(acct, raw)
                oid = obj["id"]
                pending = fresh.get(obj["object"])
                if pending is not None and oid in pending:
                    if not replace:
                        raise StoreError(f"duplicate object id {oid!r} in account {account_id}")
                    acct.objects[oid] = obj
                    pending[oid] = _sort_key(obj, acct.seq[oid])
                    self._index_items(acct, obj)
                elif oid in acct.objects:
                    if not replace:
                        raise StoreError(f"duplicate object id {oid!r} in account {account_id}")
                    self._unindex(acct, oid)
                    acct.objects[oid] = obj
                    self._index_one(acct, oid)
                else:
                    acct.seq[oid] = acct.next_seq
                    acct.next_seq += 1
                    acct.objects[oid] = obj
                    if obj.get("deleted") is True:
                        acct.deleted.add(oid)
                    else:
                        fresh.setdefault(obj["object"], {})[oid] = _sort_key(obj, acct.seq[oid])
                    self._index_items(acct, obj)
                count += 1
            for otype, entries in fresh.items():
                idx = acct.index.setdefault(otype, _TypeIndex())
                if len(entries) > 16:
                    merged = sorted(
                        [
                            *zip(idx.keys, idx.ids, strict=True),
                            *((k, i) for i, k in entries.items()),
                        ]
                    )
                    idx.keys = [k for k, _ in merged]
                    idx.ids = [i for _, i in merged]
                else:
                    for oid, key in entries.items():
                        idx.add(key, oid)
            return count

    def create(
        self, account_id: str, obj: Mapping[str, Any], event_type: str | None = None
    ) -> dict[str, Any]:
        """Insert a new object (id and ``created`` filled from the clock if missing).

        With ``event_type`` (e.g. "customer.created") an event snapshots the new object.
        Returns a copy of the stored object.
        """
        with self._lock:
            acct = self._account(account_id)
            new = copy.deepcopy(dict(obj))
            if "object" not in new:
                raise StoreError("object needs an 'object' field")
            new.setdefault("id", self.new_id(new["object"]))
            if "created" not in new and new["object"] not in ("subscription_item",):
                new["created"] = self.now()
            if new["id"] in acct.objects:
                raise StoreError(f"object {new['id']!r} already exists in {account_id}")
            self.put_many(account_id, [new], replace=False)
            stored = acct.objects[new["id"]]
            if event_type is not None:
                self.emit_event(account_id, event_type, stored)
            return copy.deepcopy(stored)

    def update(
        self,
        account_id: str,
        object_id: str,
        changes: Mapping[str, Any],
        event_type: str | None,
    ) -> dict[str, Any] | None:
        """Apply a (nested) change and emit ``event_type`` with ``previous_attributes``.

        Nested dicts merge key by key; lists and scalars are replaced. ``previous_attributes``
        holds the old value of every top-level key that actually changed. Returns the event
        (None when ``event_type`` is None).
        """
        with self._lock:
            acct = self._account(account_id)
            old = acct.objects.get(object_id)
            if old is None or object_id in acct.deleted:
                raise StoreError(f"no object {object_id!r} in account {account_id}")
            new = copy.deepcopy(old)
            _deep_merge(new, changes)
            if "updated" in new and "updated" not in changes:
                new["updated"] = self.now()
            previous = {
                key: copy.deepcopy(old.get(key)) for key in changes if old.get(key) != new.get(key)
            }
            self.put_many(account_id, [new], replace=True)
            if event_type is None:
                return None
            return self.emit_event(
                account_id, event_type, acct.objects[object_id], previous_attributes=previous
            )

    def delete(
        self, account_id: str, object_id: str, event_type: str | None = None
    ) -> dict[str, Any] | None:
        """Delete an object: retrieving it gives ``{"id", "object", "deleted": true}``.

        It leaves list results. Returns the event (snapshot of the last state) if requested.
        """
        with self._lock:
            acct = self._account(account_id)
            old = acct.objects.get(object_id)
            if old is None or object_id in acct.deleted:
                raise StoreError(f"no object {object_id!r} in account {account_id}")
            acct.history = None
            self._unindex(acct, object_id)
            acct.objects[object_id] = {"id": object_id, "object": old["object"], "deleted": True}
            acct.deleted.add(object_id)
            acct.cache.pop(object_id, None)
            if event_type is None:
                return None
            return self.emit_event(account_id, event_type, old)

    def emit_event(
        self,
        account_id: str,
        event_type: str,
        data_object: Mapping[str, Any],
        previous_attributes: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Append an event (created = clock now) whose ``data.object`` snapshots ``data_object``."""
        with self._lock:
            acct = self._account(account_id)
            event = shapes.make_event(
                self.new_id("event"),
                type=event_type,
                created=self.now(),
                data_object=data_object,
                previous_attributes=previous_attributes,
                livemode=acct.livemode,
                request_id=request_id,
            )
            self.put_many(account_id, [event], replace=False)
            return copy.deepcopy(event)

    def get(self, account_id: str, object_id: str) -> dict[str, Any] | None:
        """A copy of the stored object (full sub-lists), or None."""
        with self._lock:
            acct = self._account(account_id)
            obj = acct.objects.get(object_id)
            if obj is None and object_id in acct.item_parent:
                obj = self._find_item(acct, object_id)
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, account_id: str, object_type: str | None = None) -> list[dict[str, Any]]:
        """Copies of an account's objects in insertion order (optionally of one type)."""
        with self._lock:
            acct = self._account(account_id)
            return [
                copy.deepcopy(o)
                for o in acct.objects.values()
                if object_type is None or o.get("object") == object_type
            ]

    def count(self, account_id: str, object_type: str) -> int:
        """Number of live (non-deleted) objects of a type in an account."""
        with self._lock:
            idx = self._account(account_id).index.get(object_type)
            return 0 if idx is None else len(idx.ids)

    # ------------------------------------------------------------------ read path (server)

    def lookup(self, account_id: str, object_id: str) -> dict[str, Any] | None:
        """The object as served (not a copy; callers must not mutate), subscription items included.

        Under time travel: the object as of the clock (None if it did not exist yet).
        """
        acct = self._accounts.get(account_id)
        if acct is None:
            return None
        if self._time_travel:
            return self._lookup_as_of(acct, object_id, self.clock.now())
        obj = acct.objects.get(object_id)
        if obj is None and object_id in acct.item_parent:
            return self._find_item(acct, object_id)
        return obj

    def as_of(
        self, account_id: str, object_id: str, at: int | None = None
    ) -> dict[str, Any] | None:
        """A copy of the object as it was at ``at`` (default: the clock), from its events.

        Works whether or not time travel is on; None when the object did not exist then.
        """
        with self._lock:
            acct = self._account(account_id)
            obj = self._lookup_as_of(acct, object_id, self.clock.now() if at is None else int(at))
            return copy.deepcopy(obj) if obj is not None else None

    def page(
        self,
        account_id: str,
        object_type: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        created: Mapping[str, int] | None = None,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One list page in Stripe order and whether more matching objects follow.

        Under time travel the page is taken from the account as of the clock: objects created
        later are left out and ``predicate`` sees each object's state at the clock.
        Raises UnknownCursor(cursor) when a cursor is not an object of this type.
        """
        with self._lock:
            acct = self._account(account_id)
            fetch: Callable[[str], dict[str, Any] | None]
            if self._time_travel:
                clock = self.clock.now()
                hist = self._history(acct)
                idx = hist.index.get(object_type) or _TypeIndex()
                window = dict(created or {})
                window["lte"] = min(window.get("lte", clock), clock)
                lo, hi = idx.window(window)

                def fetch(oid: str) -> dict[str, Any] | None:
                    obj = self._state_at(acct, hist, oid, clock)
                    return None if obj is None or obj.get("deleted") else obj

            else:
                hist = None
                idx = acct.index.get(object_type) or _TypeIndex()
                lo, hi = idx.window(created)
                fetch = acct.objects.__getitem__
            ids = idx.ids
            if ending_before is not None:
                pos = self._cursor_position(acct, hist, idx, object_type, ending_before)
                out: list[dict[str, Any]] = []
                i = min(hi, pos) - 1
                while i >= lo and len(out) <= limit:
                    obj = fetch(ids[i])
                    if obj is not None and (predicate is None or predicate(obj)):
                        out.append(obj)
                    i -= 1
                has_more = len(out) > limit
                return list(reversed(out[:limit])), has_more
            if starting_after is not None:
                pos = self._cursor_position(acct, hist, idx, object_type, starting_after)
                lo = max(lo, pos + 1)
            out = []
            i = lo
            while i < hi and len(out) <= limit:
                obj = fetch(ids[i])
                if obj is not None and (predicate is None or predicate(obj)):
                    out.append(obj)
                i += 1
            return out[:limit], len(out) > limit

    def _cursor_position(
        self,
        acct: AccountData,
        hist: _History | None,
        idx: _TypeIndex,
        object_type: str,
        cursor: str,
    ) -> int:
        if hist is None:
            obj = acct.objects.get(cursor)
        else:
            obj = self._state_at(acct, hist, cursor, self.clock.now())
        if obj is None or obj.get("object") != object_type or obj.get("deleted"):
            raise UnknownCursor(cursor)
        key = None if hist is None else hist.keys.get(cursor)
        if key is None:
            key = _sort_key(acct.objects[cursor], acct.seq[cursor])
        pos = idx.position(key)
        if pos is None:
            raise UnknownCursor(cursor)
        return pos

    def sublist(
        self, account_id: str, parent_id: str, parent_type: str
    ) -> list[dict[str, Any]] | None:
        """All items of a parent's embedded list (invoice/credit note lines, subscription items)."""
        with self._lock:
            obj = self.lookup(account_id, parent_id)
            if obj is None or obj.get("object") != parent_type or obj.get("deleted"):
                return None
            field_name = SUBLISTS[parent_type][0]
            return list((obj.get(field_name) or {}).get("data") or [])

    def render(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """The wire form: embedded sub-lists capped at 10 with ``has_more``/``total_count``/url."""
        kind = obj.get("object")
        if kind == "event":
            data = obj.get("data") or {}
            inner = data.get("object")
            if isinstance(inner, Mapping) and inner.get("object") in SUBLISTS:
                return {**obj, "data": {**data, "object": self.render(inner)}}
            return dict(obj)
        spec = SUBLISTS.get(str(kind))
        if spec is None or obj.get("deleted"):
            return dict(obj)
        field_name, url_of = spec
        full = obj.get(field_name)
        if not isinstance(full, Mapping):
            return dict(obj)
        items = list(full.get("data") or [])
        capped = {
            "object": "list",
            "data": items[: shapes.EMBEDDED_LIST_LIMIT],
            "has_more": len(items) > shapes.EMBEDDED_LIST_LIMIT,
            "total_count": len(items),
            "url": url_of(str(obj["id"])),
        }
        return {**obj, field_name: capped}

    def rendered_json(self, account_id: str, obj: Mapping[str, Any]) -> bytes:
        """Cached compact JSON of ``render(obj)`` (cache dropped whenever the object changes)."""
        acct = self._accounts.get(account_id)
        oid = obj.get("id")
        if acct is None or obj.get("object") == "subscription_item" or not isinstance(oid, str):
            return _dumps(self.render(obj))
        if acct.objects.get(oid) is not obj:
            hist = acct.history
            if hist is None or not self._time_travel:
                return _dumps(self.render(obj))
            # A past state: an event snapshot or a derived object, both kept by the history.
            hit = hist.rendered.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
            body = _dumps(self.render(obj))
            hist.rendered[id(obj)] = (obj, body)
            return body
        cached = acct.cache.get(oid)
        if cached is None:
            cached = _dumps(self.render(obj))
            with self._lock:
                if acct.objects.get(oid) is obj:
                    acct.cache[oid] = cached
        return cached

    def warm_cache(self, account_id: str | None = None) -> int:
        """Serialize every live object now (else each is serialized on first read); returns count.

        Useful before benchmarks: the first full read of a large fixture then runs at cached speed.
        Under time travel it also builds the accounts' history indexes.
        """
        with self._lock:
            targets = [
                (acct.id, [o for oid, o in acct.objects.items() if oid not in acct.cache])
                for acct in self._accounts.values()
                if account_id is None or acct.id == account_id
            ]
            if self._time_travel:
                for acct in self._accounts.values():
                    if account_id is None or acct.id == account_id:
                        self._history(acct)
        count = 0
        for acct_id, objs in targets:
            for obj in objs:
                if not obj.get("deleted"):
                    self.rendered_json(acct_id, obj)
                    count += 1
        return count

    # ------------------------------------------------------------------ time travel

    def _history(self, acct: AccountData) -> _History:
        hist = acct.history
        if hist is not None:
            return hist
        with self._lock:
            if acct.history is None:
                acct.history = self._build_history(acct)
            return acct.history

    def _build_history(self, acct: AccountData) -> _History:
        found: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
        events = acct.index.get("event")
        for eid in events.ids if events is not None else ():
            ev = acct.objects[eid]
            inner = (ev.get("data") or {}).get("object")
            if isinstance(inner, Mapping) and isinstance(inner.get("id"), str):
                found.setdefault(inner["id"], []).append(
                    (int(ev.get("created") or 0), acct.seq[eid], ev)
                )
        snapshots: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}
        item_parent = dict(acct.item_parent)
        for oid, entries in found.items():
            entries.sort(key=lambda e: (e[0], e[1]))
            snapshots[oid] = ([e[0] for e in entries], [e[2] for e in entries])
            for _, _, ev in entries:
                inner = ev["data"]["object"]
                if inner.get("object") == "subscription":
                    for item in (inner.get("items") or {}).get("data") or []:
                        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                            item_parent.setdefault(item["id"], oid)
        # Deleted objects stay listable until their deletion event.
        keys: dict[str, tuple[int, int]] = {}
        extra: dict[str, list[tuple[tuple[int, int], str]]] = {}
        for oid in acct.deleted:
            snaps = snapshots.get(oid)
            if snaps is None or not _is_deletion(snaps[1][-1]):
                continue
            first = snaps[1][0]["data"]["object"]
            born = first.get("created")
            key = (-int(born if isinstance(born, int) else snaps[0][0]), -acct.seq[oid])
            keys[oid] = key
            extra.setdefault(str(first.get("object")), []).append((key, oid))
        index = dict(acct.index)
        for otype, entries in extra.items():
            base = acct.index.get(otype) or _TypeIndex()
            merged = sorted([*zip(base.keys, base.ids, strict=True), *entries])
            full = _TypeIndex()
            full.keys = [k for k, _ in merged]
            full.ids = [i for _, i in merged]
            index[otype] = full
        return _History(snapshots=snapshots, index=index, keys=keys, item_parent=item_parent)

    def _lookup_as_of(self, acct: AccountData, object_id: str, at: int) -> dict[str, Any] | None:
        hist = self._history(acct)
        if object_id not in acct.objects and object_id in hist.item_parent:
            sub = self._state_at(acct, hist, hist.item_parent[object_id], at)
            if sub is None or sub.get("deleted"):
                return None
            for item in (sub.get("items") or {}).get("data") or []:
                if item.get("id") == object_id:
                    return item
            return None
        return self._state_at(acct, hist, object_id, at)

    def _state_at(
        self, acct: AccountData, hist: _History, oid: str, at: int
    ) -> dict[str, Any] | None:
        """The object as it was at ``at`` (cached per clock value), or None if not born yet."""
        memo_at, memo = hist.cache
        if memo_at != at:
            memo = {}
            hist.cache = (at, memo)
        hit = memo.get(oid)
        if hit is None:
            found = self._resolve(acct, hist, oid, at)
            hit = memo[oid] = _ABSENT if found is None else found
        return None if hit is _ABSENT else hit

    def _resolve(
        self, acct: AccountData, hist: _History, oid: str, at: int
    ) -> dict[str, Any] | None:
        obj = acct.objects.get(oid)
        if obj is None:
            return None
        if obj.get("object") == "event":
            return obj if int(obj.get("created") or 0) <= at else None
        snaps = hist.snapshots.get(oid)
        if snaps is None:
            if obj.get("deleted"):
                return obj  # deleted without an event: no known lifetime, deleted at any clock
            created = obj.get("created")
            if isinstance(created, int) and created > at:
                return None
            return self._at_clock(hist, obj, at)
        times, events = snaps
        i = bisect.bisect_right(times, at) - 1
        if i < 0:
            first = events[0]["data"]
            born = first["object"].get("created")
            if born is None:
                born = times[0]
            if int(born) > at:
                return None
            # Older than its first event: undo that event's previous_attributes.
            key = (oid, "before_first")
            before = hist.derived.get(key)
            if before is None:
                before = dict(first["object"])
                before.update(first.get("previous_attributes") or {})
                hist.derived[key] = before
            return self._at_clock(hist, before, at)
        # Deleted by its last event from then on; deleted without an event: at any clock.
        if obj.get("deleted") and (i == len(events) - 1 or not _is_deletion(events[-1])):
            return obj
        return self._at_clock(hist, events[i]["data"]["object"], at)

    @staticmethod
    def _at_clock(hist: _History, obj: dict[str, Any], at: int) -> dict[str, Any]:
        """Fields that follow from the clock alone: a balance transaction becomes available."""
        if obj.get("object") != "balance_transaction":
            return obj
        available_on = obj.get("available_on")
        if obj.get("status") not in ("pending", "available") or not isinstance(available_on, int):
            return obj
        status = "available" if available_on <= at else "pending"
        if obj["status"] == status:
            return obj
        key = (str(obj.get("id")), status)
        variant = hist.derived.get(key)
        if variant is None:
            variant = hist.derived[key] = {**obj, "status": status}
        return variant

    # ------------------------------------------------------------------ internals

    def _normalize(self, acct: AccountData, raw: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, Mapping) or not raw.get("id") or not raw.get("object"):
            raise StoreError(f"objects need 'id' and 'object' fields: {str(raw)[:120]}")
        obj = dict(raw)
        obj["id"] = str(obj["id"])
        if "livemode" in obj:
            obj["livemode"] = acct.livemode
        spec = SUBLISTS.get(obj["object"])
        if spec is not None and isinstance(obj.get(spec[0]), Mapping):
            lst = dict(obj[spec[0]])
            items = list(lst.get("data") or [])
            if obj["object"] != "subscription":
                items = [
                    {**it, "livemode": acct.livemode} if "livemode" in it else it for it in items
                ]
            lst.update(
                object="list",
                data=items,
                has_more=False,
                total_count=len(items),
                url=spec[1](obj["id"]),
            )
            obj[spec[0]] = lst
        return obj

    def _index_one(self, acct: AccountData, oid: str) -> None:
        obj = acct.objects[oid]
        acct.cache.pop(oid, None)
        if obj.get("deleted") is True:
            acct.deleted.add(oid)
        else:
            acct.deleted.discard(oid)
            acct.index.setdefault(obj["object"], _TypeIndex()).add(
                _sort_key(obj, acct.seq[oid]), oid
            )
        self._index_items(acct, obj)

    def _unindex(self, acct: AccountData, oid: str) -> None:
        obj = acct.objects[oid]
        acct.cache.pop(oid, None)
        idx = acct.index.get(obj["object"])
        if idx is not None and oid not in acct.deleted:
            idx.remove(_sort_key(obj, acct.seq[oid]))
        if obj.get("object") == "subscription":
            for item in (obj.get("items") or {}).get("data") or []:
                if acct.item_parent.get(item.get("id")) == oid:
                    del acct.item_parent[item["id"]]

    def _index_items(self, acct: AccountData, obj: Mapping[str, Any]) -> None:
        if obj.get("object") == "subscription" and not obj.get("deleted"):
            for item in (obj.get("items") or {}).get("data") or []:
                if isinstance(item, Mapping) and item.get("id"):
                    acct.item_parent[str(item["id"])] = str(obj["id"])

    def _find_item(self, acct: AccountData, item_id: str) -> dict[str, Any] | None:
        sub = acct.objects.get(acct.item_parent[item_id])
        for item in ((sub or {}).get("items") or {}).get("data") or []:
            if item.get("id") == item_id:
                return item
        return None

    def iter_accounts(self) -> Iterator[AccountData]:
        """Account records (internal; read-only)."""
        with self._lock:
            yield from list(self._accounts.values())


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

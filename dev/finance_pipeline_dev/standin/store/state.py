"""``Store``: fixtures in and out, accounts and API keys, and every write (put, create,
update, delete, events). The read path and time travel are mixed in from ``reads`` and
``time_travel``."""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from finance_pipeline_dev.standin import shapes

from .reads import _ReadPath
from .records import (
    ID_PREFIX,
    SUBLISTS,
    AccountData,
    Clock,
    KeyInfo,
    StoreError,
    _deep_merge,
    _permissions,
    _read_doc,
    _sort_key,
    _TypeIndex,
    redact_key,
)
from .time_travel import _TimeTravel


class Store(_ReadPath, _TimeTravel):
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

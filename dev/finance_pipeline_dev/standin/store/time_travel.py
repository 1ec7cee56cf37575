"""Time travel: the store serves each account as it was at the store clock.

Objects created later do not exist, events after the clock are invisible, and an object with
events is the ``data.object`` of its latest event at or before the clock. Per account, the
events' snapshots are indexed by object and time (built lazily, dropped on any change), so a
lookup is a dict access plus a bisect.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

from .records import _ABSENT, AccountData, _History, _is_deletion, _TypeIndex


class _TimeTravel:
    """Time-travel methods of ``Store`` (a mixin: it uses the store's lock)."""

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

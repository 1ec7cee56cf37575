"""The store's read path (what the server calls): lookups, list pages with cursors and
``created`` windows, embedded sub-lists, and the wire rendering with its JSON cache."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from finance_pipeline_dev.standin import shapes

from .records import (
    SUBLISTS,
    AccountData,
    UnknownCursor,
    _dumps,
    _History,
    _sort_key,
    _TypeIndex,
)


class _ReadPath:
    """Read methods of ``Store`` (a mixin: it uses the store's accounts, lock, clock and history)."""

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

"""Checkpointed incremental sync of one Stripe stream for one workspace (stripe.md).

A pass lists objects newest first with `created[gte]` = last high-water mark minus a lookback, paging
with `starting_after`. Each page's rows and the cursor commit in one transaction, so a killed run
resumes from its last page. Mutable objects are then refreshed by id from the events seen since the
stream's events checkpoint, plus any object still in a non-final status. A checkpoint older than the
30-day event retention forces a full re-read: a gap is never skipped silently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from finance_pipeline.lib import stripe_extract
from finance_pipeline.stripe_sync.gateway import StripeGateway, StripeSyncError
from finance_pipeline.stripe_sync.streams import STREAMS, Stream, SubList
from finance_pipeline.warehouse.db import Warehouse

EVENT_RETENTION_SECONDS = 30 * 86400
# Re-read a little earlier than Stripe's retention so clock skew cannot open a gap.
FULL_RESYNC_AFTER_SECONDS = EVENT_RETENTION_SECONDS - 86400
# Stripe's list index can lag creation by a few minutes.
LOOKBACK_SECONDS = 600


@dataclass(frozen=True)
class Connection:
    """A workspace's Stripe connection as the sync needs it (key already resolved)."""

    workspace_id: str
    account_id: str
    livemode: bool
    api_key: str
    api_base: str | None = None
    stripe_account_header: str | None = None


@dataclass
class StreamResult:
    """What one stream sync did, for metadata, sync health and tests."""

    workspace_id: str
    stream: str
    mode: str  # full | incremental | resumed
    listed: int = 0
    refreshed: int = 0
    sublist_rows: int = 0
    pages: int = 0
    deleted: int = 0
    high_water: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def objects(self) -> int:
        """Objects written (listed + refreshed)."""
        return self.listed + self.refreshed


class StripeStreamSync:
    """Syncs streams of one workspace into the warehouse."""

    def __init__(
        self,
        wh: Warehouse,
        gateway: StripeGateway,
        conn: Connection,
        *,
        page_size: int = 100,
        clock: Callable[[], float] = time.time,
        stop_after_pages: int | None = None,
    ) -> None:
        self.wh = wh
        self.gw = gateway
        self.conn = conn
        self.page_size = page_size
        self.clock = clock
        # Test hook: simulate a run killed after N committed pages.
        self.stop_after_pages = stop_after_pages

    # ---- state -------------------------------------------------------------------------------
    def _state(self, stream: str) -> dict[str, Any]:
        rows = self.wh.rows(
            "SELECT * FROM raw.sync_state WHERE workspace_id = :w AND stream = :s",
            w=self.conn.workspace_id,
            s=stream,
        )
        return rows[0] if rows else {}

    def _save_state(self, db: sa.Connection, stream: str, **values: Any) -> None:
        row = {"workspace_id": self.conn.workspace_id, "stream": stream, **values}
        self.wh.upsert(db, "raw.sync_state", [row], key=("workspace_id", "stream"))

    def mark_attempt(self, stream: str, status: str, error: str | None = None) -> None:
        """Record an attempt's outcome (running/error) without touching checkpoints."""
        with self.wh.begin() as db:
            self._save_state(
                db, stream, last_attempt_at=int(self.clock()), status=status, last_error=error
            )

    # ---- rows --------------------------------------------------------------------------------
    def _row(self, obj: dict[str, Any], now: int, **extra: Any) -> dict[str, Any]:
        if bool(obj.get("livemode", self.conn.livemode)) != self.conn.livemode:
            raise StripeSyncError(
                f"workspace {self.conn.workspace_id}: Stripe returned a "
                f"{'live' if obj.get('livemode') else 'test'}-mode object {obj.get('id')} to a "
                f"{'live' if self.conn.livemode else 'test'}-mode connection; modes never mix"
            )
        row = {
            "workspace_id": self.conn.workspace_id,
            "id": obj["id"],
            "account_id": self.conn.account_id,
            "livemode": self.conn.livemode,
            "payload": obj,
            "synced_at": now,
        }
        if "created" in obj:
            row["created"] = obj["created"]
        row.update(stripe_extract.EXTRACTORS[obj["object"]](obj))
        row.update(extra)
        return row

    def _complete_sublist(self, parent: dict[str, Any], sub: SubList) -> list[dict[str, Any]]:
        embedded = parent.get(sub.key) or {}
        items = list(embedded.get("data") or [])
        has_more = bool(embedded.get("has_more"))
        while has_more:
            params: dict[str, Any] = {"limit": 100}
            if items:
                params["starting_after"] = items[-1]["id"]
            if sub.by_param:
                params[sub.by_param] = parent["id"]
                page, has_more = self.gw.list_page(sub.resource, params)
            else:
                page, has_more = self.gw.list_page(sub.resource, params, parent=parent["id"])
            if not page:
                break
            items.extend(page)
        return items

    def _rows_for(
        self, stream: Stream, objects: Iterable[dict[str, Any]], now: int
    ) -> tuple[list[dict[str, Any]], dict[SubList, tuple[list[str], list[dict[str, Any]]]]]:
        rows = []
        subrows: dict[SubList, tuple[list[str], list[dict[str, Any]]]] = {
            s: ([], []) for s in stream.sublists
        }
        for obj in objects:
            if obj.get("object") != stream.object_type:
                continue
            rows.append(self._row(obj, now))
            for sub in stream.sublists:
                parents, children = subrows[sub]
                parents.append(obj["id"])
                for child in self._complete_sublist(obj, sub):
                    children.append(self._row(child, now, **{sub.parent_column: obj["id"]}))
        return rows, subrows

    def _write(
        self,
        db: sa.Connection,
        stream: Stream,
        rows: list[dict[str, Any]],
        subrows: dict[SubList, tuple[list[str], list[dict[str, Any]]]],
    ) -> int:
        self.wh.upsert(db, stream.table, rows, key=("workspace_id", "id"))
        written = 0
        for sub, (parents, children) in subrows.items():
            if not parents:
                continue
            # A child no longer on its parent (a removed item, a draft line) must not linger.
            tbl = self.wh.table(sub.table)
            keep = {c["id"] for c in children}
            for start in range(0, len(parents), 500):
                chunk = parents[start : start + 500]
                existing = db.execute(
                    sa.select(tbl.c.id).where(
                        tbl.c.workspace_id == self.conn.workspace_id,
                        tbl.c[sub.parent_column].in_(chunk),
                    )
                ).scalars()
                stale = [i for i in existing if i not in keep]
                if stale:
                    db.execute(
                        sa.delete(tbl).where(
                            tbl.c.workspace_id == self.conn.workspace_id, tbl.c.id.in_(stale)
                        )
                    )
            written += self.wh.upsert(db, sub.table, children, key=("workspace_id", "id"))
        return written

    # ---- sync --------------------------------------------------------------------------------
    def sync(self, stream_name: str) -> StreamResult:
        """Bring one stream up to date; resumes an unfinished pass from its checkpoint."""
        stream = STREAMS[stream_name]
        state = self._state(stream.name)
        now = int(self.clock())
        cursor = state.get("cursor_json") or None
        high_water = state.get("high_water")
        stale = stream.mutable and self._stale(state, now)

        if isinstance(cursor, str):
            cursor = json.loads(cursor)
        if cursor:
            mode = "resumed"
            lower = cursor.get("lower")
            starting_after = cursor.get("starting_after")
            pass_max = cursor.get("pass_max")
            full = bool(cursor.get("full"))
        else:
            full = high_water is None or (stream.mutable and stale)
            mode = "full" if full else "incremental"
            lower = None if full else max(0, int(high_water) - LOOKBACK_SECONDS)
            starting_after = None
            pass_max = high_water
        result = StreamResult(self.conn.workspace_id, stream.name, mode)
        if stale and not cursor:
            result.notes.append(
                "checkpoint older than Stripe's 30-day event retention: full re-read"
            )
        # Events seen before the pass started are the ones the refresh below must cover.
        events_hw = self._events_high_water() if stream.mutable else None

        has_more = True
        while has_more:
            params: dict[str, Any] = {"limit": self.page_size, **stream.list_params}
            if lower is not None:
                params["created"] = {"gte": lower}
            if starting_after:
                params["starting_after"] = starting_after
            page, has_more = self.gw.list_page(stream.resource, params)
            if not page:
                has_more = False
            rows, subrows = self._rows_for(stream, page, now)
            if page:
                starting_after = page[-1]["id"]
                page_max = max(int(o.get("created") or 0) for o in page)
                pass_max = page_max if pass_max is None else max(pass_max, page_max)
            with self.wh.begin() as db:
                result.sublist_rows += self._write(db, stream, rows, subrows)
                self._save_state(
                    db,
                    stream.name,
                    cursor_json={
                        "lower": lower,
                        "starting_after": starting_after,
                        "pass_max": pass_max,
                        "full": full,
                    }
                    if has_more
                    else None,
                    last_attempt_at=now,
                    status="running",
                )
            result.listed += len(rows)
            result.pages += 1
            if (
                self.stop_after_pages is not None
                and result.pages >= self.stop_after_pages
                and has_more
            ):
                raise KeyboardInterrupt("stopped after page (test hook)")

        if stream.mutable:
            result.refreshed = self._refresh(stream, state, full, now, result)
        if pass_max is None:
            # Nothing exists yet: everything created before this pass (minus index lag) is seen.
            pass_max = now - LOOKBACK_SECONDS
        result.high_water = pass_max
        with self.wh.begin() as db:
            total = db.execute(
                sa.select(sa.func.count())
                .select_from(self.wh.table(stream.table))
                .where(self.wh.table(stream.table).c.workspace_id == self.conn.workspace_id)
            ).scalar_one()
            values: dict[str, Any] = {
                "high_water": pass_max,
                "cursor_json": None,
                "last_success_at": now,
                "last_attempt_at": now,
                "status": "ok",
                "last_error": None,
                "objects_total": total,
                "last_run_objects": result.objects,
            }
            if stream.mutable:
                # The newest event already reflected in what was just read (server clock).
                known = [x for x in (events_hw, state.get("events_checkpoint")) if x is not None]
                values["events_checkpoint"] = max(known) if known else None
            if full:
                values["last_full_sync_at"] = now
            self._save_state(db, stream.name, **values)
        return result

    def _stale(self, state: dict[str, Any], now: int) -> bool:
        """True when events may have expired unseen since this stream last succeeded."""
        last = state.get("last_success_at")
        if last is None:
            return False
        events_last = self._state("events").get("last_success_at")
        oldest = min(last, events_last) if events_last is not None else last
        return now - oldest > FULL_RESYNC_AFTER_SECONDS

    def _events_high_water(self) -> int | None:
        return self.wh.scalar(
            "SELECT MAX(created) FROM raw.stripe_events WHERE workspace_id = :w",
            w=self.conn.workspace_id,
        )

    def _refresh(
        self, stream: Stream, state: dict[str, Any], full: bool, now: int, result: StreamResult
    ) -> int:
        ids: list[str] = []
        if not full:
            since = state.get("events_checkpoint")
            if since is None:
                since = 0
            ids = [
                r["object_id"]
                for r in self.wh.rows(
                    "SELECT DISTINCT object_id FROM raw.stripe_events WHERE workspace_id = :w"
                    " AND object_type = :t AND created >= :since AND object_id IS NOT NULL",
                    w=self.conn.workspace_id,
                    t=stream.object_type,
                    since=max(0, int(since) - LOOKBACK_SECONDS),
                )
            ]
        if stream.refresh_statuses:
            tbl = self.wh.table(stream.table)
            with self.wh.engine.connect() as db:
                ids += list(
                    db.execute(
                        sa.select(tbl.c.id).where(
                            tbl.c.workspace_id == self.conn.workspace_id,
                            tbl.c.status.in_(stream.refresh_statuses),
                        )
                    ).scalars()
                )
        refreshed = 0
        batch: list[dict[str, Any]] = []
        for object_id in sorted(set(ids)):
            obj = self.gw.retrieve(stream.resource, object_id)
            if obj is None:
                result.notes.append(f"{object_id} no longer exists in Stripe; kept as last seen")
                continue
            batch.append(obj)
            if len(batch) >= 100:
                refreshed += self._write_batch(stream, batch, now)
                batch = []
        if batch:
            refreshed += self._write_batch(stream, batch, now)
        return refreshed

    def _write_batch(self, stream: Stream, objects: list[dict[str, Any]], now: int) -> int:
        rows, subrows = self._rows_for(stream, objects, now)
        with self.wh.begin() as db:
            self._write(db, stream, rows, subrows)
        return len(rows)

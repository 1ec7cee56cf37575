"""Checkpointed incremental sync of one Stripe stream for one workspace (README "Stripe ingestion").

A pass lists objects newest first with `created[gte]` = last high-water mark minus a lookback, paging
with `starting_after`. Each page's rows and the cursor commit in one transaction, so a killed run
resumes from its last page. Mutable objects are then refreshed by id from the events seen since the
stream's events checkpoint, plus any object still in a non-final status. A checkpoint older than the
30-day event retention forces a full re-read: a gap is never skipped silently.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import queue
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from finance_pipeline.stripe_sync.extract import EXTRACTORS
from finance_pipeline.stripe_sync.gateway import (
    GatewayStats,
    StripeGateway,
    StripeSyncError,
    request_tag,
)
from finance_pipeline.stripe_sync.streams import STREAMS, Stream, SubList
from finance_pipeline.warehouse.db import Warehouse, json_doc

T = TypeVar("T")
# Reads of truncated sub-lists under way: (position of the parent, sub-list) -> all its items.
Remote = dict[tuple[int, SubList], Future[list[dict[str, Any]]]]
# A list page as read: (objects, has_more, reads of its truncated sub-lists).
_Page = tuple[list[dict[str, Any]], bool, Remote]

EVENT_RETENTION_SECONDS = 30 * 86400
# Bind parameters per stale-children DELETE: far below SQLite's and PostgreSQL's limits.
_STALE_PARAMS = 5000
# Re-read a little earlier than Stripe's retention so clock skew cannot open a gap.
FULL_RESYNC_AFTER_SECONDS = EVENT_RETENTION_SECONDS - 86400
# Stripe's list index can lag creation by a few minutes.
LOOKBACK_SECONDS = 600
# When a pass is cut into created-time slices, the slice being read keeps about this many pages
# (at the density of its latest page) and the rest of its range becomes a new slice.
SLICE_PAGES = 16
# Defaults of a deployed sync: 8 created-time slices per stream and 24 sub-list/refresh readers
# beside them. At 100 req/s and ~150 ms of latency, about 20 requests must be in flight at all
# times, also once only the longest streams are left. The limiter serves waiting requests in
# turn, so a stream's share of the rate is its share of the requests waiting: invoices, about
# half of all requests (~4 line pages per list page), keep their line reads waiting beside a full
# set of list-page reads (64 readers measured no better; bench/README.md, ingestion).
DEFAULT_LIST_SLICES = 8
DEFAULT_FETCH_WORKERS = 24
# Pages of a slice read ahead of the ones written (memory: about that many pages per slice).
READ_AHEAD = 2
# At most this many pages, already read, are written in one transaction (with the checkpoint as
# of the last of them) when a stream's writes lag behind its reads.
WRITE_BATCH_PAGES = 8
# Share of a typical account's synced JSON per stream, in percent (the simulator's 2,000 customers
# x 24 months; bench/README.md): a sync split over processes balances the CPU of decoding,
# encoding and writing by it. Invoices carry their lines, hence about half.
STREAM_WEIGHTS: dict[str, int] = {
    "invoices": 50,
    "events": 18,
    "charges": 15,
    "balance_transactions": 6,
    "subscriptions": 5,
    "invoice_payments": 5,
}


def _tag_flow(stream: Stream) -> None:
    """This thread's requests are `stream`'s for the limiter: while streams wait on a binding
    rate limit, each gets a share by its weight (its share of the work, so the heavy stream,
    invoices with their lines, does not end long after the others), not by its waiters."""
    request_tag.flow = stream.name
    request_tag.weight = STREAM_WEIGHTS.get(stream.name, 1)


@dataclass
class _Slice:
    """Part of a pass's `created` range (both ends inclusive, None = open), read newest first
    on its own cursor. The slices of a pass are disjoint and together cover its range."""

    gte: int | None
    lte: int | None
    # Resume after this id: the last one written (checkpointed).
    after: str | None = None
    # Request the next page after this id: the last one read (read ahead of `after`).
    reading_after: str | None = None

    def __post_init__(self) -> None:
        if self.reading_after is None:
            self.reading_after = self.after

    def as_list(self) -> list[Any]:
        return [self.gte, self.lte, self.after]


class _EventsGate:
    """Orders the mutable streams after the events stream when several sync at once.

    A mutable stream records as its events checkpoint the newest event stored when its pass
    starts, and its incremental refresh reads every event since the last checkpoint. Events are
    listed newest first, so once the events pass has committed its first page the newest event
    is stored: listing may start. The refresh waits for the whole events pass.
    """

    def __init__(self, events: tuple[Any, Any, Any] | None = None) -> None:
        # Across processes: three multiprocessing Events (listed, done, failed), see `events`.
        self.listed, self.done, self.failed = events or (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        self.error: BaseException | None = None

    def events(self) -> tuple[Any, Any, Any]:
        """What a gate in another process is opened on."""
        return self.listed, self.done, self.failed

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.failed.set()
        self.listed.set()
        self.done.set()

    def wait(self, ev: Any, workspace_id: str, stream: str) -> None:
        ev.wait()
        if self.failed.is_set():
            # The error itself is known only in the process that synced events.
            detail = f": {self.error}" if self.error is not None else " (see its error)"
            raise StripeSyncError(
                f"workspace {workspace_id}: {stream} not synced because the events stream "
                f"failed{detail}"
            )


@dataclass(frozen=True)
class _ProcessSpec:
    """What a second process needs to sync some of the streams of a `sync_many` call."""

    warehouse_url: str
    gateway: dict[str, Any]
    conn: Connection
    now: float
    page_size: int
    fetch_workers: int
    list_slices: int
    slice_pages: int
    stop_after_pages: int | None


class _FixedClock:
    """The parent's clock reading at the start of `sync_many`: every stream's pass starts then."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives a trip to another process, else a StripeSyncError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return StripeSyncError(f"{type(exc).__name__}: {exc}")


def _exit_with_parent(lifeline: Any) -> None:
    """A stream process must not outlive the sync that started it (a killed run): it stops
    once the parent's end of `lifeline` closes."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()
    os._exit(1)


def _sync_in_process(
    spec: _ProcessSpec,
    names: list[str],
    gate_events: tuple[Any, Any, Any] | None,
    out: Any,
    lifeline: Any,
    parent_end: Any,
) -> None:
    """Entry point of a stream process: sync `names` and send (results, errors, stats) back."""
    # A forked process holds a copy of the parent's end of the lifeline: close it, or the
    # lifeline never breaks.
    parent_end.close()
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    results: dict[str, StreamResult] = {}
    errors: dict[str, BaseException] = {}
    stats = GatewayStats()
    try:
        wh = Warehouse(spec.warehouse_url)
        wh.queue_writers_across_processes()
        gw = StripeGateway(**spec.gateway)
        stats = gw.stats
        sync = StripeStreamSync(
            wh,
            gw,
            spec.conn,
            page_size=spec.page_size,
            clock=_FixedClock(spec.now),
            stop_after_pages=spec.stop_after_pages,
            fetch_workers=spec.fetch_workers,
            list_slices=spec.list_slices,
            processes=1,
        )
        sync.slice_pages = spec.slice_pages
        results, errors = sync._sync_threads(
            names, None if gate_events is None else _EventsGate(gate_events)
        )
        wh.dispose()
        gw.close()
    except BaseException as exc:
        errors = {name: exc for name in names if name not in results}
    out.send((results, {n: _portable(e) for n, e in errors.items()}, stats))
    out.close()
    # No finalizers: a forked process holds copies of the parent's database connections, whose
    # clean-up would close the parent's sessions.
    os._exit(0)


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
    # Wall-clock seconds the stream took (gate waits included), and the process that synced it.
    seconds: float = 0.0
    pid: int = 0
    # Seconds of the stream's own thread by what it waited on (benchmarks): `pages` (the next
    # list page to arrive), `sublists` (a page's truncated sub-lists), `rows` (building rows),
    # `write` (the transaction: upserts and commit), `refresh` (the refresh pass).
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, key: str, since: float) -> float:
        """Add the seconds from `since` (perf_counter) to `timings[key]`; returns now."""
        now = time.perf_counter()
        self.timings[key] = round(self.timings.get(key, 0.0) + now - since, 4)
        return now

    @property
    def objects(self) -> int:
        """Objects written (listed + refreshed)."""
        return self.listed + self.refreshed


class _Fetcher:
    """Runs Stripe reads on worker threads while the caller extracts and writes.

    Results come back through futures in the order the caller asks for them, so the outcome is
    the same as reading sequentially; `future.result()` re-raises a worker's exception unchanged
    (same type, same message). `close` waits for reads still in flight, so no request of a sync
    outlives it. With `workers=0` every read runs at once in the caller's thread.
    """

    def __init__(self, workers: int) -> None:
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stripe-fetch")
            if workers > 0
            else None
        )

    @property
    def pooled(self) -> bool:
        """True when reads run on worker threads (False: in the caller's thread)."""
        return self._pool is not None

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Start `fn(*args)`; the future holds its result or its exception."""
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        fut: Future[T] = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut

    def close(self) -> None:
        """Drop reads not started yet and wait for those in flight (their results are unused)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


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
        fetch_workers: int = DEFAULT_FETCH_WORKERS,
        list_slices: int = 1,
        processes: int | None = None,
    ) -> None:
        self.wh = wh
        self.gw = gateway
        self.conn = conn
        self.page_size = page_size
        self.clock = clock
        # Test hook: simulate a run killed after N committed pages.
        self.stop_after_pages = stop_after_pages
        # Reads in flight besides the next page (sub-lists, refreshes); 0 = fully sequential.
        self.fetch_workers = fetch_workers
        # Created-time slices of one pass listed at once (1: one cursor, page after page).
        self.list_slices = max(1, list_slices)
        # Processes `sync_many` splits its streams over (the decoding, encoding and writing hold
        # the GIL, so one process uses one core); None (the default) = one per core, at most 2.
        self.processes = min(2, os.cpu_count() or 1) if processes is None else max(1, processes)
        # Pages a slice keeps before the rest of its range becomes a new slice.
        self.slice_pages = SLICE_PAGES
        # Set by sync_many while the events stream syncs beside the mutable ones.
        self._gate: _EventsGate | None = None

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
    def _row(
        self,
        obj: dict[str, Any],
        now: int,
        parent_column: str | None = None,
        parent_id: str | None = None,
    ) -> dict[str, Any]:
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
            # Encoded once here; the warehouse stores the text as it is.
            "payload": json_doc(obj),
            "synced_at": now,
        }
        if "created" in obj:
            row["created"] = obj["created"]
        row.update(EXTRACTORS[obj["object"]](obj))
        if parent_column is not None:
            row[parent_column] = parent_id
        return row

    def _complete_sublist(
        self, stream: Stream, parent: dict[str, Any], sub: SubList
    ) -> list[dict[str, Any]]:
        embedded = parent.get(sub.key) or {}
        items = list(embedded.get("data") or [])
        has_more = bool(embedded.get("has_more"))
        request_tag.name = sub.resource
        _tag_flow(stream)
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

    def _read_sublists(
        self, stream: Stream, objects: list[dict[str, Any]], fetcher: _Fetcher
    ) -> Remote:
        """Start reading the rest of every sub-list Stripe cut at 10, keyed by object position."""
        remote: Remote = {}
        for i, obj in enumerate(objects):
            if obj.get("object") != stream.object_type:
                continue
            for sub in stream.sublists:
                if (obj.get(sub.key) or {}).get("has_more"):
                    remote[(i, sub)] = fetcher.submit(self._complete_sublist, stream, obj, sub)
        return remote

    def _read_page(
        self, stream: Stream, params: dict[str, Any], fetcher: _Fetcher
    ) -> tuple[list[dict[str, Any]], bool, Remote]:
        """One list page, with the reads of its truncated sub-lists already under way."""
        request_tag.name = f"{stream.name}/list"
        _tag_flow(stream)
        page, has_more = self.gw.list_page(stream.resource, params)
        return page, has_more, self._read_sublists(stream, page, fetcher)

    def _read_object(
        self, stream: Stream, object_id: str, fetcher: _Fetcher
    ) -> tuple[dict[str, Any] | None, Remote]:
        """One object by id (None once deleted), with its truncated sub-lists under way."""
        # Same expansions as the list read, so a refreshed object keeps e.g. its discount objects.
        request_tag.name = f"{stream.name}/refresh"
        _tag_flow(stream)
        obj = self.gw.retrieve(stream.resource, object_id, stream.retrieve_params)
        return obj, ({} if obj is None else self._read_sublists(stream, [obj], fetcher))

    def _rows_for(
        self, stream: Stream, objects: list[dict[str, Any]], now: int, remote: Remote
    ) -> tuple[list[dict[str, Any]], dict[SubList, tuple[list[str], list[dict[str, Any]]]]]:
        # Rows come out in document order and the first failure in that order is the one
        # raised, as when every sub-list was read in turn.
        rows = []
        subrows: dict[SubList, tuple[list[str], list[dict[str, Any]]]] = {
            s: ([], []) for s in stream.sublists
        }
        for i, obj in enumerate(objects):
            if obj.get("object") != stream.object_type:
                continue
            rows.append(self._row(obj, now))
            for sub in stream.sublists:
                parents, children = subrows[sub]
                parents.append(obj["id"])
                fut = remote.get((i, sub))
                items = (
                    fut.result() if fut is not None else (obj.get(sub.key) or {}).get("data") or []
                )
                for child in items:
                    children.append(self._row(child, now, sub.parent_column, obj["id"]))
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
            self._delete_stale_children(db, sub, parents, children)
            written += self.wh.upsert(db, sub.table, children, key=("workspace_id", "id"))
        return written

    def _delete_stale_children(
        self,
        db: sa.Connection,
        sub: SubList,
        parents: list[str],
        children: list[dict[str, Any]],
    ) -> None:
        """Delete stored children of `parents` that are no longer on them (a removed item, a
        draft's replaced line), in one statement per batch of parents, without reading ids back."""
        tbl = self.wh.table(sub.table)
        column = sub.parent_column
        kept: dict[str, list[str]] = {}
        for child in children:
            kept.setdefault(child[column], []).append(child["id"])
        batch: list[str] = []
        keep: list[str] = []
        for i, parent in enumerate(parents):
            batch.append(parent)
            keep.extend(kept.get(parent, ()))
            if i + 1 == len(parents) or len(batch) + len(keep) >= _STALE_PARAMS:
                db.execute(
                    sa.delete(tbl).where(
                        tbl.c.workspace_id == self.conn.workspace_id,
                        tbl.c[column].in_(batch),
                        tbl.c.id.not_in(keep),
                    )
                )
                batch, keep = [], []

    # ---- sync --------------------------------------------------------------------------------
    def sync(self, stream_name: str) -> StreamResult:
        """Bring one stream up to date; resumes an unfinished pass from its checkpoint."""
        gate = self._gate if stream_name == "events" else None
        started = time.perf_counter()
        try:
            result = self._sync(stream_name)
            result.seconds = round(time.perf_counter() - started, 2)
            result.pid = os.getpid()
        except BaseException as exc:
            if gate is not None:
                gate.fail(exc)
            raise
        if gate is not None:
            gate.listed.set()
            gate.done.set()
        return result

    def sync_many(self, stream_names: Sequence[str]) -> dict[str, StreamResult]:
        """Sync several streams at once through this sync's gateway, whose limiter they share.

        Each stream commits page by page with its own checkpoint, as `sync` does. When the
        events stream is among them, the mutable streams start listing once its newest page is
        stored and refresh once it is complete (see `_EventsGate`), so they record the same
        checkpoints as when the events stream syncs first. A failed stream does not stop the
        others; once all are done the first failure (in `stream_names` order) is raised.

        With `processes` > 1 the streams are split over that many processes by their usual
        share of the work (STREAM_WEIGHTS; the events stream stays here), pacing through one
        limiter shared by a file (`TokenBucket(state_file=...)`); a gateway or warehouse that
        cannot be opened in another process (a test double, in-memory SQLite) keeps them here.
        """
        names = list(dict.fromkeys(stream_names))
        groups = self._process_groups(names)
        pacing = Path(tempfile.gettempdir()) / f"finance_pipeline-pacing-{uuid.uuid4().hex}"
        spec = self._process_spec(str(pacing)) if len(groups) > 1 else None
        if spec is None:
            groups = [names]
        # Forked when nothing else runs here (no lock can be held by another thread), so the
        # second process starts at once; otherwise spawned (imports the engine first, ~1.5 s).
        ctx = multiprocessing.get_context(
            "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
        )
        gate: _EventsGate | None = None
        if "events" in names and len(names) > 1:
            gate = _EventsGate((ctx.Event(), ctx.Event(), ctx.Event()) if spec else None)
        children = []
        try:
            for group in groups[1:]:
                recv, send = ctx.Pipe(duplex=False)
                life_recv, life_send = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_sync_in_process,
                    args=(
                        spec,
                        group,
                        gate.events() if gate else None,
                        send,
                        life_recv,
                        life_send,
                    ),
                    name="stripe-streams",
                    daemon=True,
                )
                proc.start()
                send.close()
                life_recv.close()
                children.append((group, proc, recv, life_send))
            results, errors = self._sync_threads(groups[0], gate)
            for group, proc, recv, life_send in children:
                try:
                    child_results, child_errors, stats = recv.recv()
                except EOFError:
                    proc.join()
                    child_results, stats = {}, GatewayStats()
                    child_errors = {
                        name: StripeSyncError(
                            f"workspace {self.conn.workspace_id}: the process syncing "
                            f"{', '.join(group)} exited with code {proc.exitcode}"
                        )
                        for name in group
                    }
                life_send.close()
                proc.join()
                results.update(child_results)
                errors.update(child_errors)
                self.gw.add_stats(stats)
        finally:
            for _, proc, _, life_send in children:
                life_send.close()
                proc.join(timeout=30)
            pacing.unlink(missing_ok=True)
        for name in names:
            if name in errors:
                raise errors[name]
        return {name: results[name] for name in names}

    def _process_groups(self, names: list[str]) -> list[list[str]]:
        """`names` split over up to `processes` groups of about equal weight, events in the
        first (this process's), each group in `names` order."""
        count = min(self.processes, len(names))
        if count <= 1:
            return [names]
        loads = [0] * count
        groups: list[list[str]] = [[] for _ in range(count)]
        ranked = sorted(names, key=lambda n: (n != "events", -STREAM_WEIGHTS.get(n, 1)))
        for name in ranked:
            i = 0 if name == "events" else min(range(count), key=lambda g: loads[g])
            groups[i].append(name)
            loads[i] += STREAM_WEIGHTS.get(name, 1)
        order = {name: i for i, name in enumerate(names)}
        return [sorted(g, key=order.__getitem__) for g in groups if g]

    def _process_spec(self, pacing_file: str) -> _ProcessSpec | None:
        """How another process re-opens this sync, or None when it cannot."""
        database = self.wh.url.database
        if self.wh.is_sqlite and (not database or database == ":memory:"):
            return None
        gateway = self.gw.process_spec(pacing_file) if type(self.gw) is StripeGateway else None
        if gateway is None:
            return None
        self.wh.queue_writers_across_processes()
        return _ProcessSpec(
            warehouse_url=self.wh.url.render_as_string(hide_password=False),
            gateway=gateway,
            conn=self.conn,
            now=self.clock(),
            page_size=self.page_size,
            fetch_workers=self.fetch_workers,
            list_slices=self.list_slices,
            slice_pages=self.slice_pages,
            stop_after_pages=self.stop_after_pages,
        )

    def _sync_threads(
        self, names: list[str], gate: _EventsGate | None
    ) -> tuple[dict[str, StreamResult], dict[str, BaseException]]:
        """Sync `names` at once on threads of this process: (results, errors) by stream."""
        self._gate = gate
        results: dict[str, StreamResult] = {}
        errors: dict[str, BaseException] = {}
        try:
            with ThreadPoolExecutor(
                max_workers=max(1, len(names)), thread_name_prefix="stripe-stream"
            ) as pool:
                futures = {name: pool.submit(self.sync, name) for name in names}
                for name, fut in futures.items():
                    try:
                        results[name] = fut.result()
                    except BaseException as exc:
                        errors[name] = exc
        finally:
            self._gate = None
        return results, errors

    def _list_params(self, stream: Stream, sl: _Slice) -> dict[str, Any]:
        """A list request for the next page of `sl` (no `created` filter on an open range)."""
        params: dict[str, Any] = {"limit": self.page_size, **stream.list_params}
        created = {k: v for k, v in (("gte", sl.gte), ("lte", sl.lte)) if v is not None}
        if created:
            params["created"] = created
        if sl.reading_after:
            params["starting_after"] = sl.reading_after
        return params

    def _split(self, sl: _Slice, page: list[dict[str, Any]]) -> _Slice | None:
        """Cut the older part of `sl`'s remaining range off into a new slice, or None when
        less than about `slice_pages` pages (at this page's density) remain."""
        newest, oldest = page[0].get("created"), page[-1].get("created")
        if not isinstance(newest, int) or not isinstance(oldest, int):
            return None
        cut = oldest - self.slice_pages * max(1, newest - oldest)
        if sl.gte is not None and cut <= sl.gte:
            return None
        older = _Slice(sl.gte, cut - 1)
        # Objects created at `cut` or later stay with `sl`, whose cursor object is among them.
        sl.gte = cut
        return older

    def _sync(self, stream_name: str) -> StreamResult:
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
            pass_max = cursor.get("pass_max")
            full = bool(cursor.get("full"))
            if "slices" in cursor:
                slices = [_Slice(*s) for s in cursor["slices"]]
            else:
                slices = [_Slice(lower, None, cursor.get("starting_after"))]
        else:
            full = high_water is None or (stream.mutable and stale)
            mode = "full" if full else "incremental"
            lower = None if full else max(0, int(high_water) - LOOKBACK_SECONDS)
            pass_max = high_water
            slices = [_Slice(lower, None)]
        # One cursor keeps the checkpoint format of a page-after-page read.
        sliced = self.list_slices > 1 or len(slices) > 1 or "slices" in (cursor or {})
        result = StreamResult(self.conn.workspace_id, stream.name, mode)
        if stale and not cursor:
            result.notes.append(
                "checkpoint older than Stripe's 30-day event retention: full re-read"
            )
        if stream.mutable and self._gate is not None:
            t = time.perf_counter()
            self._gate.wait(self._gate.listed, self.conn.workspace_id, stream.name)
            result.timed("gate", t)
        # Events seen before the pass started are the ones the refresh below must cover.
        events_hw = self._events_high_water() if stream.mutable else None

        def cursor_json() -> dict[str, Any] | None:
            if not slices:
                return None
            if not sliced:
                return {
                    "lower": lower,
                    "starting_after": slices[0].after,
                    "pass_max": pass_max,
                    "full": full,
                }
            return {
                "lower": lower,
                "pass_max": pass_max,
                "full": full,
                "slices": [s.as_list() for s in slices],
            }

        # List pages on one pool, as many as the slices may have in flight; sub-list and refresh
        # reads on their own (`fetch_workers`). The limiter serves whoever waits first, so a
        # stream's share of the rate is its share of the requests waiting: a stream with
        # sub-lists (invoices: ~4 line pages per list page, half of all requests) keeps its
        # sub-list reads in flight beside a full set of page reads instead of taking threads
        # from them, and its list pages never queue behind its sub-lists.
        pooled = self.fetch_workers > 0
        fetcher = _Fetcher(self.list_slices * (READ_AHEAD + 1) if pooled else 0)
        reads = _Fetcher(self.fetch_workers if pooled else 0)
        # A slice's next page is requested as soon as its previous page arrives (from the
        # fetcher's thread, when it has one), up to READ_AHEAD pages ahead of the pages written,
        # so a stream's pages are not held up while its thread writes. Pages arrive on `arrived`
        # in each slice's page order (queued under `lock`, before the next page is requested).
        # Re-entrant: a read that is already done runs its callback at once, lock held.
        lock = threading.RLock()
        arrived: queue.SimpleQueue[tuple[_Slice, Future[_Page]]] = queue.SimpleQueue()
        chained = fetcher.pooled
        unconsumed: dict[int, int] = {}  # id(slice) -> its pages read or reading, not written
        stalled: set[int] = set()  # slices waiting for their written pages to catch up
        closed = False

        def read(sl: _Slice) -> None:
            # Caller holds `lock`.
            if closed:
                return
            unconsumed[id(sl)] = unconsumed.get(id(sl), 0) + 1
            fut = fetcher.submit(self._read_page, stream, self._list_params(stream, sl), reads)
            fut.add_done_callback(lambda f, sl=sl: on_read(sl, f))

        def advance(sl: _Slice, page: list[dict[str, Any]], has_more: bool) -> None:
            # Caller holds `lock`: cut a new slice off and request this slice's next page.
            if not (page and has_more):
                return
            if len(slices) < self.list_slices:
                older = self._split(sl, page)
                if older is not None:
                    slices.append(older)
                    read(older)
            sl.reading_after = page[-1]["id"]
            if unconsumed[id(sl)] <= READ_AHEAD:
                read(sl)
            else:
                stalled.add(id(sl))

        def on_read(sl: _Slice, fut: Future[_Page]) -> None:
            with lock:
                arrived.put((sl, fut))
                if chained and not fut.cancelled() and fut.exception() is None:
                    page, has_more, _ = fut.result()
                    advance(sl, page, has_more)

        try:
            with lock:
                for sl in list(slices):
                    read(sl)
            # A page that arrived failed while others were being batched: raised on its turn.
            held: tuple[_Slice, Future[_Page]] | None = None
            while True:
                with lock:
                    if not any(unconsumed.values()):
                        break
                t = time.perf_counter()
                if held is not None:
                    batch, held = [held], None
                else:
                    batch = [arrived.get()]
                # Pages that arrived while the last transaction was written go into this one
                # too: a stream whose writes lag behind its reads (invoices with their lines)
                # commits once per batch instead of once per page. The test hook's count of
                # committed pages stays exact.
                most = WRITE_BATCH_PAGES
                if self.stop_after_pages is not None:
                    most = max(1, min(most, self.stop_after_pages - result.pages))
                while len(batch) < most and batch[-1][1].exception() is None:
                    try:
                        batch.append(arrived.get_nowait())
                    except queue.Empty:
                        break
                if len(batch) > 1 and batch[-1][1].exception() is not None:
                    held = batch.pop()
                t = result.timed("pages", t)
                # Per page, in arrival order (each slice's pages in order): its objects and
                # sub-lists, and the checkpoint as of it (every slice's position after it).
                done: list[tuple[list[dict[str, Any]], Remote, dict[str, Any] | None]] = []
                for sl, fut in batch:
                    page, has_more, remote = fut.result()
                    if not page:
                        has_more = False
                    with lock:
                        unconsumed[id(sl)] -= 1
                        if not chained:
                            advance(sl, page, has_more)
                        elif id(sl) in stalled and unconsumed[id(sl)] <= READ_AHEAD:
                            stalled.discard(id(sl))
                            read(sl)
                        if has_more:
                            # Written with this page: the slice resumes after its last id.
                            sl.after = page[-1]["id"]
                        else:
                            slices.remove(sl)
                        # The checkpoint written with this page must carry its newest object,
                        # or a pass resumed after it would end on a lower high-water mark.
                        if page:
                            page_max = max(int(o.get("created") or 0) for o in page)
                            pass_max = page_max if pass_max is None else max(pass_max, page_max)
                        done.append((page, remote, cursor_json()))
                rows: list[dict[str, Any]] = []
                subrows: dict[SubList, tuple[list[str], list[dict[str, Any]]]] = {
                    s: ([], []) for s in stream.sublists
                }
                written = 0
                failure: BaseException | None = None
                for page, remote, _ in done:
                    for f in remote.values():
                        f.exception()
                    t = result.timed("sublists", t)
                    try:
                        page_rows, page_subrows = self._rows_for(stream, page, now, remote)
                    except BaseException as exc:
                        # The pages before the failing one are committed, as page by page.
                        failure = exc
                        break
                    t = result.timed("rows", t)
                    rows += page_rows
                    for sub, (parents, children) in page_subrows.items():
                        subrows[sub][0].extend(parents)
                        subrows[sub][1].extend(children)
                    written += 1
                if written:
                    with self.wh.begin() as db:
                        result.sublist_rows += self._write(db, stream, rows, subrows)
                        # The checkpoint committed with the pages' rows is every slice's
                        # position after the last of them.
                        self._save_state(
                            db,
                            stream.name,
                            cursor_json=done[written - 1][2],
                            last_attempt_at=now,
                            status="running",
                        )
                    result.timed("write", t)
                    result.timings["commits"] = result.timings.get("commits", 0) + 1
                    if stream.name == "events" and self._gate is not None:
                        self._gate.listed.set()
                    result.listed += len(rows)
                    result.pages += written
                if failure is not None:
                    raise failure
                if (
                    self.stop_after_pages is not None
                    and result.pages >= self.stop_after_pages
                    and slices
                ):
                    raise KeyboardInterrupt("stopped after page (test hook)")

            if stream.mutable:
                t = time.perf_counter()
                if self._gate is not None:
                    self._gate.wait(self._gate.done, self.conn.workspace_id, stream.name)
                    t = result.timed("gate", t)
                result.refreshed = self._refresh(stream, state, full, now, result, reads)
                result.timed("refresh", t)
        finally:
            with lock:
                closed = True
            fetcher.close()
            reads.close()

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
        self,
        stream: Stream,
        state: dict[str, Any],
        full: bool,
        now: int,
        result: StreamResult,
        fetcher: _Fetcher,
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
        remote: Remote = {}
        # A bounded window of retrieves in flight, consumed in id order.
        todo = iter(sorted(set(ids)))
        window: deque[tuple[str, Future[tuple[dict[str, Any] | None, Remote]]]] = deque()
        depth = max(1, 2 * self.fetch_workers)
        while True:
            while len(window) < depth:
                object_id = next(todo, None)
                if object_id is None:
                    break
                window.append(
                    (object_id, fetcher.submit(self._read_object, stream, object_id, fetcher))
                )
            if not window:
                break
            object_id, fut = window.popleft()
            obj, subs = fut.result()
            if obj is None:
                result.notes.append(f"{object_id} no longer exists in Stripe; kept as last seen")
                continue
            remote.update({(len(batch), sub): f for (_, sub), f in subs.items()})
            batch.append(obj)
            if len(batch) >= 100:
                refreshed += self._write_batch(stream, batch, now, remote)
                batch, remote = [], {}
        if batch:
            refreshed += self._write_batch(stream, batch, now, remote)
        return refreshed

    def _write_batch(
        self, stream: Stream, objects: list[dict[str, Any]], now: int, remote: Remote
    ) -> int:
        rows, subrows = self._rows_for(stream, objects, now, remote)
        with self.wh.begin() as db:
            self._write(db, stream, rows, subrows)
        return len(rows)

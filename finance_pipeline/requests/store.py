"""Pipeline requests (app.pipeline_requests): a refresh of the marts over a range of days, or a
Stripe sync of a workspace, asked for by the API or the CLI and picked up by the pipeline.

Plain functions on a Warehouse (no Dagster here). A request goes queued -> running (claimed for
one run; `claim` is atomic, so two claimers never both run it) -> succeeded | failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from finance_pipeline.partitions import HISTORY_START, last_daily_partition, restatement_window
from finance_pipeline.requests.results import stripe_object_count, sync_result
from finance_pipeline.tenancy import new_id
from finance_pipeline.warehouse.db import Warehouse

log = logging.getLogger(__name__)

KINDS = ("refresh", "stripe_sync")
STATUSES = ("queued", "running", "succeeded", "failed")
FINAL = ("succeeded", "failed")
# Job each kind runs: refreshes rebuild the marts from what is already in raw; a sync first ingests
# Stripe, exactly like the daily schedule (definitions.py).
JOB_OF_KIND = {"refresh": "requested_refresh", "stripe_sync": "daily_refresh"}
# Requests one run serves at most (the run's tag lists their ids); the rest wait for the next one.
MAX_REQUESTS_PER_RUN = 200


class PipelineRequestError(ValueError):
    """A request the pipeline cannot take; `field` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class WorkspaceNotFound(PipelineRequestError):
    """The request names a workspace that does not exist."""


def _day(field: str, value: date | str) -> date:
    if isinstance(value, datetime):
        raise PipelineRequestError(field, f"must be a day (YYYY-MM-DD), not a time: {value}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise PipelineRequestError(field, f"must be a day YYYY-MM-DD, got {value!r}") from None


def _require_workspace(wh: Warehouse, workspace_id: str) -> None:
    if not wh.rows("SELECT id FROM app.workspaces WHERE id = :w", w=workspace_id):
        raise WorkspaceNotFound("workspace_id", f"no workspace {workspace_id!r}")


def _reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise PipelineRequestError("reason", "say why the request is made (non-empty text)")
    return reason.strip()


def refresh_range(
    first_day: date | str, last_day: date | str, now: datetime | None = None
) -> tuple[date, date, str | None]:
    """The validated days of a refresh, and a note when last_day was clamped to yesterday.

    Daily partitions run from HISTORY_START to yesterday (UTC): today's partition exists only once
    the day has ended, so a range ending today (or tomorrow: a local day east of UTC) is clamped
    to yesterday; anything later is refused.
    """
    first, last = _day("first_day", first_day), _day("last_day", last_day)
    start, yesterday = date.fromisoformat(HISTORY_START), last_daily_partition(now)
    if first > last:
        raise PipelineRequestError("first_day", f"{first} is after last_day {last}")
    if first < start:
        raise PipelineRequestError("first_day", f"{first} is before the history start {start}")
    if first > yesterday:
        raise PipelineRequestError(
            "first_day",
            f"{first} has no partition yet: the latest day a refresh can cover is {yesterday} "
            "(yesterday, UTC)",
        )
    if last > yesterday + timedelta(days=2):
        raise PipelineRequestError("last_day", f"{last} is in the future")
    note = None
    if last > yesterday:
        note = f"last_day {last} clamped to {yesterday}: its partition does not exist yet"
        last = yesterday
    return first, last, note


def _insert(wh: Warehouse, row: dict[str, Any], db: Connection | None = None) -> None:
    if db is None:
        with wh.begin() as own:
            _insert(wh, row, own)
        return
    db.execute(
        wh.text(
            f"INSERT INTO app.pipeline_requests ({', '.join(row)})"
            f" VALUES ({', '.join(':' + k for k in row)})"
        ),
        row,
    )


def _new_row(kind: str, workspace_id: str, reason: str, requested_by: str | None) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": new_id("refresh" if kind == "refresh" else "sync"),
        "kind": kind,
        "workspace_id": workspace_id,
        "first_day": None,
        "last_day": None,
        "reason": reason,
        "requested_by": requested_by,
        "status": "queued",
        "created_at": now,
        "updated_at": now,
    }


def request_refresh(
    wh: Warehouse,
    workspace_id: str,
    first_day: date | str,
    last_day: date | str,
    *,
    reason: str,
    requested_by: str | None = None,
    now: datetime | None = None,
    db: Connection | None = None,
) -> str:
    """Queue a refresh of the core tables and daily marts for first_day..last_day (local days,
    inclusive); returns its id (`refresh_...`). A clamped last_day is noted in the reason.
    Given `db`, the request is inserted in that transaction (it commits with the writes that
    need the refresh, or not at all)."""
    text = _reason(reason)
    first, last, note = refresh_range(first_day, last_day, now)
    _require_workspace(wh, workspace_id)
    row = _new_row("refresh", workspace_id, f"{text} ({note})" if note else text, requested_by)
    row.update(first_day=first, last_day=last)
    _insert(wh, row, db)
    return row["id"]


def request_sync(
    wh: Warehouse, workspace_id: str, *, reason: str, requested_by: str | None = None
) -> str:
    """Queue a Stripe sync of the workspace, followed by the daily marts' trailing window; returns
    its id (`sync_...`)."""
    text = _reason(reason)
    _require_workspace(wh, workspace_id)
    if not wh.rows(
        "SELECT workspace_id FROM app.stripe_connections"
        " WHERE workspace_id = :w AND status = 'active'",
        w=workspace_id,
    ):
        raise PipelineRequestError(
            "workspace_id", f"workspace {workspace_id!r} has no active Stripe connection to sync"
        )
    row = _new_row("stripe_sync", workspace_id, text, requested_by)
    _insert(wh, row)
    return row["id"]


def get_request(wh: Warehouse, request_id: str) -> dict[str, Any] | None:
    """The request row, or None."""
    rows = wh.rows("SELECT * FROM app.pipeline_requests WHERE id = :i", i=request_id)
    return rows[0] if rows else None


def pending_requests(wh: Warehouse, workspace_id: str | None = None) -> list[dict[str, Any]]:
    """Requests queued or running (all workspaces, or one), oldest first."""
    where = "status IN ('queued', 'running')"
    if workspace_id is not None:
        where += " AND workspace_id = :w"
    return wh.rows(
        f"SELECT * FROM app.pipeline_requests WHERE {where} ORDER BY created_at, id",
        w=workspace_id,
    )


def list_requests(
    wh: Warehouse, workspace_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest requests (all workspaces, or one), newest first."""
    where = "WHERE workspace_id = :w" if workspace_id is not None else ""
    return wh.rows(
        f"SELECT * FROM app.pipeline_requests {where} ORDER BY created_at DESC, id DESC LIMIT :n",
        w=workspace_id,
        n=limit,
    )


def claim(wh: Warehouse, request_ids: Sequence[str], *, run_id: str | None = None) -> list[str]:
    """Mark queued requests running (for `run_id` when already known); returns the ids this
    caller won. Each UPDATE only matches a still-queued row, so of two claimers one gets rowcount
    1 and the other 0: a request is never run twice."""
    now = int(time.time())
    won = []
    with wh.begin() as db:
        for request_id in request_ids:
            result = db.execute(
                wh.text(
                    "UPDATE app.pipeline_requests SET status = 'running', run_id = :r,"
                    " started_at = :t, updated_at = :t WHERE id = :i AND status = 'queued'"
                ),
                {"r": run_id, "t": now, "i": request_id},
            )
            if result.rowcount == 1:
                won.append(request_id)
                _stamp_stripe_baseline(db, wh, request_id)
    return won


def _stamp_stripe_baseline(db: Any, wh: Warehouse, request_id: str) -> None:
    """For a Stripe sync just claimed, the workspace's object count now (what the finish's
    `inserted` is measured from, `results.sync_result`)."""
    row = (
        db.execute(
            wh.text("SELECT kind, workspace_id FROM app.pipeline_requests WHERE id = :i"),
            {"i": request_id},
        )
        .mappings()
        .one()
    )
    if row["kind"] != "stripe_sync":
        return
    db.execute(
        wh.text("UPDATE app.pipeline_requests SET stripe_objects_at_claim = :n WHERE id = :i"),
        {"n": stripe_object_count(db, wh, row["workspace_id"]), "i": request_id},
    )


def attach_run(wh: Warehouse, request_ids: Sequence[str], run_id: str) -> None:
    """Record the run serving running requests (once it exists, or its automatic retry)."""
    with wh.begin() as db:
        for request_id in request_ids:
            db.execute(
                wh.text(
                    "UPDATE app.pipeline_requests SET run_id = :r, updated_at = :t"
                    " WHERE id = :i AND status = 'running' AND (run_id IS NULL OR run_id <> :r)"
                ),
                {"r": run_id, "t": int(time.time()), "i": request_id},
            )


def finish(
    wh: Warehouse,
    request_ids: Sequence[str],
    status: str,
    *,
    run_id: str | None = None,
    error: str | None = None,
    duration_ms: int | None = None,
) -> list[str]:
    """Record the outcome of requests still queued or running; returns the ids it changed (a
    request already finished keeps its first outcome). A succeeded Stripe sync also records what
    it did (result_json: the revenue-sync counters, `results.sync_result`); `duration_ms` is the
    wall time of the run serving it, when the runner measured it."""
    if status not in FINAL:
        raise PipelineRequestError("status", f"must be one of {', '.join(FINAL)}, not {status!r}")
    now = int(time.time())
    results: dict[str, str | None] = {}
    for request_id in request_ids:
        result = None
        if status == "succeeded":
            row = get_request(wh, request_id)
            if row is not None and row["status"] in ("queued", "running"):
                try:
                    result = sync_result(wh, row, finished_at=now, duration_ms=duration_ms)
                except Exception:
                    # The counters describe the sync; failing to count must not leave a synced
                    # request running: it succeeds without them (the answer's counters are null).
                    log.exception("counting what sync %s did failed", request_id)
        results[request_id] = None if result is None else json.dumps(result, sort_keys=True)
    done = []
    with wh.begin() as db:
        for request_id in request_ids:
            result = db.execute(
                wh.text(
                    "UPDATE app.pipeline_requests SET status = :s, run_id = COALESCE(:r, run_id),"
                    " error = :e, result_json = :j, finished_at = :t, updated_at = :t"
                    " WHERE id = :i AND status IN ('queued', 'running')"
                ),
                {
                    "s": status,
                    "r": run_id,
                    "e": error,
                    "j": results[request_id],
                    "t": now,
                    "i": request_id,
                },
            )
            if result.rowcount == 1:
                done.append(request_id)
    return done


@dataclass(frozen=True)
class Batch:
    """Requests one run serves: every queued refresh (the marts are built per day for every
    workspace, so one run over the union of their days serves them all), or every queued sync."""

    kind: str
    request_ids: tuple[str, ...]
    first_day: date
    last_day: date

    @property
    def job_name(self) -> str:
        """The Dagster job that serves the batch."""
        return JOB_OF_KIND[self.kind]

    @property
    def run_key(self) -> str:
        """Stable for the same set of requests, whatever their order (bounded length)."""
        digest = hashlib.sha256(",".join(sorted(self.request_ids)).encode()).hexdigest()[:20]
        return f"pipeline_requests:{self.kind}:{digest}"


def plan_batches(requests: Sequence[dict[str, Any]], now: datetime | None = None) -> list[Batch]:
    """At most one refresh batch (days min(first)..max(last), clamped to yesterday) and one sync
    batch (the trailing restatement window ending yesterday, like the daily schedule)."""
    yesterday = last_daily_partition(now or datetime.now(UTC))
    out = []
    refresh = [r for r in requests if r["kind"] == "refresh"][:MAX_REQUESTS_PER_RUN]
    if refresh:
        first = min(r["first_day"] for r in refresh)
        last = min(max(r["last_day"] for r in refresh), yesterday)
        ids = tuple(sorted(r["id"] for r in refresh))
        out.append(Batch("refresh", ids, min(first, last), last))
    sync = [r for r in requests if r["kind"] == "stripe_sync"][:MAX_REQUESTS_PER_RUN]
    if sync:
        first, last = restatement_window(yesterday)
        out.append(Batch("stripe_sync", tuple(sorted(r["id"] for r in sync)), first, last))
    return out

"""Reads see writes: an ingest requests a refresh of the days it changed, and reads of that
workspace's marts wait (bounded) for pending refreshes before answering (docs/api.md).

The refresh itself is the pipeline's (`finance_pipeline.requests`): the daemon's sensor picks it up,
or, in the embedded default (FP_REQUESTS_INLINE), this process runs it in a background thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fastapi import Response
from sqlalchemy.engine import Connection

from finance_pipeline.api.context import ApiContext
from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.inline_runs import start_inline
from finance_pipeline.lib.cfo_daily import as_date
from finance_pipeline.lib.cfo_metrics import WINDOW_DAYS
from finance_pipeline.partitions import HISTORY_START, last_daily_partition
from finance_pipeline.requests.store import pending_requests, request_refresh

log = logging.getLogger(__name__)

# A row dated d changes the 30-day metrics of d..d+29 and, through the "vs the prior 30 days"
# alerts (docs/metrics.md §14), the alerts of d..d+59: the refresh covers all of them.
AFFECTED_DAYS_AFTER = 2 * WINDOW_DAYS - 1
_POLL_SECONDS = 0.25


def affected_range(days: Iterable[date], today: date | None = None) -> tuple[date, date] | None:
    """The days whose marts a write dated `days` changes, within the partitions that exist
    (HISTORY_START..yesterday); None when none exists yet (today's rows wait for the daily run)."""
    days = sorted(days)
    if not days:
        return None
    yesterday = last_daily_partition() if today is None else today - timedelta(days=1)
    first = max(days[0], date.fromisoformat(HISTORY_START))
    last = min(days[-1] + timedelta(days=AFFECTED_DAYS_AFTER), yesterday)
    return (first, last) if first <= last else None


def run_inline(ctx: ApiContext) -> threading.Thread | None:
    """Embedded default: run every queued request in a background thread of this process, in
    one run per kind like the sensor. No-op with the daemon."""
    return start_inline(ctx)


def queue_refresh_after_ingest(
    ctx: ApiContext,
    db: Connection,
    workspace_id: str,
    days: Iterable[date],
    *,
    reason: str,
    requested_by: str,
) -> str | None:
    """Queue, in the ingest's own transaction `db`, a refresh of the days it changed; returns
    the request id, or None when no existing partition is affected. The caller runs it inline
    (`run_inline`) once the transaction has committed.

    One transaction for the rows and their refresh: were the request inserted after the rows
    committed, a database lost in between would leave rows the marts never pick up, under a 503
    that told the client nothing was written."""
    span = affected_range(days)
    if span is None:
        return None
    first, last = _clamped(*span)
    if first > last:
        return None
    return request_refresh(
        ctx.wh, workspace_id, first, last, reason=reason, requested_by=requested_by, db=db
    )


def _clamped(first: date, last: date) -> tuple[date, date]:
    """first..last within the partitions that exist (empty when first > last)."""
    return max(first, date.fromisoformat(HISTORY_START)), min(last, last_daily_partition())


def request_refresh_days(
    ctx: ApiContext, workspace_id: str, first: date, last: date, *, reason: str, requested_by: str
) -> str | None:
    """Queue a refresh of first..last, clamped to the partitions that exist, and run it inline in
    the embedded default; None when nothing is left to refresh."""
    first, last = _clamped(first, last)
    if first > last:
        return None
    rid = request_refresh(
        ctx.wh, workspace_id, first, last, reason=reason, requested_by=requested_by
    )
    run_inline(ctx)
    return rid


def request_refresh_of_computed_days(
    ctx: ApiContext, workspace_id: str, *, reason: str, requested_by: str
) -> str | None:
    """Queue a refresh of every day the workspace's CFO metrics are computed for: a change of a
    workspace setting they use (cash on hand: runway, docs/metrics.md §9) restates them all."""
    [span] = ctx.wh.rows(
        "SELECT MIN(day) AS first, MAX(day) AS last FROM mart.cfo_metrics_daily"
        " WHERE workspace_id = :w",
        w=workspace_id,
    )
    if span["first"] is None:
        return None
    return request_refresh_days(
        ctx,
        workspace_id,
        as_date(span["first"]),
        as_date(span["last"]),
        reason=reason,
        requested_by=requested_by,
    )


@dataclass
class Freshness:
    """What a read waited for: the requests still pending after the bound (empty: fresh)."""

    pending: list[dict[str, Any]] = field(default_factory=list)
    waited_seconds: float = 0.0

    @property
    def warnings(self) -> list[dict[str, str]]:
        """The `refresh_pending` warning when the marts may not include recent writes yet."""
        if not self.pending:
            return []
        ids = ", ".join(r["id"] for r in self.pending)
        return [
            {
                "code": "refresh_pending",
                "message": f"A refresh of this workspace is still {self.pending[0]['status']} "
                f"({ids}); figures may not include the latest ingested data yet.",
            }
        ]

    def headers(self, response: Response, data_as_of: date | None) -> None:
        """Set X-Data-As-Of (the mart day answered) and X-Refresh-Pending (request ids)."""
        if data_as_of is not None:
            response.headers["X-Data-As-Of"] = data_as_of.isoformat()
        if self.pending:
            response.headers["X-Refresh-Pending"] = ",".join(r["id"] for r in self.pending)


def wait_for_refresh(
    ctx: ApiContext,
    workspace_id: str,
    timeout: float | None = None,
    *,
    request_ids: Collection[str] | None = None,
) -> Freshness:
    """Wait until no refresh or sync of the workspace is queued or running (only `request_ids`,
    when given), at most `timeout` (FP_API_READ_WAIT_SECONDS); those still pending are reported."""
    bound = ctx.settings.api_read_wait_seconds if timeout is None else timeout
    start = time.monotonic()

    def still_pending() -> list[dict[str, Any]]:
        rows = pending_requests(ctx.wh, workspace_id)
        return rows if request_ids is None else [r for r in rows if r["id"] in request_ids]

    pending = still_pending()
    if pending and any(r["status"] == "queued" for r in pending):
        # A queued request nobody runs (the process that queued it restarted): in the embedded
        # default, run it; the claim keeps a runner already on it from running it twice.
        run_inline(ctx)
    while pending and time.monotonic() - start < bound:
        time.sleep(min(_POLL_SECONDS, max(0.0, bound - (time.monotonic() - start))))
        pending = still_pending()
    return Freshness(pending, time.monotonic() - start)


def failed_sync_error(ctx: ApiContext, row: dict[str, Any], *, stripe_code: str) -> ApiError:
    """The error of a failed sync request: 502 `stripe_code` when Stripe refused or failed during
    this sync (a stream of the workspace recorded an error since the claim), else 500
    `sync_failed` (the pipeline failed); the message names the request and its error."""
    since = int(row["started_at"] or row["created_at"])
    stripe_errors = ctx.wh.rows(
        "SELECT stream FROM raw.sync_state WHERE workspace_id = :w"
        " AND status = 'error' AND last_attempt_at >= :t ORDER BY stream",
        w=row["workspace_id"],
        t=since,
    )
    what = f"The Stripe sync {row['id']} failed: {row['error'] or 'no reason recorded'}"
    if stripe_errors:
        return ApiError(502, stripe_code, what)
    return ApiError(500, "sync_failed", what)

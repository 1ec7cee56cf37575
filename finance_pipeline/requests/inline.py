"""Running pipeline requests in this process, for a deployment without a Dagster daemon (the API's
embedded default, FP_REQUESTS_INLINE): the same jobs as the sensor launches, recorded in the
Dagster instance so the UI shows them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import dagster as dg

from finance_pipeline.requests.sensors import failure_message, run_tags
from finance_pipeline.requests.store import (
    claim,
    finish,
    get_request,
    pending_requests,
    plan_batches,
)
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.warehouse.db import Warehouse

# One inline run at a time per process: runs over the same marts would only wait on each other's
# window replacements. Other processes are kept out by the claim.
_INLINE_LOCK = threading.Lock()


def run_pending_inline(
    instance: dg.DagsterInstance,
    wh: Warehouse,
    request_ids: Sequence[str] | None = None,
    *,
    resources: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Claim the given queued requests (None: every queued one) and run them here, one run per
    batch like the sensor; returns their rows afterwards. Requests another runner already claimed
    are left to it. Blocks while another inline run of this process is going."""
    from finance_pipeline.definitions import defs  # the definitions import this package

    with _INLINE_LOCK:
        if request_ids is None:
            rows = [r for r in pending_requests(wh) if r["status"] == "queued"]
        else:
            rows = [r for r in (get_request(wh, i) for i in request_ids) if r is not None]
        queued = [r for r in rows if r["status"] == "queued"]
        for planned in plan_batches(queued, now):
            run_id = str(uuid.uuid4())  # a Dagster run id, known before the run exists
            won = set(claim(wh, planned.request_ids, run_id=run_id))
            # Only the requests won: another runner may have taken some meanwhile.
            batches = plan_batches([r for r in queued if r["id"] in won], now)
            if not batches:
                continue
            [batch] = batches
            # The run's wall time: a succeeded sync records it as durationMs (results.py).
            started = time.monotonic()
            try:
                result = defs.resolve_job_def(batch.job_name).execute_in_process(
                    instance=instance,
                    run_id=run_id,
                    tags={**run_tags(batch), "finance_pipeline/launched_by": "inline"},
                    resources=resources
                    or {"warehouse": WarehouseResource(url=wh.url.render_as_string(False))},
                    raise_on_error=False,
                )
            except Exception as exc:  # the run could not even start: the requests must not hang
                finish(wh, batch.request_ids, "failed", run_id=run_id, error=f"{exc}"[:2000])
                continue
            if result.success:
                elapsed_ms = int((time.monotonic() - started) * 1000)
                finish(wh, batch.request_ids, "succeeded", run_id=run_id, duration_ms=elapsed_ms)
            else:
                error = failure_message(result.all_events, run_id)
                finish(wh, batch.request_ids, "failed", run_id=run_id, error=error)
        ids = [r["id"] for r in rows]
        return [r for r in (get_request(wh, i) for i in ids) if r is not None]

"""What a succeeded Stripe sync request did, as the margins API's revenue-sync counters
(`lib.sync_counters`), stored on the request as result_json by `store.finish` (docs/requests.md).

The run serving a sync request rewrites every invoice it lists or refreshes with `synced_at` = the
invoices stream's start (Unix seconds, this machine's clock), which comes after the claim
(`started_at`): the invoices the sync wrote are the workspace's rows with synced_at from the claim
to the finish. A run serving several requests counts each one's own workspace only.
"""

from __future__ import annotations

import time
from typing import Any

from finance_pipeline.lib.ledger import fx_lookup
from finance_pipeline.lib.sync_counters import sync_counters
from finance_pipeline.tenancy import get_workspace
from finance_pipeline.warehouse.db import Warehouse


def sync_result(
    wh: Warehouse,
    request: dict[str, Any],
    *,
    finished_at: int | None = None,
    duration_ms: int | None = None,
) -> dict[str, Any] | None:
    """The revenue-sync counters of a Stripe sync request whose run just succeeded (None for a
    refresh, or when its workspace is gone). `duration_ms` is the run's wall time as the runner
    measured it; without it, the claim-to-finish time in whole seconds."""
    if request["kind"] != "stripe_sync":
        return None
    ws = get_workspace(wh, request["workspace_id"])
    if ws is None:
        return None
    end = int(time.time()) if finished_at is None else finished_at
    start = int(request["started_at"] or request["created_at"])
    invoices = wh.rows(
        "SELECT id, customer, currency, paid_at, created FROM raw.stripe_invoices"
        " WHERE workspace_id = :w AND synced_at >= :a AND synced_at <= :b ORDER BY id",
        w=ws.id,
        a=start,
        b=end,
    )
    rate = fx_lookup(
        wh.rows(
            "SELECT base, currency, date, rate FROM core.fx_rates WHERE base = :b",
            b=ws.reporting_currency,
        ),
        ws.reporting_currency,
    )
    # The sync job does not run the auto-matcher (the monthly margins job does): proposals stored
    # while it ran are counted, which is 0 unless a margins run overlapped the sync.
    auto = int(
        wh.scalar(
            "SELECT COUNT(*) FROM app.customer_mappings WHERE workspace_id = :w"
            " AND match_type = 'auto' AND created_at >= :a AND created_at <= :b",
            w=ws.id,
            a=start,
            b=end,
        )
        or 0
    )
    if duration_ms is None:
        duration_ms = max(0, end - start) * 1000
    counters = sync_counters(
        invoices, rate, ws.time_zone, auto_matches_created=auto, duration_ms=duration_ms
    )
    return counters.as_api()

"""What a succeeded Stripe sync request did, as the margins API's revenue-sync counters
(`lib.sync_counters`), stored on the request as result_json by `store.finish` (docs/requests.md).

The run serving a sync request rewrites every invoice it lists or refreshes with `synced_at` = the
invoices stream's start (Unix seconds, this machine's clock), which comes after the claim
(`started_at`): the invoices the sync wrote are the workspace's rows with synced_at from the claim
to the finish. A run serving several requests counts each one's own workspace only.

The v1 Stripe ingest's `inserted` and `duplicates` (seed 004) count the objects of its four kinds
(invoices, charges, refunds, subscriptions): inserted is the workspace's count at the finish less
its count at the claim (raw rows are never deleted), duplicates the objects the sync wrote
(synced_at from the claim to the finish) less those inserted.
"""

from __future__ import annotations

import time
from typing import Any

from finance_pipeline.lib.ledger import fx_lookup
from finance_pipeline.lib.sync_counters import sync_counters
from finance_pipeline.tenancy import get_workspace
from finance_pipeline.warehouse.db import Warehouse

# The Stripe objects the v1 ingest counts (seed 004: paid invoices, standalone charges, succeeded
# refunds and subscription metadata are what it pulls; every stored one of these kinds counts).
INGEST_OBJECT_TABLES = (
    "raw.stripe_invoices",
    "raw.stripe_charges",
    "raw.stripe_refunds",
    "raw.stripe_subscriptions",
)


def _objects_sql(where: str) -> str:
    return " + ".join(
        f"(SELECT COUNT(*) FROM {table} WHERE {where})" for table in INGEST_OBJECT_TABLES
    )


def stripe_object_count(db: Any, wh: Warehouse, workspace_id: str) -> int:
    """The workspace's stored Stripe objects of the ingest's four kinds, on connection `db` (the
    claim's transaction, so the count and the claim agree)."""
    sql = f"SELECT {_objects_sql('workspace_id = :w')}"
    return int(db.execute(wh.text(sql), {"w": workspace_id}).scalar() or 0)


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
    return {**counters.as_api(), **_inserted_and_duplicates(wh, request, ws.id, start, end)}


def _inserted_and_duplicates(
    wh: Warehouse, request: dict[str, Any], workspace_id: str, start: int, end: int
) -> dict[str, int | None]:
    """The v1 ingest's counters: objects new since the claim, and objects the sync wrote that
    were stored already (both null without a count at the claim)."""
    before = request.get("stripe_objects_at_claim")
    if before is None:
        return {"inserted": None, "duplicates": None}
    now = int(wh.scalar(f"SELECT {_objects_sql('workspace_id = :w')}", w=workspace_id) or 0)
    written = int(
        wh.scalar(
            f"SELECT {_objects_sql('workspace_id = :w AND synced_at >= :a AND synced_at <= :b')}",
            w=workspace_id,
            a=start,
            b=end,
        )
        or 0
    )
    inserted = max(0, now - int(before))
    return {"inserted": inserted, "duplicates": max(0, written - inserted)}

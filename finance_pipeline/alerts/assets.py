"""mart.alerts, partitioned by day: the alerts active on each day of the window (metrics.md §14).

Each day's set is recomputed and replaces the stored one (ids are deterministic), so a re-run never
duplicates and an alert that stopped firing disappears. Margin tier changes and Stripe sync health
are not wired in yet: those rules see no input here and never fire from this asset.
"""

import time
from collections import Counter
from datetime import date, timedelta
from typing import Any

import dagster as dg

from finance_pipeline.lib.alerts import Alert, evaluate_alerts
from finance_pipeline.lib.cfo_daily import as_date, thresholds_from_settings
from finance_pipeline.metrics.cfo_assets import days_between, metrics_for_days
from finance_pipeline.partitions import daily_partitions
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.tenancy import Workspace, list_workspaces
from finance_pipeline.warehouse.db import Warehouse

ALERTS_KEY = dg.AssetKey(["mart", "alerts"])
# The fields of a stored cfo_metrics_daily row the rules read.
_RULE_FIELDS = (
    "cash_on_hand_cents",
    "recurring_burn_cents_30d",
    "net_revenue_cents_30d",
    "refunds_cents_30d",
)
PRIOR_DAYS = 30


def _stored_metrics(wh: Warehouse, ws_id: str, start: date, end: date) -> dict[date, dict]:
    cols = ", ".join(_RULE_FIELDS)
    return {
        as_date(r["day"]): r
        for r in wh.rows(
            f"SELECT day, {cols} FROM mart.cfo_metrics_daily"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b",
            w=ws_id,
            a=start,
            b=end,
        )
    }


def _mrr_micros(wh: Warehouse, ws_id: str, start: date, end: date) -> dict[date, int]:
    return {
        as_date(r["day"]): int(r["mrr_micros"])
        for r in wh.rows(
            "SELECT day, mrr_micros FROM mart.mrr_daily"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b",
            w=ws_id,
            a=start,
            b=end,
        )
    }


def evaluate_window(wh: Warehouse, ws: Workspace, start: date, end: date) -> list[Alert]:
    """Every alert of `ws` on each day start..end (§14), from the stored marts.

    Days whose metrics are not stored (D-30 before the materialized history) are computed from
    core.ledger. MRR of a day without a mart.mrr_daily row is 0; mrr_decline is evaluated when either
    end of the comparison has recurring revenue (a drop to zero is a 100 % decline).
    """
    thresholds = thresholds_from_settings(ws.settings)
    lo = start - timedelta(days=PRIOR_DAYS)
    metrics: dict[date, Any] = _stored_metrics(wh, ws.id, lo, end)
    missing = [d for d in days_between(lo, end) if d not in metrics]
    metrics.update(metrics_for_days(wh, ws, missing))
    mrr = _mrr_micros(wh, ws.id, lo, end)
    alerts: list[Alert] = []
    for d in days_between(start, end):
        prior = d - timedelta(days=PRIOR_DAYS)
        now_mrr, old_mrr = mrr.get(d, 0), mrr.get(prior, 0)
        alerts += evaluate_alerts(
            ws.id,
            d,
            metrics[d],
            metrics[prior],
            now_mrr,
            old_mrr,
            has_recurring=now_mrr > 0 or old_mrr > 0,
            margin_tier_changes=(),
            sync_status=None,
            thresholds=thresholds,
        )
    return alerts


def alert_row(alert: Alert, created_at: int) -> dict[str, Any]:
    """A mart.alerts row (payload Decimals kept exact as strings by the warehouse encoder)."""
    return {
        "workspace_id": alert.workspace_id,
        "day": alert.day,
        "alert_id": alert.id,
        "type": alert.type,
        "severity": alert.severity,
        "subject": alert.subject,
        "message": alert.message,
        "payload_json": alert.payload,
        "created_at": created_at,
    }


@dg.multi_asset(
    name="alerts",
    specs=[
        dg.AssetSpec(
            ALERTS_KEY,
            description="Alerts active per workspace and local day: runway_low, mrr_decline, "
            "revenue_decline, refund_spike (§14); each day's set replaced on re-evaluation.",
            group_name="alerts",
            kinds={"sql", "python"},
            deps=[dg.AssetKey(["mart", "cfo_metrics_daily"]), dg.AssetKey(["mart", "mrr_daily"])],
            partitions_def=daily_partitions,
        )
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def alerts(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Evaluate the alert rules on every day of the window and replace the stored sets."""
    wh = warehouse.get()
    window = context.partition_time_window
    start = window.start.date()
    end = window.end.date() - timedelta(days=1)
    workspaces = list_workspaces(wh)
    found = {ws.id: evaluate_window(wh, ws, start, end) for ws in workspaces}
    now = int(time.time())
    with wh.begin() as db:
        for ws_id, ws_alerts in found.items():
            db.execute(
                wh.text(
                    "DELETE FROM mart.alerts WHERE workspace_id = :w AND day >= :a AND day <= :b"
                ),
                {"w": ws_id, "a": start, "b": end},
            )
            if ws_alerts:
                db.execute(wh.table("mart.alerts").insert(), [alert_row(a, now) for a in ws_alerts])
    counts = Counter((a.type, a.severity) for al in found.values() for a in al)
    latest = [a for al in found.values() for a in al if a.day == end]
    preview = "\n".join(
        ["| workspace | type | severity | message |", "|---|---|---|---|"]
        + [f"| {a.workspace_id} | {a.type} | {a.severity} | {a.message} |" for a in latest[:50]]
    )
    return dg.MaterializeResult(
        asset_key=ALERTS_KEY,
        metadata={
            "days": (end - start).days + 1,
            "window": f"{start}..{end}",
            "alerts_written": sum(counts.values()),
            "by_type": dg.MetadataValue.json(
                {f"{t}/{s}": n for (t, s), n in sorted(counts.items())}
            ),
            "active_on_last_day": dg.MetadataValue.md(preview),
        },
    )

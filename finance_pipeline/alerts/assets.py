"""mart.alerts, partitioned by day: alerts active on each day of the window (docs/metrics.md §14).

Each day's set is recomputed and replaces the stored one (ids are deterministic), so a re-run never
duplicates and an alert that stopped firing disappears. Besides the CFO-metric rules:

- margin_threshold_crossed fires on the first local day of a month, for each customer whose health
  tier in the month just closed differs from the month before, as stored in
  mart.customer_margins_monthly (a monthly partition is complete only once its month is over; the
  month-end close writes it on the 1st, before the daily refresh of the 2nd evaluates the 1st). A
  customer new in the closed month, or a month not materialized, gives no alert.
- sync_unhealthy is a present-tense fact: raw.sync_state keeps only each stream's latest state and
  raw.sync_runs is not written by the sync engine, so the health of a past day cannot be rebuilt
  exactly. It is evaluated now, for the window's last day only, and only when that day is the
  workspace's current or previous local day (the daily refresh's latest partition); workspaces
  without an active Stripe connection have no sync health. A restated day that is no longer
  current keeps the sync_unhealthy rows observed while it was.
- close_restated reads app.restatements (written by reports/close_restatements, upstream here so a
  restatement recorded in a run shows in that run's alerts): one alert per restated month, from
  the local day it was detected until the day before the month's next close version was closed
  (at least on the detection day), the newest restatement of the month superseding older ones.

Episodes (alerts/episodes.py): after a window's rows are replaced, the episodes it can change are
rebuilt from the stored rows in the same transaction (mart.alert_episodes), and each daily row names
its episode (episode_id, opens_episode).

Webhooks (optional per workspace, see alerts/delivery.py): after the alerts are stored, the episode
events of the window's last day, when that day is current, are POSTed signed: alert.opened,
alert.escalated and alert.resolved, each event id once (app.alert_deliveries), so daily repeats,
re-runs and backfills send nothing. Delivery failures never fail the run: they show in metadata and
in the WARN check `webhook_delivered`.
"""

import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa

from finance_pipeline.alerts.delivery import WebhookConfigError, deliver_alerts, webhook_config
from finance_pipeline.alerts.episodes import delivered_event_ids, episodes_due, rebuild_episodes
from finance_pipeline.lib.alerts import (
    Alert,
    AlertThresholds,
    RestatedClose,
    episode_events,
    evaluate_alerts,
    sync_health,
)
from finance_pipeline.lib.cfo_daily import as_date, thresholds_from_settings
from finance_pipeline.lib.close import diff_from_json
from finance_pipeline.lib.margins import TierChange, shift_month, tier_changes
from finance_pipeline.lib.recognition import month_key
from finance_pipeline.lib.timeutil import local_day
from finance_pipeline.margins.assets import MARGINS_KEY
from finance_pipeline.metrics.cfo_assets import days_between, metrics_for_days
from finance_pipeline.partitions import daily_partitions
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.secrets import SecretError
from finance_pipeline.stripe_sync.health import DEFAULT_SCHEDULE_SECONDS, sync_status
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.tenancy import Workspace, scoped_workspaces
from finance_pipeline.warehouse.db import Warehouse

ALERTS_KEY = dg.AssetKey(["mart", "alerts"])
# The restatement check of closed months (reports/close_assets.py), whose app.restatements rows
# raise close_restated; a key, not an import: the close pack reads the alerts.
RESTATEMENTS_KEY = dg.AssetKey(["reports", "close_restatements"])
# The fields of a stored cfo_metrics_daily row the rules read.
_RULE_FIELDS = (
    "cash_on_hand_cents",
    "recurring_burn_cents_30d",
    "net_revenue_cents_30d",
    "refunds_cents_30d",
)
PRIOR_DAYS = 30
# The instant sync health and a day's liveness are judged at (tests pin it).
clock: Callable[[], float] = time.time
# Arbitrary constant: concurrent alert runs on one PostgreSQL database rebuild episodes one at a
# time (each reads the episodes the other may be replacing).
_PG_LOCK_ID = 727_014


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


def is_live_day(day: date, time_zone: str, now: float) -> bool:
    """True when `day` is the workspace's current or previous local day at `now` (the daily
    refresh's latest partition is yesterday): the days whose present-tense facts are still true."""
    return day >= local_day(now, time_zone) - timedelta(days=1)


def margin_tier_changes(
    wh: Warehouse, ws_id: str, days: Iterable[date]
) -> dict[date, list[TierChange]]:
    """Tier changes each first-of-month day reports: the month just closed vs the month before.

    Read from mart.customer_margins_monthly; months not stored have no rows, so their customers
    count as absent (no previous tier: no alert) and an empty workspace reports nothing.
    """
    closes = {d: month_key(d - timedelta(days=1)) for d in days if d.day == 1}
    if not closes:
        return {}
    rows = wh.rows(
        "SELECT month, stripe_customer_id, customer_name, tag_value, margin_percent, health_tier"
        " FROM mart.customer_margins_monthly"
        " WHERE workspace_id = :w AND month >= :a AND month <= :b ORDER BY month, sort_order",
        w=ws_id,
        a=shift_month(min(closes.values()), -1),
        b=max(closes.values()),
    )
    by_month: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        # The margin_table `customers` shape lib.margins.tier_changes reads.
        by_month.setdefault(r["month"], []).append(
            {
                "stripeCustomerId": r["stripe_customer_id"],
                "customerName": r["customer_name"],
                "tagValue": r["tag_value"],
                "healthTier": r["health_tier"],
                "marginPercent": None
                if r["margin_percent"] is None
                else Decimal(str(r["margin_percent"])),
            }
        )
    return {
        d: tier_changes(by_month.get(shift_month(m, -1), []), by_month.get(m, []), period=m)
        for d, m in closes.items()
    }


def restated_closes(wh: Warehouse, ws: Workspace, end: date) -> list[RestatedClose]:
    """The workspace's restatements of closed months detected by its local day `end`, each with
    the local day the month's next close version was closed (app.closes), if it was."""
    closed_on = {
        (r["month"], int(r["version"])): local_day(int(r["closed_at"]), ws.time_zone)
        for r in wh.rows(
            "SELECT month, version, closed_at FROM app.closes WHERE workspace_id = :w", w=ws.id
        )
    }
    out = []
    for r in wh.rows(
        "SELECT r.id, r.month, r.close_id, r.detected_at, r.diff_json, c.version"
        " FROM app.restatements r JOIN app.closes c ON c.id = r.close_id"
        " WHERE r.workspace_id = :w ORDER BY r.detected_at, r.id",
        w=ws.id,
    ):
        detected_on = local_day(int(r["detected_at"]), ws.time_zone)
        if detected_on > end:
            continue
        version = int(r["version"])
        out.append(
            RestatedClose(
                r["id"],
                r["month"],
                r["close_id"],
                version,
                int(r["detected_at"]),
                detected_on,
                closed_on.get((r["month"], version + 1)),
                tuple(diff_from_json(r["diff_json"])),
                ws.reporting_currency.upper(),
            )
        )
    return out


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stripe_sync_health(
    wh: Warehouse, ws: Workspace, thresholds: AlertThresholds, now: float
) -> dict[str, Any] | None:
    """The platform finance API sync status of `ws` at `now`, its health judged with the workspace's
    `sync_delay_seconds` past the next scheduled sync; None without an active Stripe connection."""
    conn = wh.rows(
        "SELECT created_at FROM app.stripe_connections WHERE workspace_id = :w AND status = 'active'",
        w=ws.id,
    )
    if not conn:
        return None
    status = sync_status(wh, ws.id, now=int(now))
    last = status["last_sync"]
    last_ts = int(datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp()) if last else None
    # The next sync is due one schedule after the last complete one (or when the connection was
    # made, for a workspace that never completed a sync).
    due = int(conn[0]["created_at"]) if last_ts is None else last_ts + DEFAULT_SCHEDULE_SECONDS
    health = sync_health(
        datetime.fromtimestamp(due, UTC),
        None if last_ts is None else datetime.fromtimestamp(last_ts, UTC),
        datetime.fromtimestamp(now, UTC),
        errored=status["sync_health"] == "error",
        delay_seconds=thresholds.sync_delay_seconds,
    )
    if health == "error":
        reason = status["health_reason"]
    elif health == "delayed":
        reason = (
            f"no complete sync since {_iso(last_ts)}, next was due {_iso(due)}"
            if last_ts is not None
            else f"no complete sync since the connection at {_iso(due)}"
        )
    else:
        reason = None
    keep = (
        "last_sync",
        "invoices_synced",
        "failed_payments",
        "pending_webhooks",
        "last_webhook_event",
    )
    return {
        **{k: status[k] for k in keep},
        "sync_health": health,
        "health_reason": reason,
        "next_sync_due": _iso(due),
        "delay_threshold_seconds": thresholds.sync_delay_seconds,
    }


def evaluate_window(
    wh: Warehouse, ws: Workspace, start: date, end: date, now: float | None = None
) -> list[Alert]:
    """Every alert of `ws` on each day start..end (§14), from the stored marts.

    Days whose metrics are not stored (D-30 before the materialized history) are computed from
    core.ledger. MRR of a day without a mart.mrr_daily row is 0; mrr_decline is evaluated when either
    end of the comparison has recurring revenue (a drop to zero is a 100 % decline). Sync health
    (read at `now`, default the current time) applies to `end` only, when `end` is a live day.
    """
    now = clock() if now is None else now
    thresholds = thresholds_from_settings(ws.settings)
    lo = start - timedelta(days=PRIOR_DAYS)
    metrics: dict[date, Any] = _stored_metrics(wh, ws.id, lo, end)
    missing = [d for d in days_between(lo, end) if d not in metrics]
    metrics.update(metrics_for_days(wh, ws, missing))
    mrr = _mrr_micros(wh, ws.id, lo, end)
    tiers: dict[date, list[TierChange]] = margin_tier_changes(wh, ws.id, days_between(start, end))
    restated = restated_closes(wh, ws, end)
    sync = (
        stripe_sync_health(wh, ws, thresholds, now) if is_live_day(end, ws.time_zone, now) else None
    )
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
            margin_tier_changes=tiers.get(d, ()),
            sync_status=sync if d == end else None,
            thresholds=thresholds,
            restated_closes=restated,
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


SYNC_TYPE = "sync_unhealthy"


def _deliver(
    wh: Warehouse, workspaces: list[Workspace], end: date, now: float
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Send each opted-in workspace's episode events of `end` (when live); never raises.

    Events, not daily repeats: alert.opened for an episode active on `end` not announced yet,
    alert.escalated when its severity rose above the highest sent, alert.resolved for an announced
    episode resolved on `end`; each event id is sent once (app.alert_deliveries). Returns a
    per-workspace summary and the failures as (workspace, event id, reason).
    """
    summary: dict[str, Any] = {}
    failures: list[tuple[str, str, str]] = []
    for ws in workspaces:
        try:
            config = webhook_config(ws.settings)
        except (WebhookConfigError, SecretError) as exc:
            failures.append((ws.id, "-", f"webhook configuration: {exc}"))
            continue
        if config is None:
            continue
        if not is_live_day(end, ws.time_zone, now):
            summary[ws.id] = {"skipped": f"window ends {end}, not the workspace's current day"}
            continue
        try:
            due = episodes_due(wh, ws.id, end)
            events = episode_events(due, end, delivered_event_ids(wh, ws.id, due))
            # Events quack like alerts for delivery (id, type, day, to_dict).
            report = deliver_alerts(wh, ws.id, events, config)  # type: ignore[arg-type]
        except Exception as exc:  # e.g. the delivery log write: stored alerts must stand regardless
            failures.append((ws.id, "-", f"delivery: {type(exc).__name__}: {exc}"))
            continue
        sent = set(report.delivered)
        summary[ws.id] = {
            "delivered": len(report.delivered),
            "failed": len(report.failed),
            "events": dict(sorted(Counter(e.type for e in events if e.id in sent).items())),
        }
        failures += [(ws.id, aid, reason) for aid, reason in report.failed.items()]
    return summary, failures


# Days of the first month map to a month before the history: allowed (no margins, no alert). The
# flag is beta in Dagster 1.13; acknowledged here so imports stay free of warnings.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    _PREVIOUS_MONTH = dg.TimeWindowPartitionMapping(
        start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )


@dg.multi_asset(
    name="alerts",
    specs=[
        dg.AssetSpec(
            ALERTS_KEY,
            description="Alerts active per workspace and local day (§14): runway_low, mrr_decline, "
            "revenue_decline, refund_spike; margin_threshold_crossed on the 1st for the month just "
            "closed; sync_unhealthy on the current day; close_restated while a restatement of a "
            "closed month stands. Each day's set replaced on re-evaluation; "
            "episodes in mart.alert_episodes; the latest day's episode events (opened, escalated, "
            "resolved) optionally sent to the workspace's signed webhook, once.",
            group_name="alerts",
            kinds={"sql", "python"},
            deps=[
                dg.AssetKey(["mart", "cfo_metrics_daily"]),
                dg.AssetKey(["mart", "mrr_daily"]),
                # A day reads the margins of the month before its own (the month closed on the 1st).
                dg.AssetDep(MARGINS_KEY, partition_mapping=_PREVIOUS_MONTH),
                # A restatement recorded in the same run shows in that run's alerts.
                RESTATEMENTS_KEY,
            ],
            partitions_def=daily_partitions,
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "webhook_delivered",
            asset=ALERTS_KEY,
            blocking=False,
            description="Every episode event of the window's latest day reached the webhook of "
            "each workspace that configured one. WARN only: the alerts are stored either way, and "
            "a failed event is sent again by the next run whose latest day is current.",
        )
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def alerts(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator:
    """Evaluate the alert rules on every day of the window, replace the stored sets, then deliver."""
    wh = warehouse.get()
    window = context.partition_time_window
    start = window.start.date()
    end = window.end.date() - timedelta(days=1)
    now = clock()
    workspaces = scoped_workspaces(wh)
    found = {ws.id: evaluate_window(wh, ws, start, end, now) for ws in workspaces}
    live = {ws.id: is_live_day(end, ws.time_zone, now) for ws in workspaces}
    episodes: Counter[str] = Counter()
    with wh.begin() as db:
        if not wh.is_sqlite:
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
        for ws_id, ws_alerts in found.items():
            # sync_unhealthy rows of days not re-observed now stay: they record what was seen
            # while those days were current.
            keep_sync = " AND (type <> :s OR day = :e)" if live[ws_id] else " AND type <> :s"
            db.execute(
                wh.text(
                    "DELETE FROM mart.alerts WHERE workspace_id = :w AND day >= :a AND day <= :b"
                    + keep_sync
                ),
                {"w": ws_id, "a": start, "b": end, "s": SYNC_TYPE, "e": end},
            )
            if ws_alerts:
                db.execute(
                    wh.table("mart.alerts").insert(), [alert_row(a, int(now)) for a in ws_alerts]
                )
            # In the same transaction: the episodes always match the stored daily rows.
            episodes.update(e.status for e in rebuild_episodes(db, wh, ws_id, start, end))
    # Alerts are committed first: a failing endpoint cannot lose them.
    delivery, failures = _deliver(wh, workspaces, end, now)
    counts = Counter((a.type, a.severity) for al in found.values() for a in al)
    latest = [a for al in found.values() for a in al if a.day == end]
    preview = "\n".join(
        ["| workspace | type | severity | message |", "|---|---|---|---|"]
        + [f"| {a.workspace_id} | {a.type} | {a.severity} | {a.message} |" for a in latest[:50]]
    )
    failure_md = "\n".join(
        ["| workspace | alert | reason |", "|---|---|---|"]
        + [f"| {w} | {aid} | {reason} |" for w, aid, reason in failures[:50]]
    )
    yield dg.MaterializeResult(
        asset_key=ALERTS_KEY,
        metadata={
            "days": (end - start).days + 1,
            "window": f"{start}..{end}",
            "alerts_written": sum(counts.values()),
            # The episodes rebuilt around the window, by status.
            "episodes": dg.MetadataValue.json(dict(sorted(episodes.items()))),
            **table_metadata(ALERTS_KEY, sum(counts.values())),
            "by_type": dg.MetadataValue.json(
                {f"{t}/{s}": n for (t, s), n in sorted(counts.items())}
            ),
            "active_on_last_day": dg.MetadataValue.md(preview),
            "webhook": dg.MetadataValue.json(delivery),
            "webhook_failures": len(failures),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=ALERTS_KEY,
        check_name="webhook_delivered",
        passed=not failures,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "workspaces_with_webhook": len(delivery),
            "delivered": sum(v.get("delivered", 0) for v in delivery.values()),
            "failed": len(failures),
            "failures": dg.MetadataValue.md(failure_md),
        },
    )

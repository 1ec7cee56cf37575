"""mart.advisory_memos, partitioned by day: one v1 API advisory memo per workspace and day.

A memo is grounded only in that day's mart.cfo_metrics_daily row and mart.alerts rows. A run covers
a window of days (a backfill is one run, BackfillPolicy.single_run): only the window's LAST day asks
the AI provider, older days get the rule-based memo recorded as provider "fallback" with
ai_error.code "ai_skipped_backfill", so a 3-year backfill makes one HTTP call per workspace, not
1,000. An AI failure on the last day also falls back (with the provider's ai_error). Each day's
memo is replaced on re-run.
"""

import time
from datetime import timedelta
from typing import Any

import dagster as dg

from finance_pipeline.advisory.memos import (
    BACKFILL_SKIP,
    memo_for_day,
    memo_row,
    provider_from_settings,
    stored_grounding,
)
from finance_pipeline.metrics.cfo_assets import CFO_KEY, days_between
from finance_pipeline.partitions import daily_partitions
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.tenancy import scoped_workspaces

MEMOS_KEY = dg.AssetKey(["mart", "advisory_memos"])
ALERTS_KEY = dg.AssetKey(["mart", "alerts"])
_PREVIEW_CHARS = 300


def _cell(text: str) -> str:
    # Markdown table cells: no pipes or newlines, long summaries cut.
    text = " ".join(text.replace("|", "/").split())
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


@dg.multi_asset(
    name="advisory_memos",
    specs=[
        dg.AssetSpec(
            MEMOS_KEY,
            deps=[CFO_KEY, ALERTS_KEY],
            partitions_def=daily_partitions,
            group_name="advisory",
            kinds={"sql", "python"},
            description="v1 API advisory memo per workspace and local day (summary, "
            "suggestions, risks), grounded only in that day's CFO metrics and alerts. Only the last "
            "day of a run asks the AI provider (FP_AI_*); other days and AI failures use the "
            "rule-based writer.",
        )
    ],
    # One run per window like the other daily marts, so a job has a single backfill policy.
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def advisory_memos(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Write every workspace's memo for each day of the window, replacing the stored ones."""
    wh = warehouse.get()
    window = context.partition_time_window
    start = window.start.date()
    end = window.end.date() - timedelta(days=1)
    provider = provider_from_settings()
    now = int(time.time())
    rows: list[dict[str, Any]] = []
    latest: list[tuple[str, dict[str, Any]]] = []
    missing: dict[str, int] = {}
    ai_calls = 0
    workspaces = scoped_workspaces(wh)
    for ws in workspaces:
        grounding = stored_grounding(wh, ws.id, start, end)
        for day in days_between(start, end):
            last = day == end
            memo = memo_for_day(ws, day, grounding, provider if last else BACKFILL_SKIP)
            if memo is None:
                missing[ws.id] = missing.get(ws.id, 0) + 1
                continue
            # A provider is only contacted on the last day; count the memos that asked it.
            ai_calls += int(last and provider is not None)
            rows.append(memo_row(ws.id, day, memo, now))
            if last:
                latest.append((ws.id, memo))
    with wh.begin() as db:
        wh.lock_windows(db, ("mart.advisory_memos",), [ws.id for ws in workspaces])
        for ws in workspaces:
            db.execute(
                wh.text(
                    "DELETE FROM mart.advisory_memos"
                    " WHERE workspace_id = :w AND day >= :a AND day <= :b"
                ),
                {"w": ws.id, "a": start, "b": end},
            )
        if rows:
            db.execute(wh.table("mart.advisory_memos").insert(), rows)
    if missing:
        context.log.warning(
            "No mart.cfo_metrics_daily rows for some days (no memo written): "
            + ", ".join(f"{w}: {n} day(s)" for w, n in sorted(missing.items()))
        )
    preview = [
        f"**{end.isoformat()}**",
        "",
        "| workspace | provider | alerts | summary |",
        "|---|---|---|---|",
    ] + [
        f"| {ws_id} | {m['provider']} | {m['grounding']['alert_count']} | {_cell(m['summary'])} |"
        for ws_id, m in latest[:50]
    ]
    metadata: dict[str, Any] = {
        "days": (end - start).days + 1,
        "window": f"{start}..{end}",
        "memos_written": len(rows),
        **table_metadata(MEMOS_KEY, len(rows)),
        "ai_calls": ai_calls,
        "ai_available_on_last_day": sum(1 for _, m in latest if m["ai_available"]),
        "latest_summary": dg.MetadataValue.md("\n".join(preview)),
        "days_without_metrics": dg.MetadataValue.json(missing),
    }
    ai_errors = {ws_id: m["ai_error"] for ws_id, m in latest if m["ai_error"]}
    if ai_errors:
        metadata["ai_errors_on_last_day"] = dg.MetadataValue.json(ai_errors)
    if len(latest) == 1:
        metadata["summary"] = dg.MetadataValue.text(latest[0][1]["summary"])
    return dg.MaterializeResult(asset_key=MEMOS_KEY, metadata=metadata)

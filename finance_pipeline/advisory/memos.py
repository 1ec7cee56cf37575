"""Advisory memos from the stored marts: the grounding of a day, the provider from settings.

Plain functions over the warehouse (no Dagster), shared by the daily memo asset and the read API's
on-demand memo endpoint. A memo is grounded only in that day's mart.cfo_metrics_daily row (as the
v1 API metrics object) and that day's mart.alerts rows (as v1 API alert objects).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from finance_pipeline.advisory.provider import OpenAICompatibleProvider
from finance_pipeline.lib.advisory import MemoProvider, NotCalledProvider, write_memo
from finance_pipeline.lib.cfo_daily import EXTRA_CENTS_FIELDS, SEED_CENTS_FIELDS, as_date
from finance_pipeline.settings import Settings, get_settings
from finance_pipeline.tenancy import Workspace
from finance_pipeline.warehouse.db import Warehouse

# Days older than the last one of a run are written without asking the AI (see the asset).
BACKFILL_SKIP = NotCalledProvider(
    "Only the last day of a run's window asks the AI provider; this day's memo is the rule-based "
    "one.",
    code="ai_skipped_backfill",
)


def provider_from_settings(settings: Settings | None = None) -> MemoProvider | None:
    """The configured OpenAI-compatible provider, or None when no FP_AI_* variable is set.

    A partial configuration still returns a provider, so the memo reports which setting is missing
    (configuration_error) instead of silently using the rule-based writer.
    """
    s = settings or get_settings()
    if not (s.ai_base_url or s.ai_api_key or s.ai_model):
        return None
    return OpenAICompatibleProvider(
        base_url=s.ai_base_url,
        api_key=s.ai_api_key.get_secret_value() if s.ai_api_key else None,
        model=s.ai_model,
        timeout=s.ai_timeout_seconds,
        name=s.ai_provider_name,
    )


def metrics_object(row: dict[str, Any]) -> dict[str, Any]:
    """A mart.cfo_metrics_daily row as the v1 API metrics object (runway as exact Decimal)."""
    out: dict[str, Any] = {
        "as_of": as_date(row["day"]).isoformat(),
        "currency": str(row["currency"]).upper(),
    }
    out.update({k: None if row[k] is None else int(row[k]) for k in SEED_CENTS_FIELDS})
    for k in ("runway_months", "runway_days"):
        out[k] = None if row[k] is None else Decimal(str(row[k]))
    out["warnings"] = row["warnings_json"] or []
    out.update({k: int(row[k]) for k in EXTRA_CENTS_FIELDS})
    out["skipped_currencies"] = row["skipped_currencies_json"] or {}
    return out


def alert_object(row: dict[str, Any]) -> dict[str, Any]:
    """A mart.alerts row as the v1 API alert object (lib.alerts.Alert.to_dict fields)."""
    return {
        "id": row["alert_id"],
        "type": row["type"],
        "severity": row["severity"],
        "message": row["message"],
        "payload": row["payload_json"] or {},
        "workspace_id": row["workspace_id"],
        "day": as_date(row["day"]).isoformat(),
    }


@dataclass
class Grounding:
    """The stored inputs of one workspace for a window: metrics and alerts per day."""

    metrics: dict[date, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[date, list[dict[str, Any]]] = field(default_factory=dict)


def stored_grounding(wh: Warehouse, workspace_id: str, start: date, end: date) -> Grounding:
    """Metrics objects and alert objects of start..end from the marts (two queries per window)."""
    out = Grounding()
    for r in wh.rows(
        "SELECT * FROM mart.cfo_metrics_daily WHERE workspace_id = :w AND day >= :a AND day <= :b",
        w=workspace_id,
        a=start,
        b=end,
    ):
        out.metrics[as_date(r["day"])] = metrics_object(r)
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    # Critical first, then a stable order, so the memo's risks list is deterministic.
    for r in wh.rows(
        "SELECT * FROM mart.alerts WHERE workspace_id = :w AND day >= :a AND day <= :b"
        " ORDER BY day, CASE severity WHEN 'critical' THEN 0 ELSE 1 END, type, subject, alert_id",
        w=workspace_id,
        a=start,
        b=end,
    ):
        by_day[as_date(r["day"])].append(alert_object(r))
    out.alerts = dict(by_day)
    return out


def memo_for_day(
    ws: Workspace, day: date, grounding: Grounding, provider: MemoProvider | None
) -> dict[str, Any] | None:
    """The v1 API advisory response of `ws` on `day`, or None when no metrics row is stored."""
    metrics = grounding.metrics.get(day)
    if metrics is None:
        return None
    return write_memo(
        {"id": ws.id, "name": ws.name}, day, metrics, grounding.alerts.get(day, []), provider
    )


def memo_row(workspace_id: str, day: date, memo: dict[str, Any], created_at: int) -> dict:
    """A mart.advisory_memos row from a write_memo response (grounding kept as inputs_json)."""
    return {
        "workspace_id": workspace_id,
        "day": day,
        "summary": memo["summary"],
        "suggestions_json": memo["suggestions"],
        "risks_json": memo["risks"],
        "provider": memo["provider"],
        "model": memo["model"],
        "ai_available": bool(memo["ai_available"]),
        "ai_error_json": memo["ai_error"],
        "inputs_json": memo["grounding"],
        "created_at": created_at,
    }

"""One report of one workspace and period, as CSV bytes: reads (queries) + pure building (lib)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from finance_pipeline.lib import report_csv
from finance_pipeline.lib.recognition import month_key
from finance_pipeline.lib.report_csv import CsvTable
from finance_pipeline.reports import queries
from finance_pipeline.reports.store import CatalogueEntry, ReportKey, store_report
from finance_pipeline.tenancy import Workspace, list_workspaces
from finance_pipeline.warehouse.db import Warehouse

# The platform finance API's export types first, then the margins API CSV and the movement list.
EXPORT_TYPES = ("mrr_breakdown", "invoice_summary", "revenue_trend", "failed_payments")
REPORT_TYPES = (*EXPORT_TYPES, "margins", "mrr_movements")
# Report types a plan filter applies to (revenue, margins and movements are not kept by plan).
PLAN_FILTERED = ("mrr_breakdown", "invoice_summary", "failed_payments")


class ReportRequestError(ValueError):
    """A report that cannot be built as asked (unknown type or workspace, bad period or filter)."""


def workspace(wh: Warehouse, workspace_id: str) -> Workspace:
    """The workspace, or ReportRequestError."""
    for ws in list_workspaces(wh):
        if ws.id == workspace_id:
            return ws
    raise ReportRequestError(f"no such workspace: {workspace_id}")


def validate_request(report_type: str, start: date, end: date, plan_id: str | None) -> None:
    """Refuse a request no report can answer (raise ReportRequestError)."""
    if report_type not in REPORT_TYPES:
        raise ReportRequestError(
            f"unknown report type {report_type!r}; one of {', '.join(REPORT_TYPES)}"
        )
    if end < start:
        raise ReportRequestError(f"date_end {end} is before date_start {start}")
    if plan_id is not None and report_type not in PLAN_FILTERED:
        raise ReportRequestError(f"{report_type} cannot be filtered by plan")
    if report_type == "margins":
        following = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        if start.day != 1 or end != following - timedelta(days=1):
            raise ReportRequestError("margins covers one calendar month (first to last day)")


def build_csv(
    wh: Warehouse,
    ws: Workspace,
    report_type: str,
    start: date,
    end: date,
    plan_id: str | None = None,
) -> CsvTable:
    """The report's table for local days start..end (inclusive)."""
    validate_request(report_type, start, end, plan_id)
    cur = ws.reporting_currency
    if report_type == "mrr_breakdown":
        plans = queries.plan_balances(wh, ws, start, end, plan_id)
        if plan_id is not None:
            # Movements missing from the marts would land in the plan's FX: require every day.
            queries.mrr_roll_forward(wh, ws, start, end)
            by_plan = queries.plan_movements(wh, ws, start, end, plan_id)
            return report_csv.mrr_breakdown(cur, None, None, None, plans, by_plan)
        opening, moves, closing = queries.mrr_roll_forward(wh, ws, start, end)
        by_plan = queries.plan_movements(wh, ws, start, end)
        return report_csv.mrr_breakdown(cur, opening, moves, closing, plans, by_plan)
    if report_type == "invoice_summary":
        return report_csv.invoice_summary(queries.invoices(wh, ws, start, end, plan_id))
    if report_type == "revenue_trend":
        return report_csv.revenue_trend(cur, queries.revenue_months(wh, ws, start, end))
    if report_type == "failed_payments":
        return report_csv.failed_payments(queries.failed_charges(wh, ws, start, end, plan_id))
    if report_type == "margins":
        rows, blended = queries.margin_rows(wh, ws, month_key(start))
        return report_csv.margins(rows, blended, currency=cur)
    return report_csv.mrr_movements(cur, queries.customer_movements(wh, ws, start, end))


def render_and_store(
    wh: Warehouse,
    root: Path,
    ws: Workspace,
    report_type: str,
    start: date,
    end: date,
    plan_id: str | None = None,
    *,
    export_id: str | None = None,
) -> tuple[CatalogueEntry, CsvTable]:
    """Build the CSV and put it in the store; a changed rendering becomes the next version."""
    table = build_csv(wh, ws, report_type, start, end, plan_id)
    entry = store_report(
        wh,
        root,
        ReportKey(ws.id, report_type, start, end, plan_id, "csv"),
        table.render(),
        new_version_if_changed=True,
        export_id=export_id,
    )
    return entry, table

"""Month-end CSV reports (each also as a table PDF), one asset per report type, monthly partitions.

Each asset renders its report for the partition's calendar month (local days of each workspace)
from the marts, writes it to the report store and records it in app.report_catalogue. A re-run
with unchanged data is a no-op; changed data becomes the next version (the old file stays, so a
report someone already picked up is never silently replaced).
"""

from datetime import date, timedelta
from typing import Any

import dagster as dg

from finance_pipeline.lib.margins import shift_month
from finance_pipeline.lib.money import shown_units
from finance_pipeline.lib.recognition import month_key
from finance_pipeline.lib.report_csv import CsvTable
from finance_pipeline.partitions import monthly_partitions
from finance_pipeline.reports.pdf_tables import store_table_pdf
from finance_pipeline.reports.queries import ReportDataMissing
from finance_pipeline.reports.render import REPORT_TYPES, render_and_store
from finance_pipeline.reports.store import ReportClosed, ReportWriteError
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import scoped_workspaces

_MRR = [dg.AssetKey(["mart", "mrr_daily"]), dg.AssetKey(["mart", "mrr_plan_daily"])]
# What each report reads (docs/reports.md); raw only where no mart holds the data.
REPORT_DEPS: dict[str, list[dg.AssetKey]] = {
    "mrr_breakdown": [
        *_MRR,
        dg.AssetKey(["mart", "mrr_movements"]),
        dg.AssetKey(["mart", "mrr_changes"]),
        dg.AssetKey(["core", "fx_rates"]),
    ],
    "invoice_summary": [
        dg.AssetKey(["raw", "stripe_invoices"]),
        dg.AssetKey(["raw", "stripe_customers"]),
    ],
    "revenue_trend": [dg.AssetKey(["mart", "revenue_daily"]), dg.AssetKey(["mart", "mrr_daily"])],
    "failed_payments": [
        dg.AssetKey(["raw", "stripe_charges"]),
        dg.AssetKey(["raw", "stripe_invoice_payments"]),
    ],
    "margins": [dg.AssetKey(["mart", "customer_margins_monthly"])],
    "mrr_movements": [
        dg.AssetKey(["mart", "mrr_movements"]),
        dg.AssetKey(["mart", "mrr_changes"]),
        dg.AssetKey(["core", "subscription_history"]),
    ],
}
REPORT_DESCRIPTIONS = {
    "mrr_breakdown": "MRR roll-forward of the month (docs/metrics.md §5): opening MRR, new, "
    "expansion, reactivation, contraction, churn, fx and closing MRR, and the same for each plan "
    "(movements by plan, fx the remainder); footed across and down at the currency's minor unit.",
    "invoice_summary": "Every finalized invoice created in the month: number, customer, status, "
    "dates, subtotal, discount, tax, total, amount paid; a total per currency.",
    "revenue_trend": "Revenue, refunds, expenses and net of the month (docs/metrics.md §10) with "
    "the month-end MRR.",
    "failed_payments": "Every failed charge of the month with its failure code and message, "
    "invoice and Stripe ids; a total per currency.",
    "margins": "The margins API CSV of the month (docs/metrics.md §11), margins-YYYY-MM.csv.",
    "mrr_movements": "Every customer MRR movement of the month (docs/metrics.md §5), signed, with "
    "the customer's MRR after it, plans and the Stripe subscription, item, event and invoice line ids "
    "it came from.",
}


def partition_months(context: dg.AssetExecutionContext) -> list[str]:
    """The "YYYY-MM" months of the run's partition window."""
    window = context.partition_time_window
    months, cur, end = [], month_key(window.start.date()), month_key(window.end.date())
    while cur < end:
        months.append(cur)
        cur = shift_month(cur, 1)
    return months


def month_bounds(month: str) -> tuple[date, date]:
    """First and last local day of a "YYYY-MM" month."""
    first = date(int(month[:4]), int(month[5:7]), 1)
    following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def _totals(table: CsvTable) -> str:
    """The table's headline totals as printed, each with its currency's decimals."""
    return ", ".join(f"{k} {shown_units(v, table.grains[k]):,}" for k, v in table.totals.items())


def report_asset(report_type: str) -> dg.AssetsDefinition:
    """The monthly asset that writes `report_type` for every workspace."""

    @dg.asset(
        key=dg.AssetKey(["reports", report_type]),
        deps=REPORT_DEPS[report_type],
        partitions_def=monthly_partitions,
        # A run covers a range of months (partition_months), like the margins it runs with.
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="reports",
        kinds={"csv", "pdf", "python"},
        description=REPORT_DESCRIPTIONS[report_type],
    )
    def _report(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """Render and store the report of every month of the run for every workspace."""
        wh = warehouse.get()
        root = get_settings().resolved_reports_dir
        lines = [
            "| workspace | month | file | version | bytes | pdf | rows | totals |",
            "|---|---|---|---|---|---|---|---|",
        ]
        meta: dict[str, Any] = {}
        files = rows = 0
        skipped: list[str] = []
        for month in partition_months(context):
            start, end = month_bounds(month)
            for ws in scoped_workspaces(wh):
                try:
                    entry, table = render_and_store(wh, root, ws, report_type, start, end)
                except ReportDataMissing as exc:
                    if exc.days_found:
                        raise dg.Failure(str(exc)) from exc
                    # Nothing materialized for this workspace and month (e.g. it was created
                    # later): no report rather than one of invented zeros; listed below.
                    skipped.append(f"{ws.id} {month}: {exc}")
                    continue
                except ReportWriteError as exc:
                    # Disk full, read-only: the run fails saying so; the catalogue holds no row
                    # for the file (store_report writes the file before its row, in one go).
                    raise dg.Failure(description=str(exc), allow_retries=False) from exc
                except ReportClosed as exc:
                    # A closed month's files are frozen; the close pack asset records the
                    # difference as a restatement instead (reopen to issue a new version).
                    skipped.append(f"{ws.id} {month}: closed, kept as closed ({exc})")
                    continue
                # The same table printed, beside the CSV (format pdf in the catalogue).
                try:
                    pdf = store_table_pdf(wh, root, ws, report_type, start, end, table=table)
                except ReportWriteError as exc:
                    raise dg.Failure(description=str(exc), allow_retries=False) from exc
                totals = _totals(table)
                lines.append(
                    f"| {ws.id} | {month} | {entry.path} | {entry.version} | {entry.size_bytes}"
                    f" | {pdf.path} | {table.line_count} | {totals} |"
                )
                files += 1
                rows += table.line_count
                meta[f"{ws.id}_{month}_path"] = dg.MetadataValue.path(str(entry.absolute(root)))
                meta[f"{ws.id}_{month}_sha256"] = entry.sha256
                meta[f"{ws.id}_{month}_pdf"] = dg.MetadataValue.path(str(pdf.absolute(root)))
        meta.update(
            files=files,
            rows=rows,
            reports_dir=dg.MetadataValue.path(str(root)),
            reports=dg.MetadataValue.md("\n".join(lines)),
            skipped=dg.MetadataValue.md("\n".join(f"- {s}" for s in skipped) or "none"),
        )
        return dg.MaterializeResult(metadata=meta)

    return _report


report_assets = [report_asset(t) for t in REPORT_TYPES]

"""A report as a print-quality table PDF: the same rows and footed figures as its CSV (the same
`lib.report_csv` builders), laid out with the close pack's page CSS, the CSV attached (PDF/A-3b)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import jinja2

from finance_pipeline.lib import report_csv
from finance_pipeline.lib.money import DECIMALS_TEXT, minor_unit_exponent
from finance_pipeline.lib.report_csv import ALL_PLANS, TOTAL, Cell, CsvTable
from finance_pipeline.reports.pdf.render import MONTH_NAMES, source_date_epoch, stylesheet
from finance_pipeline.reports.render import build_csv
from finance_pipeline.reports.store import CatalogueEntry, ReportKey, file_name, store_report
from finance_pipeline.tenancy import Workspace
from finance_pipeline.warehouse.db import Warehouse

TITLES = {
    "mrr_breakdown": "MRR breakdown",
    "invoice_summary": "Invoice summary",
    "revenue_trend": "Revenue trend",
    "failed_payments": "Failed payments",
    "margins": "Customer margins",
    "mrr_movements": "MRR movements",
}
# Wide reports (many columns, long Stripe ids and tags) are printed on landscape pages.
LANDSCAPE = frozenset(
    {"mrr_breakdown", "invoice_summary", "failed_payments", "margins", "mrr_movements"}
)
# Amounts in these reports are in each row's own currency, not the workspace's.
PER_ROW_CURRENCY = frozenset({"invoice_summary", "failed_payments"})
# Amount columns of the builders: right-aligned even when empty (no rows, plan-filtered rows).
AMOUNT_COLUMNS = frozenset(
    {
        *report_csv.MRR_BREAKDOWN_COLUMNS[1:-1],
        *report_csv.INVOICE_SUMMARY_COLUMNS[8:13],
        *report_csv.REVENUE_TREND_COLUMNS[1:-1],
        *report_csv.MARGINS_COLUMNS[3:7],
        "Amount",
        "MRR After",
    }
)
# Short codes and dates printed whole.
UNBROKEN = frozenset(
    {
        "Date",
        "Month",
        "Status",
        "Type",
        "Currency",
        "MRR Currency",
        "Failure Code",
        "Health Tier",
        "Period Start",
        "Period End",
    }
)
# Names and messages: given room before ids and codes, so they wrap over two lines at most.
NAMES = frozenset({"Customer", "Customer Name", "Failure Message", "Plans", "Tag Value"})
# Rows printed as totals: the CSV builders' total rows and the company roll-forward row.
TOTAL_LABELS = (TOTAL, ALL_PLANS)

# Past this many rows a table is laid out with fixed column widths, not by weasyprint's automatic
# table layout: that one measures every cell of the table again for each page, so a table of
# thousands of rows took minutes (a 5,000-row invoice summary: 117 CPU s and 1.7 GB). The widths
# are the ones automatic layout gives a sample of the rows holding each column's longest line and
# longest word, so the pages look as before.
AUTO_LAYOUT_ROWS = 100
# Advances of DejaVu Sans characters in em, (regular, bold), to pick the sample: digits exactly
# (tabular), the others the upper end of their class.
EM_DIGIT, EM_PUNCT, EM_NARROW = (0.636, 0.696), (0.36, 0.42), (0.42, 0.5)
EM_UPPER, EM_OTHER = (0.74, 0.8), (0.64, 0.72)
NARROW = frozenset("fijlrtI")


@dataclass(frozen=True)
class TableReport:
    """One report to print: what it is (workspace, type, period, plan filter) and its CSV table."""

    workspace_id: str
    workspace_name: str
    report_type: str
    period_start: date
    period_end: date
    plan_id: str | None
    currency: str
    table: CsvTable
    csv_name: str


@dataclass(frozen=True)
class _Cell:
    text: str
    css: str


def period_label(start: date, end: date) -> str:
    """ "September 2026" for a calendar month, "2026-09-03 to 2026-09-12" for another range."""
    following = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    if start.day == 1 and end == following - timedelta(days=1):
        return f"{MONTH_NAMES[start.month - 1]} {start.year}"
    return f"{start.isoformat()} to {end.isoformat()}"


def _is_number(value: Cell) -> bool:
    return isinstance(value, (Decimal, int)) and not isinstance(value, bool)


def _text(value: Cell) -> str:
    # The PDF prints text as it is: the CSV's leading apostrophe only guards spreadsheets.
    if value is None:
        return ""
    if isinstance(value, Decimal):
        # The cell's own decimals: an amount has its currency's (none for JPY), a percentage 2.
        return f"{value:,.{max(0, -int(value.as_tuple().exponent))}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _decimals(report: TableReport) -> str:
    """The note's "two decimals": those of the currencies the table's amounts are in (§2)."""
    table = report.table

    def column(name: str) -> set[str]:
        i = table.columns.index(name) if name in table.columns else None
        return {str(row[i]) for row in table.rows if i is not None and row[i]}

    if report.report_type in PER_ROW_CURRENCY:
        currencies = column("Currency") or {report.currency}
    else:  # the workspace's currency, and each customer's own for MRR After
        currencies = {report.currency} | column("MRR Currency")
    places = {minor_unit_exponent(c) for c in currencies}
    if len(places) == 1:
        return DECIMALS_TEXT[places.pop()]
    return "the decimals of their currency (none for JPY, two for USD)"


def _column_header(name: str, currency: str) -> str:
    # The margins API names its money columns "($)"; the figures are in the workspace currency.
    return name.replace("($)", f"({currency})")


def _text_em(text: str, *, bold: bool) -> float:
    """About how wide `text` prints on one line, in em."""
    b = int(bold)
    return sum(
        EM_DIGIT[b]
        if c.isdigit()
        else EM_PUNCT[b]
        if c in " .,-:;'()/"
        else EM_NARROW[b]
        if c in NARROW
        else EM_UPPER[b]
        if c.isupper()
        else EM_OTHER[b]
        for c in text
    )


def _longest_word_em(text: str, *, bold: bool) -> float:
    """About how wide the longest word of `text` prints, in em."""
    return max((_text_em(w, bold=bold) for w in text.split()), default=0.0)


def _sample(rows: list[tuple[str, list[_Cell]]]) -> list[tuple[str, list[_Cell]]]:
    """The rows that set the column widths under automatic layout: for each column the one with
    its longest line and the one with its longest word (in table order, without repeats)."""
    picked: set[int] = set()
    for i in range(len(rows[0][1]) if rows else 0):
        for measure in (_text_em, _longest_word_em):
            picked.add(
                max(
                    range(len(rows)),
                    key=lambda r: measure(rows[r][1][i].text, bold=bool(rows[r][0])),
                )
            )
    return [rows[r] for r in sorted(picked)]


def _measured_widths(html: str) -> list[float]:
    """The column widths, in percent of the table's, that weasyprint's automatic layout gives the
    (sample) table in `html`."""
    import weasyprint
    from weasyprint.formatting_structure.boxes import TableBox

    page = weasyprint.HTML(string=html, base_url=None).render().pages[0]
    table = next(b for b in page._page_box.descendants() if isinstance(b, TableBox))
    total = sum(table.column_widths) or 1.0
    return [round(100 * w / total, 4) for w in table.column_widths]


def render_html(report: TableReport) -> str:
    """The report as one HTML document (CSS inlined), what weasyprint lays out."""
    table = report.table
    numeric = [
        c in AMOUNT_COLUMNS or any(_is_number(row[i]) for row in table.rows)
        for i, c in enumerate(table.columns)
    ]
    # Stripe id columns get a set width and break anywhere; dates and short codes never break;
    # other text wraps between words (inside one only if it would overflow the page).
    ids = [c.endswith(("ID", "IDs")) for c in table.columns]
    keep = [c in UNBROKEN or c.endswith("Date") for c in table.columns]
    rows = []
    for row in table.rows:
        cells = []
        for i, value in enumerate(row):
            css = "num" if numeric[i] else "id" if ids[i] else "code" if keep[i] else ""
            if _is_number(value) and value < 0:
                css += " neg"
            cells.append(_Cell(_text(value), css.strip()))
        kind = "total" if row and row[0] in TOTAL_LABELS else ""
        rows.append((kind, cells))
    cur = report.currency.upper()
    period = period_label(report.period_start, report.period_end)
    if report.report_type in PER_ROW_CURRENCY:
        amounts = "Amounts in each row's currency, a total per currency"
    else:
        amounts = f"Amounts in {cur}"
    landscape = report.report_type in LANDSCAPE
    dense = len(table.columns) > 9
    columns = [_column_header(c, cur) for c in table.columns]
    heads = [
        "num" if n else "id" if i else "name" if c in NAMES else ""
        for c, n, i in zip(table.columns, numeric, ids, strict=True)
    ]
    context = {
        "r": report,
        "css": stylesheet("report_table.css"),
        "title": TITLES.get(report.report_type, report.report_type),
        "period": period,
        "plan": f"Plan {report.plan_id}" if report.plan_id else "All plans",
        "amounts": amounts,
        "decimals": _decimals(report),
        "landscape": landscape,
        "dense": dense,
        "columns": columns,
        "heads": heads,
        "created_iso": _stamp(report).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("finance_pipeline.reports.pdf", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("report_table.html.j2")
    widths = None
    if len(rows) > AUTO_LAYOUT_ROWS:
        widths = _measured_widths(template.render(**context, rows=_sample(rows), widths=None))
    return template.render(**context, rows=rows, widths=widths)


def _stamp(report: TableReport) -> datetime:
    """The file's creation date: the day after the period, so the same rows give the same bytes."""
    after = report.period_end + timedelta(days=1)
    return datetime(after.year, after.month, after.day, tzinfo=UTC)


def render_table_pdf(report: TableReport) -> bytes:
    """The report's PDF (PDF/A-3b, its CSV attached); byte-identical for the same table."""
    import weasyprint

    csv_bytes = report.table.render()
    stamp = _stamp(report)
    attachment = weasyprint.Attachment(
        file_obj=io.BytesIO(csv_bytes),
        name=report.csv_name,
        description=f"{report.workspace_name}: {report.csv_name}, the same figures as this PDF",
        created=stamp,
        modified=stamp,
        relationship="Data",
    )
    identifier = hashlib.sha256(
        "\x1f".join(
            (report.workspace_id, report.report_type, report.csv_name, stamp.isoformat())
        ).encode()
    ).hexdigest()[:32]
    with source_date_epoch(int(stamp.timestamp())):
        return weasyprint.HTML(string=render_html(report), base_url=None).write_pdf(
            pdf_variant="pdf/a-3b",
            attachments=[attachment],
            pdf_identifier=identifier.encode(),
        )


def table_report(
    ws: Workspace,
    report_type: str,
    start: date,
    end: date,
    plan_id: str | None,
    table: CsvTable,
) -> TableReport:
    """The printable report of a table built by `reports.render.build_csv`."""
    key = ReportKey(ws.id, report_type, start, end, plan_id, "csv")
    return TableReport(
        workspace_id=ws.id,
        workspace_name=ws.name,
        report_type=report_type,
        period_start=start,
        period_end=end,
        plan_id=plan_id,
        currency=ws.reporting_currency,
        table=table,
        csv_name=file_name(key, 1),
    )


def store_table_pdf(
    wh: Warehouse,
    root: Path,
    ws: Workspace,
    report_type: str,
    start: date,
    end: date,
    plan_id: str | None = None,
    *,
    table: CsvTable | None = None,
    export_id: str | None = None,
) -> CatalogueEntry:
    """Render the report's PDF (from `table` when the CSV was just built) and store it beside the
    CSV (format pdf); a changed rendering becomes the next version, an unchanged one is a no-op."""
    if table is None:
        table = build_csv(wh, ws, report_type, start, end, plan_id)
    pdf = render_table_pdf(table_report(ws, report_type, start, end, plan_id, table))
    return store_report(
        wh,
        root,
        ReportKey(ws.id, report_type, start, end, plan_id, "pdf"),
        pdf,
        new_version_if_changed=True,
        export_id=export_id,
    )

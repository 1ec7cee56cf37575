"""Report table PDFs: each report type prints the same figures as its CSV (same builder, same
footed values), in order; pages have content inside their margins, wide reports are landscape,
long tables repeat their header on every page, the CSV rides along, and the bytes are stable."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from finance_pipeline.lib import report_csv
from finance_pipeline.reports.pdf_tables import (
    LANDSCAPE,
    TITLES,
    render_html,
    render_table_pdf,
    table_report,
)
from finance_pipeline.reports.render import REPORT_TYPES, build_csv, workspace
from finance_pipeline.warehouse import Warehouse, apply_migrations
from finance_pipeline_tests.pdf_pages import (
    assert_pages_inked_within_margins,
    needs_poppler,
    page_images,
    pdf_text,
)
from finance_pipeline_tests.reports.test_report_assets import EVIL, WS, seed

SEPT = (date(2026, 9, 1), date(2026, 9, 30))
FIGURE = re.compile(r"(?<![\w.,-])-?\d{1,3}(?:,\d{3})*\.\d{2}(?![\w.])")

pytestmark = needs_poppler


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """September 2026 of the report asset tests' workspace, on SQLite."""
    wh = Warehouse(f"sqlite:///{tmp_path_factory.mktemp('pdf') / 'warehouse.sqlite'}")
    apply_migrations(wh)
    seed(wh)
    yield wh
    wh.dispose()


def _figures(table: report_csv.CsvTable) -> list[str]:
    """The table's amounts as printed ("1,234.56"), row by row, left to right."""
    return [f"{cell:,.2f}" for row in table.rows for cell in row if isinstance(cell, Decimal)]


@pytest.mark.parametrize("report_type", REPORT_TYPES)
def test_the_pdf_prints_the_csv_figures(
    seeded: Warehouse, report_type: str, tmp_path: Path
) -> None:
    ws = workspace(seeded, WS)
    table = build_csv(seeded, ws, report_type, *SEPT)
    pdf = render_table_pdf(table_report(ws, report_type, *SEPT, None, table))
    path = tmp_path / f"{report_type}.pdf"
    path.write_bytes(pdf)
    text = pdf_text(path)
    # Every amount of the CSV, in the same order (lines, then the footed totals).
    assert FIGURE.findall(text) == _figures(table)
    assert table.rows and _figures(table)
    assert TITLES[report_type] in text and "September 2026" in text and "All plans" in text
    assert re.search(r"page 1 of 1\b", text) and "One (ws1)" in text
    # Text prints as it is: the CSV's formula guard (a leading ') is for spreadsheets only.
    if report_type in ("margins", "invoice_summary", "mrr_movements"):
        # (a narrow column may wrap the name, so only its start is looked for)
        assert EVIL[:10] in text and "'" + EVIL[:10] not in text
    # The CSV is attached, byte for byte.
    subprocess.run(["pdfdetach", "-saveall", "-o", str(tmp_path), str(path)], check=True)
    name = "margins-2026-09.csv" if report_type == "margins" else f"{report_type}-2026-09.csv"
    assert (tmp_path / name).read_bytes() == table.render()
    pages = page_images(path, tmp_path)
    assert_pages_inked_within_margins(pages)
    w, h, _ = pages[0]
    assert (w > h) is (report_type in LANDSCAPE)
    assert render_table_pdf(table_report(ws, report_type, *SEPT, None, table)) == pdf


def test_a_plan_filter_and_a_range_are_in_the_title(seeded: Warehouse, tmp_path: Path) -> None:
    ws = workspace(seeded, WS)
    start, end = date(2026, 9, 3), date(2026, 9, 12)
    table = build_csv(seeded, ws, "mrr_breakdown", start, end, "price_pro")
    path = tmp_path / "plan.pdf"
    path.write_bytes(
        render_table_pdf(table_report(ws, "mrr_breakdown", start, end, "price_pro", table))
    )
    text = pdf_text(path)
    assert "2026-09-03 to 2026-09-12" in text and "Plan price_pro" in text
    assert FIGURE.findall(text) == _figures(table)


def test_a_long_table_repeats_its_header_on_every_page(seeded: Warehouse, tmp_path: Path) -> None:
    invoices = [
        {
            "number": f"INV-{i:04d}",
            "customer_id": f"cus_{i:014d}",
            "customer_name": f"Customer {i:03d} Holdings Ltd",
            "status": "paid",
            "created": date(2026, 9, 1) + timedelta(days=i % 30),
            "paid": date(2026, 9, 1) + timedelta(days=i % 30),
            "period_start": date(2026, 9, 1),
            "period_end": date(2026, 9, 30),
            "subtotal": 1_234_567_891 * (i + 1) // 3,
            "discount": 0,
            "tax": 12_345_678,
            "total": 1_234_567_891 * (i + 1) // 3 + 12_345_678,
            "amount_paid": 1_000_000 * i,
            "currency": "eur" if i % 4 == 0 else "usd",
            "id": f"in_1Nx{i:020d}",
        }
        for i in range(150)
    ]
    table = report_csv.invoice_summary(invoices)
    ws = workspace(seeded, WS)
    path = tmp_path / "long.pdf"
    path.write_bytes(render_table_pdf(table_report(ws, "invoice_summary", *SEPT, None, table)))
    text = pdf_text(path)
    pages = [p for p in text.split("\f") if p.strip()]
    assert len(pages) >= 3
    for n, page in enumerate(pages, start=1):
        # (a header cell may wrap over two lines: the one-line ones are looked for in order)
        assert re.search(r"Subtotal\s+Discount\s+Tax\s+Total\s+Amount Paid\s+Currency", page)
        assert f"page {n} of {len(pages)}" in page
    assert FIGURE.findall(text) == _figures(table)
    # One total per currency, each the sum of its lines to the cent (footed).
    totals = [r for r in table.rows if r[0] == "Total"]
    assert [r[13] for r in totals] == ["EUR", "USD"]
    assert_pages_inked_within_margins(page_images(path, tmp_path))


def test_an_empty_report_says_so(seeded: Warehouse, tmp_path: Path) -> None:
    ws = workspace(seeded, "ws2")
    table = build_csv(seeded, ws, "failed_payments", *SEPT)
    assert table.rows == []
    html = render_html(table_report(ws, "failed_payments", *SEPT, None, table))
    assert '<th class="num">Amount</th>' in html  # amount columns stay right-aligned
    path = tmp_path / "empty.pdf"
    path.write_bytes(render_table_pdf(table_report(ws, "failed_payments", *SEPT, None, table)))
    text = pdf_text(path)
    assert "Nothing to report for September 2026." in text and "0 lines" in text
    assert_pages_inked_within_margins(page_images(path, tmp_path))

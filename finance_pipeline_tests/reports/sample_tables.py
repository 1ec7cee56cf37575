"""Render the six report table PDFs of a realistic month (a simulated account built through the
real jobs) and their pages as PNGs, for looking at the layout:

    uv run python -m finance_pipeline_tests.reports.sample_tables OUT_DIR [--customers 60]
"""

from __future__ import annotations

import subprocess
from datetime import date

from finance_pipeline.reports.pdf_tables import render_table_pdf, table_report
from finance_pipeline.reports.render import REPORT_TYPES, build_csv, workspace
from finance_pipeline_tests.reports_pdf.dataset import WORKSPACE, sample_account

START, END = date(2026, 10, 1), date(2026, 10, 31)


def main() -> None:
    """Build (or reuse) the warehouse under OUT_DIR, render October 2026, rasterize the pages."""
    args, out, wh = sample_account(END, customers=60, months=8)
    ws = workspace(wh, WORKSPACE)
    for report_type in REPORT_TYPES:
        table = build_csv(wh, ws, report_type, START, END)
        pdf = out / f"{report_type}-2026-10.pdf"
        pdf.write_bytes(render_table_pdf(table_report(ws, report_type, START, END, None, table)))
        subprocess.run(
            ["pdftoppm", "-r", str(args.dpi), "-png", str(pdf), str(out / report_type)], check=True
        )
        print(pdf)


if __name__ == "__main__":
    main()

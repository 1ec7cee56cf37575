"""Render the six report table PDFs of a realistic month (a simulated account built through the
real jobs) and their pages as PNGs, for looking at the layout:

    uv run python -m finance_pipeline_tests.reports.sample_tables OUT_DIR [--customers 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
from datetime import date
from pathlib import Path

from finance_pipeline.reports.pdf_tables import render_table_pdf, table_report
from finance_pipeline.reports.render import REPORT_TYPES, build_csv, workspace
from finance_pipeline.warehouse import Warehouse, apply_migrations
from finance_pipeline_tests.reports_pdf.dataset import WORKSPACE, build_account

START, END = date(2026, 10, 1), date(2026, 10, 31)


def main() -> None:
    """Build (or reuse) the warehouse under OUT_DIR, render October 2026, rasterize the pages."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--months", type=int, default=8)
    parser.add_argument("--dpi", type=int, default=60)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FP_DATA_DIR", str(out / "data"))
    os.environ.setdefault("FP_SECRET_KEY", "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q=")
    db = out / "warehouse.sqlite"
    fresh = not db.exists()
    wh = Warehouse(f"sqlite:///{db}")
    if fresh:
        apply_migrations(wh)
        build_account(
            wh, out / "landing", customers=args.customers, months=args.months, end=END, seed=7
        )
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

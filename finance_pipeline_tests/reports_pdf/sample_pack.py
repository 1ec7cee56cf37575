"""Build a realistic close pack (a simulated account of ~100 customers over 14 months) and write
the PDF and its pages as PNGs, for looking at the layout:

    uv run python -m finance_pipeline_tests.reports_pdf.sample_pack OUT_DIR [--customers 100]
"""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime

from finance_pipeline.reports.pdf.pack_data import CheckResult, close_pack_data
from finance_pipeline.reports.pdf.render import render_close_pack
from finance_pipeline_tests.reports_pdf.dataset import WORKSPACE, sample_account

END = date(2026, 10, 31)


def main() -> None:
    """Build (or reuse) the warehouse under OUT_DIR, render October 2026, rasterize the pages."""
    args, out, wh = sample_account(END, customers=100, months=14)
    checks = [
        CheckResult("ledger_matches_raw_stripe", True, "ledger = raw Stripe totals"),
        CheckResult("movement_identity_holds", True, "MRR identity on every day"),
    ]
    data = close_pack_data(
        wh, WORKSPACE, END, generated_at=datetime(2026, 11, 2, 6, 0, tzinfo=UTC), checks=checks
    )
    pdf = out / "close_pack_2026-10.pdf"
    pdf.write_bytes(render_close_pack(data, {"mrr_daily.csv": b"day,mrr_cents\n"}))
    subprocess.run(
        ["pdftoppm", "-r", str(args.dpi), "-png", str(pdf), str(out / "page")], check=True
    )
    print(pdf)


if __name__ == "__main__":
    main()

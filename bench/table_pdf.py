"""Benchmark: one long report table PDF (an invoice summary of N invoices), CPU seconds to render.

    uv run python bench/table_pdf.py --rows 5000 --out /tmp/invoice_summary.pdf

The invoices are synthetic (the shape of `report_csv.invoice_summary`'s input: two currencies,
long Stripe ids and names); the workspace is a stand-in, nothing is read from a warehouse.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from finance_pipeline.lib import report_csv
from finance_pipeline.reports.pdf_tables import render_table_pdf, table_report

START, END = date(2026, 10, 1), date(2026, 10, 31)


def invoices(n: int) -> list[dict[str, Any]]:
    """`n` invoices of October 2026, every fourth in EUR, with micro-unit amounts."""
    return [
        {
            "number": f"INV-{i:05d}",
            "customer_id": f"cus_{i:014d}",
            "customer_name": f"Customer {i:04d} Holdings Ltd",
            "status": "paid" if i % 7 else "open",
            "created": START + timedelta(days=i % 31),
            "paid": START + timedelta(days=i % 31) if i % 7 else None,
            "period_start": START,
            "period_end": END,
            "subtotal": 1_234_567_891 * (i % 97 + 1) // 3,
            "discount": 0 if i % 5 else 10_000_000,
            "tax": 12_345_678,
            "total": 1_234_567_891 * (i % 97 + 1) // 3 + 12_345_678 - (0 if i % 5 else 10_000_000),
            "amount_paid": 1_000_000 * (i % 1000) if i % 7 else 0,
            "currency": "eur" if i % 4 == 0 else "usd",
            "id": f"in_1Nx{i:020d}",
        }
        for i in range(n)
    ]


def main() -> None:
    """Build the table (not timed), then time `render_table_pdf` in CPU and wall seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--out", type=Path, help="write the PDF here")
    args = parser.parse_args()
    table = report_csv.invoice_summary(invoices(args.rows))
    ws = SimpleNamespace(id="ws_bench", name="Bench Ltd", reporting_currency="usd")
    report = table_report(ws, "invoice_summary", START, END, None, table)  # type: ignore[arg-type]
    import weasyprint  # noqa: F401  (imported before the clock starts)

    cpu, wall = time.process_time(), time.perf_counter()
    pdf = render_table_pdf(report)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if args.out:
        args.out.write_bytes(pdf)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(
        json.dumps(
            {
                "rows": len(table.rows),
                "cpu_s": round(cpu, 2),
                "wall_s": round(wall, 2),
                "pdf_bytes": len(pdf),
                "peak_rss_mib": rss,
            }
        )
    )


if __name__ == "__main__":
    main()

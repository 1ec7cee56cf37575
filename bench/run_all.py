"""Every benchmark of bench/ at a small size, one after another, in a few minutes: a smoke run of
the methods (each script still runs, its figures are sane), not the figures bench/README.md
reports, which come from the full sizes given there.

    uv run python bench/run_all.py                      # all, results in bench/results/run_all/
    uv run python bench/run_all.py --only ingest,marts  # some
    uv run python bench/run_all.py --list

Each benchmark runs in its own process with `--json` into the results folder; its output goes to
`<name>.log` beside it. The summary gives each one's wall seconds and exit status; the run fails
if any benchmark failed. PostgreSQL benchmarks use --pg (default: the local server, trust auth).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Bench:
    """One benchmark at its small size: a name, the script's arguments (without --json)."""

    name: str
    args: tuple[str, ...]
    needs: tuple[str, ...] = ()  # commands it needs on PATH

    def argv(self, out: Path, pg: str) -> list[str]:
        args = [a.replace("{pg}", pg) for a in self.args]
        return [sys.executable, *args, "--json", str(out / f"{self.name}.json")]


BENCHES = (
    # Stripe ingestion under the 100 req/s limit, with 150 ms of latency per request (item 1).
    Bench("ingest_sqlite", ("bench/ingest_throughput.py", "--small", "--latency-ms", "150")),
    Bench(
        "ingest_postgresql",
        ("bench/ingest_throughput.py", "--small", "--latency-ms", "150", "--warehouse", "{pg}"),
    ),
    # Full rebuild and incremental day of the core tables and MRR marts, both databases.
    Bench("marts", ("bench/marts_rebuild.py", "--sizes", "300", "--months", "12")),
    # The demo's full-history backfill through Dagster (bookkeeping per partition).
    Bench(
        "backfill",
        ("bench/backfill_bookkeeping.py", "all", "--customers", "40", "--months", "6"),
    ),
    # Runs fanned out per workspace through two celery workers; cost per workspace.
    Bench("fanout", ("bench/workspace_fanout.py", "--small"), needs=("redis-server",)),
    # The close pack and the whole month-end close.
    Bench(
        "close",
        (
            "bench/close_pack.py",
            "--customers",
            "300",
            "--months",
            "12",
            "--fleet",
            "3",
            "--repeat",
            "1",
        ),
    ),
    # Read API latency with wrk, two uvicorn workers on PostgreSQL.
    Bench(
        "api",
        (
            "bench/api_latency.py",
            "--customers",
            "300",
            "--months",
            "12",
            "--seconds",
            "5",
            "--rate",
            "50",
        ),
        needs=("wrk",),
    ),
    # The soak (issue 12, load held) for half a minute: its correctness checks count, its
    # timing targets (p99, memory growth) are reported only; the 10-minute run is in README.
    Bench(
        "soak",
        (
            "bench/soak.py",
            "--customers",
            "20",
            "--months",
            "3",
            "--seconds",
            "30",
            "--unloaded-seconds",
            "10",
            "--executor",
            "in_process",
            "--no-timing-targets",
        ),
    ),
)


def main() -> int:
    """Run the chosen benchmarks; print a summary; non-zero if any failed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated names (default: all)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "run_all")
    p.add_argument("--pg", default=PG, help="PostgreSQL server URL for the PostgreSQL runs")
    args = p.parse_args()
    if args.list:
        for b in BENCHES:
            print(f"{b.name:<18} {' '.join(b.args)}")
        return 0
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {b.name for b in BENCHES}
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for bench in chosen:
        missing = [c for c in bench.needs if shutil.which(c) is None]
        if missing:
            print(f"{bench.name}: needs {', '.join(missing)} (apt-get install {' '.join(missing)})")
            summary.append({"name": bench.name, "status": f"missing {', '.join(missing)}"})
            continue
        log = args.out / f"{bench.name}.log"
        print(
            f"{bench.name}: running ({log.relative_to(ROOT) if log.is_relative_to(ROOT) else log})"
        )
        started = time.monotonic()
        with log.open("w") as fh:
            done = subprocess.run(
                bench.argv(args.out, args.pg),
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        seconds = round(time.monotonic() - started, 1)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        summary.append({"name": bench.name, "status": status, "seconds": seconds})
        print(f"{bench.name}: {status} in {seconds} s")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(f"{s['name']:<18} {s['status']:<12} {s.get('seconds', '')}" for s in summary))
    return 0 if all(s["status"] == "ok" for s in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())

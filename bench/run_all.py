"""Every benchmark of bench/ at a small size, one after another, in a few minutes: a smoke run of
the methods (each script still runs, its figures are sane), not the figures bench/README.md
reports, which come from the full sizes given there.

    uv run python bench/run_all.py                      # all, results in bench/results/run_all/
    uv run python bench/run_all.py --only ingest,marts  # some
    uv run python bench/run_all.py --list

Each benchmark runs in its own process with `--json` into the results folder; its output goes to
`<name>.log` beside it. The summary (printed, and `summary.json`) gives each one's wall seconds,
exit status, headline figures and the load average; the run fails if any benchmark failed.
PostgreSQL benchmarks use --pg (default: the local server, trust auth). A command a benchmark needs
(`wrk` for the API, `redis-server` for the fan-out) is installed from Debian's packages with
apt-get when missing, as scripts/bootstrap.sh does (`--no-install`: skip that benchmark instead).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
            "20",
            # Few connections and short phases: at 20 connections on a loaded 2-core machine a
            # route's requests queued past the 5 s window and none completed in it.
            "--connections",
            "4",
            "--calibrate",
            "3",
            "--ingest-seconds",
            "5",
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ensure_commands(names: tuple[str, ...], install: bool) -> list[str]:
    """The commands among `names` still missing after installing them (their Debian packages have
    the same names) with apt-get, as root or through password-less sudo."""
    missing = [c for c in names if shutil.which(c) is None]
    if not missing or not install or shutil.which("apt-get") is None:
        return missing
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print(f"installing {' '.join(missing)} (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *missing], env=env, check=False)
    return [c for c in names if shutil.which(c) is None]


def _get(doc: Any, *path: Any) -> Any:
    for key in path:
        try:
            doc = doc[key]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _fmt(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def headline(name: str, doc: Any) -> str:
    """A benchmark's main figures from its JSON, in one line ("" when it has none of them)."""
    parts: list[str] = []
    if name.startswith("ingest") and isinstance(doc, dict):
        for label, res in doc.items():
            if isinstance(res, dict) and "ratio_of_cap" in res:
                parts.append(f"{label} {res['ratio_of_cap']} of the cap")
    elif name == "marts":
        for size, entry in (_get(doc, "sizes") or {}).items():
            for key, run in (entry.get("runs") or {}).items():
                cpu = _get(run, "total", "cpu_s")
                if cpu is not None:
                    parts.append(f"{size} {key} {_fmt(cpu)} CPU-s")
    elif name == "backfill" and isinstance(doc, dict):
        parts.append(f"{_fmt(doc.get('wall_s'))} s wall, {_fmt(doc.get('cpu_s'))} CPU-s")
    elif name == "fanout":
        ratio = _get(doc, "workers", "ratio_median")
        if ratio is not None:
            parts.append(f"1 over 2 workers {ratio}x")
        for g in _get(doc, "growth") or []:
            parts.append(
                f"{g.get('workspaces')} ws: steady {_fmt(g.get('all_steady_cpu_s'))} CPU-s, "
                f"scoped run {_fmt(g.get('scoped_cpu_s_median'))} CPU-s"
            )
    elif name == "close":
        for key, run in (_get(doc, "runs") or {}).items():
            for mode, found in (run.get("measurements") or {}).items():
                first = found[0] if found else {}
                cpu = _get(first, "fleet", "per_workspace_cpu_s_median")
                cpu = _get(first, "total", "cpu_s") if cpu is None else cpu
                if cpu is not None:
                    parts.append(f"{key} {mode} {_fmt(cpu)} CPU-s")
    elif name == "api":
        for route, r in (_get(doc, "routes") or {}).items():
            parts.append(f"{route} {r.get('rate')} req/s p99 {r.get('p99_us', 0) / 1000:.0f} ms")
        items = _get(doc, "ingest", "items_per_s")
        if items is not None:
            parts.append(f"ingest {items} items/s")
    return "; ".join(parts)


def print_summary(report: dict[str, Any]) -> None:
    """The summary table: name, status, seconds, load average after, headline figures."""
    for s in report["benches"]:
        line = f"{s['name']:<18} {s['status']:<10} {s.get('seconds', ''):>7} s"
        if s.get("cpu_s") is not None:
            line += f"  cpu {s['cpu_s']:>6} s"
        print(f"{line}  load {s.get('loadavg_end', '')}  {s.get('headline', '')}".rstrip())
    print(
        f"total {report['total_seconds']} s; load average {report['loadavg_start'][0]} at the "
        f"start, {report['loadavg_end'][0]} at the end"
    )


def main() -> int:
    """Run the chosen benchmarks; print a summary; non-zero if any failed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated names (default: all)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "run_all")
    p.add_argument("--pg", default=PG, help="PostgreSQL server URL for the PostgreSQL runs")
    p.add_argument(
        "--no-install", action="store_true", help="skip a benchmark whose command is missing"
    )
    p.add_argument(
        "--summary",
        action="store_true",
        help="print the summary of the last run in --out again (headlines from its JSON files)",
    )
    args = p.parse_args()
    if args.summary:
        report = json.loads((args.out / "summary.json").read_text())
        for s in report["benches"]:
            result = args.out / f"{s['name']}.json"
            if result.exists():
                s["headline"] = headline(s["name"], json.loads(result.read_text()))
        print_summary(report)
        return 0
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
    summary: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    started_all = time.monotonic()
    for bench in chosen:
        missing = ensure_commands(bench.needs, not args.no_install)
        if missing:
            print(f"{bench.name}: needs {', '.join(missing)} (apt-get install {' '.join(missing)})")
            summary.append({"name": bench.name, "status": f"missing {', '.join(missing)}"})
            continue
        log = args.out / f"{bench.name}.log"
        print(
            f"{bench.name}: running ({log.relative_to(ROOT) if log.is_relative_to(ROOT) else log})"
        )
        started = time.monotonic()
        cpu0 = _children_cpu()
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
        result = args.out / f"{bench.name}.json"
        doc = json.loads(result.read_text()) if result.exists() else None
        summary.append(
            {
                "name": bench.name,
                "status": status,
                "seconds": seconds,
                # CPU of the benchmark's processes (not of PostgreSQL, nor of celery workers,
                # which are not its children): its size on a quiet machine.
                "cpu_s": round(_children_cpu() - cpu0, 1),
                "headline": headline(bench.name, doc) if doc is not None else "",
                "loadavg_end": round(os.getloadavg()[0], 2),
            }
        )
        print(f"{bench.name}: {status} in {seconds} s (load {os.getloadavg()[0]:.2f})")
    report = {
        "total_seconds": round(time.monotonic() - started_all, 1),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "benches": summary,
    }
    (args.out / "summary.json").write_text(json.dumps(report, indent=2))
    print_summary(report)
    return 0 if all(s["status"] == "ok" for s in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())

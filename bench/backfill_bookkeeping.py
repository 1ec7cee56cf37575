"""Benchmark: Dagster's bookkeeping in the demo's full-history backfill.

The demo (`scripts/demo.sh`) syncs the simulated Stripe accounts, then backfills every daily
partition from the first simulated month to yesterday (core, MRR, CFO marts), every full month
(margins, forecast), the alerts and memos, and closes the last months. This script times that
backfill alone, on the embedded default (SQLite warehouse, SQLite Dagster instance), and says how
much of it went into the Dagster instance: the events stored per type, their bytes, and the time
spent in the event log's `store_event`.

Steps (each its own process, so a timing is that of the backfill, not of the simulation):

- prepare: simulate the demo's two Stripe accounts (`--customers` each, `--months` of history),
  serve them from the stand-in and run the demo's two ingest jobs into a fresh data folder
  (`--out`); not measured.
- run: copy the prepared folder to a temporary one and run the demo's backfill on it
  (`finance_pipeline_dev.demo.backfill_history`, the phases the demo prints after the ingest),
  then print wall and CPU seconds, the events stored and the time spent storing them (`--json`
  writes them; `--profile FILE` writes a cProfile of the backfill).
- all: prepare into a temporary folder, then run once (what `bench/run_all` calls, small by
  default: about a minute).

Usage:

    uv run python bench/backfill_bookkeeping.py prepare --customers 300 --months 24 --out DIR
    uv run python bench/backfill_bookkeeping.py run --prepared DIR [--json out.json]
    uv run python bench/backfill_bookkeeping.py all [--customers 40 --months 6]

Method and figures: bench/README.md, section "Dagster bookkeeping: the demo backfill".
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEED = 7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _use_data_dir(data_dir: Path) -> None:
    """Point this process's settings and Dagster instance at data_dir (before any import reads
    them)."""
    os.environ["FP_DATA_DIR"] = str(data_dir)
    os.environ["FP_DEPLOYMENT"] = "embedded"
    os.environ.pop("FP_WAREHOUSE_URL", None)
    from finance_pipeline.deployment import dagster_home
    from finance_pipeline.settings import get_settings

    get_settings.cache_clear()
    os.environ["DAGSTER_HOME"] = str(dagster_home(get_settings()))


def prepare(out: Path, customers: int, months: int) -> None:
    """Simulate, serve and ingest as the demo does, into a fresh data folder `out`."""
    from datetime import UTC, datetime, timedelta

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _use_data_dir(out)
    from dagster import DagsterInstance
    from finance_pipeline_dev import demo
    from finance_pipeline_dev.processes import standin_command, wait_for_standin

    from finance_pipeline.partitions import HISTORY_START
    from finance_pipeline.settings import get_settings

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    fixture, sim = demo.prepare_demo_data(
        get_settings(), customers=customers, months=months, seed=SEED, standin_url=url
    )
    standin = subprocess.Popen(
        standin_command(port, fixture), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_standin(url, sim.fixture, 60)
        instance = DagsterInstance.get()
        for job in ("stripe_ingest", "ingest_landing_files"):
            demo._execute(instance, job, run_config=demo.QUIET)
    finally:
        standin.terminate()
        standin.wait(timeout=30)
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    first_day = max(sim.first_day.replace(day=1), date.fromisoformat(HISTORY_START))
    (out / "bench_backfill.json").write_text(
        json.dumps(
            {
                "customers": customers,
                "months": months,
                "first_day": first_day.isoformat(),
                "last_day": last_day.isoformat(),
            }
        )
    )


def _event_counts(home: Path) -> dict[str, Any]:
    """Events in the instance's run shards, by type, with their stored bytes."""
    counts: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for db in (home / "history" / "runs").glob("*.db"):
        if db.name == "index.db":
            continue
        con = sqlite3.connect(db)
        try:
            for kind, n, b in con.execute(
                "SELECT dagster_event_type, COUNT(*), SUM(LENGTH(event)) FROM event_logs GROUP BY 1"
            ):
                counts[kind or "log"] += n
                size[kind or "log"] += b or 0
        finally:
            con.close()
    return {
        "events": sum(counts.values()),
        "event_bytes": sum(size.values()),
        "by_type": {k: {"events": counts[k], "bytes": size[k]} for k, _ in counts.most_common()},
    }


def _backfill(demo: Any, instance: Any, first_day: date, last_day: date, progress: Any) -> None:
    """The demo's backfill phases; on a tree from before `backfill_history` existed (to measure
    it paired against this one), its `materialize_everything` without the ingest and the close."""
    if hasattr(demo, "backfill_history"):
        demo.backfill_history(instance, first_day, last_day, progress)
        return
    execute = demo._execute

    def backfill_jobs_only(instance: Any, job_name: str, **kwargs: Any) -> Any:
        if job_name in ("stripe_ingest", "ingest_landing_files", "month_end_close"):
            return types.SimpleNamespace(get_asset_materialization_events=list)
        return execute(instance, job_name, **kwargs)

    demo._execute = backfill_jobs_only
    try:
        demo.materialize_everything(instance, first_day, last_day, progress, serve=True)
    finally:
        demo._execute = execute


def run(prepared: Path, json_out: Path | None, profile: Path | None) -> dict[str, Any]:
    """Run the demo's backfill on a copy of the prepared folder; wall, CPU and events."""
    info = json.loads((prepared / "bench_backfill.json").read_text())
    with tempfile.TemporaryDirectory(prefix="bench_backfill_") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(prepared, data)
        _use_data_dir(data)
        home = Path(os.environ["DAGSTER_HOME"])
        before = _event_counts(home)
        from dagster import DagsterInstance
        from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
            SqliteEventLogStorage,
        )
        from finance_pipeline_dev import demo

        # Time inside the event log's store_event (and store_event_batch): the bookkeeping that
        # waits on SQLite commits.
        stored = {"seconds": 0.0, "calls": 0}

        def timed(fn: Any) -> Any:
            def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(self, *args, **kwargs)
                finally:
                    stored["seconds"] += time.perf_counter() - t
                    stored["calls"] += 1

            return wrapper

        storage_cls = type(DagsterInstance.get().event_log_storage)
        for cls in {SqliteEventLogStorage, storage_cls}:
            for name in ("store_event", "store_event_batch"):
                if name in vars(cls):
                    setattr(cls, name, timed(vars(cls)[name]))

        first_day = date.fromisoformat(info["first_day"])
        last_day = date.fromisoformat(info["last_day"])
        progress = demo.Progress(total=3)
        prof = cProfile.Profile() if profile else None
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        _backfill(demo, DagsterInstance.get(), first_day, last_day, progress)
        if prof:
            prof.disable()
            prof.dump_stats(profile)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        after = _event_counts(home)
    new = {
        k: {
            "events": v["events"] - before["by_type"].get(k, {}).get("events", 0),
            "bytes": v["bytes"] - before["by_type"].get(k, {}).get("bytes", 0),
        }
        for k, v in after["by_type"].items()
    }
    result = {
        **info,
        "wall_s": round(wall, 2),
        "cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 2),
        "store_event_s": round(stored["seconds"], 2),
        "store_event_calls": stored["calls"],
        "events": sum(v["events"] for v in new.values()),
        "event_mb": round(sum(v["bytes"] for v in new.values()) / 2**20, 1),
        "events_by_type": {k: v for k, v in new.items() if v["events"]},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "dagster_event_batch_size": os.environ.get("DAGSTER_EVENT_BATCH_SIZE", ""),
    }
    print(json.dumps(result, indent=2))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    pr = sub.add_parser("prepare", help="simulate and ingest into --out (not measured)")
    pr.add_argument("--customers", type=int, default=300)
    pr.add_argument("--months", type=int, default=24)
    pr.add_argument("--out", type=Path, required=True)
    ru = sub.add_parser("run", help="time the backfill on a copy of --prepared")
    ru.add_argument("--prepared", type=Path, required=True)
    ru.add_argument("--json", type=Path)
    ru.add_argument("--profile", type=Path)
    al = sub.add_parser("all", help="prepare in a temporary folder, then run once")
    al.add_argument("--customers", type=int, default=40)
    al.add_argument("--months", type=int, default=6)
    al.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.step == "prepare":
        prepare(args.out, args.customers, args.months)
    elif args.step == "run":
        run(args.prepared, args.json, args.profile)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_backfill_prep_") as tmp:
            prepared = Path(tmp) / "prepared"
            # Each step in its own process: the run's settings and instance are its own.
            cmd = [sys.executable, __file__]
            subprocess.run(
                [
                    *cmd,
                    "prepare",
                    "--customers",
                    str(args.customers),
                    "--months",
                    str(args.months),
                    "--out",
                    str(prepared),
                ],
                check=True,
            )
            subprocess.run(
                [*cmd, "run", "--prepared", str(prepared)]
                + (["--json", str(args.json)] if args.json else []),
                check=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the refresh fanned out by workspace (docs/scaling.md).

Two measurements, both on PostgreSQL (the production warehouse), each in fresh databases created
and dropped here:

- `workers`: the same fanned-out refresh (FP_FANOUT_BATCH_SIZE runs of the `requested_refresh`
  job over a 3-day window, all launched at once) on 1 and on 2 dagster-celery workers (two worker
  sets from scripts/celery.sh, each on its own Redis), in alternating pairs A B A B...; the Dagster
  instance is the project's dagster.yaml on its own PostgreSQL database. Reported: wall seconds
  of each refresh, the ratio of each pair, and the load average.
- `growth`: the cost per workspace as the workspaces grow (10 -> 100 -> 1,000 small ones, the same
  small simulated account copied to each): at each size, one in-process run over every workspace
  (first build of the new ones, then again in steady state: nothing new, the daily 3-day window),
  and workspace-scoped runs (the fan-out's unit of work) of a few sampled workspaces in steady
  state; wall and CPU seconds of this process (the database server's CPU is not included).

Usage:

    uv run python bench/workspace_fanout.py                 # both, 10/100/1000 workspaces
    uv run python bench/workspace_fanout.py --small         # a quick pass (for bench/run_all)
    uv run python bench/workspace_fanout.py --modes growth --sizes 10,100 --json out.json

Method and figures: bench/README.md, section "Workspace fan-out".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get(
    "FP_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
WINDOW = ("2026-10-29", "2026-10-31")  # the daily schedule's 3-day restatement window


def fresh_database() -> contextlib.AbstractContextManager[str]:
    """A new PostgreSQL database (its URL), dropped on exit."""
    from finance_pipeline_dev.production import fresh_pg_database

    return fresh_pg_database(PG_ADMIN, prefix="fp_bench")


def _tags(window: tuple[str, str], scope: str | None = None) -> dict[str, str]:
    from finance_pipeline.tenancy import WORKSPACE_TAG

    tags = {
        "dagster/asset_partition_range_start": window[0],
        "dagster/asset_partition_range_end": window[1],
    }
    if scope:
        tags[WORKSPACE_TAG] = scope
    return tags


def _refresh_in_process(scope: str | None, window: tuple[str, str]) -> dict[str, float]:
    """One in-process requested_refresh run; wall and CPU seconds of this process."""
    import dagster as dg

    from finance_pipeline.definitions import defs

    job = defs.resolve_job_def("requested_refresh")
    wall, cpu = time.perf_counter(), time.process_time()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=_tags(window, scope)
    )
    if not result.success:
        raise RuntimeError(f"refresh of {scope or 'every workspace'} failed")
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def growth(sizes: list[int], samples: int, customers: int) -> list[dict[str, Any]]:
    """Cost per workspace at each size (see the module docstring)."""
    from finance_pipeline_dev.fanout_seed import grow_workspaces, seed_workspaces

    from finance_pipeline.settings import get_settings
    from finance_pipeline.warehouse import Warehouse, apply_migrations

    out = []
    with fresh_database() as url:
        os.environ["FP_WAREHOUSE_URL"] = url
        get_settings.cache_clear()
        wh = Warehouse(url)
        apply_migrations(wh)
        seed_workspaces(wh, 1, customers=customers)
        for n in sizes:
            t = time.perf_counter()
            ids = grow_workspaces(wh, n)
            seeded = time.perf_counter() - t
            first = _refresh_in_process(None, WINDOW)
            steady = _refresh_in_process(None, WINDOW)
            step = max(1, n // samples)
            scoped = [_refresh_in_process(ws, WINDOW) for ws in ids[::step][:samples]]
            row = {
                "workspaces": n,
                "seed_s": round(seeded, 2),
                "all_first_build_wall_s": round(first["wall_s"], 2),
                "all_steady_wall_s": round(steady["wall_s"], 2),
                "all_steady_cpu_s": round(steady["cpu_s"], 2),
                "all_steady_wall_per_ws_ms": round(1000 * steady["wall_s"] / n, 1),
                "scoped_runs": len(scoped),
                "scoped_wall_s_median": round(statistics.median(s["wall_s"] for s in scoped), 3),
                "scoped_cpu_s_median": round(statistics.median(s["cpu_s"] for s in scoped), 3),
                "raw_rows": int(wh.scalar("SELECT COUNT(*) FROM raw.stripe_invoices") or 0),
                "loadavg": os.getloadavg(),
            }
            print(json.dumps(row), flush=True)
            out.append(row)
        wh.dispose()
    return out


# --- workers ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _celery_env(port: int, run_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FP_CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "FP_CELERY_BACKEND_URL": f"redis://127.0.0.1:{port}/1",
        "FP_CELERY_RUN_DIR": str(run_dir),
    }


_JOB: Any = None
_INSTANCE: Any = None


def _init_launcher(home: str) -> None:
    """A launching process: the code location and the instance loaded once, before timing."""
    global _JOB, _INSTANCE
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    _JOB = ReconstructableRepository.for_module(
        "finance_pipeline.definitions", "defs", working_directory=str(ROOT)
    ).get_reconstructable_job("requested_refresh")
    _INSTANCE = dg.DagsterInstance.from_config(home)


def _launch(args: tuple[dict[str, Any], dict[str, str]]) -> bool:
    import dagster as dg

    run_config, tags = args
    with dg.execute_job(_JOB, instance=_INSTANCE, run_config=run_config, tags=tags) as result:
        return result.success


def workers(n_workspaces: int, batch: int, pairs: int, customers: int) -> dict[str, Any]:
    """1 vs 2 celery workers on the same fanned-out refresh (see the module docstring)."""
    from finance_pipeline_dev.fanout_seed import seed_workspaces
    from finance_pipeline_dev.production import production_env

    from finance_pipeline.executors import executor_run_config
    from finance_pipeline.fanout import fan_out
    from finance_pipeline.settings import get_settings
    from finance_pipeline.warehouse import Warehouse, apply_migrations

    tmp = Path(tempfile.mkdtemp(prefix="fp_fanout_bench_"))
    script = str(ROOT / "scripts" / "celery.sh")
    sets = {1: (_free_port(), tmp / "celery1"), 2: (_free_port(), tmp / "celery2")}
    with fresh_database() as dagster_url, fresh_database() as wh_url:
        home = tmp / "dagster_home"
        os.environ.update(
            {
                **production_env(wh_url, dagster_url, dagster_home=home),
                "FP_EXECUTOR": "celery",
                "FP_DATA_DIR": str(tmp / "data"),
            }
        )
        get_settings.cache_clear()
        wh = Warehouse(wh_url)
        apply_migrations(wh)
        ids = seed_workspaces(wh, n_workspaces, customers=customers)
        import dagster as dg

        # Dagster's storage tables created once here: the launchers then only connect to them.
        dg.DagsterInstance.from_config(str(home)).dispose()
        try:
            for n, (port, run_dir) in sets.items():
                subprocess.run(
                    ["bash", script, "start", str(n)], env=_celery_env(port, run_dir), check=True
                )
            # The core tables' first build, once, so each measured refresh is the same daily one.
            _refresh_in_process(None, WINDOW)
            results: dict[int, list[float]] = {1: [], 2: []}
            n_runs = 0
            for _ in range(pairs):
                for n, (port, run_dir) in sets.items():
                    os.environ.update(_celery_env(port, run_dir))
                    get_settings.cache_clear()
                    settings = get_settings()
                    requests = fan_out(
                        f"bench:{uuid.uuid4().hex}",
                        _tags(WINDOW),
                        ids,
                        batch,
                        run_config=executor_run_config(settings),
                    )
                    n_runs = len(requests)
                    with ProcessPoolExecutor(
                        len(requests), initializer=_init_launcher, initargs=(str(home),)
                    ) as pool:
                        list(pool.map(_init_noop, range(len(requests))))  # launchers loaded
                        t = time.perf_counter()
                        ok = list(pool.map(_launch, [(r.run_config, r.tags) for r in requests]))
                        results[n].append(time.perf_counter() - t)
                    if not all(ok):
                        raise RuntimeError(f"a run on {n} worker(s) failed")
                    print(f"{n} worker(s): {results[n][-1]:.1f} s, load {os.getloadavg()[0]:.2f}")
        finally:
            for port, run_dir in sets.values():
                subprocess.run(["bash", script, "stop"], env=_celery_env(port, run_dir))
            wh.dispose()
            shutil.rmtree(tmp, ignore_errors=True)
    ratios = [a / b for a, b in zip(results[1], results[2], strict=True)]
    return {
        "workspaces": n_workspaces,
        "runs": n_runs,
        "one_worker_wall_s": [round(x, 1) for x in results[1]],
        "two_workers_wall_s": [round(x, 1) for x in results[2]],
        "ratio_1_over_2": [round(r, 2) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 2),
        "loadavg_end": os.getloadavg(),
    }


def _init_noop(_: int) -> None:
    time.sleep(0.2)  # each pool process takes one, so all are started and initialized


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--modes", default="workers,growth")
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--customers", type=int, default=4)
    p.add_argument("--worker-workspaces", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--small", action="store_true", help="3 and 10 workspaces, 1 pair")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.small:
        a.sizes, a.samples, a.pairs, a.worker_workspaces = "3,10", 2, 1, 2
    os.environ.setdefault("FP_SECRET_KEY", "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q=")
    os.environ.setdefault("FP_DATA_DIR", tempfile.mkdtemp(prefix="fp_fanout_data_"))
    out: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    modes = a.modes.split(",")
    if "workers" in modes:
        out["workers"] = workers(a.worker_workspaces, a.batch, a.pairs, a.customers)
        print(json.dumps(out["workers"]), flush=True)
    if "growth" in modes:
        out["growth"] = growth([int(s) for s in a.sizes.split(",")], a.samples, a.customers)
    out["loadavg_end"] = os.getloadavg()
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

"""Benchmark: rebuild of core tables and the MRR marts from raw, full history and one incremental day.

For each size a seeded simulation is generated once and its Stripe objects are written straight
into the raw tables of a fresh warehouse per database (SQLite file, PostgreSQL database created
and dropped here), with the sync engine's own row builder and writer (`StripeStreamSync._rows_for`
and `._write`) on the objects as the stand-in serves them (`Store.render`, `data.discounts`
expanded, truncated sub-lists completed as the engine does). The landing CSVs (FX rates, manual
revenue, costs) go through `process_file`. Loading is not measured.

Each measurement then runs in a fresh process started by this small driver (so its peak RSS is
its own, not the simulation's) and calls the Dagster asset functions directly (the same bodies a
run executes, without event storage: the undecorated function with the two context
attributes it reads): core.fx_rates, core.ledger, core.subscription_history and
the mrr_marts multi-asset for the window. Modes:

- full: core + marts for every day of the history;
- incremental: what the daily schedule does for one new day: the core tables built from the
  changes since their last build (after an unmeasured full build, the raw rows of the objects of
  the last day are stamped as synced again), the marts for the restatement window (last 3 days),
  and the marts for the last day alone;
- dagster: the `rebuild_marts` job's core and MRR assets through `execute_in_process` (full
  range and 3-day range), to separate Dagster's per-partition bookkeeping from compute;
- profile: cProfile of the full rebuild (top functions by own and cumulative time).

Usage:

    uv run python bench/marts_rebuild.py --sizes 1000,10000 [--dbs sqlite,postgresql]
        [--modes full,incremental] [--dagster-size 1000] [--profile-size 10000] [--json out.json]

Sizes above `--chunk` customers are simulated in chunks of `--chunk` customers with consecutive
seeds into one workspace (one simulation of 50,000 customers needs ~20 GB). Method and figures:
bench/README.md, section "MRR marts rebuild".
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import hashlib
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 10, 31)
WORKSPACE = "ws_bench"
PG_ADMIN_URL = os.environ.get(
    "FP_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# The daily schedule restates yesterday and the 2 days before it (definitions.RESTATEMENT_DAYS).
RESTATEMENT_DAYS = 3
WRITE_BATCH = 1000


# ------------------------------------------------------------------------------------- memory


def peak_rss_mb() -> dict[str, int]:
    """Peak resident memory of this process: VmHWM (own address space) and ru_maxrss, in MB."""
    maxrss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    hwm = maxrss
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return {"vmhwm_mb": hwm, "ru_maxrss_mb": maxrss}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ------------------------------------------------------------------------------------ loading


def _done(value: Any) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


def load_raw(wh: Any, sim: Any, workspace_id: str) -> dict[str, int]:
    """Write every Stripe object of the simulation's first account into raw tables, as a full
    first sync would: the stand-in's rendering, the engine's row extraction and upsert."""
    from finance_pipeline_dev.standin.store import Store

    from finance_pipeline.stripe_sync.engine import Connection, StripeStreamSync
    from finance_pipeline.stripe_sync.streams import STREAMS

    acct = sim.accounts[0]
    store = Store.load(sim.fixture, time_travel=False)
    conn = Connection(workspace_id, acct, livemode=False, api_key="sk_test_unused")
    sync = StripeStreamSync(wh, None, conn, fetch_workers=0)  # type: ignore[arg-type]
    now = int(sim.clock)
    counts: dict[str, int] = {}

    def expand_discounts(obj: dict[str, Any]) -> dict[str, Any]:
        ds = obj.get("discounts")
        if not ds:
            return obj
        out = []
        for d in ds:
            target = store.lookup(acct, d) if isinstance(d, str) else None
            out.append(store.render(target) if target is not None else d)
        return {**obj, "discounts": out}

    for stream in STREAMS.values():
        expand = any(e == "data.discounts" for e in stream.list_params.get("expand", ()))
        objs = store.objects(acct, stream.object_type)
        for start in range(0, len(objs), WRITE_BATCH):
            page = []
            remote = {}
            for i, raw in enumerate(objs[start : start + WRITE_BATCH]):
                obj = store.render(raw)
                if expand:
                    obj = expand_discounts(obj)
                page.append(obj)
                for sub in stream.sublists:
                    if (obj.get(sub.key) or {}).get("has_more"):
                        # What the engine reads page by page beyond the 10 embedded items.
                        full = store.sublist(acct, obj["id"], stream.object_type)
                        remote[(i, sub)] = _done(list(full or []))
            rows, subrows = sync._rows_for(stream, page, now, remote)
            with wh.begin() as db:
                # The engine's `_write` minus its stale-children delete: the tables start empty.
                wh.upsert(db, stream.table, rows, key=("workspace_id", "id"))
                for sub, (_parents, children) in subrows.items():
                    wh.upsert(db, sub.table, children, key=("workspace_id", "id"))
            counts[stream.table] = counts.get(stream.table, 0) + len(rows)
            for sub, (_parents, children) in subrows.items():
                counts[sub.table] = counts.get(sub.table, 0) + len(children)
    return counts


def load_landing(wh: Any, sim: Any, workspace_id: str, data_dir: Path) -> dict[str, str]:
    """FX rates, manual revenue and costs through the landing folder, as the sensor does."""
    from finance_pipeline.ingest.landing import pending_files, process_file

    landing = data_dir / "landing"
    if landing.exists():
        shutil.rmtree(landing)
    sim.write_landing(landing / workspace_id)
    out = {}
    for path in pending_files(landing):
        res = process_file(wh, path, landing)
        out[path.name] = res.status
    return out


def prepare(args: argparse.Namespace) -> None:
    """Child: simulate one size (in chunks) and load raw + landing into every target warehouse."""
    from finance_pipeline_dev.simulator import simulate

    from finance_pipeline.tenancy import create_organization, create_workspace
    from finance_pipeline.warehouse import Warehouse, apply_migrations

    data_dir = Path(args.workdir) / f"data_{args.customers}"
    os.environ["FP_DATA_DIR"] = str(data_dir)
    whs = []
    for url in args.urls:
        wh = Warehouse(url)
        apply_migrations(wh)
        org = create_organization(wh, "bench", org_id="org_bench")
        create_workspace(wh, org, "bench", workspace_id=WORKSPACE)
        whs.append(wh)
    chunks = []
    left = args.customers
    while left > 0:
        chunks.append(min(left, args.chunk))
        left -= args.chunk
    info: dict[str, Any] = {"chunks": chunks, "simulate_s": 0.0, "load_s": {}, "rows": {}}
    first_day = None
    for k, n in enumerate(chunks):
        t = time.perf_counter()
        sim = simulate(
            seed=args.seed + k,
            customers=n,
            months=args.months,
            end=END,
            event_history=args.events,
        )
        info["simulate_s"] += time.perf_counter() - t
        first_day = sim.first_day
        info.setdefault("sim_rss_mb", []).append(peak_rss_mb()["vmhwm_mb"])
        for wh in whs:
            t = time.perf_counter()
            counts = load_raw(wh, sim, WORKSPACE)
            if k == 0:
                # Landing rows (FX, manual revenue, costs) of the first chunk only: ids and
                # external ids of other seeds would collide; FX must be one table anyway.
                load_landing(wh, sim, WORKSPACE, data_dir)
            key = "sqlite" if wh.is_sqlite else "postgresql"
            info["load_s"][key] = info["load_s"].get(key, 0.0) + time.perf_counter() - t
            rows = info["rows"].setdefault(key, {})
            for table, c in counts.items():
                rows[table] = rows.get(table, 0) + c
        del sim
        gc.collect()
    for wh in whs:
        if not wh.is_sqlite:
            # Statistics as autovacuum would have them on a long-lived database.
            with wh.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as c:
                c.exec_driver_sql("VACUUM ANALYZE")
        wh.dispose()
    info["first_day"] = str(first_day)
    info["peak"] = peak_rss_mb()
    print("RESULT " + json.dumps(info))


# ---------------------------------------------------------------------------------- measuring


class Timers:
    """Wall time and calls per wrapped function (global names swapped in their modules)."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}

    def wrap(self, module: Any, name: str, label: str | None = None) -> None:
        """Replace module.name with a timed wrapper (calls through globals see it); a name the
        module no longer has (renamed by a later change) is skipped."""
        fn = getattr(module, name, None)
        if fn is None:
            return
        key = label or f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
        acc = self.totals.setdefault(key, [0.0, 0])

        @functools.wraps(fn)
        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                acc[0] += time.perf_counter() - t
                acc[1] += 1

        setattr(module, name, timed)

    def report(self) -> dict[str, dict[str, float]]:
        """{label: {s, calls}} for every wrapped function that ran."""
        return {
            k: {"s": round(v[0], 3), "calls": int(v[1])} for k, v in self.totals.items() if v[1]
        }


def install_timers() -> Timers:
    """Time the stages inside the assets without changing what they call."""
    import finance_pipeline.core.assets as core_assets
    import finance_pipeline.metrics.mrr_assets as mrr_assets
    import finance_pipeline.metrics.mrr_compute as mrr_compute

    t = Timers()
    for name in ("_ledger_rows", "reconcile_ledger_with_raw", "load_history_inputs"):
        t.wrap(core_assets, name)
    t.wrap(core_assets, "build_history_until")
    t.wrap(core_assets, "history_rows")
    t.wrap(core_assets, "ledger_changes")
    t.wrap(core_assets, "history_changes")
    t.wrap(mrr_assets, "compute_mrr_window")
    t.wrap(mrr_assets, "invoice_mrr_mismatches")
    for name in (
        "states_from_rows",
        "customer_mrr_window",
        "daily_movements",
        "company_daily",
        "plan_daily",
    ):
        t.wrap(mrr_compute, name)
    return t


_DB_CPU: list[Callable[[], float]] = []


def pg_backend_cpu(wh: Any) -> Callable[[], float]:
    """CPU seconds used so far by the PostgreSQL backends serving this database (same host).

    The pool keeps its connections for the whole measurement, so their backends' counters cover
    the server's work for this process.
    """
    import sqlalchemy as sa

    tick = os.sysconf("SC_CLK_TCK")
    # Its own connection, outside the warehouse's pool, left out of the sum.
    monitor = sa.create_engine(wh.url, poolclass=sa.pool.NullPool).connect()

    def read() -> float:
        pids = monitor.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        ).scalars()
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass  # backend gone or not readable: counted as 0
        return total / tick

    return read


@contextmanager
def stage(out: dict[str, Any], name: str) -> Iterator[None]:
    """Record wall, CPU (this process and the PostgreSQL server) and the peak RSS so far."""
    gc.collect()
    db0 = _DB_CPU[0]() if _DB_CPU else 0.0
    t, c = time.perf_counter(), cpu_seconds()
    yield
    out[name] = {
        "wall_s": round(time.perf_counter() - t, 3),
        "cpu_s": round(cpu_seconds() - c, 3),
        "peak_rss_mb": peak_rss_mb()["vmhwm_mb"],
    }
    if _DB_CPU:
        out[name]["db_cpu_s"] = round(_DB_CPU[0]() - db0, 3)


def _drain(gen: Any) -> list[Any]:
    return list(gen) if gen is not None and hasattr(gen, "__iter__") else [gen]


def _body(asset: Any) -> Callable[..., Any]:
    """The function under an asset decorator: what a run's step executes, minus Dagster."""
    return asset.op.compute_fn.decorated_fn


class _Window:
    """The two context attributes the asset bodies read (direct invocation lacks ranges)."""

    def __init__(self, start: date, end: date) -> None:
        from datetime import UTC, datetime

        from dagster import TimeWindow

        self.partition_time_window = TimeWindow(
            datetime(start.year, start.month, start.day, tzinfo=UTC),
            datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC),
        )
        self.log = None


def run_core(res: Any, out: dict[str, Any], *, full: bool = True, prefix: str = "") -> None:
    """core.fx_rates, core.ledger (with its blocking check), core.subscription_history; `full`
    rebuilds them wholly, else from the changes since their last build."""
    from finance_pipeline.core.assets import (
        CoreBuildConfig,
        fx_rates,
        ledger,
        subscription_history,
    )

    config = CoreBuildConfig(full_rebuild=full)
    with stage(out, f"{prefix}core.fx_rates"):
        _body(fx_rates)(warehouse=res)
    with stage(out, f"{prefix}core.ledger"):
        events = _drain(_body(ledger)(context=None, config=config, warehouse=res))
    out[f"{prefix}core.ledger"]["metadata"] = _build_counts(events[0].metadata)
    with stage(out, f"{prefix}core.subscription_history"):
        result = _body(subscription_history)(context=None, config=config, warehouse=res)
    out[f"{prefix}core.subscription_history"]["metadata"] = _build_counts(result.metadata)


def _build_counts(metadata: dict[str, Any]) -> dict[str, Any]:
    keys = ("mode", "objects_changed", "rows_deleted", "rows_rebuilt", "rows")
    return {k: getattr(metadata[k], "value", metadata[k]) for k in keys if k in metadata}


def touch_last_day(wh: Any) -> dict[str, int]:
    """Stand in for one day's sync: every raw Stripe row of an object created on the last day
    (and the subscriptions and invoices such objects belong to) is upserted again, i.e. gets a
    later synced_at; landing rows and FX are unchanged. Returns rows touched per table."""
    from finance_pipeline.lib.timeutil import day_start_ts

    since = day_start_ts(END)
    stamp = int(wh.scalar("SELECT MAX(synced_at) FROM raw.stripe_events") or 0) + 86400
    touched: dict[str, int] = {}
    with wh.begin() as db:

        def bump(table: str, where: str) -> None:
            r = db.execute(
                wh.text(f"UPDATE {table} SET synced_at = :t WHERE {where}"),
                {"t": stamp, "s": since},
            )
            touched[table] = touched.get(table, 0) + max(r.rowcount or 0, 0)

        for table in (
            "raw.stripe_events",
            "raw.stripe_invoices",
            "raw.stripe_invoice_payments",
            "raw.stripe_charges",
            "raw.stripe_refunds",
            "raw.stripe_balance_transactions",
            "raw.stripe_subscriptions",
            "raw.stripe_subscription_items",
        ):
            bump(table, "created >= :s")
        # Objects changed that day (their events) are synced again, with their children.
        bump(
            "raw.stripe_subscriptions",
            "id IN (SELECT object_id FROM raw.stripe_events WHERE created >= :s"
            " AND object_type = 'subscription')",
        )
        bump(
            "raw.stripe_invoices",
            "id IN (SELECT object_id FROM raw.stripe_events WHERE created >= :s"
            " AND object_type = 'invoice')",
        )
        bump(
            "raw.stripe_invoice_lines",
            "invoice IN (SELECT id FROM raw.stripe_invoices WHERE synced_at = :t)",
        )
        bump(
            "raw.stripe_subscription_items",
            "subscription IN (SELECT id FROM raw.stripe_subscriptions WHERE synced_at = :t)",
        )
    return touched


def run_marts(res: Any, out: dict[str, Any], name: str, start: date, end: date) -> None:
    """The mrr_marts multi-asset (4 marts + checks) for days start..end."""
    import dagster as dg

    from finance_pipeline.metrics.mrr_assets import mrr_marts

    with stage(out, name):
        events = _drain(_body(mrr_marts)(context=_Window(start, end), warehouse=res))
    checks = [e for e in events if isinstance(e, dg.AssetCheckResult)]
    out[name]["checks"] = {c.check_name: bool(c.passed) for c in checks}
    for c in checks:
        if c.check_name == "invoices_reconcile_with_mrr":
            # The invoice check's outcome, comparable between two runs on the same data.
            meta = {k: getattr(v, "value", v) for k, v in c.metadata.items()}
            out[name]["invoice_check"] = {
                k: meta[k]
                for k in ("lines_checked", "periods_compared", "mismatches", "known_approximations")
            } | {"sha256": hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()}


def _total(t0: float, c0: float, db0: float) -> dict[str, float]:
    out = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(cpu_seconds() - c0, 3)}
    if _DB_CPU:
        out["db_cpu_s"] = round(_DB_CPU[0]() - db0, 3)
    return out


def measure(args: argparse.Namespace) -> None:
    """Child: one measurement mode on a loaded warehouse; prints a JSON result line."""
    from finance_pipeline.resources import WarehouseResource

    os.environ["FP_DATA_DIR"] = str(Path(args.workdir) / "data_measure")
    first_day = date.fromisoformat(args.first_day)
    res = WarehouseResource(url=args.url)
    wh = res.get()  # migrations already applied: connects and checks only
    out: dict[str, Any] = {
        "mode": args.mode,
        "baseline": peak_rss_mb(),
        "loadavg_start": os.getloadavg(),
    }
    if not wh.is_sqlite:
        _DB_CPU.append(pg_backend_cpu(wh))
    timers = install_timers()
    t0, c0 = time.perf_counter(), cpu_seconds()
    db0 = _DB_CPU[0]() if _DB_CPU else 0.0
    if args.mode in ("full", "profile"):
        # CPU time, not wall time: on a shared machine waiting for a core is not the code's cost.
        prof = cProfile.Profile(time.process_time) if args.mode == "profile" else None
        if prof is not None:
            prof.enable()
        run_core(res, out)
        run_marts(res, out, "mart.mrr_*", first_day, END)
        if prof is not None:
            prof.disable()
            for key in ("tottime", "cumulative"):
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(30)
                out[f"profile_{key}"] = buf.getvalue()
    elif args.mode == "incremental":
        # The core tables are built from the changes since their last build: build them once
        # (unmeasured, it sets the watermarks), let one day of Stripe objects be synced again,
        # then measure the incremental build.
        setup: dict[str, Any] = {}
        run_core(res, setup, full=True)
        out["setup_full_core"] = setup
        out["touched"] = touch_last_day(wh)
        for acc in timers.totals.values():
            acc[0], acc[1] = 0.0, 0
        gc.collect()
        t0, c0 = time.perf_counter(), cpu_seconds()
        db0 = _DB_CPU[0]() if _DB_CPU else 0.0
        run_core(res, out, full=False)
        run_marts(
            res, out, "mart.mrr_* (3-day window)", END - timedelta(days=RESTATEMENT_DAYS - 1), END
        )
        out["total"] = _total(t0, c0, db0)
        run_marts(res, out, "mart.mrr_* (1-day window, extra)", END, END)
    out.setdefault("total", _total(t0, c0, db0))
    out["loadavg_end"] = os.getloadavg()
    out["timers"] = timers.report()
    out["peak"] = peak_rss_mb()
    out["rows"] = {
        t: int(wh.scalar(f"SELECT COUNT(*) FROM {t}") or 0)
        for t in (
            "core.ledger",
            "core.subscription_history",
            "mart.mrr_changes",
            "mart.mrr_movements",
            "mart.mrr_daily",
            "mart.mrr_plan_daily",
            "mart.subscription_counting",
        )
    }
    if args.hash:
        out["table_sha256"] = table_hashes(wh)
    wh.dispose()
    print("RESULT " + json.dumps(out, default=str))


HASHED_TABLES = (
    "core.ledger",
    "core.subscription_history",
    "core.subscription_history_due",
    "mart.mrr_changes",
    "mart.mrr_movements",
    "mart.mrr_daily",
    "mart.mrr_plan_daily",
    "mart.subscription_counting",
)


def table_hashes(wh: Any) -> dict[str, str]:
    """SHA-256 of each built table's rows, sorted (so insertion order does not count): two runs
    on the same data must give the same hashes."""
    import hashlib

    out = {}
    for table in HASHED_TABLES:
        rows = sorted(repr(sorted(r.items())) for r in wh.rows(f"SELECT * FROM {table}"))
        digest = hashlib.sha256()
        for r in rows:
            digest.update(r.encode())
            digest.update(b"\n")
        out[table] = f"{len(rows)}:{digest.hexdigest()[:16]}"
    return out


def measure_dagster(args: argparse.Namespace) -> None:
    """Child: the rebuild_marts job through execute_in_process, full range then 3 days."""
    import dagster as dg

    from finance_pipeline.core.assets import fx_rates, ledger, subscription_history
    from finance_pipeline.definitions import defs
    from finance_pipeline.metrics.mrr_assets import mrr_marts
    from finance_pipeline.resources import WarehouseResource

    os.environ["FP_DATA_DIR"] = str(Path(args.workdir) / "data_measure")
    first_day = date.fromisoformat(args.first_day)
    # rebuild_marts restricted to what this benchmark measures (core + MRR marts): the job also
    # holds other marts downstream, whose cost is not part of this issue.
    scope = dg.AssetSelection.assets(fx_rates, ledger, subscription_history, mrr_marts)
    bench_defs = dg.Definitions(
        assets=list(defs.assets or []),
        jobs=[dg.define_asset_job("bench_core_mrr", selection=scope)],
        resources=dict(defs.resources or {}),
    )
    job = bench_defs.resolve_job_def("bench_core_mrr")
    resources = {"warehouse": WarehouseResource(url=args.url)}
    out: dict[str, Any] = {"mode": "dagster", "instance": args.instance}
    windows = [("full", first_day, END)]
    windows.append(("incremental", END - timedelta(days=RESTATEMENT_DAYS - 1), END))
    for label, start, end in windows:
        with tempfile.TemporaryDirectory(dir=args.workdir) as home:
            instance = (
                dg.DagsterInstance.ephemeral()
                if args.instance == "memory"
                else dg.DagsterInstance.local_temp(home)
            )
            timers = install_timers()
            t = time.perf_counter()
            result = job.execute_in_process(
                instance=instance,
                resources=resources,
                tags={
                    "dagster/asset_partition_range_start": start.isoformat(),
                    "dagster/asset_partition_range_end": end.isoformat(),
                },
                raise_on_error=False,
            )
            wall = time.perf_counter() - t
            step_s = {}
            for ev in result.all_events:
                if ev.event_type_value == "STEP_SUCCESS":
                    step_s[ev.step_key] = round(ev.event_specific_data.duration_ms / 1000, 3)
            mats = sum(
                1 for ev in result.all_events if ev.event_type_value == "ASSET_MATERIALIZATION"
            )
            out[label] = {
                "success": result.success,
                "days": (end - start).days + 1,
                "wall_s": round(wall, 3),
                "step_s": step_s,
                "materializations": mats,
                "timers": timers.report(),
            }
            instance.dispose()
    out["peak"] = peak_rss_mb()
    print("RESULT " + json.dumps(out, default=str))


# ------------------------------------------------------------------------------------- driver


def _child(argv: list[str], log: Path, script: Path | None = None) -> dict[str, Any]:
    """Run `script` (default: this one) in a fresh interpreter and return its RESULT json; the
    other benchmarks run their own children through it too."""
    cmd = [sys.executable, str((script or Path(__file__)).resolve()), *argv]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv[:1]} failed ({proc.returncode}); see {log}")
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT ") :])
            res["process_wall_s"] = round(time.perf_counter() - t, 3)
            return res
    raise RuntimeError(f"child {argv[:1]} printed no result; see {log}")


def _pg_admin() -> Any:
    import sqlalchemy as sa

    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _summary_line(size: int, db: str, mode: str, r: dict[str, Any]) -> str:
    total = r["total"]
    stages = {k: v["wall_s"] for k, v in r.items() if isinstance(v, dict) and "wall_s" in v}
    stages.pop("total", None)
    return (
        f"{size:>6} {db:<10} {mode:<12} wall {total['wall_s']:8.2f} s  cpu {total['cpu_s']:8.2f} s"
        + (f" db cpu {total['db_cpu_s']:7.2f} s" if "db_cpu_s" in total else "")
        + f"  peak {r['peak']['vmhwm_mb']:6d} MB  "
        + "  ".join(f"{k}={v:.2f}" for k, v in stages.items())
    )


def driver(args: argparse.Namespace) -> None:
    """Prepare each size once, measure every mode on every database in fresh processes."""
    import sqlalchemy as sa

    sizes = [int(s) for s in args.sizes.split(",") if s]
    dbs = [d for d in args.dbs.split(",") if d]
    modes = [m for m in args.modes.split(",") if m]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fp_bench_marts_"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "children.log"
    print(f"workdir {workdir}; child logs in {log}", flush=True)
    admin = _pg_admin() if "postgresql" in dbs else None
    results: dict[str, Any] = {
        "end": str(END),
        "months": args.months,
        "events": args.events,
        "sizes": {},
    }
    created: list[str] = []
    try:
        for size in sizes:
            urls = {}
            prep_file = workdir / f"prepared_{size}.json"
            reuse = args.reuse and prep_file.exists()
            for db in dbs:
                if db == "sqlite":
                    path = workdir / f"wh_{size}.sqlite"
                    if not reuse:
                        for suffix in ("", "-wal", "-shm"):
                            Path(f"{path}{suffix}").unlink(missing_ok=True)
                    urls[db] = f"sqlite:///{path}"
                else:
                    # --keep/--reuse: a fixed name, so a later run can measure the same data.
                    name = (
                        f"fp_bench_{size}_keep"
                        if args.keep or args.reuse
                        else f"fp_bench_{size}_{uuid.uuid4().hex[:8]}"
                    )
                    if not reuse:
                        with admin.connect() as c:
                            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
                    created.append(name)
                    urls[db] = admin.url.set(database=name).render_as_string(hide_password=False)
            if reuse:
                prep = json.loads(prep_file.read_text())
            else:
                prep = _child(
                    [
                        "prepare",
                        "--workdir",
                        str(workdir),
                        "--customers",
                        str(size),
                        "--months",
                        str(args.months),
                        "--seed",
                        str(args.seed),
                        "--chunk",
                        str(args.chunk),
                        "--events",
                        args.events,
                        *[x for u in urls.values() for x in ("--url", u)],
                    ],
                    log,
                )
                prep_file.write_text(json.dumps(prep))
            print(f"[{size}] prepared: {json.dumps(prep)}", flush=True)
            entry: dict[str, Any] = {"prepare": prep, "runs": {}}
            results["sizes"][str(size)] = entry
            for db, url in urls.items():
                common = ["--workdir", str(workdir), "--url", url, "--first-day", prep["first_day"]]
                for mode in modes:
                    r = _child(["measure", "--mode", mode, *common], log)
                    entry["runs"][f"{db}/{mode}"] = r
                    print(_summary_line(size, db, mode, r), flush=True)
                if size == args.profile_size and db == "sqlite":
                    r = _child(["measure", "--mode", "profile", *common], log)
                    entry["runs"][f"{db}/profile"] = r
                    print(r["profile_tottime"], flush=True)
                    print(r["profile_cumulative"], flush=True)
                if size == args.dagster_size:
                    for inst in args.dagster_instances.split(","):
                        r = _child(["dagster", "--instance", inst, *common], log)
                        entry["runs"][f"{db}/dagster-{inst}"] = r
                        print(f"{size:>6} {db:<10} dagster-{inst}: {json.dumps(r)}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1, default=str))
            if not (args.keep or args.reuse):
                for db, url in urls.items():
                    if db == "sqlite":
                        path = url.removeprefix("sqlite:///")
                        for suffix in ("", "-wal", "-shm"):
                            Path(f"{path}{suffix}").unlink(missing_ok=True)
    finally:
        if admin is not None and not (args.keep or args.reuse):
            with admin.connect() as c:
                for name in created:
                    c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


def main(argv: list[str] | None = None) -> None:
    """Command line: the driver by default; `prepare`, `measure`, `dagster` are its children."""
    argv = list(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(ROOT))
    if argv and argv[0] in ("prepare", "measure", "dagster"):
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("--workdir", required=True)
        p.add_argument("--url", action="append", dest="urls", default=[])
        p.add_argument("--customers", type=int, default=1000)
        p.add_argument("--months", type=int, default=36)
        p.add_argument("--seed", type=int, default=11)
        p.add_argument("--chunk", type=int, default=10_000)
        p.add_argument("--events", default="retention")
        p.add_argument("--mode", default="full")
        p.add_argument("--instance", default="memory")
        p.add_argument("--first-day", dest="first_day")
        p.add_argument("--hash", action="store_true", help="hash the built tables' rows")
        args = p.parse_args(argv)
        args.url = args.urls[0] if args.urls else None
        cmd: Callable[[argparse.Namespace], None] = {
            "prepare": prepare,
            "measure": measure,
            "dagster": measure_dagster,
        }[args.cmd]
        cmd(args)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="customer counts, comma-separated")
    p.add_argument("--months", type=int, default=36)
    p.add_argument("--dbs", default="sqlite,postgresql")
    p.add_argument("--modes", default="full,incremental")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--chunk", type=int, default=10_000, help="customers per simulation")
    p.add_argument(
        "--events",
        default="retention",
        choices=("retention", "full"),
        help="stored Stripe events: last 30 days (first sync) or the whole history",
    )
    p.add_argument("--dagster-size", type=int, default=0, help="size to run the Dagster job at")
    p.add_argument("--dagster-instances", default="memory", help="memory and/or sqlite")
    p.add_argument("--profile-size", type=int, default=0, help="size to cProfile (SQLite)")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default=None, help="write all results here")
    p.add_argument("--keep", action="store_true", help="keep warehouses (and PG databases)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="measure warehouses a --keep run prepared in the same --workdir (no reload)",
    )
    driver(p.parse_args(argv))


if __name__ == "__main__":
    main()

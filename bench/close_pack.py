"""Benchmark: the month-end close pack and the whole close, one large workspace and many small ones.

Issue 9, item 8: "the close pack of one workspace at 10,000 customers x 36 months in under 5 s,
and the close of 100 small workspaces, with peak RSS".

Building the warehouses is not measured:

- raw: the simulation's Stripe objects and landing files are written into the raw tables by
  `bench/marts_rebuild.py`'s loader (`load_raw`, `load_landing`): one workspace of `--customers`
  (its `prepare` child), or `--fleet` workspaces of `--fleet-customers` each (seeds seed+k);
- marts: every workspace gets cash on hand and the sample dataset's auto-accept setting, then the
  asset bodies run directly (no Dagster event storage), in dependency order: core.fx_rates,
  core.ledger, core.subscription_history, the MRR marts and the CFO/revenue marts over the whole
  history, recognized revenue, customer margins and the default forecast for the last
  `--margin-months` months, and the alerts over the whole history.

Each measurement then runs in a fresh process (its peak RSS, VmHWM, is its own) on the close
month (the last full month of the history, 2026-10):

- pack: the close pack alone: `close_pack_data` (every read) + `render_close_pack_pages` (charts,
  HTML, PDF/A-3 with the month's six CSVs attached, read from the catalogue);
- close: the whole close as the month_end_close job runs it after margins and forecasts: the six
  reports (`render_month_csvs`: CSV + table PDF each, stored) then `run_close` (pack data, pack
  render, store, freeze). The month's catalogue rows, files and close rows are removed first (not
  measured), so every run is a first close;
- fleet: the same whole close for every workspace of the fleet warehouse, one after another.

Usage:

    uv run python bench/close_pack.py --customers 10000 --fleet 100 --json bench/results/close_pack.json
    uv run python bench/close_pack.py --customers 500 --fleet 5 --repeat 1        # quick run
    # one measurement on an existing warehouse (what the driver runs in a fresh process):
    .venv/bin/python bench/close_pack.py measure --mode pack --url sqlite:///W/wh_10000x36.sqlite \
        --workdir W/wh_10000x36 [--timers] [--profile] [--no-attachments]

Warehouses are deleted after their measurements unless --keep (or --reuse) is given.

Method and figures: bench/README.md, section "Close pack".
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import marts_rebuild as mr  # bench/marts_rebuild.py: loader, timers, stage helpers

ROOT = mr.ROOT
END = mr.END
MONTH = f"{END.year:04d}-{END.month:02d}"  # the last full month of the simulated history
CASH_MICROS = 900_000 * 10**6  # as in finance_pipeline_tests/reports_pdf/dataset.py
FLEET_ORG = "org_fleet"


# ------------------------------------------------------------------------------------ building


def prepare_fleet(args: argparse.Namespace) -> None:
    """Child: `--fleet` small workspaces in one warehouse, each its own simulation (seed+k)."""
    from finance_pipeline_dev.simulator import simulate

    from finance_pipeline.tenancy import create_organization, create_workspace
    from finance_pipeline.warehouse import Warehouse, apply_migrations

    data_dir = Path(args.workdir) / "data_fleet"
    os.environ["FP_DATA_DIR"] = str(data_dir)
    wh = Warehouse(args.url)
    apply_migrations(wh)
    org = create_organization(wh, "fleet", org_id=FLEET_ORG)
    info: dict[str, Any] = {"workspaces": args.fleet, "simulate_s": 0.0, "load_s": 0.0}
    first_day = None
    for k in range(args.fleet):
        ws = f"ws_{k:03d}"
        create_workspace(wh, org, f"Fleet {k:03d}", workspace_id=ws)
        t = time.perf_counter()
        sim = simulate(
            seed=args.seed + k, customers=args.customers, months=args.months, end=END,
            event_history="retention",
        )  # fmt: skip
        info["simulate_s"] += time.perf_counter() - t
        first_day = sim.first_day if first_day is None else min(first_day, sim.first_day)
        t = time.perf_counter()
        mr.load_raw(wh, sim, ws)
        mr.load_landing(wh, sim, ws, data_dir)
        info["load_s"] += time.perf_counter() - t
        del sim
    if not wh.is_sqlite:
        with wh.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as c:
            c.exec_driver_sql("VACUUM ANALYZE")
    wh.dispose()
    info["first_day"] = str(first_day)
    info["peak"] = mr.peak_rss_mb()
    print("RESULT " + json.dumps(info))


def give_cash_and_auto_mappings(wh: Any) -> None:
    """Cash on hand (runway, forecast) and auto-accepted cost mappings (margins) for every
    workspace, as the sample dataset the close pack tests render from."""
    from finance_pipeline.tenancy import create_workspace, list_workspaces

    for ws in list_workspaces(wh):
        create_workspace(
            wh, ws.org_id, ws.name, workspace_id=ws.id, reporting_currency=ws.reporting_currency,
            time_zone=ws.time_zone, cash_on_hand_micros=CASH_MICROS,
            settings={**ws.settings, "mapping_auto_accept_confidence": 1},
        )  # fmt: skip


def build_marts(args: argparse.Namespace) -> None:
    """Child: every mart the close reads, from raw, for every workspace of the warehouse."""
    from finance_pipeline.alerts.assets import alerts
    from finance_pipeline.forecasting.assets import forecasts
    from finance_pipeline.margins.assets import customer_margins_monthly, recognized_revenue_monthly
    from finance_pipeline.metrics.cfo_assets import cfo_marts
    from finance_pipeline.resources import WarehouseResource

    os.environ["FP_DATA_DIR"] = str(Path(args.workdir) / "data_measure")
    first_day = date.fromisoformat(args.first_day)
    res = WarehouseResource(url=args.url)
    wh = res.get()
    give_cash_and_auto_mappings(wh)
    out: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), mr.cpu_seconds()
    mr.run_core(res, out)
    mr.run_marts(res, out, "mart.mrr_*", first_day, END)
    with mr.stage(out, "mart.cfo_metrics_daily+revenue_daily"):
        mr._drain(mr._body(cfo_marts)(context=mr._Window(first_day, END), warehouse=res))
    with mr.stage(out, "core.recognized_revenue_monthly"):
        mr._body(recognized_revenue_monthly)(warehouse=res)
    m_start = date(END.year, END.month, 1)
    for _ in range(args.margin_months - 1):
        m_start = (m_start - timedelta(days=1)).replace(day=1)
    m_start = max(m_start, first_day.replace(day=1))
    with mr.stage(out, "mart.customer_margins_monthly"):
        mr._drain(
            mr._body(customer_margins_monthly)(context=mr._Window(m_start, END), warehouse=res)
        )
    with mr.stage(out, "mart.forecasts"):
        mr._body(forecasts)(context=mr._Window(m_start, END), warehouse=res)
    with mr.stage(out, "mart.alerts"):
        mr._drain(mr._body(alerts)(context=mr._Window(first_day, END), warehouse=res))
    out["total"] = mr._total(t0, c0, 0.0)
    out["rows"] = table_rows(wh)
    out["peak"] = mr.peak_rss_mb()
    wh.dispose()
    print("RESULT " + json.dumps(out, default=str))


MART_TABLES = (
    "core.ledger",
    "core.subscription_history",
    "mart.mrr_changes",
    "mart.mrr_movements",
    "mart.mrr_daily",
    "mart.mrr_plan_daily",
    "mart.subscription_counting",
    "mart.cfo_metrics_daily",
    "mart.revenue_daily",
    "core.recognized_revenue_monthly",
    "mart.customer_margins_monthly",
    "mart.customer_margins_summary_monthly",
    "mart.forecasts",
    "mart.alerts",
)


def table_rows(wh: Any) -> dict[str, int]:
    """Row counts of the tables the close reads."""
    return {t: int(wh.scalar(f"SELECT COUNT(*) FROM {t}") or 0) for t in MART_TABLES}


# ---------------------------------------------------------------------------------- measuring


def reset_month(wh: Any, root: Path, workspace_id: str, month: str) -> int:
    """Forget the month's close: its close versions, restatements, catalogue rows and files, so
    the next close is a first close. Returns the catalogue rows removed."""
    from finance_pipeline.reports.close import month_bounds

    start, end = month_bounds(month)
    params = {"w": workspace_id, "m": month, "a": start, "b": end}
    with wh.begin() as db:
        paths = [
            r[0]
            for r in db.execute(
                wh.text(
                    "SELECT path FROM app.report_catalogue WHERE workspace_id = :w"
                    " AND date_start = :a AND date_end = :b"
                ),
                params,
            )
        ]
        db.execute(
            wh.text("DELETE FROM app.restatements WHERE workspace_id = :w AND month = :m"), params
        )
        db.execute(wh.text("DELETE FROM app.closes WHERE workspace_id = :w AND month = :m"), params)
        db.execute(
            wh.text(
                "DELETE FROM app.report_catalogue WHERE workspace_id = :w"
                " AND date_start = :a AND date_end = :b"
            ),
            params,
        )
    for p in paths:
        (root / p).unlink(missing_ok=True)
    return len(paths)


def _one_close(wh: Any, root: Path, ws_id: str, month: str) -> dict[str, Any]:
    """The six reports, then run_close; wall and CPU seconds of each part."""
    from finance_pipeline.reports.close import render_month_csvs, run_close

    t, c = time.perf_counter(), mr.cpu_seconds()
    n = render_month_csvs(wh, root, ws_id, month)
    t1, c1 = time.perf_counter(), mr.cpu_seconds()
    outcome = run_close(wh, root, ws_id, month)
    t2, c2 = time.perf_counter(), mr.cpu_seconds()
    assert outcome.status == "closed", outcome.status
    return {
        "reports": n,
        "pages": outcome.pages,
        "pack_bytes": outcome.pack.size_bytes if outcome.pack else None,
        "reports_wall_s": round(t1 - t, 3),
        "reports_cpu_s": round(c1 - c, 3),
        "run_close_wall_s": round(t2 - t1, 3),
        "run_close_cpu_s": round(c2 - c1, 3),
        "wall_s": round(t2 - t, 3),
        "cpu_s": round(c2 - c, 3),
    }


def _pack_only(wh: Any, root: Path, ws_id: str, month: str, attach: bool = True) -> dict[str, Any]:
    """close_pack_data + render_close_pack_pages, with the catalogue's CSVs attached (none
    when `attach` is false: the same input whatever the catalogue holds, for A/B runs)."""
    from finance_pipeline.lib import close as close_lib
    from finance_pipeline.reports.close import data_watermarks, month_bounds, month_csvs
    from finance_pipeline.reports.pdf.pack_data import close_pack_data
    from finance_pipeline.reports.pdf.render import render_close_pack_pages

    start, _ = month_bounds(month)
    t, c = time.perf_counter(), mr.cpu_seconds()
    streams, builds = data_watermarks(wh, ws_id)
    generated_at = close_lib.data_as_of(month, streams, builds)
    data = close_pack_data(wh, ws_id, start, generated_at=generated_at)
    t1, c1 = time.perf_counter(), mr.cpu_seconds()
    attachments = {
        Path(e.path).name: e.absolute(root).read_bytes()
        for e in (month_csvs(wh, ws_id, month) if attach else [])
    }
    pdf, pages = render_close_pack_pages(data, attachments)
    t2, c2 = time.perf_counter(), mr.cpu_seconds()
    return {
        "attachments": len(attachments),
        "pages": pages,
        "pack_bytes": len(pdf),
        "data_wall_s": round(t1 - t, 3),
        "data_cpu_s": round(c1 - c, 3),
        "render_wall_s": round(t2 - t1, 3),
        "render_cpu_s": round(c2 - c1, 3),
        "wall_s": round(t2 - t, 3),
        "cpu_s": round(c2 - c, 3),
    }


def install_timers() -> mr.Timers:
    """Time the readers and renderers inside the pack without changing what they call."""
    import finance_pipeline.reports.close as close_mod
    import finance_pipeline.reports.pdf.pack_data as pd
    import finance_pipeline.reports.pdf.render as rd

    t = mr.Timers()
    for name in (
        "_workspace",
        "_retention",
        "_cfo_day",
        "_customer_names",
        "_count_rolls",
        "_plans",
        "_cohorts",
        "load_balances",
        "_money_by_month",
        "_margins",
        "_forecast",
        "sync_status",
        "_watermarks",
        "_kpis",
        "_churn",
        "_alerts",
        "_failed_payments",
        "_tie_outs",
    ):
        t.wrap(pd, name, f"pack_data.{name}")
    t.wrap(pd._MrrMonth, "load", "pack_data._MrrMonth.load")
    for name in dir(rd):
        if name.startswith(("render", "_render", "_chart", "chart")) and callable(
            getattr(rd, name)
        ):
            t.wrap(rd, name, f"render.{name}")
    for name in ("render_and_store", "store_table_pdf", "close_pack_data", "store_report"):
        t.wrap(close_mod, name, f"close.{name}")
    return t


def measure(args: argparse.Namespace) -> None:
    """Child: one mode on a built warehouse; prints a RESULT json line."""
    from finance_pipeline.tenancy import list_workspaces
    from finance_pipeline.warehouse import Warehouse

    os.environ["FP_DATA_DIR"] = str(Path(args.workdir) / "data_measure")
    # Imports first, outside the measurement (they are a process's one-time cost, and this
    # machine runs with PYTHONDONTWRITEBYTECODE, so every process compiles them again).
    t = time.perf_counter()
    import weasyprint  # noqa: F401

    import finance_pipeline.reports.close
    import finance_pipeline.reports.pdf.render
    import finance_pipeline.reports.pdf_tables  # noqa: F401

    imports_s = round(time.perf_counter() - t, 3)
    root = Path(args.workdir) / "reports"
    root.mkdir(parents=True, exist_ok=True)
    wh = Warehouse(args.url)
    ws_ids = [ws.id for ws in list_workspaces(wh)]
    out: dict[str, Any] = {
        "mode": args.mode,
        "month": args.month,
        "imports_s": imports_s,
        "baseline": mr.peak_rss_mb(),
    }
    if not wh.is_sqlite:
        mr._DB_CPU.append(mr.pg_backend_cpu(wh))
    if args.mode == "close":
        for w in ws_ids:
            reset_month(wh, root, w, args.month)
    timers = install_timers() if args.timers else None
    prof = cProfile.Profile() if args.profile else None
    gc.collect()
    out["loadavg_start"] = os.getloadavg()
    t0, c0 = time.perf_counter(), mr.cpu_seconds()
    db0 = mr._DB_CPU[0]() if mr._DB_CPU else 0.0
    if prof is not None:
        prof.enable()
    if args.mode == "pack":
        out["pack"] = _pack_only(wh, root, ws_ids[0], args.month, not args.no_attachments)
    elif args.mode == "close":
        out["close"] = _one_close(wh, root, ws_ids[0], args.month)
    elif args.mode == "fleet":
        per = []
        for w in ws_ids:
            reset_month(wh, root, w, args.month)  # already reset: a no-op, kept for clarity
            per.append({"workspace": w, **_one_close(wh, root, w, args.month)})
        walls = [p["wall_s"] for p in per]
        out["fleet"] = {
            "workspaces": len(per),
            "per_workspace_wall_s": {
                "min": min(walls),
                "median": statistics.median(walls),
                "max": max(walls),
                "mean": round(statistics.fmean(walls), 3),
            },
            "per_workspace_cpu_s_median": statistics.median(p["cpu_s"] for p in per),
            "pages": sorted({p["pages"] for p in per}),
            "runs": per,
        }
    else:
        raise SystemExit(f"unknown mode {args.mode}")
    if prof is not None:
        prof.disable()
    out["total"] = mr._total(t0, c0, db0)
    out["loadavg_end"] = os.getloadavg()
    out["peak"] = mr.peak_rss_mb()
    if timers is not None:
        out["timers"] = timers.report()
    if prof is not None:
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(40)
            out[f"profile_{key}"] = buf.getvalue()
    wh.dispose()
    print("RESULT " + json.dumps(out, default=str))


# ------------------------------------------------------------------------------------- driver


def _child(argv: list[str], log: Path) -> dict[str, Any]:
    """This script (or marts_rebuild's `prepare`) in a fresh interpreter; its RESULT json."""
    script = Path(mr.__file__) if argv[0] == "prepare" else Path(__file__)
    return mr._child(argv, log, script)


def _summary(label: str, r: dict[str, Any]) -> str:
    tot = r["total"]
    inner = r.get("pack") or r.get("close") or {}
    parts = [
        f"{label:<34} wall {tot['wall_s']:7.2f} s  cpu {tot['cpu_s']:7.2f} s",
        f"db cpu {tot['db_cpu_s']:5.2f} s" if "db_cpu_s" in tot else "",
        f"peak {r['peak']['vmhwm_mb']:5d} MB",
    ]
    if "pack" in r:
        parts.append(
            f"data {inner['data_wall_s']:.2f} s, render {inner['render_wall_s']:.2f} s,"
            f" {inner['pages']} pages"
        )
    if "close" in r:
        parts.append(
            f"reports {inner['reports_wall_s']:.2f} s, run_close {inner['run_close_wall_s']:.2f} s"
        )
    if "fleet" in r:
        f = r["fleet"]["per_workspace_wall_s"]
        parts.append(
            f"{r['fleet']['workspaces']} workspaces, per workspace median {f['median']:.2f} s"
            f" (min {f['min']:.2f}, max {f['max']:.2f})"
        )
    return "  ".join(p for p in parts if p)


def _warehouse_url(db: str, workdir: Path, name: str, admin: Any, reuse: bool) -> str:
    import sqlalchemy as sa

    if db == "sqlite":
        path = workdir / f"{name}.sqlite"
        if not reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    dbname = f"fp_bench_close_{name}"
    if not reuse:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
            c.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    return admin.url.set(database=dbname).render_as_string(hide_password=False)


def _drop_warehouse(db: str, url: str, admin: Any) -> None:
    """Delete a measured warehouse: the SQLite files, or the PostgreSQL database."""
    import sqlalchemy as sa

    if db == "sqlite":
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = sa.engine.make_url(url).database
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def driver(args: argparse.Namespace) -> None:
    """Build each warehouse once (not measured), then measure each mode in fresh processes."""
    dbs = [d for d in args.dbs.split(",") if d]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fp_bench_close_"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "children.log"
    print(f"workdir {workdir}; child logs in {log}", flush=True)
    admin = mr._pg_admin() if "postgresql" in dbs else None
    results: dict[str, Any] = {
        "month": args.month,
        "end": str(END),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "runs": {},
    }
    scenarios = []
    if args.customers:
        scenarios.append(("single", f"wh_{args.customers}x{args.months}"))
    if args.fleet:
        scenarios.append(
            ("fleet", f"fleet_{args.fleet}x{args.fleet_customers}x{args.fleet_months}")
        )
    for db in dbs:
        for kind, name in scenarios:
            key = f"{db}/{name}"
            prep_file = workdir / f"built_{db}_{name}.json"
            reuse = args.reuse and prep_file.exists()
            url = _warehouse_url(db, workdir, name, admin, reuse)
            common = ["--workdir", str(workdir / name), "--url", url]
            (workdir / name).mkdir(exist_ok=True)
            if reuse:
                built = json.loads(prep_file.read_text())
            else:
                if kind == "single":
                    prep = _child(
                        ["prepare", "--workdir", str(workdir / name), "--url", url,
                         "--customers", str(args.customers), "--months", str(args.months),
                         "--seed", str(args.seed), "--chunk", str(max(args.customers, 1))],
                        log,
                    )  # fmt: skip
                else:
                    prep = _child(
                        ["prepare-fleet", *common, "--fleet", str(args.fleet),
                         "--customers", str(args.fleet_customers),
                         "--months", str(args.fleet_months), "--seed", str(args.seed)],
                        log,
                    )  # fmt: skip
                marts = _child(
                    ["marts", *common, "--first-day", prep["first_day"],
                     "--margin-months", str(args.margin_months)],
                    log,
                )  # fmt: skip
                built = {"prepare": prep, "marts": marts}
                prep_file.write_text(json.dumps(built, default=str))
            print(f"[{key}] built: {json.dumps(built, default=str)[:600]}", flush=True)
            entry: dict[str, Any] = {"built": built, "measurements": {}}
            results["runs"][key] = entry
            modes = ["close", "pack"] if kind == "single" else ["fleet"]
            for mode in modes:
                reps = []
                for _ in range(args.repeat if kind == "single" else 1):
                    r = _child(
                        ["measure", "--mode", mode, "--month", args.month, "--timers", *common],
                        log,
                    )
                    reps.append(r)
                    print(_summary(f"{key} {mode}", r), flush=True)
                entry["measurements"][mode] = reps
            if args.profile and kind == "single":
                r = _child(["measure", "--mode", "pack", "--month", args.month, "--profile",
                            *common], log)  # fmt: skip
                entry["measurements"]["pack_profile"] = [r]
                print(r["profile_tottime"][:6000], flush=True)
                print(r["profile_cumulative"][:6000], flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1, default=str))
            if not (args.keep or args.reuse):
                _drop_warehouse(db, url, admin)
    if admin is not None:
        admin.dispose()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


def main(argv: list[str] | None = None) -> None:
    """Command line: the driver by default; `prepare-fleet`, `marts`, `measure` are children."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("prepare-fleet", "marts", "measure"):
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("--workdir", required=True)
        p.add_argument("--url", required=True)
        p.add_argument("--fleet", type=int, default=100)
        p.add_argument("--customers", type=int, default=40)
        p.add_argument("--months", type=int, default=12)
        p.add_argument("--seed", type=int, default=11)
        p.add_argument("--first-day", dest="first_day")
        p.add_argument("--margin-months", type=int, default=6)
        p.add_argument("--mode", default="pack", choices=("pack", "close", "fleet"))
        p.add_argument("--month", default=MONTH)
        p.add_argument("--timers", action="store_true", help="time the pack's readers/renderers")
        p.add_argument("--profile", action="store_true", help="cProfile the measured part")
        p.add_argument(
            "--no-attachments", action="store_true", help="pack: attach no CSV (A/B runs)"
        )
        args = p.parse_args(argv)
        {"prepare-fleet": prepare_fleet, "marts": build_marts, "measure": measure}[args.cmd](args)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=10_000, help="the large workspace (0: none)")
    p.add_argument("--months", type=int, default=36)
    p.add_argument("--fleet", type=int, default=100, help="small workspaces (0: none)")
    p.add_argument("--fleet-customers", type=int, default=40)
    p.add_argument("--fleet-months", type=int, default=12)
    p.add_argument("--margin-months", type=int, default=6, help="months of margins and forecasts")
    p.add_argument("--month", default=MONTH, help="the month closed")
    p.add_argument("--dbs", default="sqlite", help="sqlite and/or postgresql")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--repeat", type=int, default=3, help="measurements per mode (large workspace)")
    p.add_argument("--profile", action="store_true", help="also a cProfile run of the pack")
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the warehouses (and PG databases)")
    p.add_argument("--reuse", action="store_true", help="measure warehouses built in --workdir")
    p.add_argument("--json", default=None, help="write all results here")
    driver(p.parse_args(argv))


if __name__ == "__main__":
    main()

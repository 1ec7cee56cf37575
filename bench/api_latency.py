"""Benchmark: latency of the read API's hot reads under a fixed request rate, and the ingest rate.

A PostgreSQL warehouse at 10,000 customers x 36 months (one workspace) is built as
bench/marts_rebuild.py builds it (its `prepare` child: simulation, raw tables, landing files),
then the marts the hot routes read are computed by calling the asset bodies directly (its
`run_core`/`run_marts`, then the CFO marts, recognized revenue and the margins of the last
month). `--reuse` keeps and reuses that database (a JSON note in the workdir says it is built).

The driver then gives the warehouse's organization an owner (pro tier) and an org-wide owner API
key, starts `finance-pipeline api --workers 2` (FP_REQUESTS_INLINE=false, a rate limit far above
the load) and drives each route with wrk:

- `wrk` is closed-loop: each connection sends its next request when the previous one has been
  answered. A Lua `delay()` after every response (think time) brings the rate to about the
  target; the delay is calibrated from a short run's mean latency. The achieved rate is reported.
  A stalled server therefore sends fewer requests (coordinated omission), so the tail is measured
  at the achieved rate, not at a strict open-loop schedule.
- Per route: p50, p90, p99, max (wrk's own histogram, microseconds), requests, non-2xx, socket
  errors and the achieved rate.
- Ingest: POST `/v1/workspaces/{id}/ingest/expenses` with `--batch` new items per request
  (unique external ids), closed-loop without think time, for `--ingest-seconds`.

Usage:

    uv run python bench/api_latency.py --customers 10000 --json bench/results/api_latency.json
        [--reuse --workdir DIR] [--rate 200] [--seconds 60] [--routes metrics,mrr,...]

Method and figures: bench/README.md, section "Read API latency".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import close_pack  # bench/close_pack.py: the close's workspace settings
import marts_rebuild as mr  # bench/marts_rebuild.py: loader and asset-body helpers

ROOT = mr.ROOT
END = mr.END
WORKSPACE = mr.WORKSPACE
ORG = "org_bench"  # marts_rebuild.prepare's organization
MONTH = f"{END.year:04d}-{END.month:02d}"  # the last month of the simulated history
OWNER_EMAIL = "owner@apibench.example"
INGEST_PREFIX = "apibench-"  # external ids of ingested benchmark rows (removed afterwards)


def routes(month: str = MONTH, as_of: date = END) -> dict[str, str]:
    """The hot reads: route name -> path and query."""
    return {
        "metrics": f"/v1/workspaces/{WORKSPACE}/metrics?as_of={as_of.isoformat()}",
        "mrr": "/api/v1/platform/finance/mrr",
        "mrr-trend": "/api/v1/platform/finance/mrr-trend?months=12",
        "analytics": f"/api/v1/client/workspace/{WORKSPACE}/financial/analytics?period=monthly",
        "margins": f"/api/margins?period={month}",
    }


# ------------------------------------------------------------------------------------ building


def build_marts(args: argparse.Namespace) -> None:
    """Child: the marts the hot routes read, from the raw tables of `prepare`.

    core + MRR marts for every day (mrr, mrr-trend), CFO metrics and daily revenue for every day
    (metrics, analytics), recognized revenue and the margins of the last month (margins).
    """
    from finance_pipeline.margins.assets import customer_margins_monthly, recognized_revenue_monthly
    from finance_pipeline.metrics.cfo_assets import cfo_marts
    from finance_pipeline.resources import WarehouseResource

    os.environ["FP_DATA_DIR"] = str(Path(args.workdir) / "data_marts")
    first_day = date.fromisoformat(args.first_day)
    res = WarehouseResource(url=args.url)
    wh = res.get()
    # Cash on hand (runway) and auto-accepted cost mappings (margins), as close_pack does.
    close_pack.give_cash_and_auto_mappings(wh)
    out: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), mr.cpu_seconds()
    mr.run_core(res, out)
    mr.run_marts(res, out, "mart.mrr_*", first_day, END)
    with mr.stage(out, "mart.cfo_metrics_daily+revenue_daily"):
        mr._drain(mr._body(cfo_marts)(context=mr._Window(first_day, END), warehouse=res))
    with mr.stage(out, "core.recognized_revenue_monthly"):
        mr._body(recognized_revenue_monthly)(warehouse=res)
    month_start = date(END.year, END.month, 1)
    with mr.stage(out, "mart.customer_margins_monthly"):
        mr._drain(
            mr._body(customer_margins_monthly)(context=mr._Window(month_start, END), warehouse=res)
        )
    with wh.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as c:
        c.exec_driver_sql("VACUUM ANALYZE")
    out["total"] = mr._total(t0, c0, 0.0)
    out["rows"] = {
        t: int(wh.scalar(f"SELECT COUNT(*) FROM {t}") or 0)
        for t in (
            "core.ledger",
            "mart.mrr_daily",
            "mart.mrr_plan_daily",
            "mart.cfo_metrics_daily",
            "mart.revenue_daily",
            "mart.customer_margins_monthly",
        )
    }
    wh.dispose()
    print("RESULT " + json.dumps(out, default=str))


def _child(argv: list[str], log: Path) -> dict[str, Any]:
    """marts_rebuild's `prepare` or this script's `marts` in a fresh interpreter; its RESULT."""
    script = Path(mr.__file__) if argv[0] == "prepare" else Path(__file__)
    return mr._child(argv, log, script)


def build(args: argparse.Namespace, workdir: Path, log: Path) -> tuple[str, dict[str, Any]]:
    """The warehouse's URL and how it was built (read back from the workdir with --reuse)."""
    import sqlalchemy as sa

    dbname = f"fp_bench_api_{args.customers}"
    admin = mr._pg_admin()
    url = admin.url.set(database=dbname).render_as_string(hide_password=False)
    note = workdir / f"built_{dbname}.json"
    with admin.connect() as c:
        exists = c.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": dbname}
        ).first()
    if args.reuse and note.exists() and exists:
        admin.dispose()
        return url, json.loads(note.read_text())
    note.unlink(missing_ok=True)
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        c.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    admin.dispose()
    sub = workdir / "build"
    sub.mkdir(exist_ok=True)
    prep = _child(
        ["prepare", "--workdir", str(sub), "--url", url, "--customers", str(args.customers),
         "--months", str(args.months), "--seed", str(args.seed),
         "--chunk", str(max(args.customers, 1))],
        log,
    )  # fmt: skip
    print(f"prepared: {json.dumps(prep)[:400]}", flush=True)
    marts = _child(
        ["marts", "--workdir", str(sub), "--url", url, "--first-day", prep["first_day"]], log
    )
    print(f"marts: {json.dumps(marts)[:600]}", flush=True)
    built = {"prepare": prep, "marts": marts}
    note.write_text(json.dumps(built, default=str))
    return url, built


def drop(url: str) -> None:
    """Drop the benchmark database."""
    import sqlalchemy as sa

    admin = mr._pg_admin()
    with admin.connect() as c:
        c.execute(
            sa.text(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)')
        )
    admin.dispose()


# ------------------------------------------------------------------------------------ serving


def credentials(url: str) -> str:
    """An owner (pro tier) for the warehouse's organization and a new org-wide owner API key."""
    from finance_pipeline.accounts import AccountError, add_member, create_api_key
    from finance_pipeline.lib.access import Role
    from finance_pipeline.tenancy import set_org_tier
    from finance_pipeline.warehouse import Warehouse

    wh = Warehouse(url)
    with contextlib.suppress(AccountError):  # --reuse: already the owner
        add_member(wh, ORG, OWNER_EMAIL, Role.OWNER, "apibench-password-1")
    set_org_tier(wh, ORG, "pro")
    _key, secret = create_api_key(wh, ORG, Role.OWNER, name="apibench")
    wh.dispose()
    return secret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(url: str, workdir: Path, workers: int, port: int) -> subprocess.Popen[bytes]:
    """`finance-pipeline api --workers N` on 127.0.0.1:port in its own process group."""
    env = {
        **os.environ,
        "FP_WAREHOUSE_URL": url,
        "FP_DATA_DIR": str(workdir / "data_api"),
        "FP_API_RATE_LIMIT_PER_MINUTE": str(10**9),  # counted as ever, never reached
        "FP_REQUESTS_INLINE": "false",
    }
    exe = Path(sys.executable).parent / "finance-pipeline"
    logf = (workdir / "api.log").open("ab")
    proc = subprocess.Popen(
        [str(exe), "api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    # Generous: at load average 30+ on 2 vCPUs two workers took over 90 s to import and answer.
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=10).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    stop_api(proc)
    raise RuntimeError(f"the API did not start; see {workdir / 'api.log'}")


def stop_api(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the API's process group (this script started it), then wait."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the processes of a process group (the API and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def get(base: str, path: str, token: str) -> tuple[int, float, bytes]:
    """One request: status, seconds, body."""
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, time.perf_counter() - t, r.read()
    except urllib.error.HTTPError as e:
        return e.code, time.perf_counter() - t, e.read()


# ----------------------------------------------------------------------------------------- wrk

DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""

READ_LUA = """
wrk.headers["Authorization"] = "Bearer %(token)s"
local d = %(delay)d
function delay() return d end
"""

INGEST_LUA = """
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
local n = 0
local tid = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function request()
  n = n + 1
  local items = {}
  for i = 1, %(batch)d do
    items[i] = string.format('{"subtype":"recurring_expense","amount_cents":%%d,'
      .. '"occurred_at":"%(day)s","vendor":"Vendor %%d","external_id":"%(prefix)s%%d-%%d-%%d"}',
      1000 + i, i %% 50, tid, n, i)
  end
  return wrk.format(nil, nil, nil, '{"expenses":[' .. table.concat(items, ",") .. ']}')
end
"""


def run_wrk(
    url: str, lua: str, workdir: Path, *, seconds: float, connections: int, threads: int = 1
) -> dict[str, Any]:
    """wrk on one URL with a Lua script; its done() summary plus load average and rate."""
    script = workdir / "bench.lua"
    script.write_text(lua + DONE_LUA)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    cmd = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
           "--timeout", "10s", "-s", str(script), url]  # fmt: skip
    load0 = os.getloadavg()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("JSON "):
            out = json.loads(line[5:])
    if not out:
        raise RuntimeError(f"wrk printed no summary: {proc.stdout}\n{proc.stderr}")
    out["rate"] = round(out["requests"] / (out["duration_us"] / 1e6), 1)
    out["loadavg_start"] = load0
    out["loadavg_end"] = os.getloadavg()
    return out


def read_route(
    base: str, path: str, token: str, workdir: Path, args: argparse.Namespace, pgid: int
) -> dict[str, Any]:
    """Calibrate the think time for `args.rate` req/s, then measure `args.seconds`."""
    c = args.connections
    cycle_ms = c * 1000 / args.rate
    lua = READ_LUA % {"token": token, "delay": int(cycle_ms)}
    cal = run_wrk(base + path, lua, workdir, seconds=args.calibrate, connections=c)
    observed_ms = c * 1000 / max(cal["rate"], 1e-9)
    delay = max(0, round(int(cycle_ms) + cycle_ms - observed_ms))
    lua = READ_LUA % {"token": token, "delay": delay}
    cpu0 = group_cpu_seconds(pgid)
    out = run_wrk(base + path, lua, workdir, seconds=args.seconds, connections=c)
    out["api_cpu_s"] = round(group_cpu_seconds(pgid) - cpu0, 2)
    out["think_ms"] = delay
    out["connections"] = c
    out["calibration_rate"] = cal["rate"]
    return out


def cleanup_ingest(url: str) -> dict[str, int]:
    """Remove the benchmark's ingested rows and the refreshes they requested (--reuse)."""
    from finance_pipeline.warehouse import Warehouse

    wh = Warehouse(url)
    with wh.begin() as db:
        rows = db.execute(
            wh.text("DELETE FROM raw.expense_events WHERE external_id LIKE :p"),
            {"p": INGEST_PREFIX + "%"},
        ).rowcount
        reqs = db.execute(
            wh.text("DELETE FROM app.pipeline_requests WHERE requested_by LIKE 'api:%'")
        ).rowcount
    wh.dispose()
    return {"expense_rows": int(rows or 0), "pipeline_requests": int(reqs or 0)}


def driver(args: argparse.Namespace, workdir: Path, url: str, built: dict[str, Any]) -> None:
    """Serve the built warehouse, measure every route, then the ingest rate."""
    token = credentials(url)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {
        "customers": args.customers,
        "months": args.months,
        "workers": args.workers,
        "target_rate": args.rate,
        "seconds": args.seconds,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "built": built,
        "routes": {},
    }
    wanted = [r for r in args.routes.split(",") if r]
    proc = start_api(url, workdir, args.workers, port)
    try:
        for name in wanted:
            path = routes()[name]
            # Warm-up: every worker's first requests (imports, pools), checked to be 200s.
            for _ in range(20):
                status, _s, body = get(base, path, token)
                if status != 200:
                    raise RuntimeError(f"{name}: {status} {body[:300]!r}")
            r = read_route(base, path, token, workdir, args, proc.pid)
            r["path"] = path
            r["response_bytes"] = len(body)
            results["routes"][name] = r
            print(
                f"{name:<10} {r['rate']:6.1f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms"
                f"  p90 {r['p90_us'] / 1000:6.2f}  p99 {r['p99_us'] / 1000:6.2f}"
                f"  max {r['max_us'] / 1000:7.2f}  non-2xx {r['status']}"
                f"  errors {r['connect'] + r['read'] + r['write'] + r['timeout']}"
                f"  api cpu {r['api_cpu_s']} s  load {r['loadavg_end'][0]:.2f}",
                flush=True,
            )
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        if args.ingest_seconds > 0:
            lua = INGEST_LUA % {
                "token": token,
                "batch": args.batch,
                "day": (END - timedelta(days=1)).isoformat(),
                "prefix": f"{INGEST_PREFIX}{int(time.time())}-",
            }
            cpu0 = group_cpu_seconds(proc.pid)
            r = run_wrk(
                f"{base}/v1/workspaces/{WORKSPACE}/ingest/expenses", lua, workdir,
                seconds=args.ingest_seconds, connections=args.ingest_connections,
            )  # fmt: skip
            r["api_cpu_s"] = round(group_cpu_seconds(proc.pid) - cpu0, 2)
            r["batch"] = args.batch
            r["connections"] = args.ingest_connections
            ok = r["requests"] - r["status"]
            r["items_per_s"] = round(ok * args.batch / (r["duration_us"] / 1e6), 1)
            r["cleanup"] = cleanup_ingest(url)
            results["ingest"] = r
            print(
                f"ingest     {r['rate']:6.1f} req/s  {r['items_per_s']:8.1f} items/s"
                f"  p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f}"
                f"  non-2xx {r['status']}  stored {r['cleanup']['expense_rows']}"
                f"  load {r['loadavg_end'][0]:.2f}",
                flush=True,
            )
    finally:
        stop_api(proc)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if not args.reuse:
        drop(url)


def profile(args: argparse.Namespace) -> None:
    """Child: one route's requests in process, timed, then under cProfile; prints the top
    functions. The ASGI app runs on this thread's event loop (httpx's ASGITransport) with the
    thread pool replaced by direct calls, so the profile sees the sync routes and dependencies."""
    import asyncio
    import cProfile
    import io
    import pstats

    import anyio.to_thread
    import httpx

    os.environ.update(
        {
            "FP_WAREHOUSE_URL": args.url,
            "FP_DATA_DIR": str(Path(args.workdir) / "data_api"),
            "FP_API_RATE_LIMIT_PER_MINUTE": str(10**9),
            "FP_REQUESTS_INLINE": "false",
        }
    )
    from finance_pipeline.api.app import app_from_settings

    async def inline(func: Any, *a: Any, **_kw: Any) -> Any:
        return func(*a)

    anyio.to_thread.run_sync = inline  # type: ignore[assignment]
    token = credentials(args.url)
    app = app_from_settings()
    headers = {"Authorization": f"Bearer {token}"}
    path = routes()[args.route]

    async def many(n: int, prof: cProfile.Profile | None = None) -> list[float]:
        transport = httpx.ASGITransport(app=app)
        times = []
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(n):
                t = time.perf_counter()
                if prof is not None:
                    prof.enable()
                r = await client.get(path, headers=headers)
                if prof is not None:
                    prof.disable()
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, (r.status_code, r.text[:300])
        return sorted(times)

    asyncio.run(many(10))
    times = asyncio.run(many(args.n))
    print(
        f"{args.route}: {args.n} requests in process, median {times[len(times) // 2] * 1000:.2f} ms,"
        f" p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms"
    )
    prof = cProfile.Profile()
    asyncio.run(many(args.n, prof))
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(args.top)
        print(buf.getvalue())


# -------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    """Command line: the driver by default; `marts` is a child, `profile` a diagnosis."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "marts":
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("--workdir", required=True)
        p.add_argument("--url", required=True)
        p.add_argument("--first-day", dest="first_day", required=True)
        build_marts(p.parse_args(argv))
        return
    if argv and argv[0] == "profile":
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("--workdir", required=True)
        p.add_argument("--url", required=True)
        p.add_argument("--route", required=True, choices=list(routes()))
        p.add_argument("-n", type=int, default=200)
        p.add_argument("--top", type=int, default=35)
        profile(p.parse_args(argv))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=10_000)
    p.add_argument("--months", type=int, default=36)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--workdir", default=None)
    p.add_argument("--reuse", action="store_true", help="keep the database and reuse it if built")
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    p.add_argument("--rate", type=float, default=200.0, help="target requests/s per route")
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds per route")
    p.add_argument("--calibrate", type=float, default=8.0, help="seconds to calibrate think time")
    p.add_argument("--connections", type=int, default=20, help="wrk connections (reads)")
    p.add_argument("--routes", default=",".join(routes()))
    p.add_argument("--batch", type=int, default=100, help="expense items per ingest request")
    p.add_argument("--ingest-seconds", type=float, default=30.0)
    p.add_argument("--ingest-connections", type=int, default=4)
    args = p.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fp_bench_api_"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "children.log"
    print(f"workdir {workdir}; child logs in {log}", flush=True)
    url, built = build(args, workdir, log)
    if args.build_only:
        return
    driver(args, workdir, url, built)


if __name__ == "__main__":
    main()

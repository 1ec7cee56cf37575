"""Benchmark: Stripe ingestion throughput against the stand-in, unlimited and at 100 req/s.

The stand-in runs in its own process serving a simulated fixture; the sync engine runs in a fresh
process per scenario, into a fresh warehouse, so every scenario is a full first sync. Usage:

    uv run python bench/ingest_throughput.py --customers 2000 --months 24 [--warehouse URL] \
        [--latency-ms 150] [--small]

With a PostgreSQL `--warehouse` URL each scenario gets its own new database on that server
(created and dropped here). `--latency-ms` makes the stand-in answer every request that much
later (real Stripe across the internet: ~150 ms). Every stream syncs at once (`sync_many`), each
read in `--list-slices` created-time slices. Reported per scenario: top-level objects/s, rows/s
(objects plus invoice lines, subscription items and credit-note lines), requests/s, 429 retries,
the ratio to the dataset's cap (its objects per request of a page-after-page read x the limit),
the client's CPU seconds, the stand-in's CPU seconds (is the server the bottleneck?) and the sync
process's peak RSS. `--before TREE` runs the child of another checkout (A/B on one fixture).
Method and figures: bench/README.md, section "Ingestion throughput".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from finance_pipeline.stripe_sync.engine import DEFAULT_FETCH_WORKERS, DEFAULT_LIST_SLICES

ROOT = Path(__file__).resolve().parent.parent
OBJECTS_PER_PAGE = 100
# (label, server rate limit req/s or None, client limiter req/s)
SCENARIOS: dict[str, tuple[float | None, float]] = {
    "unlimited": (None, 1e9),
    "limit_100_rps": (100.0, 100.0),
    # Not run by default: the same sync at 30 req/s needs about a third of the client CPU, so
    # on a loaded machine it still shows how the limiter's rate is shared among the streams
    # (`stream_seconds`, `timeline`) where at 100 req/s the CPU would bind first.
    "limit_30_rps": (30.0, 30.0),
}
DEFAULT_SCENARIOS = ("unlimited", "limit_100_rps")
SERVER_BURST = 10
# `--small`: a size that reruns in about a minute (bench/run_all).
SMALL = (400, 12)


def _wait(url: str, key: str) -> None:
    for _ in range(3000):
        try:
            req = urllib.request.Request(
                f"{url}/v1/account", headers={"Authorization": f"Bearer {key}"}
            )
            urllib.request.urlopen(req, timeout=2).read()
            return
        except Exception:
            time.sleep(0.2)  # not up yet: keep polling
    raise RuntimeError("stand-in did not start")


def _peak_rss_mb() -> tuple[int, int]:
    """(VmHWM of this process, ru_maxrss) in MB.

    ru_maxrss of a process started by fork/exec carries the parent's high-water mark over the
    exec (Linux keeps the max across it), so a child of the benchmark process, which holds the
    whole simulation, reports the parent's size. VmHWM belongs to the current address space only.
    """
    maxrss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024), maxrss
    except OSError:
        pass
    return maxrss, maxrss


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_scenario(args: argparse.Namespace) -> None:
    """Child process: sync every stream once into a fresh warehouse and print a JSON result."""
    from finance_pipeline.lib.backoff import BackoffPolicy
    from finance_pipeline.stripe_sync.engine import Connection, StripeStreamSync
    from finance_pipeline.stripe_sync.gateway import StripeGateway
    from finance_pipeline.stripe_sync.streams import STREAMS
    from finance_pipeline.warehouse import Warehouse, apply_migrations

    wh = Warehouse(args.warehouse)
    apply_migrations(wh)
    conn = Connection("ws_bench", args.account, False, args.key, args.url)
    gw = StripeGateway(
        args.key,
        api_base=args.url,
        rate_limit_rps=args.client_rps,
        rate_limit_burst=args.client_burst,
        backoff=BackoffPolicy(max_attempts=20),
        workspace_id="ws_bench",
    )
    sync = StripeStreamSync(
        wh,
        gw,
        conn,
        clock=lambda: args.clock,
        fetch_workers=args.fetch_workers,
        list_slices=args.list_slices,
        processes=args.processes or None,
    )
    cpu0 = time.process_time() + _children_cpu()
    t0 = time.perf_counter()
    if args.sequential_streams:
        results = [sync.sync(name) for name in STREAMS]
    else:
        results = list(sync.sync_many(list(STREAMS)).values())
    elapsed = time.perf_counter() - t0
    listed = sum(r.listed + r.refreshed for r in results)
    children = sum(r.sublist_rows for r in results)
    # A page-after-page read of the same objects needs ceil(n / 100) list pages per stream;
    # every further page is a slice's last, partial page (sub-lists and retrieves are the same).
    extra_pages = sum(r.pages - max(1, -(-r.listed // args.page_size)) for r in results)
    # The sync's stream processes (`processes` > 1) are children of this one.
    cpu = time.process_time() + _children_cpu() - cpu0
    hwm, maxrss = _peak_rss_mb()
    child_rss = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    wh.dispose()
    print(
        json.dumps(
            {
                "objects": listed,
                "child_rows": children,
                "seconds": round(elapsed, 2),
                "objects_per_s": round(listed / elapsed),
                "rows_per_s": round((listed + children) / elapsed),
                "requests": gw.stats.requests,
                "requests_per_s": round(gw.stats.requests / elapsed, 1),
                "requests_sequential": gw.stats.requests - gw.stats.retries - extra_pages,
                "retries": gw.stats.retries,
                "limiter_requeued": gw._limiter.requeued,
                "throttled_s": round(gw.stats.throttled_seconds, 1),
                "errors": gw.stats.errors_by_status,
                "client_cpu_s": round(cpu, 1),
                "peak_rss_mb": hwm,
                "ru_maxrss_mb": maxrss,
                "stream_process_peak_rss_mb": child_rss,
                "stream_seconds": {r.stream: r.seconds for r in results},
                "stream_pages": {r.stream: r.pages for r in results},
                # Where each stream's thread spent its time, and per request tag (a stream's
                # list pages, refreshes, or a sub-list resource) requests, seconds waited on the
                # limiter and in the HTTP call, and requests sent per second from the start.
                "stream_timings": {r.stream: r.timings for r in results},
                "requests_by_tag": {
                    tag: {k: round(v, 1) for k, v in c.items()}
                    for tag, c in sorted(gw.stats.by_tag.items())
                },
                "timeline": _timeline(gw.stats.timeline),
            }
        )
    )


def _timeline(timeline: dict[str, dict[int, int]]) -> dict[str, list[int]]:
    """Requests per second by stream (a sub-list resource counts as its own), from the
    first request of the run to the last."""
    seconds = [sec for line in timeline.values() for sec in line]
    if not seconds:
        return {}
    first, last = min(seconds), max(seconds)
    return {
        tag: [line.get(sec, 0) for sec in range(first, last + 1)]
        for tag, line in sorted(timeline.items())
    }


def _post(url: str, body: dict[str, Any]) -> None:
    urllib.request.urlopen(
        urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        ),
        timeout=10,
    ).read()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(pid: int, timeout: float = 600.0) -> None:
    """Wait until the stand-in has finished warming up (pre-rendering every object in a
    background thread), so that work is not counted against the first scenario."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(1.0)
        if _cpu_seconds(pid) - before < 0.05:
            return


class _FreshWarehouse:
    """A new, empty warehouse per scenario: a SQLite file, or a database on a PostgreSQL server."""

    def __init__(self, base: str, tmp: Path, label: str) -> None:
        self.admin = None
        if not base:
            self.url = f"sqlite:///{tmp / (label + '.sqlite')}"
            return
        import sqlalchemy as sa

        url = sa.make_url(base)
        if url.get_backend_name() != "postgresql":
            raise SystemExit("--warehouse must be a postgresql:// URL (default: SQLite files)")
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        self.name = f"fp_bench_{label}_{uuid.uuid4().hex[:8]}"
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = url.set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.admin is None:
            return
        import sqlalchemy as sa

        with self.admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def _fixture(args: argparse.Namespace, tmp: Path) -> tuple[Path, dict[str, Any]]:
    """The fixture file and its account, full-access key and clock (simulated unless given)."""
    if args.fixture:
        fixture = Path(args.fixture)
        meta_path = fixture.with_suffix(".meta.json")
        if meta_path.exists():
            return fixture, json.loads(meta_path.read_text())
        data = json.loads(fixture.read_text())
    else:
        from finance_pipeline_dev.simulator import simulate

        t = time.perf_counter()
        sim = simulate(seed=args.seed, customers=args.customers, months=args.months)
        fixture = tmp / "fixture.json"
        sim.write_fixture(fixture)
        print(
            f"simulated {args.customers} customers x {args.months} months (seed {args.seed}) "
            f"in {time.perf_counter() - t:.1f} s"
        )
        data = sim.fixture
        meta_path = fixture.with_suffix(".meta.json")
    [(account, acct)] = list(data["accounts"].items())
    key = next(k for k, v in acct["keys"].items() if v.get("permissions") is None)
    meta = {"account": account, "key": key, "clock": data["clock"]}
    meta_path.write_text(json.dumps(meta))
    return fixture, meta


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--fixture", default="", help="serve this fixture instead of simulating")
    p.add_argument("--port", type=int, default=12199)
    p.add_argument("--warehouse", default="", help="PostgreSQL server URL (default: SQLite)")
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    # Every stream's pages wait on the limiter at once, so slots saved up while busy are rarely
    # there to use; a burst of 1 leaves the stand-in's whole burst (10) for arrival jitter.
    p.add_argument("--client-burst", type=float, default=1.0, help="client limiter burst")
    # The product's defaults (what a deployed sync uses).
    p.add_argument(
        "--fetch-workers", type=int, default=DEFAULT_FETCH_WORKERS, help="sub-list reads per stream"
    )
    p.add_argument(
        "--list-slices", type=int, default=DEFAULT_LIST_SLICES, help="pages per stream at once"
    )
    p.add_argument(
        "--processes",
        type=int,
        default=0,
        help="processes for the streams (0: the default, one per core, at most 2)",
    )
    p.add_argument("--sequential-streams", action="store_true", help="one stream after another")
    p.add_argument("--latency-ms", type=int, default=0, help="stand-in latency per request")
    p.add_argument("--small", action="store_true", help=f"{SMALL[0]} customers x {SMALL[1]} months")
    p.add_argument("--before", default="", help="run the child of this checkout (A/B)")
    p.add_argument(
        "--before-same-args", action="store_true", help="the --before child gets this run's options"
    )
    p.add_argument("--page-size", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--keep", action="store_true", help="keep the temporary fixture and warehouses")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", default="")
    p.add_argument("--key", default="")
    p.add_argument("--account", default="")
    p.add_argument("--clock", type=int, default=0)
    p.add_argument("--client-rps", type=float, default=1e9)
    p.add_argument("--json", default="", help="also write the results (per scenario) here")
    args = p.parse_args()
    if args.child:
        run_scenario(args)
        return 0
    if args.small:
        args.customers, args.months = SMALL

    tmp = Path(tempfile.mkdtemp(prefix="fp_bench_"))
    fixture, meta = _fixture(args, tmp)
    # The simulation is large; drop it before measuring anything.
    gc.collect()
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finance_pipeline_dev.standin.serve",
            "--port",
            str(args.port),
            "--fixture",
            str(fixture),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    # (label prefix, child script, its environment, its extra arguments)
    this_args = [
        "--list-slices",
        str(args.list_slices),
        "--client-burst",
        str(args.client_burst),
        "--processes",
        str(args.processes),
    ]
    if args.sequential_streams:
        this_args.append("--sequential-streams")
    variants = [("", __file__, {**os.environ}, this_args)]
    if args.before:
        # The other checkout's product and child, on this environment's packages, with its own
        # defaults; run alternately with this tree's, scenario by scenario.
        before = Path(args.before).resolve()
        variants = [
            (
                "before:",
                str(before / "bench" / "ingest_throughput.py"),
                {**os.environ, "PYTHONPATH": f"{before}:{before / 'dev'}"},
                # main's bench defaults at 8e4726c (4 slices, 12 readers), or this run's own
                (
                    ["--fetch-workers", str(args.fetch_workers), *this_args]
                    if args.before_same_args
                    else ["--fetch-workers", "12", "--list-slices", "4"]
                ),
            ),
            ("after:", __file__, {**os.environ}, this_args),
        ]
    try:
        _wait(url, meta["key"])
        _wait_idle(server.pid)
        results = {}
        runs = [(v, s) for s in args.scenarios.split(",") for v in variants]
        for (prefix, child_script, child_env, child_args), scenario in runs:
            label = prefix + scenario
            server_rps, client_rps = SCENARIOS[scenario]
            _post(
                f"{url}/_standin/faults",
                {
                    "rate_limit_rps": server_rps,
                    "rate_limit_burst": SERVER_BURST if server_rps else None,
                    "latency_ms": args.latency_ms,
                },
            )
            wh = _FreshWarehouse(args.warehouse, tmp, label.replace(":", "_"))
            server_cpu = _cpu_seconds(server.pid)
            try:
                out = subprocess.run(
                    [
                        sys.executable,
                        child_script,
                        "--child",
                        "--url",
                        url,
                        "--key",
                        meta["key"],
                        "--account",
                        meta["account"],
                        "--clock",
                        str(meta["clock"]),
                        "--client-rps",
                        str(client_rps),
                        "--fetch-workers",
                        str(args.fetch_workers),
                        *child_args,
                        "--warehouse",
                        wh.url,
                    ],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    env=child_env,
                    check=True,
                )
            finally:
                wh.drop()
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["server_cpu_s"] = round(_cpu_seconds(server.pid) - server_cpu, 1)
            res.setdefault("requests_sequential", res["requests"] - res["retries"])
            # objects/s over (objects per page-after-page request x the limit)
            if server_rps:
                res["ratio_of_cap"] = round(
                    res["requests_sequential"] / res["seconds"] / server_rps, 3
                )
            res["latency_ms"] = args.latency_ms
            res["load_avg"] = [round(x, 2) for x in os.getloadavg()]
            results[label] = res
            print(label, json.dumps(res))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True))
        first = next(iter(results.values()))
        per_request = first["objects"] / first["requests_sequential"]
        cap = per_request / OBJECTS_PER_PAGE
        print(
            f"dataset: {first['objects']} objects + {first['child_rows']} child rows in "
            f"{first['requests_sequential']} requests read page after page = "
            f"{per_request:.1f} objects/request, so at most "
            f"{cap:.2f} of the {OBJECTS_PER_PAGE} objects/request a full page carries"
        )
        for label, lim in results.items():
            if not label.endswith("limit_100_rps"):
                continue
            bound = SCENARIOS["limit_100_rps"][0] * OBJECTS_PER_PAGE
            print(
                f"{label} under 100 req/s: {lim['objects_per_s']} objects/s = "
                f"{lim['objects_per_s'] / bound:.2f} of the {bound:,.0f} objects/s bound "
                f"(cap for this dataset {cap:.2f}), i.e. {lim['ratio_of_cap']:.2f} of the cap; "
                f"{lim['requests_per_s']} req/s = {lim['requests_per_s'] / 100:.2f} of the limit; "
                f"{lim['errors'].get('429', 0)} x 429"
            )
    finally:
        server.terminate()
        server.wait(10)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

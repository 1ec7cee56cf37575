"""Benchmark: Stripe ingestion throughput (objects/s) against the stand-in, unlimited and at 100 req/s.

The stand-in runs in its own process (serving a simulated fixture); the pipeline's sync engine runs
in a fresh process per scenario so that peak RSS is the sync's own. Usage:

    uv run python bench/ingest_throughput.py --customers 2000 --months 24 [--warehouse URL]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _wait(url: str, key: str) -> None:
    for _ in range(600):
        try:
            req = urllib.request.Request(
                f"{url}/v1/account", headers={"Authorization": f"Bearer {key}"}
            )
            urllib.request.urlopen(req, timeout=2).read()
            return
        except Exception:  # polling until the server is up
            time.sleep(0.2)
    raise RuntimeError("stand-in did not start")


def run_scenario(args: argparse.Namespace) -> None:
    """Child process: sync every stream once into a fresh warehouse and print a JSON result."""
    from finance_pipeline.lib.ratelimit import BackoffPolicy
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
        backoff=BackoffPolicy(max_attempts=20),
        workspace_id="ws_bench",
    )
    sync = StripeStreamSync(wh, gw, conn, clock=lambda: args.clock)
    t0 = time.perf_counter()
    listed = children = 0
    for name in STREAMS:
        res = sync.sync(name)
        listed += res.listed + res.refreshed
        children += res.sublist_rows
    elapsed = time.perf_counter() - t0
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
                "retries": gw.stats.retries,
                "errors": gw.stats.errors_by_status,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--port", type=int, default=12199)
    p.add_argument("--warehouse", default="")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", default="")
    p.add_argument("--key", default="")
    p.add_argument("--account", default="")
    p.add_argument("--clock", type=int, default=0)
    p.add_argument("--client-rps", type=float, default=1e9)
    args = p.parse_args()
    if args.child:
        run_scenario(args)
        return 0

    from finance_pipeline.stripe_standin.simulator import simulate

    tmp = Path(tempfile.mkdtemp(prefix="fp_bench_"))
    t = time.perf_counter()
    sim = simulate(seed=args.seed, customers=args.customers, months=args.months)
    fixture = tmp / "fixture.json"
    sim.write_fixture(fixture)
    print(
        f"simulated {args.customers} customers x {args.months} months in {time.perf_counter() - t:.1f} s"
    )
    [(account, acct)] = list(sim.fixture["accounts"].items())
    key = next(k for k, v in acct["keys"].items() if v.get("permissions") is None)
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finance_pipeline.stripe_standin.serve",
            "--port",
            str(args.port),
            "--fixture",
            str(fixture),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        _wait(url, key)
        results = {}
        for label, server_rps, client_rps in (
            ("unlimited", None, 1e9),
            ("limit_100_rps", 100, 100),
        ):
            body = json.dumps(
                {"rate_limit_rps": server_rps, "rate_limit_burst": 10 if server_rps else None}
            ).encode()
            urllib.request.urlopen(
                urllib.request.Request(
                    f"{url}/_standin/faults",
                    data=body,
                    method="POST",
                    headers={"Content-Type": "application/json"},
                ),
                timeout=10,
            ).read()
            wh_url = args.warehouse or f"sqlite:///{tmp / (label + '.sqlite')}"
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--url",
                    url,
                    "--key",
                    key,
                    "--account",
                    account,
                    "--clock",
                    str(sim.fixture["clock"]),
                    "--client-rps",
                    str(client_rps),
                    "--warehouse",
                    wh_url,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ},
                check=True,
            )
            results[label] = json.loads(out.stdout.strip().splitlines()[-1])
            print(label, json.dumps(results[label]))
        bound = 100 * 100
        ratio = results["limit_100_rps"]["objects_per_s"] / bound
        print(
            f"under 100 req/s: {results['limit_100_rps']['objects_per_s']} objects/s = {ratio:.2f} of the 10,000 objects/s bound"
        )
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

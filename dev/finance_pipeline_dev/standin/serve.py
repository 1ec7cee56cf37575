"""Serve the stand-in from the command line (demo, benchmarks): a fixture file or a simulation.

    python -m finance_pipeline_dev.standin.serve --port 12111 --fixture data.json
    python -m finance_pipeline_dev.standin.serve --port 0 --seed 7 --customers 200 --months 18
    python -m finance_pipeline_dev.standin.serve --event-history full --customers 200
    python -m finance_pipeline_dev.standin.serve --fixture data.json --latency-ms 150

``--latency-ms`` (or ``STANDIN_LATENCY_MS``) delays every API response by that much, like real
Stripe across the internet; requests are served on their own threads, so it never blocks others.

``--event-history full`` simulates every event of the history and turns time travel on: the
account is served as of the stand-in clock, which ``POST /_standin/clock`` moves through it.

Prints the URL and the API keys, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finance_pipeline_dev.standin.server import StandIn
from finance_pipeline_dev.standin.store import Store, StoreError, redact_key


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m finance_pipeline_dev.standin.serve",
        description="Serve the local Stripe stand-in (read API + /_standin control plane).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=12111, help="TCP port (0 = any free port)")
    p.add_argument("--fixture", type=Path, help="fixture JSON to serve (else: simulate)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    p.add_argument("--customers", type=int, default=50, help="simulated customers")
    p.add_argument("--months", type=int, default=12, help="simulated months of history")
    p.add_argument(
        "--event-history",
        choices=("retention", "full"),
        default="retention",
        help="simulated events: the last 30 days only (default) or the whole history "
        "(implies --time-travel)",
    )
    p.add_argument(
        "--time-travel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the account as of the stand-in clock (default: the fixture's "
        "'time_travel' key, which full simulated histories set)",
    )
    p.add_argument(
        "--clock",
        type=int,
        help="start with the clock frozen at this unix time (e.g. the start of the history)",
    )
    p.add_argument(
        "--write-fixture", type=Path, help="also write the served fixture to this JSON file"
    )
    p.add_argument(
        "--latency-ms",
        type=int,
        default=None,
        help="delay every API response by this many ms (network round trip; "
        "default: $STANDIN_LATENCY_MS or 0)",
    )
    return p


def _latency_ms(flag: int | None) -> int:
    """The response latency: the flag, else STANDIN_LATENCY_MS, else none."""
    if flag is not None:
        return flag
    raw = os.environ.get("STANDIN_LATENCY_MS", "").strip()
    return int(raw) if raw else 0


def _simulated_fixture(
    seed: int, customers: int, months: int, event_history: str = "retention"
) -> dict[str, Any]:
    try:
        module = importlib.import_module("finance_pipeline_dev.simulator")
    except ModuleNotFoundError as exc:
        if exc.name != "finance_pipeline_dev.simulator":
            raise
        raise SystemExit(
            "error: no --fixture given and the simulator module "
            "finance_pipeline_dev.simulator is not available; pass --fixture PATH"
        ) from None
    # The default is not passed, so simulators without the option keep working.
    extra = {} if event_history == "retention" else {"event_history": event_history}
    result = module.simulate(seed=seed, customers=customers, months=months, **extra)
    return dict(result.fixture)


def _warm(store: Store, freeze_gc: bool) -> None:
    """Pre-serialize every object, then exempt the loaded fixture from cyclic GC passes.

    A fixture is 10^5-10^6 long-lived acyclic dicts; without ``gc.freeze`` every full collection
    walks all of them and stalls requests. Refcounting still frees them after a reload.
    """
    store.warm_cache()
    if freeze_gc:
        gc.collect()
        gc.freeze()


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until SIGINT/SIGTERM; returns the process exit code."""
    return run(argv, freeze_gc=True)


def run(
    argv: list[str] | None = None,
    *,
    stop: threading.Event | None = None,
    ready: Callable[[StandIn], None] | None = None,
    freeze_gc: bool = False,
) -> int:
    """``main`` for embedding: serves until ``stop`` is set (or a signal in the main thread).

    ``freeze_gc`` (own process only) exempts the loaded fixture from cyclic GC after warm-up.
    """
    args = _parser().parse_args(argv)
    try:
        if args.fixture is not None:
            store = Store.load(args.fixture, seed=args.seed, time_travel=args.time_travel)
        else:
            store = Store.load(
                _simulated_fixture(args.seed, args.customers, args.months, args.event_history),
                seed=args.seed,
                time_travel=args.time_travel,
            )
    except (OSError, json.JSONDecodeError, StoreError) as exc:
        print(f"error: cannot load fixture: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return 2
    if args.clock is not None:
        store.clock.set(args.clock)
    if args.write_fixture is not None:
        args.write_fixture.write_text(json.dumps(store.dump()), encoding="utf-8")

    standin = StandIn(store, seed=args.seed)
    try:
        latency = _latency_ms(args.latency_ms)
        standin.configure_faults(latency_ms=latency)
    except ValueError as exc:
        print(f"error: bad latency: {exc}", file=sys.stderr)
        return 2
    try:
        url = standin.start(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    stop = stop or threading.Event()
    # The handler only flips a flag: Event.set() from a signal handler can deadlock on the
    # event's lock when the signal lands inside Event.wait() on the same (main) thread.
    signalled: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _frame: signalled.append(signum))
    threading.Thread(
        target=_warm, args=(store, freeze_gc), name="standin-warm", daemon=True
    ).start()
    print(f"stripe stand-in listening on {url}", flush=True)
    print(f"clock: {store.now()} ({'frozen' if store.clock.frozen else 'real time'})")
    if latency:
        print(f"latency: {latency} ms per API response")
    if store.time_travel:
        print("time travel: on (the account is served as of the clock)")
    for key, info in store.keys().items():
        scope = "full access" if info.permissions is None else ",".join(sorted(info.permissions))
        acct = store.account_info(info.account_id)
        counts = (
            {t: len(idx.ids) for t, idx in acct.index.items() if idx.ids}
            if acct is not None
            else {}
        )
        # Masked: the banner lands in the demo's logs folder (data/run), and a key belongs in
        # the fixture alone, as a real key stays with Stripe.
        print(f"key {redact_key(key)} -> account {info.account_id} ({scope}) objects={counts}")
    print(
        f"control plane: {url}/_standin/ (clock, time_travel, faults, requests, dump, load)",
        flush=True,
    )
    if ready is not None:
        ready(standin)
    try:
        while not signalled and not stop.is_set():
            time.sleep(0.1)
    finally:
        standin.stop()
        print("stripe stand-in stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A pipeline that syncs a simulated Stripe account every 25 days (so no event expires unseen, as a
scheduled deployment would), for tests that compare the marts with the simulator's ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from finance_pipeline_dev.simulator import Simulation, simulate
from finance_pipeline_dev.standin.server import StandIn

from finance_pipeline.ingest.landing import pending_files, process_file
from finance_pipeline.lib.timeutil import day_start_ts
from finance_pipeline.settings import get_settings
from finance_pipeline.stripe_sync.engine import Connection, StripeStreamSync
from finance_pipeline.stripe_sync.gateway import StripeGateway
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse

END = date(2026, 10, 31)
MONTHS = 8
SYNC_EVERY_DAYS = 25


@dataclass
class Replay:
    """The simulation, its Stripe account, the first simulated day and the stand-in's final clock."""

    sim: Simulation
    account: str
    first: date
    clock: int


def replay(
    wh: Warehouse, seed: int, customers: int, workspaces: dict[str, dict[str, Any]]
) -> Replay:
    """Simulate, then sync every workspace (each with its own settings) from the same account
    every SYNC_EVERY_DAYS days of simulated time; FX rates are ingested from the landing files."""
    sim = simulate(seed=seed, customers=customers, months=MONTHS, end=END, event_history="full")
    [(acct, a)] = sim.fixture["accounts"].items()
    key = next(iter(a["keys"]))
    standin = StandIn(sim.fixture)
    url = standin.start()
    org = create_organization(wh, "o", org_id="o")
    for ws_id, settings in workspaces.items():
        create_workspace(wh, org, ws_id, workspace_id=ws_id, settings=settings)
    landing = get_settings().resolved_landing_dir
    landing.mkdir(parents=True)
    sim.write_landing(landing)
    for path in pending_files(landing):
        if path.name.startswith("fx_rates"):
            assert process_file(wh, path, landing).status == "accepted"
    first = END - timedelta(days=MONTHS * 31)
    syncs = [
        StripeStreamSync(
            wh,
            StripeGateway(key, api_base=url, rate_limit_rps=1e9, workspace_id=ws_id),
            Connection(ws_id, acct, False, key, url),
            clock=standin.now,
        )
        for ws_id in workspaces
    ]
    t = day_start_ts(first)
    try:
        while True:
            standin.set_clock(t)
            for sync in syncs:
                for name in STREAMS:
                    sync.sync(name)
            if t >= sim.fixture["clock"]:
                break
            t = min(t + SYNC_EVERY_DAYS * 86400, sim.fixture["clock"])
    finally:
        standin.stop()
    return Replay(sim, acct, first, sim.fixture["clock"])


def value_on(series: list[tuple[date, Fraction]], day: date) -> Fraction:
    """The value of a change-row series (sorted by day) on `day`: the last change on or before it."""
    value = Fraction(0)
    for d, v in series:
        if d > day:
            break
        value = v
    return value

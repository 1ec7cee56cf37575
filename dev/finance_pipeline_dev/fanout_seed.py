"""Many small workspaces for the fan-out tests and benchmark (docs/scaling.md): one simulated
Stripe account synced once from the stand-in, its raw rows copied to every other workspace, each
workspace in its own time zone (so their marts differ)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from finance_pipeline.stripe_sync.engine import Connection, StripeStreamSync
from finance_pipeline.stripe_sync.gateway import StripeGateway
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.tenancy import _workspace_tables, create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_dev.simulator import simulate
from finance_pipeline_dev.standin.server.inprocess import StandIn

SEED_END = date(2026, 10, 31)
TIME_ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo")


def workspace_ids(n: int) -> list[str]:
    """The ids of n seeded workspaces, in creation order."""
    return [f"ws_fan{i:04d}" for i in range(n)]


def seed_workspaces(
    wh: Warehouse, n: int, *, customers: int = 6, months: int = 3, seed: int = 3
) -> list[str]:
    """Create n workspaces holding the same simulated USD account (synced into the first, copied
    to the others), time zones cycling through TIME_ZONES; returns their ids."""
    sim = simulate(seed=seed, customers=customers, months=months, end=SEED_END, currencies=("usd",))
    [(acct, account)] = sim.fixture["accounts"].items()
    key = next(iter(account["keys"]))
    [first] = grow_workspaces(wh, 1, copy_raw=False)
    with StandIn(sim.fixture) as standin:
        url = standin.url
        sync = StripeStreamSync(
            wh,
            StripeGateway(key, api_base=url, rate_limit_rps=1e9, workspace_id=first),
            Connection(first, acct, False, key, url),
            clock=standin.now,
        )
        for name in STREAMS:
            sync.sync(name)
    return grow_workspaces(wh, n)


def grow_workspaces(wh: Warehouse, n: int, *, copy_raw: bool = True) -> list[str]:
    """Add workspaces up to n in all (the first one's raw rows copied to each new one); returns
    the ids of all n."""
    org = create_organization(wh, "Fan-out org", org_id="org_fanout")
    ids = workspace_ids(n)
    have = {r["id"] for r in wh.rows("SELECT id FROM app.workspaces WHERE org_id = :o", o=org)}
    new = [ws for ws in ids if ws not in have]
    for ws in new:
        i = ids.index(ws)
        create_workspace(wh, org, ws, workspace_id=ws, time_zone=TIME_ZONES[i % len(TIME_ZONES)])
    if copy_raw and new:
        clone_raw(wh, ids[0], new)
    return ids


def clone_raw(wh: Warehouse, source: str, targets: list[str]) -> None:
    """Copy every raw-layer row of `source` to each target workspace, in one transaction."""
    tables = [wh.table(t) for t in _workspace_tables(wh) if t.startswith("raw.")]
    with wh.begin() as db:
        for table in tables:
            for target in targets:
                cols = [c.name for c in table.columns]
                select = sa.select(
                    *[
                        sa.literal(target).label(c) if c == "workspace_id" else table.c[c]
                        for c in cols
                    ]
                ).where(table.c.workspace_id == source)
                db.execute(sa.insert(table).from_select(cols, select))

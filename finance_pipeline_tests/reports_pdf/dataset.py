"""A simulated Stripe account synced and built through the real Dagster jobs (daily marts, then
margins and forecasts per month), the data a month-end close pack is rendered from."""

from __future__ import annotations

import argparse
import os
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
from finance_pipeline_dev.simulator import simulate
from finance_pipeline_dev.standin.server import StandIn

from finance_pipeline.definitions import defs
from finance_pipeline.ingest.landing import pending_files, process_file
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.tenancy import connect_stripe, create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse, apply_migrations
from finance_pipeline_tests.dagster_runs import range_tags

WORKSPACE = "ws1"
CASH_MICROS = 900_000 * 10**6


def month_starts(first: date, last: date) -> list[date]:
    """First days of the months from first's month to last's month, inclusive."""
    out, cur = [], first.replace(day=1)
    while cur <= last:
        out.append(cur)
        cur = (cur.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


def build_account(
    wh: Warehouse,
    landing: Path,
    *,
    customers: int,
    months: int,
    end: date,
    seed: int,
    instance: dg.DagsterInstance | None = None,
) -> None:
    """Simulate, sync once, land the CSVs and run the daily refresh and monthly jobs to `end`
    (on `instance` when given, so its runs and check results can be inspected afterwards)."""
    sim = simulate(
        seed=seed, customers=customers, months=months, end=end, currencies=("usd", "eur")
    )
    [(acct, a)] = sim.fixture["accounts"].items()
    key = next(iter(a["keys"]))
    standin = StandIn(sim.fixture)
    url = standin.start()
    try:
        org = create_organization(wh, "Northwind Labs", org_id="o")
        create_workspace(
            wh,
            org,
            "Northwind Labs",
            workspace_id=WORKSPACE,
            cash_on_hand_micros=CASH_MICROS,
            settings={"mapping_auto_accept_confidence": 1},
        )
        connect_stripe(wh, WORKSPACE, account_id=acct, livemode=False, api_key=key, api_base=url)
        (landing / WORKSPACE).mkdir(parents=True, exist_ok=True)
        sim.write_landing(landing / WORKSPACE)
        for path in pending_files(landing):
            process_file(wh, path, landing)
        resources = {"warehouse": WarehouseResource(url=wh.url.render_as_string(False))}
        first = end - timedelta(days=months * 31)
        daily = defs.resolve_job_def("daily_refresh").execute_in_process(
            instance=instance or dg.DagsterInstance.ephemeral(),
            resources=resources,
            tags=range_tags(max(first, date(2023, 1, 1)), end),
        )
        assert daily.success
    finally:
        standin.stop()
    monthly = defs.resolve_job_def("monthly_margins_and_forecasts")
    starts = month_starts(end - timedelta(days=180), end)
    result = monthly.execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(),
        resources=resources,
        tags=range_tags(starts[0], starts[-1]),
    )
    assert result.success


def sample_account(
    end: date, *, customers: int, months: int
) -> tuple[argparse.Namespace, Path, Warehouse]:
    """For the sample-rendering scripts: parse `OUT_DIR [--customers] [--months] [--dpi]` and
    build (or reuse) a simulated account's SQLite warehouse under OUT_DIR, ending on `end`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--customers", type=int, default=customers)
    parser.add_argument("--months", type=int, default=months)
    parser.add_argument("--dpi", type=int, default=60)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FP_DATA_DIR", str(out / "data"))
    os.environ.setdefault("FP_SECRET_KEY", "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q=")
    db = out / "warehouse.sqlite"
    fresh = not db.exists()
    wh = Warehouse(f"sqlite:///{db}")
    if fresh:
        apply_migrations(wh)
        build_account(
            wh, out / "landing", customers=args.customers, months=args.months, end=end, seed=7
        )
    return args, out, wh

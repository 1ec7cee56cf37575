"""The demo on the embedded default: simulated Stripe history served by the stand-in, every asset
materialized into SQLite, and the Dagster UI left running. Re-running it is safe (same seed, same ids).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from finance_pipeline.deployment import dagster_home
from finance_pipeline.settings import PROJECT_ROOT, Settings, get_settings

SERVICES = ("stripe_standin", "dagster_daemon", "dagster_webserver")
# The demo's size and ports; the dev CLI shows them in --help.
DEFAULTS = {"customers": 300, "months": 24, "seed": 7, "standin_port": 12111, "ui_port": 3000}


def _run_dir(settings: Settings) -> Path:
    path = Path(settings.data_dir) / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _start_service(
    settings: Settings, name: str, cmd: list[str], env: dict[str, str], cwd: Path = PROJECT_ROOT
) -> int:
    log = open(_run_dir(settings) / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    # Its own session/process group: `dagster dev` ignores signals sent only to the parent.
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    (_run_dir(settings) / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def stop_services(settings: Settings | None = None) -> None:
    """Stop the demo's background services by process group."""
    settings = settings or get_settings()
    for name in SERVICES:
        pid_file = _run_dir(settings) / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                os.killpg(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink(missing_ok=True)
        print(f"stopped {name} (process group {pid})")


def _port_free(port: int) -> bool:
    """Whether a service can listen on 127.0.0.1:port (an older demo's UI would answer instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: a port left in TIME_WAIT by a stopped demo counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_http(url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.time() + timeout
    last: Exception | None = None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=5):
                return
        except Exception as exc:
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s: {last}")


def _dismiss_first_run_popup(ui: str) -> None:
    body = json.dumps({"query": "mutation { setNuxSeen }"}).encode()
    req = urllib.request.Request(
        f"{ui}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with contextlib.suppress(Exception):
        urllib.request.urlopen(req, timeout=10).read()


def prepare_demo_data(
    settings: Settings, *, customers: int, months: int, seed: int, standin_url: str
) -> tuple[Path, Any]:
    """Simulate the Stripe history, write the fixture and landing CSVs, register workspaces."""
    from finance_pipeline.resources import warehouse_for
    from finance_pipeline.tenancy import connect_stripe, create_organization, create_workspace
    from finance_pipeline_dev.simulator import simulate

    demo_dir = Path(settings.data_dir) / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    end = datetime.now(UTC).date() - timedelta(days=1)
    # Two Stripe accounts -> two workspaces, each with its own key, synced in the same runs.
    sim = simulate(seed=seed, customers=customers, months=months, end=end, accounts=2)
    fixture_path = demo_dir / "stripe_fixture.json"
    sim.write_fixture(fixture_path)
    sim.write_ground_truth(demo_dir / "ground_truth.json")
    wh = warehouse_for(settings.resolved_warehouse_url)
    org = create_organization(wh, "Demo Org", "finance@demo.example", org_id="org_demo")
    for n, (account_id, account) in enumerate(sorted(sim.fixture["accounts"].items()), start=1):
        ws = create_workspace(
            wh,
            org,
            f"Demo workspace {n}",
            workspace_id=f"ws_demo_{n}",
            reporting_currency="usd",
            time_zone="UTC",
            cash_on_hand_micros=1_500_000 * 10**6,
            # The stand-in tags usage costs with the Stripe customer id: trust exact-id matches so
            # margins attribute them; weaker matches stay pending for finance to accept.
            settings={"mapping_auto_accept_confidence": 1},
        )
        key = next(k for k, v in account["keys"].items() if v.get("permissions") is None)
        connect_stripe(
            wh,
            ws,
            account_id=account_id,
            livemode=bool(account.get("livemode")),
            api_key=key,
            api_base=standin_url,
        )
        landing = settings.resolved_landing_dir / ws
        landing.mkdir(parents=True, exist_ok=True)
        if not (landing / PROCESSED_MARKER).exists():
            sim.write_landing(landing)
            (landing / PROCESSED_MARKER).write_text(str(seed))
    return fixture_path, sim


PROCESSED_MARKER = ".demo_seed"


def _print_sync_summary(settings: Settings) -> None:
    from finance_pipeline.resources import warehouse_for
    from finance_pipeline.stripe_sync.health import sync_status

    wh = warehouse_for(settings.resolved_warehouse_url)
    print("\nStripe sync")
    for ws in wh.rows("SELECT id, name FROM app.workspaces ORDER BY id"):
        st = sync_status(wh, ws["id"])
        print(
            f"  {ws['id']} ({ws['name']}): health={st['sync_health']} last_sync={st['last_sync']}"
        )
        for stream, info in st["streams"].items():
            print(f"    {stream:<22} {info['objects_total']:>8} rows  {info['status']}")
    print("\nLanded files")
    for r in wh.rows(
        "SELECT workspace_id, file_name, kind, status, inserted, duplicates FROM raw.landing_files"
        " ORDER BY workspace_id, file_name"
    ):
        print(
            f"  {r['workspace_id']}/{r['file_name']}: {r['status']}, {r['inserted']} new, {r['duplicates']} duplicates"
        )


def _print_roll_forward(settings: Settings, last_day: date) -> None:
    """This month's MRR roll-forward per workspace, from mart.mrr_daily's exact values, footed."""
    from fractions import Fraction

    from finance_pipeline.resources import warehouse_for
    from finance_pipeline_dev.demo_tables import MOVEMENT_SIGNS, roll_forward_lines

    wh = warehouse_for(settings.resolved_warehouse_url)
    first = last_day.replace(day=1)
    kinds = tuple(MOVEMENT_SIGNS)
    for ws in wh.rows("SELECT id, reporting_currency FROM app.workspaces ORDER BY id"):
        rows = wh.rows(
            "SELECT day, mrr_micros, "
            + ", ".join(f"{k}_micros" for k in kinds)
            + ", paying_customers, exact_json"
            " FROM mart.mrr_daily WHERE workspace_id = :w AND day >= :a AND day <= :b ORDER BY day",
            w=ws["id"],
            a=first,
            b=last_day,
        )
        if not rows:
            continue

        def exact(r: dict[str, Any], name: str) -> Fraction:
            # The stored exact value ("num/den"); the rounded micros only for rows without it.
            ex = r["exact_json"]
            ex = json.loads(ex) if isinstance(ex, str) else (ex or {})
            return Fraction(ex[name]) if name in ex else Fraction(r[f"{name}_micros"])

        first_day = date.fromisoformat(str(rows[0]["day"])[:10])
        print()
        print(
            "\n".join(
                roll_forward_lines(
                    workspace_id=ws["id"],
                    currency=ws["reporting_currency"],
                    opening_day=first_day - timedelta(days=1),
                    opening=exact(rows[0], "previous_mrr"),
                    movements={k: sum(exact(r, k) for r in rows) for k in kinds},
                    closing_day=date.fromisoformat(str(rows[-1]["day"])[:10]),
                    closing=exact(rows[-1], "mrr"),
                    paying_customers=rows[-1]["paying_customers"],
                )
            )
        )


def _print_cfo(settings: Settings, day: date) -> None:
    """The CFO headline of the last day per workspace, footed from mart.revenue_daily's micros."""
    from finance_pipeline.resources import warehouse_for
    from finance_pipeline_dev.demo_tables import cfo_lines

    wh = warehouse_for(settings.resolved_warehouse_url)
    for r in wh.rows(
        "SELECT * FROM mart.cfo_metrics_daily WHERE day = :d ORDER BY workspace_id", d=day
    ):
        # The same 30 local days and ledger totals the CFO mart rounded its cents from (§9).
        totals = wh.rows(
            "SELECT SUM(gross_revenue_micros) AS gross, SUM(refunds_micros) AS refunds,"
            " SUM(expenses_micros) AS expenses FROM mart.revenue_daily"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b",
            w=r["workspace_id"],
            a=day - timedelta(days=29),
            b=day,
        )[0]
        print()
        print(
            "\n".join(
                cfo_lines(
                    workspace_id=r["workspace_id"],
                    currency=r["currency"],
                    day=day,
                    gross_revenue=int(totals["gross"] or 0),
                    refunds=int(totals["refunds"] or 0),
                    expenses=int(totals["expenses"] or 0),
                    runway_months=r["runway_months"],
                )
            )
        )
    n = wh.scalar("SELECT COUNT(*) FROM mart.alerts WHERE day = :d", d=day)
    print(f"Alerts on {day}: {n}")


def run_demo(
    *, customers: int, months: int, seed: int, standin_port: int, ui_port: int, serve: bool
) -> int:
    """The first README command's work, after the environment is bootstrapped."""
    settings = get_settings()
    os.environ.setdefault("FP_DEPLOYMENT", "embedded")
    home = dagster_home(settings)
    os.environ["DAGSTER_HOME"] = str(home)
    stop_services(settings)
    wanted = {standin_port, ui_port} if serve else {standin_port}
    busy = sorted(p for p in wanted if not _port_free(p))
    if busy:
        print(
            f"Port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use by another program "
            "(another demo? `scripts/demo.sh stop` stops one started with the same data folder). "
            "Free them or pass --standin-port / --ui-port.",
            file=sys.stderr,
        )
        return 2
    standin_url = f"http://127.0.0.1:{standin_port}"
    t0 = time.time()
    print(f"Simulating {customers} customers over {months} months (seed {seed}) ...")
    fixture_path, sim = prepare_demo_data(
        settings, customers=customers, months=months, seed=seed, standin_url=standin_url
    )
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    _start_service(
        settings,
        "stripe_standin",
        [
            sys.executable,
            "-m",
            "finance_pipeline_dev.standin.serve",
            "--port",
            str(standin_port),
            "--fixture",
            str(fixture_path),
        ],
        env,
    )
    key = next(
        k
        for a in sim.fixture["accounts"].values()
        for k, v in a["keys"].items()
        if v.get("permissions") is None
    )
    _wait_http(f"{standin_url}/v1/account", 120, {"Authorization": f"Bearer {key}"})
    print(f"Stripe stand-in serving at {standin_url} ({time.time() - t0:.1f} s)")

    from dagster import DagsterInstance

    from finance_pipeline.definitions import defs
    from finance_pipeline.partitions import HISTORY_START

    instance = DagsterInstance.get()
    for job_name in ("stripe_ingest", "ingest_landing_files"):
        t = time.time()
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, raise_on_error=False
        )
        state = "succeeded" if result.success else "FAILED"
        print(f"Job {job_name}: {state} in {time.time() - t:.1f} s (run {result.run_id})")
        if not result.success:
            for ev in result.all_events:
                if ev.is_failure:
                    print(f"  {ev.message}")
            return 1
    _print_sync_summary(settings)

    # The whole history as one backfill run (single-run policy): every daily partition, so the
    # UI shows the marts complete; days before the data hold zeros, as they should.
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    first_day = date.fromisoformat(HISTORY_START)
    # One planned event per asset for the whole range instead of one per asset and day: on the
    # SQLite instance that halves the events stored (measured 8,064 planned of 13,938). The cost,
    # partitions not marked failed if this run fails, does not apply: the demo stops on failure.
    os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "true"
    t = time.time()
    result = defs.resolve_job_def("rebuild_marts").execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={
            "dagster/asset_partition_range_start": first_day.isoformat(),
            "dagster/asset_partition_range_end": last_day.isoformat(),
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    print(
        f"\nJob rebuild_marts ({first_day}..{last_day}, one run): "
        f"{'succeeded' if result.success else 'FAILED'} in {time.time() - t:.1f} s"
    )
    del os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"]
    if not result.success:
        return 1
    _print_roll_forward(settings, last_day)

    # Every closed month, as one backfill run: recognized revenue, customer margins and the
    # default forecast.
    closed = (last_day.replace(day=1) - timedelta(days=1)).replace(day=1)
    t = time.time()
    result = defs.resolve_job_def("monthly_margins_and_forecasts").execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={
            "dagster/asset_partition_range_start": first_day.isoformat(),
            "dagster/asset_partition_range_end": closed.isoformat(),
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    print(
        f"\nJob monthly_margins_and_forecasts ({first_day:%Y-%m}..{closed:%Y-%m}, one run): "
        f"{'succeeded' if result.success else 'FAILED'} in {time.time() - t:.1f} s"
    )
    if not result.success:
        return 1
    _print_cfo(settings, last_day)

    ui = f"http://127.0.0.1:{ui_port}"
    if serve:
        # The webserver and the daemon (schedules, sensors, run queue) as two services, run from
        # DAGSTER_HOME so the production dagster.yaml in the project root is not picked up.
        workspace = str(PROJECT_ROOT / "workspace.yaml")
        bin_dir = Path(sys.executable).parent
        _start_service(
            settings,
            "dagster_daemon",
            [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
            env,
            cwd=home,
        )
        _start_service(
            settings,
            "dagster_webserver",
            [
                str(bin_dir / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(ui_port),
                "-w",
                workspace,
            ],
            env,
            cwd=home,
        )
        _wait_http(f"{ui}/server_info", 180)
        _dismiss_first_run_popup(ui)
    print("\nWhere to look")
    print(
        f"  Dagster UI      {ui}  (asset graph: {ui}/asset-groups, runs: {ui}/runs)"
        + ("" if serve else "  [not started: --no-serve]")
    )
    print(f"  Stripe stand-in {standin_url}  (request log: {standin_url}/_standin/requests)")
    print(f"  Warehouse       {settings.resolved_warehouse_url}")
    print(
        f"  Landing folder  {settings.resolved_landing_dir}/<workspace_id>/  (drop CSV files here)"
    )
    print(f"  Reports         {settings.resolved_reports_dir}")
    print(f"  Logs            {_run_dir(settings)}")
    print("  Stop everything: scripts/demo.sh stop")
    print(f"\nDemo finished in {time.time() - t0:.0f} s ({date.today().isoformat()}).")
    if not serve:
        stop_services(settings)
    return 0

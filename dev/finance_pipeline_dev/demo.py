"""The demo on the embedded default: simulated Stripe history served by the stand-in, every asset
materialized into SQLite, and the Dagster UI and the read API left running. Re-running it is safe
(same seed, same ids).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from finance_pipeline.deployment import dagster_home
from finance_pipeline.settings import PROJECT_ROOT, Settings, get_settings
from finance_pipeline_dev.processes import (
    BIN,
    api_command,
    daemon_command,
    standin_command,
    start_in_session,
    wait_for_standin,
    wait_http,
)

SERVICES = ("stripe_standin", "dagster_daemon", "dagster_webserver", "finance_api")
# The demo's size and ports; the dev CLI shows them in --help.
# Full months the demo closes before it prints where things are (the latest ones); with the UI
# the earlier full months close afterwards in a backfill the daemon runs.
CLOSE_MONTHS = 3
DEFAULTS = {
    "customers": 300,
    "months": 24,
    "seed": 7,
    "standin_port": 12111,
    "ui_port": 3000,
    "api_port": 8000,
}
# The demo organization and the owner the read API is tried as. The password is printed: the
# demo's data is simulated and its API listens on 127.0.0.1 only.
DEMO_ORG = "org_demo"
DEMO_OWNER_EMAIL = "owner@demo.example"
DEMO_OWNER_PASSWORD = "demo-owner-password"
# The name of the demo's API key: each run revokes the keys of this name and makes a new one.
DEMO_KEY_NAME = "demo owner key (scripts/demo.sh)"


def _run_dir(settings: Settings) -> Path:
    path = Path(settings.data_dir) / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_file() -> Path:
    """The per-user list of data folders whose demo left services running (for `stop`)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "finance_pipeline" / "demos.json"


def _registered_run_dirs() -> list[Path]:
    try:
        return [Path(p) for p in json.loads(state_file().read_text())["run_dirs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _register_run_dir(run_dir: Path, present: bool) -> None:
    dirs = [d for d in _registered_run_dirs() if d != run_dir.resolve()]
    if present:
        dirs.append(run_dir.resolve())
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_dirs": [str(d) for d in dirs]}, indent=2))
    tmp.replace(path)


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _same_command(pid: int, recorded: str) -> bool:
    """Whether pid still runs the recorded command (not a process that reused the id)."""
    if not recorded:
        return True
    try:
        running = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return True  # no /proc: trust the pid file
    # A script started through its shebang shows its interpreter first (python .../dagster-daemon).
    return running == recorded or running.endswith(" " + recorded)


def _start_service(
    settings: Settings, name: str, cmd: list[str], env: dict[str, str], cwd: Path = PROJECT_ROOT
) -> int:
    _register_run_dir(_run_dir(settings), present=True)
    proc = start_in_session(cmd, _run_dir(settings) / f"{name}.log", env, cwd)
    # The pid, then the command line: `stop` checks it so a reused pid is never signalled.
    (_run_dir(settings) / f"{name}.pid").write_text(f"{proc.pid}\n{' '.join(cmd)}\n")
    return proc.pid


def _stop_run_dir(run_dir: Path) -> int:
    """Stop the services whose pid files are in run_dir, by process group; how many ran."""
    stopped = 0
    for name in SERVICES:
        pid_file = run_dir / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid_text, _, cmd = pid_file.read_text().partition("\n")
        pid = int(pid_text)
        if _alive(pid) and _same_command(pid, cmd.strip()):
            try:
                os.killpg(pid, signal.SIGTERM)
                for _ in range(50):
                    if not _alive(pid):
                        break
                    time.sleep(0.1)
                else:
                    os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            stopped += 1
            print(f"stopped {name} (process group {pid}, {run_dir})")
        pid_file.unlink(missing_ok=True)
    return stopped


def stop_services(settings: Settings | None = None, *, everywhere: bool = False) -> int:
    """Stop the demo's background services: those of this data folder, or with everywhere=True
    those of every demo this user started (recorded in state_file()); how many were running."""
    settings = settings or get_settings()
    run_dirs = [_run_dir(settings).resolve()]
    if everywhere:
        run_dirs += [d for d in _registered_run_dirs() if d not in run_dirs]
    stopped = 0
    for run_dir in run_dirs:
        if run_dir.is_dir():
            stopped += _stop_run_dir(run_dir)
        _register_run_dir(run_dir, present=False)
    return stopped


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
    from finance_pipeline.tenancy import (
        connect_stripe,
        create_organization,
        create_workspace,
        set_org_tier,
    )
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
    org = create_organization(wh, "Demo Org", "finance@demo.example", org_id=DEMO_ORG)
    # The 003 margins API serves paid tiers only; the demo shows every family.
    set_org_tier(wh, org, "pro")
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


@dataclasses.dataclass(frozen=True)
class DemoAccess:
    """How to call the read API as the demo organization's owner: a person's login (for
    `POST /v1/auth/login`) and a machine credential (an owner API key, shown only here)."""

    email: str
    password: str
    token: str


def demo_access(settings: Settings) -> DemoAccess:
    """Make sure the demo organization has its owner (created once, kept across re-runs, given
    the owner role back if it was changed) and give it a fresh owner API key, revoking the keys
    earlier demo runs printed: only the printed key works."""
    from finance_pipeline.accounts import (
        add_member,
        change_role,
        create_api_key,
        membership,
        revoke_api_key,
    )
    from finance_pipeline.lib.access import Role
    from finance_pipeline.resources import warehouse_for

    wh = warehouse_for(settings.resolved_warehouse_url)
    users = wh.rows("SELECT id FROM app.users WHERE email = :e", e=DEMO_OWNER_EMAIL)
    if not users:
        user_id = add_member(
            wh, DEMO_ORG, DEMO_OWNER_EMAIL, Role.OWNER, DEMO_OWNER_PASSWORD
        ).user_id
    else:
        user_id = users[0]["id"]
        member = membership(wh, DEMO_ORG, user_id)
        if member is None:
            add_member(wh, DEMO_ORG, DEMO_OWNER_EMAIL, Role.OWNER, None)
        elif member.role is not Role.OWNER:
            change_role(wh, DEMO_ORG, user_id, Role.OWNER)
    for old in wh.rows(
        "SELECT id FROM app.api_keys WHERE org_id = :o AND name = :n AND revoked_at IS NULL",
        o=DEMO_ORG,
        n=DEMO_KEY_NAME,
    ):
        revoke_api_key(wh, DEMO_ORG, old["id"])
    _, secret = create_api_key(wh, DEMO_ORG, Role.OWNER, name=DEMO_KEY_NAME, created_by=user_id)
    return DemoAccess(email=DEMO_OWNER_EMAIL, password=DEMO_OWNER_PASSWORD, token=secret)


def start_api(settings: Settings, port: int, env: dict[str, str]) -> str:
    """Serve the read API on 127.0.0.1:port as a background service with the demo's environment
    (its FP_* settings: the same warehouse and Dagster home), once `/openapi.json` answers;
    returns its URL."""
    url = f"http://127.0.0.1:{port}"
    _start_service(settings, "finance_api", api_command(port), env)
    wait_http(f"{url}/openapi.json", 120)
    return url


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


class Progress:
    """One line per demo phase, `[n/N] what: counts ... done in x s`, instead of Dagster's events."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.started = time.time()

    @contextlib.contextmanager
    def phase(self, what: str) -> Iterator[dict[str, str]]:
        """Print the phase, run the block, then its time; the block may set `note` (a suffix)."""
        self.n += 1
        print(f"[{self.n}/{self.total}] {what} ...", end="", flush=True)
        t = time.time()
        info: dict[str, str] = {"note": ""}
        try:
            yield info
        except BaseException:
            print(f" FAILED after {time.time() - t:.1f} s", flush=True)
            raise
        print(f" done in {time.time() - t:.1f} s{info['note']}", flush=True)


# Dagster's per-event DEBUG lines stay out of the terminal (the UI and the run's events keep them).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Read from the margins of the month before each day (the 1st's margin_threshold_crossed alerts),
# so they are built after the monthly job; everything else daily comes first.
AFTER_MONTHLY = ("mart/alerts", "mart/advisory_memos")


@dataclasses.dataclass(frozen=True)
class CloseBacklog:
    """Full months the demo left to a backfill of the month-end close, and the assets it runs."""

    months: list[date]
    asset_keys: list[Any]


class PhaseFailed(RuntimeError):
    """A demo job failed; its failure events are in the message."""


def _execute(instance: Any, job_name: str, **kwargs: Any) -> Any:
    """Run one job in process, quietly; raise PhaseFailed with its failures if it fails."""
    from finance_pipeline.definitions import defs

    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, raise_on_error=False, **kwargs
    )
    if not result.success:
        failures = [f"  {ev.message}" for ev in result.all_events if ev.is_failure]
        raise PhaseFailed(f"job {job_name} failed (run {result.run_id})\n" + "\n".join(failures))
    return result


def materialize_everything(
    instance: Any, first_day: date, last_day: date, progress: Progress, *, serve: bool
) -> CloseBacklog:
    """Every asset, in dependency order: Stripe and landed files; core, MRR and CFO marts for every
    day; margins and forecasts for every full month; the alerts and memos that read them; then
    the month-end close of every full month (with `serve`, the earlier months are left to a
    backfill, returned)."""
    with progress.phase("stripe_ingest: every stream of every workspace") as p:
        result = _execute(instance, "stripe_ingest", run_config=QUIET)
        p["note"] = f" ({len(result.get_asset_materialization_events())} assets materialized)"
    with progress.phase("ingest_landing_files: the simulated CSV files") as p:
        result = _execute(instance, "ingest_landing_files", run_config=QUIET)
        p["note"] = f" ({len(result.get_asset_materialization_events())} assets materialized)"
    backfill_history(instance, first_day, last_day, progress)
    return close_full_months(instance, first_day, last_day, progress, serve=serve)


def backfill_history(instance: Any, first_day: date, last_day: date, progress: Progress) -> None:
    """The demo's full-history backfill from raw: core, MRR and CFO marts for every day; margins
    and forecasts for every full month; then the alerts and memos that read them."""
    import dagster as dg

    from finance_pipeline.definitions import defs

    # Planned events stay one per asset and day (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS
    # is not set): they are what marks the days of a failed run failed in the UI. The embedded
    # instance stores each asset's planned and materialization events in one transaction
    # (finance_pipeline/dagster_storage.py), so they no longer cost a commit each.
    days = (last_day - first_day).days + 1
    daily = defs.resolve_job_def("rebuild_marts").asset_layer.executable_asset_keys
    before = sorted(k for k in daily if k.to_user_string() not in AFTER_MONTHLY)
    after = sorted(k for k in daily if k.to_user_string() in AFTER_MONTHLY)
    day_range = {
        "dagster/asset_partition_range_start": first_day.isoformat(),
        "dagster/asset_partition_range_end": last_day.isoformat(),
    }
    with progress.phase(
        f"rebuild_marts {first_day}..{last_day}: {days} days x {len(before)} assets "
        "(core, MRR, CFO)"
    ):
        _execute(
            instance, "rebuild_marts", tags=day_range, run_config=QUIET, asset_selection=before
        )
    # Every closed month: recognized revenue, customer margins and the default forecast.
    closed = _last_full_month(last_day)
    months = _months_between(first_day.replace(day=1), closed)
    monthly = defs.resolve_job_def("monthly_margins_and_forecasts")
    with progress.phase(
        f"monthly_margins_and_forecasts {first_day:%Y-%m}..{closed:%Y-%m}: {months} months x "
        f"{len(monthly.asset_layer.executable_asset_keys)} assets"
    ):
        if months > 0:
            _execute(
                instance,
                monthly.name,
                tags={
                    "dagster/asset_partition_range_start": first_day.replace(day=1).isoformat(),
                    "dagster/asset_partition_range_end": closed.isoformat(),
                },
                run_config=QUIET,
            )
    with progress.phase(
        f"rebuild_marts {first_day}..{last_day}: {days} days x {len(after)} assets "
        "(alerts and memos, after the margins)"
    ):
        # Only the loggers' config (QUIET without its other keys, should it gain any).
        _execute(
            instance,
            "rebuild_marts",
            tags=day_range,
            run_config=dg.RunConfig(loggers=QUIET["loggers"]),
            asset_selection=after,
        )


def close_full_months(
    instance: Any, first_day: date, last_day: date, progress: Progress, *, serve: bool
) -> CloseBacklog:
    """Every full month is closed: its six reports (CSV and PDF), the close pack and the freeze
    (margins are built by the backfill; a month an earlier demo run closed stays as it is). With
    `serve`, only the last CLOSE_MONTHS close here; the earlier ones are returned for a backfill
    the daemon runs after the UI is up (rendering ~15 PDFs per workspace and month for all 24
    months took longer than every other phase together)."""
    import dagster as dg

    from finance_pipeline.definitions import defs

    closed = _last_full_month(last_day)
    first_month = first_day.replace(day=1)
    close_from = max(first_month, _add_months(closed, 1 - CLOSE_MONTHS)) if serve else first_month
    close_months = _months_between(close_from, closed)
    closing = sorted(
        k
        for k in defs.resolve_job_def("month_end_close").asset_layer.executable_asset_keys
        if k.path[0] == "reports"
    )
    with progress.phase(
        f"month_end_close {close_from:%Y-%m}..{closed:%Y-%m}: {close_months} months "
        "(CSV and PDF reports, close pack, freeze)"
    ) as p:
        if close_months > 0:
            result = _execute(
                instance,
                "month_end_close",
                tags={
                    "dagster/asset_partition_range_start": close_from.isoformat(),
                    "dagster/asset_partition_range_end": closed.isoformat(),
                },
                run_config=dg.RunConfig(loggers=QUIET["loggers"]),
                asset_selection=closing,
            )
            p["note"] = f" ({len(result.get_asset_materialization_events())} assets)"
    earlier = [
        _add_months(first_month, i) for i in range(_months_between(first_month, close_from) - 1)
    ]
    return CloseBacklog(months=earlier, asset_keys=closing)


def _last_full_month(last_day: date) -> date:
    """The first day of the last month that ended on or before last_day."""
    return (last_day.replace(day=1) - timedelta(days=1)).replace(day=1)


def _months_between(first: date, last: date) -> int:
    """How many months first..last covers (both month starts, inclusive; 0 if last < first)."""
    return max(0, (last.year - first.year) * 12 + last.month - first.month + 1)


def _add_months(month_start: date, n: int) -> date:
    """The first day of the month n months after `month_start` (n may be negative)."""
    k = month_start.year * 12 + month_start.month - 1 + n
    return date(k // 12, k % 12 + 1, 1)


LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def launch_close_backfill(ui: str, backlog: CloseBacklog) -> str:
    """Ask the webserver (as the UI's backfill dialog does) for a backfill of the month-end close
    of the backlog's months; the daemon runs it. Returns the backfill id."""
    params = {
        "title": f"Demo: month-end close {backlog.months[0]:%Y-%m}..{backlog.months[-1]:%Y-%m}",
        "description": "The demo's earlier full months, closed after the UI started.",
        "partitionNames": [m.isoformat() for m in backlog.months],
        "assetSelection": [{"path": list(k.path)} for k in backlog.asset_keys],
    }
    body = json.dumps({"query": LAUNCH_BACKFILL, "variables": {"params": params}}).encode()
    req = urllib.request.Request(
        f"{ui}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        doc = json.loads(resp.read())
    result = (doc.get("data") or {}).get("launchPartitionBackfill") or {}
    if result.get("__typename") != "LaunchBackfillSuccess":
        raise PhaseFailed(f"backfill of the month-end close refused: {result or doc}")
    return str(result["backfillId"])


def _close_lines(settings: Settings) -> list[str]:
    """Where the last closed month's close pack and CSVs are, per workspace."""
    from finance_pipeline.reports.close import PACK_TYPE, list_closes
    from finance_pipeline.reports.store import list_entries
    from finance_pipeline.resources import warehouse_for

    root = settings.resolved_reports_dir
    lines = []
    try:
        wh = warehouse_for(settings.resolved_warehouse_url)
        closes = [c for c in list_closes(wh) if c.status == "closed"]
        last = {c.workspace_id: c for c in closes}  # ordered by month: the last one wins
        for ws, c in sorted(last.items()):
            entries = list_entries(wh, ws, month=c.month, latest_only=True)
            pack = [e for e in entries if e.key.report_type == PACK_TYPE]
            if pack:
                lines.append(f"  Close {c.month}  {pack[0].absolute(root)}  (v{c.version})")
            lines.append(f"    CSVs          {root / ws / c.month}/*.csv")
    except Exception as exc:  # the closing block must print even if the warehouse is gone
        lines.append(f"  Closes          unavailable ({type(exc).__name__})")
    return lines


def where_to_look(
    settings: Settings,
    *,
    ui: str,
    standin_url: str,
    serve: bool,
    api: str | None = None,
    access: DemoAccess | None = None,
) -> list[str]:
    """The closing block: where each part is, and commands that work verbatim in a new shell
    (absolute paths, no reliance on `uv` or the working directory); with `api` and `access`, the
    read API, the owner's login and a token with a request to try it."""
    data = (
        ""
        if Path(settings.data_dir) == PROJECT_ROOT / "data"
        else (f"FP_DATA_DIR={settings.data_dir} ")
    )
    not_started = "" if serve else "  [not started: --no-serve]"
    api_lines = (
        [
            f"  Read API        {api}  (interactive docs: {api}/docs)" + not_started,
            f"  API login       {access.email} / {access.password}  "
            f"(owner of {DEMO_ORG}, tier pro; POST {api}/v1/auth/login)",
        ]
        if api and access
        else []
    )
    # The token as an export, then a request that uses it: a new shell can paste both.
    api_commands = (
        [
            f"  $ export FP_DEMO_TOKEN={access.token}",
            '  $ curl -H "Authorization: Bearer $FP_DEMO_TOKEN" '
            f"{api}/v1/workspaces/ws_demo_1/metrics",
        ]
        if api and access
        else []
    )
    return [
        "Where to look",
        f"  Dagster UI      {ui}  (asset graph: {ui}/asset-groups, runs: {ui}/runs)" + not_started,
        *api_lines,
        f"  Stripe stand-in {standin_url}  (request log: {standin_url}/_standin/requests)",
        f"  Warehouse       {settings.resolved_warehouse_url}",
        f"  Landing folder  {settings.resolved_landing_dir}/<workspace_id>/  (drop CSV files here)",
        f"  Reports         {settings.resolved_reports_dir}",
        *_close_lines(settings),
        f"  Logs            {_run_dir(settings)}",
        "Commands (work from any folder)",
        f"  $ {data}{BIN / 'finance-pipeline'} sync-status",
        f"  $ {data}{BIN / 'finance-pipeline'} close status",
        f"  $ {data}{BIN / 'finance-pipeline'} ingest-file "
        f"{settings.resolved_landing_dir}/<workspace_id>/<file>.csv",
        *api_commands,
        f"  $ {PROJECT_ROOT / 'scripts' / 'demo.sh'} stop",
    ]


def run_demo(
    *,
    customers: int,
    months: int,
    seed: int,
    standin_port: int,
    ui_port: int,
    serve: bool,
    api_port: int = DEFAULTS["api_port"],
) -> int:
    """The first README command's work, after the environment is bootstrapped."""
    settings = get_settings()
    os.environ.setdefault("FP_DEPLOYMENT", "embedded")
    home = dagster_home(settings)
    os.environ["DAGSTER_HOME"] = str(home)
    stop_services(settings)
    wanted = {standin_port, ui_port, api_port} if serve else {standin_port}
    busy = sorted(p for p in wanted if not _port_free(p))
    if busy:
        print(
            f"Port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use by another program "
            "(another demo? `scripts/demo.sh stop` stops every demo you started). "
            "Free them or pass --standin-port / --ui-port / --api-port.",
            file=sys.stderr,
        )
        return 2
    standin_url = f"http://127.0.0.1:{standin_port}"
    progress = Progress(total=10 if serve else 8)
    with progress.phase(
        f"simulate {customers} customers x 2 Stripe accounts, {months} months"
    ) as p:
        fixture_path, sim = prepare_demo_data(
            settings, customers=customers, months=months, seed=seed, standin_url=standin_url
        )
        p["note"] = f" ({sim.first_day}..{sim.last_day})"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    with progress.phase(f"Stripe stand-in at {standin_url}"):
        _start_service(settings, "stripe_standin", standin_command(standin_port, fixture_path), env)
        wait_for_standin(standin_url, sim.fixture, 120)

    from dagster import DagsterInstance

    from finance_pipeline.partitions import HISTORY_START

    # The simulated months only: days before the data would hold zeros and cost minutes.
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    first_day = max(sim.first_day.replace(day=1), date.fromisoformat(HISTORY_START))
    try:
        backlog = materialize_everything(
            DagsterInstance.get(), first_day, last_day, progress, serve=serve
        )
    except PhaseFailed as exc:
        print(f"\n{exc}", file=sys.stderr)
        if not serve:
            stop_services(settings)
        return 1
    _print_sync_summary(settings)
    _print_roll_forward(settings, last_day)
    _print_cfo(settings, last_day)

    ui = f"http://127.0.0.1:{ui_port}"
    backfill = None
    if serve:
        with progress.phase(f"Dagster UI and daemon at {ui}"):
            # The webserver and the daemon (schedules, sensors, run queue) as two services, run
            # from DAGSTER_HOME so the production dagster.yaml in the project root is not used.
            workspace = str(PROJECT_ROOT / "workspace.yaml")
            _start_service(settings, "dagster_daemon", daemon_command(), env, cwd=home)
            _start_service(
                settings,
                "dagster_webserver",
                [
                    str(BIN / "dagster-webserver"),
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
            wait_http(f"{ui}/server_info", 180)
            _dismiss_first_run_popup(ui)
            backfill = launch_close_backfill(ui, backlog) if backlog.months else None
    api = f"http://127.0.0.1:{api_port}"
    if serve:
        with progress.phase(f"read API at {api}"):
            # Stripe keys given to the API (ingest/stripe, /api/stripe/connect) are checked
            # against, and synced from, the demo's stand-in, not Stripe.
            start_api(settings, api_port, {**env, "FP_STRIPE_API_BASE": standin_url})
    # With --no-serve too: `finance-pipeline api` started by hand accepts the same token.
    access = demo_access(settings)
    lines = where_to_look(
        settings, ui=ui, standin_url=standin_url, serve=serve, api=api, access=access
    )
    if serve and backfill:
        lines.insert(
            lines.index("Commands (work from any folder)"),
            f"  Earlier closes  {backlog.months[0]:%Y-%m}..{backlog.months[-1]:%Y-%m} "
            f"({len(backlog.months)} months) closing in the background: {ui}/runs/b/{backfill}",
        )
    print("\n" + "\n".join(lines))
    print(
        f"\nDemo finished in {time.time() - progress.started:.0f} s ({date.today().isoformat()})."
    )
    if not serve:
        stop_services(settings)
    return 0

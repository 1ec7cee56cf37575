"""`finance-pipeline`: the command line for operators (migrations, landing files, sync status,
report exports, the month-end close, the read API, master key rotation, backup and restore)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from finance_pipeline.settings import get_settings


def _warehouse():
    from finance_pipeline.resources import warehouse_for

    return warehouse_for(get_settings().resolved_warehouse_url)


def cmd_migrate(_args: argparse.Namespace) -> int:
    """Apply pending DDL from sql/."""
    from finance_pipeline.warehouse import Warehouse, apply_migrations

    wh = Warehouse(get_settings().resolved_warehouse_url)
    applied = apply_migrations(wh)
    print(f"{wh!r}: applied {applied or 'nothing (up to date)'}")
    return 0


def cmd_ingest_file(args: argparse.Namespace) -> int:
    """Ingest one CSV file now (the same path the landing sensor takes)."""
    from finance_pipeline.ingest.landing import landing_path_problem, process_file

    root = get_settings().resolved_landing_dir
    path = Path(args.path).resolve()
    problem = landing_path_problem(path, root)
    if problem:
        print(f"error: {problem}; nothing was moved", file=sys.stderr)
        return 2
    outcome = process_file(_warehouse(), path, root.resolve())
    if outcome.status == "rejected":
        print(
            f"rejected {path.name}: nothing was written. Report: {outcome.moved_to}.errors.txt",
            file=sys.stderr,
        )
        for err in outcome.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    print(
        f"{outcome.status} {path.name}: {outcome.inserted} new rows, {outcome.duplicates} duplicates"
    )
    return 0


def cmd_sync_status(_args: argparse.Namespace) -> int:
    """Print each workspace's Stripe sync health."""
    from finance_pipeline.stripe_sync.health import sync_status

    wh = _warehouse()
    for ws in wh.rows("SELECT id FROM app.workspaces ORDER BY id"):
        print(json.dumps(sync_status(wh, ws["id"]), indent=2, default=str))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Request a report export (the export sensor renders it); --wait prints the file's path."""
    from finance_pipeline.reports.exports import create_export, get_export

    wh = _warehouse()
    export_id = create_export(
        wh,
        args.workspace,
        args.type,
        args.format,
        date.fromisoformat(args.start),
        date.fromisoformat(args.end),
        args.plan,
        requested_by="cli",
    )
    print(f"{export_id} processing")
    if not args.wait:
        return 0
    # The sensor (and so the daemon) renders the request; poll its row until it is done.
    deadline = time.monotonic() + args.timeout
    while True:
        row = get_export(wh, export_id) or {}
        if row.get("status") == "completed":
            print(get_settings().resolved_reports_dir / row["path"])
            return 0
        if row.get("status") == "failed":
            print(f"error: export {export_id} failed: {row.get('error')}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(
                f"error: export {export_id} still processing after {args.timeout}s "
                "(is the Dagster daemon running?)",
                file=sys.stderr,
            )
            return 1
        time.sleep(1.0)


def _dagster_instance():
    """The deployment's Dagster instance (DAGSTER_HOME, else the embedded default's)."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    from finance_pipeline.deployment import dagster_home

    return dg.DagsterInstance.from_config(str(dagster_home(get_settings())))


def _follow_request(args: argparse.Namespace, request_id: str) -> int:
    """Print the new request; with --inline run it here, with --wait poll until it is done."""
    from finance_pipeline.requests.store import get_request

    wh = _warehouse()
    print(f"{request_id} queued")
    if args.inline:
        from finance_pipeline.requests.inline import run_pending_inline

        with _dagster_instance() as instance:
            run_pending_inline(instance, wh, [request_id])
    elif not args.wait:
        return 0
    # The requests sensor (and so the daemon) runs it; poll its row until it is done.
    deadline = time.monotonic() + args.timeout
    while True:
        row = get_request(wh, request_id) or {}
        if row.get("status") == "succeeded":
            print(f"{request_id} succeeded run {row['run_id']}")
            return 0
        if row.get("status") == "failed":
            print(
                f"error: {request_id} failed (run {row.get('run_id')}): {row.get('error')}",
                file=sys.stderr,
            )
            return 1
        if time.monotonic() > deadline:
            print(
                f"error: {request_id} still {row.get('status')} after {args.timeout}s "
                "(is the Dagster daemon running? --inline runs it in this process)",
                file=sys.stderr,
            )
            return 1
        time.sleep(1.0)


def cmd_refresh(args: argparse.Namespace) -> int:
    """Request a refresh of the core tables and daily marts over a range of days."""
    from finance_pipeline.requests.store import request_refresh

    request_id = request_refresh(
        _warehouse(), args.workspace, args.start, args.end, reason=args.reason, requested_by="cli"
    )
    return _follow_request(args, request_id)


def cmd_sync(args: argparse.Namespace) -> int:
    """Request a Stripe sync of a workspace (then its daily marts' trailing window)."""
    from finance_pipeline.requests.store import request_sync

    request_id = request_sync(_warehouse(), args.workspace, reason=args.reason, requested_by="cli")
    return _follow_request(args, request_id)


def cmd_requests(args: argparse.Namespace) -> int:
    """List the latest refresh and sync requests, newest first."""
    from finance_pipeline.requests.store import list_requests

    rows = list_requests(_warehouse(), args.workspace, args.limit)
    if not rows:
        print("no requests")
    for r in rows:
        days = f" {r['first_day']}..{r['last_day']}" if r["kind"] == "refresh" else ""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["created_at"]))
        print(
            f"{r['id']} {r['kind']} {r['workspace_id']}{days} {r['status']}"
            f" created_at={created}"
            + (f" run={r['run_id']}" if r["run_id"] else "")
            + f" reason={r['reason']!r}"
            + (f" error={r['error']!r}" if r["error"] else "")
        )
    return 0


def _instance_checks(month: str) -> list:
    """The latest check results of the month's last day from the Dagster instance (DAGSTER_HOME),
    or none when no instance is configured."""
    from finance_pipeline.reports.close import month_bounds

    if not os.environ.get("DAGSTER_HOME"):
        return []
    import dagster as dg

    from finance_pipeline.reports.close_assets import latest_check_results, mart_check_keys

    with dg.DagsterInstance.get() as instance:
        return latest_check_results(instance, mart_check_keys(), month_bounds(month)[1])


def cmd_close_run(args: argparse.Namespace) -> int:
    """Close a month: render its CSV reports and close pack, freeze them (no-op when closed)."""
    from finance_pipeline.reports.close import latest_close, render_month_csvs, run_close

    wh = _warehouse()
    root = get_settings().resolved_reports_dir
    current = latest_close(wh, args.workspace, args.month)
    if current is None or current.status != "closed":
        render_month_csvs(wh, root, args.workspace, args.month)
    outcome = run_close(wh, root, args.workspace, args.month, checks=_instance_checks(args.month))
    c = outcome.close
    print(f"{c.workspace_id} {c.month}: {outcome.status} (version {c.version}, {c.id})")
    if outcome.pack is not None:
        print(root / outcome.pack.path)
    if outcome.restatement_id:
        print(f"restated since the close: {outcome.restatement_id} (alert close_restated)")
    return 0


def cmd_close_reopen(args: argparse.Namespace) -> int:
    """Reopen a closed month so `close run` issues the next version."""
    from finance_pipeline.reports.close import reopen

    c = reopen(_warehouse(), args.workspace, args.month, args.reason)
    print(f"{c.workspace_id} {c.month}: version {c.version} reopened ({c.reason})")
    return 0


def cmd_close_status(args: argparse.Namespace) -> int:
    """Print each close version with its status, files and restatements."""
    from finance_pipeline.reports.close import list_closes, restatements

    wh = _warehouse()
    closes = [c for c in list_closes(wh, args.workspace) if not args.month or c.month == args.month]
    if not closes:
        print("no month is closed")
    for c in closes:
        rest = [r for r in restatements(wh, c.workspace_id, c.month) if r["close_id"] == c.id]
        print(
            f"{c.workspace_id} {c.month} v{c.version} {c.status}"
            f" closed_at={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(c.closed_at))}"
            + (f" reason={c.reason!r}" if c.reason else "")
            + f" files={len(c.manifest['files'])} restatements={len(rest)}"
        )
        for r in rest:
            for d in r["diff"]:
                print(f"  restated {d['metric']}: {d['as_closed']} -> {d['restated']}")
    return 0


def cmd_org_set_tier(args: argparse.Namespace) -> int:
    """Set an organization's tier (the 003 margins API needs pro or above)."""
    from finance_pipeline.tenancy import TIERS, set_org_tier

    if args.tier not in TIERS:
        print(f"error: tier must be one of {', '.join(TIERS)}", file=sys.stderr)
        return 2
    if not set_org_tier(_warehouse(), args.org, args.tier):
        print(f"error: no organization {args.org!r}", file=sys.stderr)
        return 1
    print(f"{args.org}: tier {args.tier}")
    return 0


def cmd_secrets_new_key(_args: argparse.Namespace) -> int:
    """Print a new master key (for FP_SECRET_KEY); nothing is stored."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


def cmd_secrets_reencrypt(_args: argparse.Namespace) -> int:
    """Re-encrypt every stored secret under the current master key (docs/security.md)."""
    from finance_pipeline.secret_rotation import reencrypt_stored_secrets
    from finance_pipeline.secrets import forget_previous_keys

    settings = get_settings()
    counts = reencrypt_stored_secrets(_warehouse(), settings)
    forget_previous_keys(settings)
    for place, n in counts.items():
        print(f"{n:>6}  {place}")
    print("re-encrypted under the current key; FP_SECRET_KEY_PREVIOUS is no longer needed")
    return 0


def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    """Embedded default: a new local master key, then every stored secret re-encrypted."""
    from finance_pipeline.secrets import rotate_local_key

    rotate_local_key(get_settings())
    print("new master key in place (the old one still decrypts until re-encryption ends)")
    return cmd_secrets_reencrypt(args)


def _production_databases():
    from finance_pipeline.backup import Databases, dagster_storage_url, libpq_url

    settings = get_settings()
    if not settings.warehouse_url:
        raise RuntimeError("backup and restore are for production: set FP_WAREHOUSE_URL")
    return Databases(libpq_url(settings.warehouse_url), dagster_storage_url())


def cmd_backup(args: argparse.Namespace) -> int:
    """Dump the warehouse and the Dagster storage into a new folder (docs/reliability.md)."""
    from finance_pipeline.backup import backup

    manifest = backup(Path(args.dest), _production_databases())
    for name, entry in sorted(manifest["dumps"].items()):
        print(f"{name:<10} {entry['bytes']:>12,} bytes  {Path(args.dest) / entry['file']}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup folder into the (empty) warehouse and Dagster storage databases."""
    from finance_pipeline.backup import restore

    restore(Path(args.src), _production_databases())
    print(f"restored {args.src}: re-run the last refresh (docs/reliability.md)")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the read API with uvicorn (docs/api.md); several workers share the warehouse."""
    from finance_pipeline.api.app import serve
    from finance_pipeline.deployment import check_production

    # Fail here, once, rather than in every worker as it starts.
    check_production(get_settings(), dagster=False, api=True)
    serve(args.host, args.port, args.workers)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="finance-pipeline", description=__doc__)
    sub = p.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do (each has its own --help)",
    )
    sub.add_parser("migrate", help="apply the warehouse DDL in sql/").set_defaults(fn=cmd_migrate)
    f = sub.add_parser("ingest-file", help="ingest one landed CSV file now")
    f.add_argument(
        "path",
        help="the CSV file, inside the landing folder (landing/<workspace_id>/ or, for FX rates, "
        "the landing root); not one already under processed/ or rejected/",
    )
    f.set_defaults(fn=cmd_ingest_file)
    sub.add_parser("sync-status", help="Stripe sync health per workspace").set_defaults(
        fn=cmd_sync_status
    )
    for name, help_, fn in (
        ("refresh", "request a refresh of the daily marts over a range of days", cmd_refresh),
        ("sync", "request a Stripe sync of a workspace (then its marts' last days)", cmd_sync),
    ):
        q = sub.add_parser(name, help=help_)
        q.add_argument("--workspace", required=True, help="workspace id")
        if name == "refresh":
            q.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
            q.add_argument(
                "--to",
                dest="end",
                required=True,
                help="last day, YYYY-MM-DD (inclusive; today or later is clamped to yesterday)",
            )
        q.add_argument("--reason", default="requested from the command line", help="why")
        q.add_argument("--wait", action="store_true", help="wait until done; print the run id")
        q.add_argument(
            "--inline",
            action="store_true",
            help="run it in this process now (no daemon needed); implies --wait",
        )
        q.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits at most")
        q.set_defaults(fn=fn)
    q = sub.add_parser("requests", help="list refresh and sync requests, newest first")
    q.add_argument("--workspace", default=None, help="workspace id (default: all)")
    q.add_argument("--limit", type=int, default=50, help="at most this many (default %(default)s)")
    q.set_defaults(fn=cmd_requests)
    e = sub.add_parser("export", help="request a report export (CSV or table PDF)")
    e.add_argument("--workspace", required=True, help="workspace id")
    e.add_argument(
        "--type",
        required=True,
        help="report type (docs/reports.md lists the columns of each)",
        choices=(
            "mrr_breakdown",
            "invoice_summary",
            "revenue_trend",
            "failed_payments",
            "margins",
            "mrr_movements",
        ),
    )
    e.add_argument(
        "--format", choices=("csv", "pdf"), default="csv", help="file format (default %(default)s)"
    )
    e.add_argument("--start", required=True, help="first local day, YYYY-MM-DD")
    e.add_argument("--end", required=True, help="last local day, YYYY-MM-DD (inclusive)")
    e.add_argument("--plan", default=None, help="plan (price) id filter")
    e.add_argument("--wait", action="store_true", help="wait until rendered; print the path")
    e.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits at most")
    e.set_defaults(fn=cmd_export)
    a = sub.add_parser("api", help="serve the read API (FastAPI on uvicorn)")
    a.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    a.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    a.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (default %(default)s)"
    )
    a.set_defaults(fn=cmd_api)
    g = sub.add_parser("org", help="organizations: set-tier")
    gsub = g.add_subparsers(dest="org_command", required=True, help="what to do")
    t = gsub.add_parser("set-tier", help="set an organization's tier (free, pro, enterprise)")
    t.add_argument("org", help="organization id (org_...)")
    t.add_argument("tier", help="free, pro or enterprise")
    t.set_defaults(fn=cmd_org_set_tier)
    k = sub.add_parser("secrets", help="master key rotation: new-key, rotate, reencrypt")
    ksub = k.add_subparsers(
        dest="secrets_command", required=True, metavar="ACTION", help="what to do with the key"
    )
    ksub.add_parser("new-key", help="print a new master key for FP_SECRET_KEY").set_defaults(
        fn=cmd_secrets_new_key
    )
    ksub.add_parser(
        "rotate",
        help="embedded default: make a new local master key and re-encrypt every stored secret",
    ).set_defaults(fn=cmd_secrets_rotate)
    ksub.add_parser(
        "reencrypt",
        help="re-encrypt every stored secret under FP_SECRET_KEY (after setting "
        "FP_SECRET_KEY_PREVIOUS to the old key)",
    ).set_defaults(fn=cmd_secrets_reencrypt)
    b = sub.add_parser("backup", help="dump the warehouse and the Dagster storage (PostgreSQL)")
    b.add_argument("dest", help="a new folder for the dumps and their manifest")
    b.set_defaults(fn=cmd_backup)
    b = sub.add_parser("restore", help="restore a backup into empty PostgreSQL databases")
    b.add_argument("src", help="a folder written by `finance-pipeline backup`")
    b.set_defaults(fn=cmd_restore)
    c = sub.add_parser("close", help="month-end close: run, reopen, status")
    csub = c.add_subparsers(
        dest="close_command", required=True, metavar="ACTION", help="what to do with the month"
    )
    r = csub.add_parser("run", help="close a month (version N+1 after a reopen; else a no-op)")
    r.add_argument("--workspace", required=True, help="workspace id")
    r.add_argument("--month", required=True, help="YYYY-MM")
    r.set_defaults(fn=cmd_close_run)
    o = csub.add_parser("reopen", help="reopen a closed month")
    o.add_argument("--workspace", required=True, help="workspace id")
    o.add_argument("--month", required=True, help="YYYY-MM")
    o.add_argument("--reason", required=True, help="why (kept with the close)")
    o.set_defaults(fn=cmd_close_reopen)
    t = csub.add_parser("status", help="closes, their versions and restatements")
    t.add_argument("--workspace", default=None, help="workspace id (default: all)")
    t.add_argument("--month", default=None, help="YYYY-MM (default: all)")
    t.set_defaults(fn=cmd_close_status)
    return p


def run_command(run: Callable[[], int]) -> int:
    """Run a subcommand as operators expect: one clear error line, not a traceback (FP_DEBUG=1
    shows it), and 130 on Ctrl-C."""
    try:
        return int(run())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("FP_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `finance-pipeline` command."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def run() -> int:
        from finance_pipeline.deployment import check_production

        # Production never falls back to the embedded SQLite warehouse.
        check_production(get_settings(), dagster=False)
        return int(args.fn(args))

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())

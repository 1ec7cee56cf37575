"""`finance-pipeline`: the command line for operators (demo, migrations, landing files, sync status)."""

from __future__ import annotations

import argparse
import json
import os
import sys
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
    from finance_pipeline.ingest.landing import process_file

    root = get_settings().resolved_landing_dir
    path = Path(args.path).resolve()
    try:
        path.relative_to(root.resolve())
    except ValueError:
        print(f"error: {path} is not inside the landing folder {root}", file=sys.stderr)
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate data, serve the Stripe stand-in, materialize everything and print where to look."""
    from finance_pipeline.demo import run_demo

    return run_demo(
        customers=args.customers,
        months=args.months,
        seed=args.seed,
        standin_port=args.standin_port,
        ui_port=args.ui_port,
        serve=not args.no_serve,
    )


def cmd_stop(_args: argparse.Namespace) -> int:
    """Stop the background services the demo started."""
    from finance_pipeline.demo import stop_services

    stop_services()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="finance-pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the warehouse DDL in sql/").set_defaults(fn=cmd_migrate)
    f = sub.add_parser("ingest-file", help="ingest one landed CSV file now")
    f.add_argument("path")
    f.set_defaults(fn=cmd_ingest_file)
    sub.add_parser("sync-status", help="Stripe sync health per workspace").set_defaults(
        fn=cmd_sync_status
    )
    d = sub.add_parser("demo", help="run the whole demo on the embedded default")
    d.add_argument("--customers", type=int, default=300)
    d.add_argument("--months", type=int, default=24)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--standin-port", type=int, default=12111)
    d.add_argument("--ui-port", type=int, default=3000)
    d.add_argument(
        "--no-serve", action="store_true", help="do not leave the UI and stand-in running"
    )
    d.set_defaults(fn=cmd_demo)
    sub.add_parser("stop", help="stop the demo's background services").set_defaults(fn=cmd_stop)
    # Handled in main() before parsing; listed here for --help.
    sub.add_parser("stripe-standin", help="serve the local Stripe stand-in (see its --help)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `finance-pipeline` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stripe-standin"]:
        # Everything after the subcommand belongs to the stand-in's own parser (--port, --fixture).
        from finance_pipeline.stripe_standin.serve import main as standin_main

        return standin_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # operators get one clear line, not a traceback
        if os.environ.get("FP_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

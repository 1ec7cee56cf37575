"""`finance-pipeline-dev`: the development command (demo, stop, Stripe stand-in)."""

from __future__ import annotations

import argparse
import sys

from finance_pipeline.cli import run_command
from finance_pipeline_dev.demo import DEFAULTS


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate data, serve the Stripe stand-in, materialize everything and print where to look."""
    from finance_pipeline_dev.demo import run_demo

    return run_demo(
        customers=args.customers,
        months=args.months,
        seed=args.seed,
        standin_port=args.standin_port,
        ui_port=args.ui_port,
        api_port=args.api_port,
        serve=not args.no_serve,
    )


def cmd_stop(_args: argparse.Namespace) -> int:
    """Stop the background services the demo started."""
    from finance_pipeline_dev.demo import state_file, stop_services

    if not stop_services(everywhere=True):
        print(f"no demo services were running (demos are recorded in {state_file()})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The dev CLI's argument parser."""
    p = argparse.ArgumentParser(prog="finance-pipeline-dev", description=__doc__)
    sub = p.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do (each has its own --help)",
    )
    d = sub.add_parser(
        "demo",
        help="run the whole demo on the embedded default (SQLite)",
        description="Simulate Stripe accounts, serve them from the stand-in, materialize every "
        "asset into the embedded warehouse, and leave the Dagster UI running.",
    )
    d.add_argument(
        "--customers",
        type=int,
        default=DEFAULTS["customers"],
        help="simulated customers per Stripe account (default %(default)s)",
    )
    d.add_argument(
        "--months",
        type=int,
        default=DEFAULTS["months"],
        help="months of simulated history ending yesterday (default %(default)s)",
    )
    d.add_argument(
        "--seed", type=int, default=DEFAULTS["seed"], help="simulator seed (default %(default)s)"
    )
    d.add_argument(
        "--standin-port",
        type=int,
        default=DEFAULTS["standin_port"],
        help="port of the Stripe stand-in on 127.0.0.1 (default %(default)s)",
    )
    d.add_argument(
        "--ui-port",
        type=int,
        default=DEFAULTS["ui_port"],
        help="port of the Dagster UI on 127.0.0.1 (default %(default)s)",
    )
    d.add_argument(
        "--api-port",
        type=int,
        default=DEFAULTS["api_port"],
        help="port of the read API on 127.0.0.1 (default %(default)s)",
    )
    d.add_argument(
        "--no-serve",
        action="store_true",
        help="stop the UI, daemon, read API and stand-in when the demo finishes instead of "
        "leaving them up (the read API is not started)",
    )
    d.set_defaults(fn=cmd_demo)
    sub.add_parser(
        "stop",
        help="stop the demo's background services",
        description="Stop the stand-in, Dagster daemon, UI and read API of every demo this user "
        "started, whatever its data folder (FP_DATA_DIR); they are recorded in "
        "~/.local/state/finance_pipeline/demos.json ($XDG_STATE_HOME if set).",
    ).set_defaults(fn=cmd_stop)
    # Handled in main() before parsing; listed here for --help.
    sub.add_parser(
        "stripe-standin",
        help="serve the local Stripe stand-in (see `finance-pipeline-dev stripe-standin --help`)",
        add_help=False,
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `finance-pipeline-dev` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stripe-standin"]:
        # Everything after the subcommand belongs to the stand-in's own parser (--port, --fixture).
        from finance_pipeline_dev.standin.serve import main as standin_main

        return standin_main(argv[1:])
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.fn(args))


if __name__ == "__main__":
    sys.exit(main())

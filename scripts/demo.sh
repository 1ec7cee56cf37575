#!/usr/bin/env bash
# The demo on the embedded default (SQLite): generate data, serve the Stripe stand-in, materialize
# every asset, write reports, and leave the Dagster UI and the read API running.
# `scripts/demo.sh stop` stops them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh
if [ "${1:-}" = "stop" ]; then
  exec uv run --frozen finance-pipeline-dev stop
fi
exec uv run --frozen finance-pipeline-dev demo "$@"

#!/usr/bin/env bash
# The test command: bootstrap, make sure PostgreSQL is up, lint, then the whole suite on SQLite and
# PostgreSQL. Extra arguments go to pytest (e.g. scripts/test.sh -k mrr).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "test: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi

uv run --frozen ruff check .
uv run --frozen ruff format --check .
# Known vulnerabilities of the locked packages (pip-audit): one with a fixed version fails CI.
uv run --frozen python -m finance_pipeline_dev.audit
# Load and validate the code location (workspace.yaml) as the webserver would, on a throwaway
# instance. 1.13 marks this command superseded by `dg check defs`; the dg CLI is not installed.
defs_home="$(mktemp -d)" && touch "$defs_home/dagster.yaml"
DAGSTER_HOME="$defs_home" uv run --frozen dagster definitions validate -w workspace.yaml
rm -rf "$defs_home"

set +e
uv run --frozen pytest -n 2 --dist loadfile "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  # A -k or path that matches nothing must not pass as green.
  echo "test: pytest collected no tests: failing" >&2
fi
exit "$status"

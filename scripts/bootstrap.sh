#!/usr/bin/env bash
# Bootstrap the environment on a fresh machine: system packages, uv, and the locked virtualenv.
# Idempotent and quiet when everything is already there. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
# weasyprint renders PDFs with Pango; poppler-utils (pdftoppm) turns report pages into PNGs.
dpkg -s libpango-1.0-0 >/dev/null 2>&1 || need_apt+=(libpango-1.0-0 libpangoft2-1.0-0)
# Without HarfBuzz's subsetter weasyprint falls back to fontTools, which embeds fonts slowly.
dpkg -s libharfbuzz-subset0 >/dev/null 2>&1 || need_apt+=(libharfbuzz-subset0)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need_apt+=(fonts-dejavu-core)
command -v pdftoppm >/dev/null 2>&1 || need_apt+=(poppler-utils)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# The Celery broker of FP_EXECUTOR=celery (scripts/celery.sh) and of its test.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# pip --user installs uv into ~/.local/bin, which a new shell's PATH may not reach.
command -v uv >/dev/null 2>&1 || export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv"
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
fi
# So that the README's `uv run ...` commands work verbatim in a new shell: link uv into a folder
# on the default PATH when we may (root), else say how.
link_dir="${FP_UV_LINK_DIR:-/usr/local/bin}"
if [ "$(command -v uv)" = "$HOME/.local/bin/uv" ] && [ ! -e "$link_dir/uv" ]; then
  if [ -w "$link_dir" ]; then
    ln -s "$HOME/.local/bin/uv" "$link_dir/uv"
    echo "bootstrap: linked uv into $link_dir"
  else
    echo "bootstrap: uv is in ~/.local/bin; for the README's uv commands in a new shell:" \
      'export PATH="$HOME/.local/bin:$PATH"'
  fi
fi

uv sync --frozen --quiet

#!/usr/bin/env bash
# The Celery side of FP_EXECUTOR=celery (docs/scaling.md): a Redis broker from Debian's
# redis-server (installed when missing) and N workers of the project's Celery app
# (finance_pipeline.celery_app), each running one Dagster step at a time.
#
#   scripts/celery.sh start [N]   # Redis on FP_CELERY_BROKER_URL's port (if not up), N workers (2)
#   scripts/celery.sh stop        # the workers, then the Redis this script started
#   scripts/celery.sh status
#
# The workers inherit the environment: DAGSTER_HOME (an instance with PostgreSQL storage, e.g. this
# folder's dagster.yaml with the DAGSTER_PG_* variables) and the FP_* settings (FP_WAREHOUSE_URL,
# FP_SECRET_KEY...). FP_CELERY_RUN_DIR (default data/celery) holds their pid and log files, so
# several sets (e.g. tests) can run side by side on different ports and folders.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v uv >/dev/null 2>&1 || export PATH="$HOME/.local/bin:$PATH"

broker="${FP_CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}"
hostport="${broker#redis://}" && hostport="${hostport%%/*}" && hostport="${hostport##*@}"
host="${hostport%%:*}"
port="6379" && [ "$hostport" != "$host" ] && port="${hostport##*:}"
run_dir="${FP_CELERY_RUN_DIR:-data/celery}"
mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"

ensure_redis_installed() {
  command -v redis-server >/dev/null 2>&1 && return
  echo "celery: installing redis-server (Debian)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
}

redis_up() { redis-cli -h "$host" -p "$port" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  redis_up && return
  case "$host" in 127.0.0.1 | localhost) ;; *)
    echo "celery: the broker $host:$port is not reachable (not a local Redis to start)" >&2
    exit 1 ;;
  esac
  ensure_redis_installed
  # A queue, not a store: no snapshots, no append-only file; all on 127.0.0.1.
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$run_dir" \
    --pidfile "$run_dir/redis.pid" --logfile "$run_dir/redis.log" --save "" --appendonly no
  for _ in $(seq 1 50); do redis_up && return; sleep 0.1; done
  echo "celery: Redis did not start on port $port (see $run_dir/redis.log)" >&2
  exit 1
}

start_workers() {
  local n="$1" i pid started=()
  for i in $(seq 1 "$n"); do
    if [ -f "$run_dir/worker-$i.pid" ] && kill -0 "$(cat "$run_dir/worker-$i.pid")" 2>/dev/null; then
      continue
    fi
    rm -f "$run_dir/worker-$i.log"
    # One step at a time per worker (-c 1): N workers run N steps in parallel. All N start at
    # once, in their own session, without celery's --detach: --detach imports the app (the whole
    # code location) once to parse the command line and again in the daemon, one worker after
    # the other; on a loaded 2-core machine that took minutes.
    setsid uv run --frozen celery -A finance_pipeline.celery_app worker -Q dagster -c 1 \
      -n "fp-$i-$port@%h" -l INFO --pidfile="$run_dir/worker-$i.pid" \
      --logfile="$run_dir/worker-$i.log" </dev/null >>"$run_dir/worker-$i.out" 2>&1 &
    started+=("$i:$!")
  done
  # Ready when each worker logs " ready."; a worker that exits first fails the start at once.
  local deadline=$((SECONDS + ${FP_CELERY_START_TIMEOUT:-300})) entry
  for entry in "${started[@]}"; do
    i="${entry%%:*}" && pid="${entry##*:}"
    until grep -q " ready\." "$run_dir/worker-$i.log" 2>/dev/null; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "celery: worker $i exited before it was ready (see $run_dir/worker-$i.out)" >&2
        exit 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "celery: worker $i did not become ready (see $run_dir/worker-$i.log)" >&2
        exit 1
      fi
      sleep 0.1
    done
  done
  echo "celery: $n worker(s) ready on redis://$host:$port (logs in $run_dir)"
}

stop_pid() {
  local file="$1" pid _
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$file"
}

case "${1:-}" in
  start)
    start_redis
    start_workers "${2:-2}"
    ;;
  stop)
    # All workers at once: each finishes its current step (warm shutdown) in parallel.
    for f in "$run_dir"/worker-*.pid; do [ -e "$f" ] && stop_pid "$f" & done
    wait
    stop_pid "$run_dir/redis.pid"
    echo "celery: stopped (workers and the Redis started from $run_dir)"
    ;;
  status)
    redis_up && echo "redis: up on $host:$port" || echo "redis: down on $host:$port"
    for f in "$run_dir"/worker-*.pid; do
      [ -e "$f" ] || continue
      if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid): running"
      else echo "$(basename "$f" .pid): not running"; fi
    done
    ;;
  *)
    echo "usage: scripts/celery.sh start [N] | stop | status" >&2
    exit 2
    ;;
esac

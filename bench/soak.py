"""Soak: mixed API traffic held for minutes while the daily refresh and a month-end close run
(issue 12, "Load held"). Loopback only, bounded in time and in requests.

The deployment is the production one, on 127.0.0.1, in PostgreSQL databases created here and
dropped at the end (`fp_soak_<id>_wh`, `fp_soak_<id>_dg`; no other database is touched):

- the warehouse and Dagster's storage (the repo's dagster.yaml, copied into a DAGSTER_HOME of the
  workdir), FP_DEPLOYMENT=production, FP_REQUESTS_INLINE=false;
- the Stripe stand-in serving the simulated history (the demo's: `--customers` x 2 accounts, so
  two workspaces, `--months`), seeded by the demo's own steps (Stripe sync, landed files, the
  full-history backfill of the marts, margins and forecasts) on an ephemeral Dagster instance;
- the read API as production serves it: `finance-pipeline api --workers N` (uvicorn);
- in phase 2 only, the Dagster daemon (schedules, the export and request sensors, run queue),
  which launches a run per export request.

Phase 1 (unloaded): the read mix alone, open loop at `--read-rate` req/s, for `--unloaded-seconds`.
Phase 2 (soak): the same read mix plus ingests (`--ingest-rate`; with and without Idempotency-Key,
keyed retries, some sent twice at once, unkeyed resends deduplicated by external id) and exports
(one every `--export-every` s: POST with a key, status polls, the download), for `--seconds`,
while the daily refresh (a real `daily_refresh` Dagster run per workspace, as the schedule asks
for it, every `--refresh-every` s) and the month-end close of the last full month run.

Every request is scheduled on a fixed timetable (open loop): its latency counts from its planned
send time, so a stalled server is not hidden by fewer requests. In-flight requests are capped
(`--max-in-flight`) and the total is capped (`--max-requests`).

The RSS of every process (API master and workers, stand-in, daemon and its children, each run
process) is sampled from /proc every `--sample-every` s. Checks at the end:

- no 5xx (and no request without an answer);
- every accepted ingest (2xx) stored exactly once, by the external ids the generator sent; keyed
  retries replayed, not re-run; no row stored that was not acknowledged;
- p99 of the reads under load <= 2 x the unloaded p99;
- RSS of every long-lived process < 10 % growth after warm-up (the first 20 % of the soak
  excluded; short-lived run processes: peak per run);
- the refresh and close runs succeeded; every export completed and was downloaded (the export
  runs, which the daemon launches, are reported as a separate target).

Usage:

    uv run python bench/soak.py --json bench/results/soak.json      # 10 minutes, 300 x 24
    uv run python bench/soak.py --seconds 20 --unloaded-seconds 5 --customers 20 --months 3

Exit status 1 when a target is missed (`--no-timing-targets`: only the correctness checks count).
Method and figures: bench/README.md, section "Soak: load held".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from finance_pipeline_dev.processes import (
    api_command,
    daemon_command,
    proc_table,
    standin_command,
    start_in_session,
    wait_for_standin,
    wait_http,
)

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "FP_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PREFIX = "soak-"  # external ids of the rows the generator ingests
WARMUP_FRACTION = 0.2
GROWTH_LIMIT = 0.10
P99_FACTOR = 2.0


# ------------------------------------------------------------------------------------ children


def child_prepare(args: argparse.Namespace) -> None:
    """Child: migrations, the simulated history, workspaces connected to the stand-in's URL."""
    from finance_pipeline_dev.demo import prepare_demo_data

    from finance_pipeline.settings import get_settings

    _, sim = prepare_demo_data(
        get_settings(),
        customers=args.customers,
        months=args.months,
        seed=args.seed,
        standin_url=args.standin_url,
    )
    print("RESULT " + json.dumps({"first_day": sim.first_day.isoformat()}))


def child_seed(args: argparse.Namespace) -> None:
    """Child: the demo's materialization (Stripe sync, landed files, full-history backfill) on an
    ephemeral instance, so the soak's Dagster storage starts empty; then an owner API key."""
    import dagster as dg
    from finance_pipeline_dev.demo import (
        QUIET,
        PhaseFailed,
        Progress,
        _execute,
        backfill_history,
        demo_access,
    )

    from finance_pipeline.partitions import HISTORY_START
    from finance_pipeline.settings import get_settings

    last_day = datetime.now(UTC).date() - timedelta(days=1)
    first_day = max(
        date.fromisoformat(args.first_day).replace(day=1), date.fromisoformat(HISTORY_START)
    )
    progress = Progress(total=4)
    with dg.DagsterInstance.ephemeral() as instance:
        try:
            with progress.phase("stripe_ingest"):
                _execute(instance, "stripe_ingest", run_config=QUIET)
            with progress.phase("ingest_landing_files"):
                _execute(instance, "ingest_landing_files", run_config=QUIET)
            backfill_history(instance, first_day, last_day, progress)
        except PhaseFailed as exc:
            print(str(exc), file=sys.stderr)
            raise SystemExit(1) from exc
    # Dagster creates a pool's limit row on the first claim; two runs claiming it in the same
    # instant on a new storage race, and the loser's run fails (UniqueViolation on
    # concurrency_limits; bench/README.md, soak run 2). Created once here, as a deployment would.
    from finance_pipeline.ingest.stripe_assets import STRIPE_POOL

    with dg.DagsterInstance.get() as prod:
        prod.event_log_storage.initialize_concurrency_limit_to_default(STRIPE_POOL)
    access = demo_access(get_settings())
    print("RESULT " + json.dumps({"token": access.token, "first_day": first_day.isoformat()}))


def child_run(args: argparse.Namespace) -> None:
    """Child: one Dagster run of a job on the deployment's instance (DAGSTER_HOME), as the
    schedule or the close sensor asks for it; exit 0 when it succeeded."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from finance_pipeline.executors import executor_run_config
    from finance_pipeline.fanout import STRIPE_TAG, STRIPE_TAG_VALUE
    from finance_pipeline.settings import get_settings
    from finance_pipeline.tenancy import WORKSPACE_TAG

    job = ReconstructableRepository.for_module(
        "finance_pipeline.definitions", "defs", working_directory=str(ROOT)
    ).get_reconstructable_job(args.job)
    tags = {"finance_pipeline/soak": "1"}
    if args.partition:
        tags["dagster/partition"] = args.partition
    if args.start:
        tags["dagster/asset_partition_range_start"] = args.start
        tags["dagster/asset_partition_range_end"] = args.end
    if args.workspace:
        tags[WORKSPACE_TAG] = args.workspace
    if args.job == "daily_refresh":
        tags[STRIPE_TAG] = STRIPE_TAG_VALUE
    run_config = executor_run_config(get_settings())
    if args.executor == "in_process":
        run_config = {"execution": {"config": {"in_process": {}}}}
    with (
        dg.DagsterInstance.get() as instance,
        dg.execute_job(job, instance=instance, run_config=run_config, tags=tags) as result,
    ):
        print(f"run {result.run_id} {'succeeded' if result.success else 'FAILED'}")
        raise SystemExit(0 if result.success else 1)


def _child(argv: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run a child of this script to its end; its RESULT line."""
    with log.open("ab") as fh:
        proc = subprocess.run(
            [sys.executable, __file__, *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=fh,
        )
        fh.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv[0]} failed (exit {proc.returncode}); see {log}")
    for line in proc.stdout.decode().splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child {argv[0]} printed no RESULT; see {log}")


# ------------------------------------------------------------------------------------ deployment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_admin() -> Any:
    from finance_pipeline_dev.production import pg_admin_engine

    eng = pg_admin_engine(PG_ADMIN_URL)
    if eng is None:
        raise RuntimeError(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    return eng


@contextlib.contextmanager
def databases() -> Iterator[tuple[str, str]]:
    """Two new databases (warehouse, Dagster storage) created here, dropped on exit."""
    import sqlalchemy as sa

    admin = _pg_admin()
    tag = uuid.uuid4().hex[:10]
    names = [f"fp_soak_{tag}_wh", f"fp_soak_{tag}_dg"]
    urls = []
    try:
        with admin.connect() as c:
            for name in names:
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
                urls.append(admin.url.set(database=name).render_as_string(hide_password=False))
        yield urls[0], urls[1]
    finally:
        with admin.connect() as c:
            for name in names[: len(urls) or 2]:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Service:
    """A background process this script started in its own process group."""

    role: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM to its group, SIGKILL after 30 s; then SIGKILL to what is left of the group."""
        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        # Its group's stragglers too: the daemon's code servers outlive a SIGTERM to the group.
        time.sleep(2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def start(
    role: str, cmd: list[str], env: dict[str, str], workdir: Path, cwd: Path = ROOT
) -> Service:
    """A service in its own session (its children with it), logging to workdir/<role>.log."""
    return Service(role, start_in_session(cmd, workdir / f"{role}.log", env, cwd))


# ------------------------------------------------------------------------------------ memory


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _short(cmd: str) -> str:
    """A readable label for a process: the interesting part of its command line."""
    parts = cmd.split()
    for marker in ("dagster-daemon", "dagster", "finance-pipeline", "soak.py", "standin.serve"):
        for i, p in enumerate(parts):
            if p.endswith(marker):
                return " ".join(Path(x).name if "/" in x else x for x in parts[i : i + 4])
    if "multiprocessing" in cmd:
        return "multiprocessing child (" + parts[-1][:40] + ")"
    return " ".join(Path(x).name if "/" in x else x for x in parts[:4])[:80]


class Sampler(threading.Thread):
    """RSS of every process under the registered roots, every `every` seconds, from /proc."""

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.roots: dict[int, str] = {}
        self.series: dict[int, dict[str, Any]] = {}  # pid -> {role, cmd, samples [(t, kb)]}
        self.t0 = time.monotonic()
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def add_root(self, pid: int, role: str) -> None:
        with self._lock:
            self.roots[pid] = role

    def sample(self) -> None:
        table = proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        now = time.monotonic() - self.t0
        with self._lock:
            roots = dict(self.roots)
        for root, role in roots.items():
            stack = [root] if root in table else []
            while stack:
                pid = stack.pop()
                stack += children.get(pid, [])
                kb = _rss_kb(pid)
                if kb is None:
                    continue
                s = self.series.setdefault(
                    pid, {"role": role, "cmd": _short(table[pid][1]), "samples": []}
                )
                s["samples"].append((round(now, 1), kb))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)


def memory_report(sampler: Sampler, start: float, end: float) -> list[dict[str, Any]]:
    """Per process: growth after warm-up (long-lived) or peak (short-lived), in MB."""
    warm = start + WARMUP_FRACTION * (end - start)
    span = end - start
    rows = []
    for pid, s in sorted(sampler.series.items(), key=lambda kv: (kv[1]["role"], kv[0])):
        pts = [(t, kb) for t, kb in s["samples"] if start <= t <= end]
        row: dict[str, Any] = {"pid": pid, "role": s["role"], "cmd": s["cmd"]}
        all_kb = [kb for _, kb in s["samples"]]
        row["peak_mb"] = round(max(all_kb) / 1024, 1) if all_kb else None
        long_lived = bool(pts) and pts[0][0] <= warm and pts[-1][0] >= end - 0.1 * span - 10
        row["long_lived"] = long_lived
        if long_lived:
            # Baseline: the samples of the 10 % after warm-up; final: the last 10 % (medians).
            base = [kb for t, kb in pts if warm <= t <= warm + 0.1 * span] or [
                kb for t, kb in pts if t >= warm
            ][:1]
            last = [kb for t, kb in pts if t >= end - 0.1 * span] or [pts[-1][1]]
            b, f = statistics.median(base), statistics.median(last)
            row.update(
                warm_mb=round(b / 1024, 1),
                end_mb=round(f / 1024, 1),
                growth=round(f / b - 1, 4) if b else None,
                samples=len(pts),
                # Every sample (s since the soak began, MB): whether growth levels off.
                series_mb=[[round(t - start, 1), round(kb / 1024, 1)] for t, kb in pts],
            )
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ load


@dataclass
class Record:
    """One request: what, when it was due (s since the phase start), latency from then, status."""

    kind: str
    route: str
    due: float
    latency: float
    status: int  # 0: no answer (connection error, timeout)
    error: str = ""


@dataclass
class LoadState:
    """What the generator sent and got back."""

    token: str
    base: str
    workspaces: list[str]
    month: str
    records: list[Record] = field(default_factory=list)
    sent: int = 0
    max_requests: int = 10**9
    capped: int = 0
    accepted_ids: dict[str, dict[str, int]] = field(default_factory=dict)  # ws -> id -> micros
    sent_ids: set[tuple[str, str]] = field(default_factory=set)
    inserted_by_ingest: dict[str, int] = field(default_factory=dict)  # ingest_id -> inserted
    replays: int = 0
    replay_mismatch: int = 0
    in_use_409: int = 0
    unkeyed_resends: int = 0
    resend_duplicates_ok: int = 0
    resend_bad: int = 0
    bad_ingest_bodies: int = 0
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0


def read_routes(
    ws: str, other: str, month: str, yesterday: date
) -> list[tuple[str, str, dict[str, str]]]:
    """The read mix: (route name, path, extra headers) across the API's families."""
    h = {"X-Workspace-Id": ws}
    return [
        ("v1.metrics", f"/v1/workspaces/{ws}/metrics?as_of={yesterday.isoformat()}", {}),
        ("v1.alerts", f"/v1/workspaces/{ws}/alerts?as_of={yesterday.isoformat()}", {}),
        ("v1.forecasts", f"/v1/workspaces/{ws}/forecasts", {}),
        ("v1.workspaces", "/v1/workspaces", {}),
        ("000.mrr", "/api/v1/platform/finance/mrr", h),
        ("000.mrr-trend", "/api/v1/platform/finance/mrr-trend?months=12", h),
        ("000.sync-status", "/api/v1/platform/finance/stripe-sync-status", h),
        (
            "002.analytics",
            f"/api/v1/client/workspace/{other}/financial/analytics?period=monthly",
            {},
        ),
        ("003.margins", f"/api/margins?period={month}", h),
        ("003.margins-csv", f"/api/margins?period={month}&format=csv", h),
    ]


class Generator:
    """Open-loop request scheduling over one httpx.AsyncClient."""

    def __init__(self, state: LoadState, max_in_flight: int, seed: int) -> None:
        self.s = state
        self.sem = asyncio.Semaphore(max_in_flight)
        self.rng = random.Random(seed)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.client: Any = None
        self.t0 = 0.0
        self.t0_epoch = 0.0  # the same instant as t0, Unix seconds (to place records in logs)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.s.token}", **(extra or {})}

    async def request(
        self, kind: str, route: str, method: str, path: str, due: float, **kw: Any
    ) -> Any:
        """Send at `due` (s after t0); record latency from `due`. None when capped."""
        delay = self.t0 + due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.s.sent >= self.s.max_requests:
            self.s.capped += 1
            return None
        self.s.sent += 1
        async with self.sem:
            try:
                resp = await self.client.request(method, self.s.base + path, **kw)
                status, err = resp.status_code, ""
            except Exception as exc:  # any transport failure counts as no answer
                resp, status, err = None, 0, f"{type(exc).__name__}: {exc}"[:200]
        self.s.records.append(
            Record(kind, route, round(due, 3), time.monotonic() - self.t0 - due, status, err)
        )
        return resp

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- reads
    async def reads(self, rate: float, seconds: float) -> None:
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        mixes = [
            read_routes(
                ws, self.s.workspaces[(i + 1) % len(self.s.workspaces)], self.s.month, yesterday
            )
            for i, ws in enumerate(self.s.workspaces)
        ]
        n = int(rate * seconds)
        for i in range(n):
            route, path, h = self.rng.choice(self.rng.choice(mixes))
            self.spawn(self.request("read", route, "GET", path, i / rate, headers=self.headers(h)))
            await asyncio.sleep(max(0.0, self.t0 + i / rate - time.monotonic() - 1.0))

    # -- ingests
    def _body(self, kind: str, ws: str) -> tuple[dict[str, Any], dict[str, int]]:
        """A new body of 1-3 rows dated today (no refresh request: today is not a partition)."""
        today = datetime.now(UTC).date().isoformat()
        items, ids = [], {}
        for _ in range(self.rng.randint(1, 3)):
            self.s.seq += 1
            ext = f"{PREFIX}{kind}-{self.s.seq}"
            cents = self.rng.randint(100, 500_000)
            ids[ext] = cents * 10_000
            self.s.sent_ids.add((ws, ext))
            if kind == "expenses":
                items.append(
                    {
                        "subtype": self.rng.choice(["recurring_expense", "one_time_expense"]),
                        "amount_cents": cents,
                        "occurred_at": today,
                        "vendor": f"Soak vendor {self.s.seq % 17}",
                        "external_id": ext,
                    }
                )
            else:
                items.append(
                    {
                        "subtype": self.rng.choice(["recurring", "one_time"]),
                        "amount_cents": cents,
                        "occurred_at": today,
                        "description": "soak",
                        "external_id": ext,
                    }
                )
        return {kind: items}, ids

    async def one_ingest(
        self,
        kind: str,
        ws: str,
        body: dict[str, Any],
        ids: dict[str, int],
        due: float,
        key: str | None,
        label: str,
    ) -> dict[str, Any] | None:
        h = self.headers({"Idempotency-Key": key} if key else {})
        resp = await self.request(
            "ingest",
            f"v1.ingest.{kind}.{label}",
            "POST",
            f"/v1/workspaces/{ws}/ingest/{kind}",
            due,
            json=body,
            headers=h,
        )
        if resp is None or not 200 <= resp.status_code < 300:
            if resp is not None and resp.status_code == 409:
                self.s.in_use_409 += 1
            return None
        try:
            doc = resp.json()
        except ValueError:
            self.s.bad_ingest_bodies += 1
            return None
        acc = self.s.accepted_ids.setdefault(ws, {})
        for ext, micros in ids.items():
            acc[ext] = micros
        if resp.headers.get("Idempotent-Replayed") == "true":
            self.s.replays += 1
        else:
            self.s.inserted_by_ingest[doc["ingest_id"]] = int(doc.get("inserted") or 0)
        return doc

    async def ingest_op(self, due: float) -> None:
        """One ingest scenario (see the module docstring), its retries scheduled after it."""
        ws = self.rng.choice(self.s.workspaces)
        kind = self.rng.choice(["expenses", "revenue"])
        body, ids = self._body(kind, ws)
        r = self.rng.random()
        if r < 0.35:  # no key
            doc = await self.one_ingest(kind, ws, body, ids, due, None, "nokey")
            if doc is not None and self.rng.random() < 0.3:
                # The same rows again without a key, as a naive client's retry: duplicates.
                self.s.unkeyed_resends += 1
                again = await self.one_ingest(kind, ws, body, ids, due + 1.0, None, "resend")
                if (
                    again is not None
                    and again.get("inserted") == 0
                    and again.get("duplicates") == len(ids)
                ):
                    self.s.resend_duplicates_ok += 1
                elif again is not None:
                    self.s.resend_bad += 1
        else:
            key = f"{PREFIX}key-{uuid.uuid4().hex}"
            if r < 0.45:  # twin sent at the same moment: one runs, the other replays or is 409
                first, second = await asyncio.gather(
                    self.one_ingest(kind, ws, body, ids, due, key, "key-twin"),
                    self.one_ingest(kind, ws, body, ids, due, key, "key-twin"),
                )
                docs = [d for d in (first, second) if d is not None]
            else:
                doc = await self.one_ingest(kind, ws, body, ids, due, key, "key")
                docs = [doc] if doc is not None else []
                if self.rng.random() < 0.5:  # retry of the same key (a lost answer)
                    later = due + self.rng.uniform(0.2, 3.0)
                    again = await self.one_ingest(kind, ws, body, ids, later, key, "key-retry")
                    docs += [again] if again is not None else []
            if len({d["ingest_id"] for d in docs}) > 1:
                self.s.replay_mismatch += 1

    async def ingests(self, rate: float, seconds: float) -> None:
        n = int(rate * seconds)
        for i in range(n):
            self.spawn(self.ingest_op(i / rate))
            await asyncio.sleep(max(0.0, self.t0 + i / rate - time.monotonic() - 1.0))

    # -- exports
    async def export_op(self, due: float, n: int, deadline: float) -> None:
        ws = self.s.workspaces[n % len(self.s.workspaces)]
        report = ["mrr_breakdown", "invoice_summary", "revenue_trend", "failed_payments"][n % 4]
        key = f"{PREFIX}export-{uuid.uuid4().hex}"
        h = self.headers({"X-Workspace-Id": ws, "Idempotency-Key": key})
        resp = await self.request(
            "export",
            "000.export.post",
            "POST",
            "/api/v1/platform/finance/reports/export",
            due,
            json={"report_type": report, "format": "csv"},
            headers=h,
        )
        if resp is None or resp.status_code != 202:
            return
        eid = resp.json()["data"]["export_id"]
        info = self.s.exports[eid] = {"due": due, "status": "processing", "report": report}
        t = due
        while True:
            t = max(t + 3.0, time.monotonic() - self.t0)
            if t > deadline:
                return
            r = await self.request(
                "export",
                "000.export.status",
                "GET",
                f"/api/v1/platform/finance/reports/export/{eid}",
                t,
                headers=self.headers({"X-Workspace-Id": ws}),
            )
            if r is None:
                return
            if r.status_code != 200:
                continue
            data = r.json()["data"]
            info["status"] = data["status"]
            if data["status"] == "failed":
                return
            if data["status"] == "completed":
                info["ready_after_s"] = round(time.monotonic() - self.t0 - due, 1)
                url = data["download_url"]
                path = url.split("://", 1)[-1].split("/", 1)[-1]
                d = await self.request(
                    "export", "000.export.download", "GET", "/" + path, time.monotonic() - self.t0
                )
                info["downloaded"] = bool(d is not None and d.status_code == 200 and d.content)
                return

    async def exports(self, every: float, seconds: float, deadline: float) -> None:
        n = 0
        while n * every < seconds:
            self.spawn(self.export_op(n * every + 1.0, n, deadline))
            n += 1
            await asyncio.sleep(max(0.0, self.t0 + n * every - time.monotonic()))

    async def drain(self, limit: float) -> None:
        end = time.monotonic() + limit
        while self.tasks and time.monotonic() < end:
            await asyncio.wait(list(self.tasks), timeout=max(0.1, end - time.monotonic()))
        for t in list(self.tasks):
            t.cancel()


async def run_phase(gen: Generator, args: argparse.Namespace, loaded: bool, seconds: float) -> None:
    import httpx

    limits = httpx.Limits(max_connections=args.max_in_flight, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as client:
        gen.client = client
        gen.t0 = time.monotonic()
        gen.t0_epoch = time.time()
        jobs = [gen.reads(args.read_rate, seconds)]
        if loaded:
            jobs.append(gen.ingests(args.ingest_rate, seconds))
            if args.export_every > 0:
                jobs.append(gen.exports(args.export_every, seconds, seconds + args.drain_seconds))
        await asyncio.gather(*jobs)
        await asyncio.sleep(max(0.0, gen.t0 + seconds - time.monotonic()))
        await gen.drain(args.timeout + (args.drain_seconds if loaded else 0))


def latency_summary(records: list[Record]) -> dict[str, Any]:
    lat = sorted(r.latency * 1000 for r in records if r.status)

    def pct(q: float) -> float | None:
        if not lat:
            return None
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 1)

    return {
        "requests": len(records),
        "answered": len(lat),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1], 1) if lat else None,
    }


# ------------------------------------------------------------------------------------ runs


class RunLauncher:
    """The daily refresh per workspace every N seconds (one at a time per workspace, as the run
    queue's per-workspace limit would), and the month-end close once, each a child process."""

    def __init__(
        self,
        env: dict[str, str],
        workdir: Path,
        sampler: Sampler,
        workspaces: list[str],
        executor: str,
        background_nice: int = 0,
    ) -> None:
        self.env, self.workdir, self.sampler, self.workspaces = env, workdir, sampler, workspaces
        self.executor = executor
        # Imported now, outside the event loop: the import (Dagster with it) takes seconds to a
        # minute on a loaded machine, and would stall every request on the timetable meanwhile.
        from finance_pipeline.partitions import restatement_window

        self.window = restatement_window
        self.nice = ["nice", "-n", str(background_nice)] if background_nice else []
        self.running: dict[str, tuple[subprocess.Popen[bytes], float, str]] = {}
        self.done: list[dict[str, Any]] = []
        self.skipped = 0
        self.n = 0
        self.t0 = time.monotonic()

    def launch(self, name: str, argv: list[str]) -> None:
        self.n += 1
        if self.executor:
            argv = [*argv, "--executor", self.executor]
        log = f"run_{self.n:03d}_{name}.log"
        proc = start_in_session(
            [*self.nice, sys.executable, __file__, "run", *argv], self.workdir / log, self.env, ROOT
        )
        self.sampler.add_root(proc.pid, f"run:{name}")
        self.running[name] = (proc, time.monotonic(), log)

    def refresh(self) -> None:
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        first, _ = self.window(yesterday)
        for ws in self.workspaces:
            name = f"daily_refresh:{ws}"
            if name in self.running:
                self.skipped += 1
                continue
            self.launch(
                name,
                [
                    "--job",
                    "daily_refresh",
                    "--workspace",
                    ws,
                    "--start",
                    first.isoformat(),
                    "--end",
                    yesterday.isoformat(),
                ],
            )

    def close(self, month: str) -> None:
        self.launch(
            f"month_end_close:{month}", ["--job", "month_end_close", "--partition", f"{month}-01"]
        )

    def poll(self) -> None:
        for name, (proc, t, log) in list(self.running.items()):
            if proc.poll() is not None:
                self.done.append(
                    {
                        "run": name,
                        "exit": proc.returncode,
                        "log": log,
                        "started_s": round(t - self.t0, 1),
                        "seconds": round(time.monotonic() - t, 1),
                    }
                )
                del self.running[name]

    def stop(self) -> None:
        for proc, _, _ in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)


async def drive_runs(
    launcher: RunLauncher, args: argparse.Namespace, month: str, seconds: float
) -> None:
    """Refresh at 0, every, 2*every...; the close at 15 % of the soak; poll until the end."""
    t0 = time.monotonic()
    next_refresh, closed = 0.0, False
    while time.monotonic() - t0 < seconds:
        now = time.monotonic() - t0
        if now >= next_refresh:
            launcher.refresh()
            next_refresh += args.refresh_every
        if not closed and now >= 0.15 * seconds:
            launcher.close(month)
            closed = True
        launcher.poll()
        await asyncio.sleep(1.0)


# ------------------------------------------------------------------------------------ checks


def stored_rows(wh_url: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(workspace, external id) -> (rows, micros) of the generator's ingested rows."""
    import sqlalchemy as sa

    eng = sa.create_engine(wh_url)
    out: dict[tuple[str, str], tuple[int, int]] = {}
    with eng.connect() as c:
        for table, col in (
            ("raw.expense_events", "amount_micros"),
            ("raw.manual_revenue", "amount_micros"),
        ):
            for ws, ext, n, micros in c.execute(
                sa.text(
                    f"SELECT workspace_id, external_id, COUNT(*), SUM({col}) FROM {table}"
                    " WHERE external_id LIKE :p GROUP BY workspace_id, external_id"
                ),
                {"p": PREFIX + "%"},
            ):
                prev = out.get((ws, ext), (0, 0))
                out[(ws, ext)] = (prev[0] + int(n), prev[1] + int(micros))
    eng.dispose()
    return out


def dagster_runs(dg_url: str) -> list[dict[str, Any]]:
    """Every run in the soak's Dagster storage: job, status, count."""
    import sqlalchemy as sa

    eng = sa.create_engine(dg_url)
    with eng.connect() as c:
        rows = c.execute(
            sa.text("SELECT pipeline_name, status, COUNT(*) FROM runs GROUP BY 1, 2 ORDER BY 1, 2")
        ).all()
    eng.dispose()
    return [{"job": j, "status": s, "runs": int(n)} for j, s, n in rows]


def ingest_check(
    state: LoadState, stored: dict[tuple[str, str], tuple[int, int]]
) -> dict[str, Any]:
    accepted = {(ws, ext): m for ws, ids in state.accepted_ids.items() for ext, m in ids.items()}
    lost = [k for k in accepted if k not in stored]
    twice = [k for k, (n, _) in stored.items() if n != 1]
    wrong_amount = [k for k, m in accepted.items() if k in stored and stored[k][1] != m]
    unacknowledged = [k for k in stored if k not in accepted]
    foreign = [k for k in stored if k not in state.sent_ids]
    inserted_total = sum(state.inserted_by_ingest.values())
    return {
        "accepted_rows": len(accepted),
        "stored_rows": len(stored),
        "lost": len(lost),
        "stored_more_than_once": len(twice),
        "wrong_amount": len(wrong_amount),
        "stored_not_acknowledged": len(unacknowledged),
        "not_sent": len(foreign),
        "inserted_reported": inserted_total,
        "replays": state.replays,
        "replayed_different_ingest": state.replay_mismatch,
        "key_in_use_409": state.in_use_409,
        "unkeyed_resends": state.unkeyed_resends,
        "unkeyed_resends_all_duplicates": state.resend_duplicates_ok,
        "unkeyed_resends_wrong": state.resend_bad,
        "examples_lost": [list(k) for k in lost[:5]],
        "ok": not lost
        and not twice
        and not wrong_amount
        and not foreign
        and not state.resend_bad
        and not state.replay_mismatch
        and not state.bad_ingest_bodies
        and inserted_total == len(accepted),
    }


# ------------------------------------------------------------------------------------ driver


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def driver(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    out: dict[str, Any] = {
        "args": vars(args),
        "loadavg_start": loadavg(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fp_soak_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir {workdir}; load average {out['loadavg_start']}", flush=True)
    services: list[Service] = []
    sampler = Sampler(args.sample_every)
    launcher: RunLauncher | None = None

    def stop_all() -> None:
        """Stop the runs, the sampler and the services this driver started (again is harmless)."""
        if launcher is not None:
            launcher.stop()
        sampler.stop()
        for s in reversed(services):
            s.stop()

    try:
        with databases() as (wh_url, dg_url):
            try:
                import sqlalchemy as sa

                home = workdir / "dagster_home"
                home.mkdir(exist_ok=True)
                shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
                dg = sa.make_url(dg_url)
                out["databases"] = [sa.make_url(wh_url).database, dg.database]
                standin_port, api_port = _free_port(), _free_port()
                standin = f"http://127.0.0.1:{standin_port}"
                env = {
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "FP_DEPLOYMENT": "production",
                    "FP_WAREHOUSE_URL": wh_url,
                    "FP_DATA_DIR": str(workdir / "data"),
                    "DAGSTER_HOME": str(home),
                    "DAGSTER_PG_USER": dg.username or "postgres",
                    "DAGSTER_PG_PASSWORD": dg.password or "",
                    "DAGSTER_PG_HOST": dg.host or "127.0.0.1",
                    "DAGSTER_PG_DB": dg.database or "",
                    "FP_JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
                    "FP_SECRET_KEY": Fernet.generate_key().decode(),
                    "FP_REQUESTS_INLINE": "false",
                    "FP_STRIPE_API_BASE": standin,
                    # Counted as ever, never reached: the soak is one client at a fixed rate.
                    "FP_API_RATE_LIMIT_PER_MINUTE": str(10**9),
                }
                env.pop("FP_EXECUTOR", None)
                log = workdir / "children.log"
                t = time.monotonic()
                prep = _child(
                    [
                        "prepare",
                        "--customers",
                        str(args.customers),
                        "--months",
                        str(args.months),
                        "--seed",
                        str(args.seed),
                        "--standin-url",
                        standin,
                    ],
                    env,
                    log,
                )
                fixture = workdir / "data" / "demo" / "stripe_fixture.json"
                services.append(
                    start("standin", standin_command(standin_port, fixture), env, workdir)
                )
                wait_for_standin(standin, json.loads(fixture.read_text()), 180)
                seed = _child(["seed", "--first-day", prep["first_day"]], env, log)
                out["seed_seconds"] = round(time.monotonic() - t, 1)
                print(f"seeded in {out['seed_seconds']} s", flush=True)
                eng = sa.create_engine(wh_url)
                with eng.connect() as c:
                    workspaces = [
                        r[0]
                        for r in c.execute(sa.text("SELECT id FROM app.workspaces ORDER BY id"))
                    ]
                    out["dataset"] = {
                        "workspaces": workspaces,
                        "customers_per_workspace": args.customers,
                        "months": args.months,
                        "ledger_rows": c.execute(
                            sa.text("SELECT COUNT(*) FROM core.ledger")
                        ).scalar(),
                        "mrr_daily_rows": c.execute(
                            sa.text("SELECT COUNT(*) FROM mart.mrr_daily")
                        ).scalar(),
                    }
                eng.dispose()
                api = start("api", api_command(api_port, args.workers), env, workdir)
                services.append(api)
                base = f"http://127.0.0.1:{api_port}"
                wait_http(f"{base}/openapi.json", 180)
                sampler.add_root(services[0].proc.pid, "standin")
                sampler.add_root(api.proc.pid, "api")
                sampler.start()
                month = (datetime.now(UTC).date().replace(day=1) - timedelta(days=1)).strftime(
                    "%Y-%m"
                )
                state = LoadState(seed["token"], base, workspaces, month)

                if args.warmup_seconds > 0:
                    asyncio.run(
                        run_phase(
                            Generator(state, args.max_in_flight, args.seed + 2),
                            args,
                            False,
                            args.warmup_seconds,
                        )
                    )
                    state.records, state.sent = [], 0
                # Phase 1: the read mix alone.
                gen = Generator(state, args.max_in_flight, args.seed)
                print(
                    f"phase 1: reads alone, {args.read_rate}/s for {args.unloaded_seconds} s",
                    flush=True,
                )
                asyncio.run(run_phase(gen, args, False, args.unloaded_seconds))
                unloaded = list(state.records)
                unloaded_t0 = gen.t0_epoch
                out["unloaded"] = latency_summary(unloaded)
                out["unloaded"]["loadavg_end"] = loadavg()
                print(f"unloaded reads: {out['unloaded']}", flush=True)

                # Phase 2: the daemon, the runs, the mixed load.
                nice = ["nice", "-n", str(args.background_nice)] if args.background_nice else []
                daemon = start("daemon", [*nice, *daemon_command()], env, workdir, cwd=home)
                services.append(daemon)
                sampler.add_root(daemon.proc.pid, "daemon")
                state.records = []
                planned = args.seconds * (args.read_rate + 1.6 * args.ingest_rate) + (
                    args.seconds / args.export_every * 30 if args.export_every > 0 else 0
                )
                state.max_requests = args.max_requests or int(planned * 1.5) + 100
                launcher = RunLauncher(
                    env, workdir, sampler, workspaces, args.executor, args.background_nice
                )
                gen = Generator(state, args.max_in_flight, args.seed + 1)
                print(
                    f"phase 2: soak {args.seconds} s (reads {args.read_rate}/s, ingests "
                    f"{args.ingest_rate}/s, an export every {args.export_every} s, refresh every "
                    f"{args.refresh_every} s, close of {month}); load {loadavg()}",
                    flush=True,
                )
                soak_t0 = time.monotonic() - sampler.t0
                out["loadavg_soak_start"] = loadavg()

                async def soak() -> None:
                    await asyncio.gather(
                        run_phase(gen, args, True, args.seconds),
                        drive_runs(launcher, args, month, args.seconds),
                    )

                asyncio.run(soak())
                soak_t1 = time.monotonic() - sampler.t0
                out["loadavg_soak_end"] = loadavg()
                # The runs still going finish (bounded), so their outcome counts.
                end = time.monotonic() + args.drain_seconds
                while launcher.running and time.monotonic() < end:
                    launcher.poll()
                    time.sleep(1)
                launcher.poll()
                unfinished = list(launcher.running)
                launcher.stop()
                # Daemon-launched runs (exports, restatement checks) finish too.
                end = time.monotonic() + args.drain_seconds
                while time.monotonic() < end and any(
                    r["status"] in ("QUEUED", "STARTING", "STARTED", "NOT_STARTED")
                    for r in dagster_runs(dg_url)
                ):
                    time.sleep(2)
                sampler.stop()
                loaded = state.records
                out["soak"] = {
                    "seconds": args.seconds,
                    "requests": len(loaded),
                    "capped": state.capped,
                    "by_kind": {
                        k: latency_summary([r for r in loaded if r.kind == k])
                        for k in ("read", "ingest", "export")
                    },
                    "read_p99_per_minute_ms": _per_minute_p99(
                        [r for r in loaded if r.kind == "read"]
                    ),
                    "by_route": {
                        rt: {**latency_summary(rs), "statuses": _statuses(rs)}
                        for rt, rs in _by_route(loaded).items()
                    },
                }
                out["unloaded_by_route"] = {
                    rt: latency_summary(rs) for rt, rs in _by_route(unloaded).items()
                }
                errors5 = [r for r in unloaded + loaded if r.status >= 500]
                no_answer = [r for r in unloaded + loaded if r.status == 0]
                out["errors"] = {
                    "5xx": len(errors5),
                    "no_answer": len(no_answer),
                    "examples": [vars(r) for r in (errors5 + no_answer)[:10]],
                    "statuses": _statuses(unloaded + loaded),
                }
                out["ingest"] = ingest_check(state, stored_rows(wh_url))
                out["exports"] = {
                    "requested": len(state.exports),
                    "completed": sum(
                        1 for e in state.exports.values() if e["status"] == "completed"
                    ),
                    "downloaded": sum(1 for e in state.exports.values() if e.get("downloaded")),
                    "ready_after_s": _stats(
                        [e["ready_after_s"] for e in state.exports.values() if "ready_after_s" in e]
                    ),
                }
                out["runs"] = {
                    "launched": launcher.done,
                    "unfinished": unfinished,
                    "refresh_skipped_busy": launcher.skipped,
                    "dagster": dagster_runs(dg_url),
                }
                out["memory"] = memory_report(sampler, soak_t0, soak_t1)
                if args.keep:
                    # Every request, due time in Unix seconds, to lay beside the run and daemon
                    # logs of the workdir.
                    with (workdir / "requests.jsonl").open("w") as fh:
                        for phase, t0, recs in (
                            ("unloaded", unloaded_t0, unloaded),
                            ("soak", gen.t0_epoch, loaded),
                        ):
                            for r in recs:
                                fh.write(
                                    json.dumps(
                                        {
                                            "phase": phase,
                                            "at": round(t0 + r.due, 3),
                                            **vars(r),
                                        }
                                    )
                                    + "\n"
                                )
                out["loadavg_end"] = loadavg()
            finally:
                stop_all()  # everything that uses the databases stops before they are dropped
    finally:
        stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out["targets"] = targets(out, args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    print_table(out)
    missed = [k for k, v in out["targets"].items() if v["counts"] and not v["ok"]]
    print(f"\nload average: start {out['loadavg_start']}, end {out['loadavg_end']}")
    print("RESULT: " + ("all targets met" if not missed else "MISSED " + ", ".join(missed)))
    return 1 if missed else 0


def _per_minute_p99(records: list[Record]) -> list[float | None]:
    """p99 of the requests due in each minute of the phase, to place the slow ones in time."""
    buckets: dict[int, list[Record]] = {}
    for r in records:
        buckets.setdefault(int(r.due // 60), []).append(r)
    return [
        latency_summary(buckets.get(m, []))["p99_ms"] for m in range(max(buckets, default=-1) + 1)
    ]


def _by_route(records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.route, []).append(r)
    return dict(sorted(out.items()))


def _statuses(records: list[Record]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[str(r.status)] = out.get(str(r.status), 0) + 1
    return dict(sorted(out.items()))


def _stats(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"n": len(xs), "median": round(statistics.median(xs), 1), "max": round(max(xs), 1)}


def targets(out: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each target: met or not, the figure, and whether it counts for the exit status."""
    timing = not args.no_timing_targets
    u99, l99 = out["unloaded"]["p99_ms"], out["soak"]["by_kind"]["read"]["p99_ms"]
    ratio = round(l99 / u99, 2) if u99 and l99 else None
    long_lived = [m for m in out["memory"] if m["long_lived"] and m.get("growth") is not None]
    worst = max(long_lived, key=lambda m: m["growth"], default=None)
    runs = out["runs"]
    failed_runs = [r for r in runs["launched"] if r["exit"] != 0]
    dagster_failed = sum(
        r["runs"] for r in runs["dagster"] if r["status"] in ("FAILURE", "CANCELED")
    )
    refreshes = [
        r for r in runs["launched"] if r["run"].startswith("daily_refresh") and r["exit"] == 0
    ]
    closes = [
        r for r in runs["launched"] if r["run"].startswith("month_end_close") and r["exit"] == 0
    ]
    ex = out["exports"]
    return {
        "zero_5xx": {
            "ok": out["errors"]["5xx"] == 0 and out["errors"]["no_answer"] == 0,
            "figure": f"{out['errors']['5xx']} 5xx, {out['errors']['no_answer']} unanswered",
            "counts": True,
        },
        "ingest_exactly_once": {
            "ok": out["ingest"]["ok"],
            "figure": f"{out['ingest']['accepted_rows']} accepted rows, "
            f"{out['ingest']['lost']} lost, {out['ingest']['stored_more_than_once']} "
            f"twice, {out['ingest']['stored_not_acknowledged']} unacknowledged",
            "counts": True,
        },
        "runs_succeeded": {
            # The soak's refresh and close runs; the daemon's export runs count under exports
            # (their failed launches are retried), their Dagster failures are shown here.
            "ok": not failed_runs and not runs["unfinished"] and bool(refreshes) and bool(closes),
            "figure": f"{len(refreshes)} refresh, {len(closes)} close ok; "
            f"{len(failed_runs)} failed, {len(runs['unfinished'])} unfinished; "
            f"{dagster_failed} runs failed in Dagster (exports' included)",
            "counts": True,
        },
        "exports_completed": {
            "ok": ex["requested"] > 0
            and ex["completed"] == ex["requested"]
            and ex["downloaded"] == ex["completed"],
            "figure": f"{ex['completed']}/{ex['requested']} completed, {ex['downloaded']} downloaded",
            "counts": args.export_every > 0,
        },
        "p99_within_2x": {
            "ok": ratio is not None and ratio <= P99_FACTOR,
            "figure": f"{l99} ms vs {u99} ms unloaded (x{ratio})",
            "counts": timing,
        },
        "memory_flat": {
            "ok": worst is not None and worst["growth"] < GROWTH_LIMIT,
            "figure": (
                f"worst {worst['role']} {worst['cmd']} {worst['growth']:+.1%}"
                if worst
                else "no long-lived process sampled"
            ),
            "counts": timing,
        },
    }


def print_table(out: dict[str, Any]) -> None:
    print("\nlatency (ms)        requests   p50     p95     p99     max")
    rows = [("reads unloaded", out["unloaded"])] + [
        (f"{k} soak", v) for k, v in out["soak"]["by_kind"].items()
    ]
    for name, s in rows:
        print(
            f"  {name:<18}{s['requests']:>8}{s['p50_ms'] or 0:>8}{s['p95_ms'] or 0:>8}"
            f"{s['p99_ms'] or 0:>8}{s['max_ms'] or 0:>9}"
        )
    print("\nmemory (MB)  role      warm    end     growth  peak   process")
    for m in out["memory"]:
        if m["long_lived"]:
            print(
                f"  {m['role']:<18}{m['warm_mb']:>7}{m['end_mb']:>8}{m['growth']:>+9.1%}"
                f"{m['peak_mb']:>7}   {m['cmd'][:60]}"
            )
    short = [m for m in out["memory"] if not m["long_lived"]]
    if short:
        print(
            f"  short-lived processes: {len(short)}, peak RSS max "
            f"{max(m['peak_mb'] or 0 for m in short)} MB (per run in the JSON)"
        )
    print("\ntargets")
    for k, v in out["targets"].items():
        mark = "ok  " if v["ok"] else ("MISS" if v["counts"] else "miss (not counted)")
        print(f"  {mark} {k:<20} {v['figure']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode")
    c = sub.add_parser("prepare")
    c.add_argument("--customers", type=int, required=True)
    c.add_argument("--months", type=int, required=True)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--standin-url", required=True)
    c = sub.add_parser("seed")
    c.add_argument("--first-day", required=True)
    c = sub.add_parser("run")
    c.add_argument("--job", required=True)
    c.add_argument("--workspace")
    c.add_argument("--partition")
    c.add_argument("--start")
    c.add_argument("--end")
    c.add_argument("--executor", default="")
    p.add_argument("--customers", type=int, default=300, help="per workspace (two workspaces)")
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--seconds", type=float, default=600.0, help="soak duration")
    # 180 s: 2,700 reads, so the baseline p99 is the 27th slowest, not the 9th of 900 (a few
    # first requests of a worker decided it).
    p.add_argument("--unloaded-seconds", type=float, default=180.0)
    p.add_argument("--read-rate", type=float, default=15.0, help="reads per second (both phases)")
    p.add_argument("--ingest-rate", type=float, default=3.0, help="ingest scenarios per second")
    p.add_argument(
        "--export-every", type=float, default=30.0, help="seconds between exports (0: none)"
    )
    p.add_argument("--refresh-every", type=float, default=120.0, help="seconds between refreshes")
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    p.add_argument(
        "--executor",
        default="",
        choices=("", "in_process"),
        help="the soak's own runs: the deployment's executor (multiprocess), or "
        "in_process (the CI smoke run: no step processes to start)",
    )
    p.add_argument(
        "--background-nice",
        type=int,
        default=0,
        help="nice the daemon and the soak's runs (the API keeps its priority)",
    )
    p.add_argument(
        "--warmup-seconds",
        type=float,
        default=10.0,
        help="reads before phase 1, not measured (first requests fill caches)",
    )
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--max-requests", type=int, default=0, help="cap (default: 1.5 x planned)")
    p.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    p.add_argument("--drain-seconds", type=float, default=300.0, help="wait for runs at the end")
    p.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling period")
    p.add_argument(
        "--no-timing-targets",
        action="store_true",
        help="p99 and memory reported, not counted (the CI smoke run)",
    )
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the workdir (logs)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.mode == "prepare":
        child_prepare(args)
    elif args.mode == "seed":
        child_seed(args)
    elif args.mode == "run":
        child_run(args)
    else:
        return driver(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

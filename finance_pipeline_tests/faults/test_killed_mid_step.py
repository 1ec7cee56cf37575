"""The run worker SIGKILLed in the middle of a step, then the next run (docs/reliability.md,
"Killed mid-step"): a landing-file ingest, a Stripe sync page, a mart window write, a report
render and a close.

Two warehouses of one simulated account go through the same pipeline steps: the clean twin runs
each step once, in this process; the killed side runs it in a child process (the run worker,
`driver.py`) on a persistent Dagster instance, where the step SIGKILLs itself at the point under
test, and then in a fresh child again. After each step both warehouses hold the same rows (write
stamps aside), no table has a doubled row, the report folder holds exactly the catalogued files,
and each closed month has one close version. The killed run stays STARTED until the dead-run
sweep (finance_pipeline/run_sweep.py) marks it failed and frees its Stripe pool slot; the next
run is not blocked. Last, everything the kill points left behind is scanned for secrets.
Every kill point runs on PostgreSQL (production) and on SQLite (the embedded default).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from finance_pipeline_dev.simulator import simulate
from finance_pipeline_dev.standin.server import StandIn

from finance_pipeline.accounts import create_api_key
from finance_pipeline.definitions import defs
from finance_pipeline.deployment import dagster_home
from finance_pipeline.lib.access import Role
from finance_pipeline.run_sweep import dead_run_sweep, dead_runs
from finance_pipeline.settings import PROJECT_ROOT, get_settings
from finance_pipeline.stripe_sync.webhooks import set_webhook_secret
from finance_pipeline.tenancy import connect_stripe, create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.conftest import fresh_warehouse
from finance_pipeline_tests.dagster_runs import range_tags
from finance_pipeline_tests.faults import driver
from finance_pipeline_tests.secret_scan import leaks, written_files
from finance_pipeline_tests.table_snapshot import VOLATILE, duplicate_rows, table_rows

pytestmark = pytest.mark.slow

END = date(2026, 10, 31)
MONTHS = 3
WORKSPACE = "ws1"
SECRET_KEY = "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q="
JWT_SECRET = "jwt-secret-of-the-kill-suite-0123456789abcdef"
WEBHOOK_SECRET = "whsec_kill_suite_0123456789abcdef"
# A child that neither finishes nor dies in this time is blocked (a held slot, a lock).
CHILD_TIMEOUT_S = 600

# Stamped at write time (ingest, sync and close stamps, random ids of catalogue rows and closes).
STAMPS = VOLATILE | {
    "ingested_at",
    "processed_at",
    "synced_at",
    "last_attempt_at",
    "last_success_at",
    "last_full_sync_at",
    "updated_at",
    "closed_at",
    "detected_at",
}
IGNORE_IN = {
    # How many objects the latest pass read: a resumed pass reads only what the killed one had
    # not committed. Bookkeeping of the pass, not data.
    "raw.sync_state": ("last_run_objects",),
    # How the core was last built: a run killed after its core steps committed leaves the rerun
    # an incremental build (same rows), and the watermarks are the raw rows' write stamps.
    "core.build_state": ("watermark", "mode", "watermarks_json"),
    "app.report_catalogue": ("id", "close_id"),
    "app.closes": ("id",),
    "app.restatements": ("id", "close_id"),
}


@dataclass(frozen=True)
class Step:
    """One pipeline step: a job, its partition range, and where the kill goes."""

    kill: str
    job: str
    start: date | None = None
    end: date | None = None

    def tags(self) -> dict[str, str] | None:
        return range_tags(self.start, self.end) if self.start and self.end else None

    def range_args(self) -> list[str]:
        if not (self.start and self.end):
            return []
        return ["--start", str(self.start), "--end", str(self.end)]


FIRST_DAY = END - timedelta(days=MONTHS * 31)
STEPS = [
    Step("landing_file", "ingest_landing_files"),
    Step("stripe_page", "stripe_ingest"),
    Step("mart_window", "rebuild_marts", FIRST_DAY, END),
    Step("report_render", "month_end_close", date(2026, 9, 1), date(2026, 9, 1)),
    Step("close", "month_end_close", date(2026, 10, 1), date(2026, 10, 1)),
]


@dataclass
class Side:
    """One warehouse with its data folder (landing, reports) and Dagster instance."""

    name: str
    wh: Warehouse
    data: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "FP_DATA_DIR": str(self.data),
            "FP_SECRET_KEY": SECRET_KEY,
            "FP_JWT_SECRET": JWT_SECRET,
            "DAGSTER_HOME": str(self.data / "dagster_home"),
        }

    @property
    def landing(self) -> Path:
        return self.data / "landing"

    @property
    def reports(self) -> Path:
        return self.data / "reports"

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """This side's settings for the code run in this process."""
        with pytest.MonkeyPatch.context() as mp:
            for k, v in self.env.items():
                mp.setenv(k, v)
            mp.delenv("FP_LANDING_DIR", raising=False)
            mp.delenv("FP_REPORTS_DIR", raising=False)
            get_settings.cache_clear()
            try:
                yield
            finally:
                get_settings.cache_clear()
        get_settings.cache_clear()

    @contextlib.contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with self.settings():
            home = dagster_home(get_settings())
            instance = dg.DagsterInstance.from_config(str(home))
            try:
                yield instance
            finally:
                instance.dispose()

    def run_here(self, step: Step) -> None:
        """The step as a clean run in this process."""
        with self.instance() as instance:
            result = defs.resolve_job_def(step.job).execute_in_process(
                instance=instance,
                resources=driver.resources(self.wh.url.render_as_string(False)),
                tags=step.tags(),
            )
            assert result.success


@dataclass(frozen=True)
class Child:
    """A finished run-worker process: its pid, exit status and output."""

    pid: int
    returncode: int
    output: str


@dataclass
class Chain:
    """The clean twin and the killed side, and how many steps both have been through."""

    root: Path
    clean: Side
    killed: Side
    secrets: dict[str, str]
    done: int = 0
    outputs: list[Path] = field(default_factory=list)

    def child(self, step: Step, kill: str | None = None) -> Child:
        """Run the step in a fresh run-worker process on the killed side; output is kept."""
        args = [
            sys.executable,
            "-m",
            "finance_pipeline_tests.faults.driver",
            "--job",
            step.job,
            "--warehouse",
            self.killed.wh.url.render_as_string(False),
            *step.range_args(),
        ]
        if kill:
            args += ["--kill", kill, "--marker", str(self.marker(kill))]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FP_", "DAGSTER_"))}
        env.update(self.killed.env)
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output, _ = proc.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            pytest.fail(f"{step.job} neither finished nor died in {CHILD_TIMEOUT_S} s: blocked")
        out = self.root / "captured" / f"{step.kill}-{'killed' if kill else 'rerun'}.txt"
        out.parent.mkdir(exist_ok=True)
        out.write_text(output)
        self.outputs.append(out)
        return Child(proc.pid, proc.returncode, output)

    def marker(self, kill: str) -> Path:
        (self.root / "markers").mkdir(exist_ok=True)
        return self.root / "markers" / kill

    def reach(self, index: int) -> None:
        """Take both sides cleanly through the steps before STEPS[index]."""
        while self.done < index:
            for side in (self.clean, self.killed):
                side.run_here(STEPS[self.done])
            self.done += 1


def _prepare(side: Side, sim: Any, api_base: str) -> dict[str, str]:
    """The account on one side: organization, workspace, Stripe connection, webhook secret, an
    API key, and the simulated CSV files in the landing folder; returns the secrets it holds."""
    [(acct, a)] = sim.fixture["accounts"].items()
    key = next(iter(a["keys"]))
    with side.settings():
        org = create_organization(side.wh, "Northwind Labs", org_id="o")
        create_workspace(
            side.wh,
            org,
            "Northwind Labs",
            workspace_id=WORKSPACE,
            cash_on_hand_micros=900_000 * 10**6,
            settings={"mapping_auto_accept_confidence": 1},
        )
        connect_stripe(
            side.wh, WORKSPACE, account_id=acct, livemode=False, api_key=key, api_base=api_base
        )
        set_webhook_secret(side.wh, WORKSPACE, WEBHOOK_SECRET)
        _, api_key = create_api_key(side.wh, org, Role.FINANCE, name="kill suite")
    sim.write_landing(side.landing / WORKSPACE)
    return {"Stripe key": key, f"API key ({side.name})": api_key}


# Every kill point on the production warehouse and on the embedded default's SQLite (a kill
# inside SQLite's open write transaction: the next connection rolls its journal back). One
# chain per kind takes both sides through the steps once; each kind's last case scans what its
# kill points left behind for secrets.
SCAN = len(STEPS)
CASES = [
    *(
        pytest.param("postgresql", i, marks=pytest.mark.postgres, id=f"postgresql-{s.kill}")
        for i, s in enumerate(STEPS)
    ),
    pytest.param("postgresql", SCAN, marks=pytest.mark.postgres, id="postgresql-leftovers"),
    *(pytest.param("sqlite", i, id=f"sqlite-{s.kill}") for i, s in enumerate(STEPS)),
    pytest.param("sqlite", SCAN, id="sqlite-leftovers"),
]


def _chain(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain]:
    """Both sides of one warehouse kind, prepared, with the stand-in serving the account."""
    root = tmp_path_factory.mktemp(f"kill-{kind}")
    sim = simulate(seed=11, customers=6, months=MONTHS, end=END, currencies=("usd", "eur"))
    standin = StandIn(sim.fixture)
    url = standin.start()
    try:
        with contextlib.ExitStack() as stack:
            sides = []
            for name in ("clean", "killed"):
                data = root / name
                data.mkdir()
                wh = stack.enter_context(fresh_warehouse(kind, data, request))
                side = Side(name, wh, data)
                with side.instance():
                    pass  # writes DAGSTER_HOME's dagster.yaml (the embedded deployment's)
                sides.append(side)
            secrets = {
                "webhook secret": WEBHOOK_SECRET,
                "JWT secret": JWT_SECRET,
                "master key": SECRET_KEY,
            }
            for side in sides:
                secrets.update(_prepare(side, sim, url))
            yield Chain(root, sides[0], sides[1], secrets)
    finally:
        standin.stop()


# One chain per warehouse kind for the whole module: each case goes one step further on it.
@pytest.fixture(scope="module")
def postgresql_chain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain]:
    yield from _chain("postgresql", request, tmp_path_factory)


@pytest.fixture(scope="module")
def sqlite_chain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain]:
    yield from _chain("sqlite", request, tmp_path_factory)


def _snapshot(wh: Warehouse) -> dict[str, list[dict[str, Any]]]:
    snap = table_rows(
        wh,
        ("raw", "core", "mart"),
        tables=("app.report_catalogue", "app.closes", "app.restatements"),
        ignore=STAMPS,
        ignore_in=IGNORE_IN,
    )
    for row in snap["raw.sync_state"]:
        if not row["objects_total"]:
            # An empty stream's high-water mark is the time of its pass (minus the index lag).
            row["high_water"] = None
    # A close pack prints when its data was built ("data as of": the newest write stamp of raw
    # and core, from the watermarks), so two warehouses built at different times differ there
    # and in the pack's bytes; everything else of the close must be equal.
    packs = set()
    for row in snap["app.report_catalogue"]:
        if row["report_type"] == "close_pack":
            packs.add(row["path"])
            row["sha256"] = row["size_bytes"] = None
    for row in snap["app.closes"]:
        manifest = row["manifest_json"]
        manifest = dict(json.loads(manifest) if isinstance(manifest, str) else manifest)
        manifest.pop("generated_at")
        manifest.pop("watermarks")
        manifest["files"] = {p: None if p in packs else h for p, h in manifest["files"].items()}
        row["manifest_json"] = manifest
    return snap


def _files(reports: Path) -> set[str]:
    """Every file in the reports folder, relative, temp files included."""
    if not reports.exists():
        return set()
    return {str(p.relative_to(reports)) for p in reports.rglob("*") if p.is_file()}


def _landing(side: Side) -> set[str]:
    return {str(p.relative_to(side.landing)) for p in side.landing.rglob("*.csv")}


# What the killed run left before the next run: proof that it died mid-step, not before.
MIDWAY: dict[str, Callable[[Side], None]] = {}


def _midway(kill: str) -> Callable[[Callable[[Side], None]], Callable[[Side], None]]:
    def register(fn: Callable[[Side], None]) -> Callable[[Side], None]:
        MIDWAY[kill] = fn
        return fn

    return register


@_midway("stripe_page")
def _stripe_midway(side: Side) -> None:
    [state] = side.wh.rows(
        "SELECT status, cursor_json, high_water FROM raw.sync_state WHERE stream = :s",
        s=driver.KILLED_STREAM,
    )
    # Page 1 committed with its checkpoint; the pass never finished.
    assert state["status"] == "running" and state["cursor_json"] and state["high_water"] is None
    stored = side.wh.scalar("SELECT COUNT(*) FROM raw.stripe_invoices")
    assert stored == driver.PAGE_SIZE


@_midway("landing_file")
def _landing_midway(side: Side) -> None:
    receipts = side.wh.rows("SELECT file_name FROM raw.landing_files")
    processed = {p.name for p in (side.landing / WORKSPACE / "processed").glob("*.csv")}
    # The first file committed and moved; the second's rows rolled back with the kill.
    assert len(receipts) == 1 and processed == {receipts[0]["file_name"]}
    waiting = {p.name for p in (side.landing / WORKSPACE).glob("*.csv")}
    assert receipts[0]["file_name"] not in waiting and len(waiting) >= 2


@_midway("report_render")
def _render_midway(side: Side) -> None:
    temps = [f for f in _files(side.reports) if Path(f).name.endswith(".tmp")]
    assert len(temps) == 1, temps  # the file being written when the worker died
    rows = side.wh.scalar("SELECT COUNT(*) FROM app.report_catalogue")
    assert rows == driver.KILLED_REPORT_FILE - 1


@_midway("close")
def _close_midway(side: Side) -> None:
    assert side.wh.scalar("SELECT COUNT(*) FROM app.closes WHERE month = '2026-10'") == 0
    packs = side.wh.scalar(
        "SELECT COUNT(*) FROM app.report_catalogue WHERE report_type = 'close_pack'"
        " AND date_start >= :a",
        a=date(2026, 10, 1),
    )
    assert packs == 1  # stored before the freeze


def _sqlite_sound(wh: Warehouse) -> None:
    """The SQLite file a killed writer left: intact once its WAL is recovered, and no lock held
    (the dead worker's write lock went with it, so a writer gets it at once, not after the
    busy timeout)."""
    con = sqlite3.connect(str(wh.url.database), timeout=0, isolation_level=None)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    finally:
        con.close()


def _assert_same(chain: Chain) -> None:
    """The killed side equals the clean twin: rows, files, one close per month, no doubles."""
    killed, clean = _snapshot(chain.killed.wh), _snapshot(chain.clean.wh)
    assert duplicate_rows(killed) == {}
    differ = {
        t: {
            "only after the kill": [r for r in killed.get(t, []) if r not in clean[t]][:5],
            "only in the clean run": [r for r in clean[t] if r not in killed.get(t, [])][:5],
        }
        for t in clean
        if killed.get(t) != clean[t]
    }
    assert not differ, f"tables differ from the clean run: {differ}"
    assert killed.keys() == clean.keys()
    files = _files(chain.killed.reports)
    assert files == _files(chain.clean.reports)
    # One catalogue row per file and one file per row: no orphan, no temp file.
    catalogued = {r["path"] for r in chain.killed.wh.rows("SELECT path FROM app.report_catalogue")}
    assert files == catalogued
    assert _landing(chain.killed) == _landing(chain.clean)
    versions = chain.killed.wh.rows(
        "SELECT workspace_id, month, COUNT(*) AS n FROM app.closes GROUP BY workspace_id, month"
    )
    assert all(r["n"] == 1 for r in versions), versions


@pytest.mark.parametrize(("kind", "index"), CASES)
def test_killed_run_worker(kind: str, index: int, request: pytest.FixtureRequest) -> None:
    """A kill point: the next run ends as a clean run would. Last: no secret left behind."""
    chain: Chain = request.getfixturevalue(f"{kind}_chain")
    if index == SCAN:
        _no_secret_left_behind(chain)
    else:
        _killed_mid_step_then_next_run_equals_a_clean_run(chain, index)


def _killed_mid_step_then_next_run_equals_a_clean_run(chain: Chain, index: int) -> None:
    step = STEPS[index]
    chain.reach(index)
    chain.clean.run_here(step)

    killed = chain.child(step, kill=step.kill)
    assert killed.returncode == -signal.SIGKILL, killed.output[-3000:]
    # It died at the point under test, by its own hand, not earlier of something else.
    assert chain.marker(step.kill).read_text().splitlines()[1] == f"pid {killed.pid}"
    if chain.killed.wh.url.get_backend_name() == "sqlite":
        _sqlite_sound(chain.killed.wh)
    if step.kill in MIDWAY:
        MIDWAY[step.kill](chain.killed)

    with chain.killed.instance() as instance:
        # Nothing ended the run: it stays STARTED, holding what it held (a Stripe pool slot).
        [run] = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert run.job_name == step.job
        # The embedded instance enforces pools (its dagster.yaml: default_limit 1).
        assert instance.event_log_storage.supports_global_concurrency_limits
        if step.kill == "stripe_page":
            # The killed Stripe step still holds the `stripe_api` pool's only slot: without the
            # sweep every later Stripe step would wait for it for ever.
            assert run.run_id in instance.event_log_storage.get_concurrency_run_ids()
        # The daemon's evaluation of the sweep sensor: the run is marked failed, slots freed.
        dead_run_sweep(dg.build_sensor_context(instance=instance, definitions=defs))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        assert dead_runs(instance) == []
        assert run.run_id not in instance.event_log_storage.get_concurrency_run_ids()

    rerun = chain.child(step)
    assert rerun.returncode == 0, rerun.output[-3000:]
    _assert_same(chain)
    chain.done = index + 1


def _no_secret_left_behind(chain: Chain) -> None:
    # After the kill points of this warehouse kind (the cases before, on the same chain).
    assert chain.done >= 1
    places = written_files(chain.root)
    assert chain.outputs and all(str(o) in places for o in chain.outputs)
    assert any("dagster_home" in p for p in places)
    assert leaks(chain.secrets, places) == []

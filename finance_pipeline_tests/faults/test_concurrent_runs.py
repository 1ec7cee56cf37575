"""Two runs of the same window at once (issue 12: a double click in the UI, a schedule beside a
backfill): on SQLite and on PostgreSQL both succeed and the marts equal one run's, row for row.

Each run has its own Dagster instance and its own warehouse handle (its own connections, as two
processes would), and the two runs are held at the door of every write transaction until the
other one is there too, so their window replacements really overlap rather than by luck. Before
`Warehouse.lock_windows`, the second PostgreSQL run failed with a primary-key violation: its
delete could not see the first run's uncommitted inserts (READ COMMITTED)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from finance_pipeline.definitions import defs
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.conftest import fresh_warehouse
from finance_pipeline_tests.dagster_runs import range_tags
from finance_pipeline_tests.reports_pdf.dataset import build_account, month_starts
from finance_pipeline_tests.table_snapshot import duplicate_keys, snapshot

END = date(2026, 10, 31)
DAILY = (END - timedelta(days=20), END)
MONTHLY = (month_starts(END - timedelta(days=60), END)[0], END.replace(day=1))


class OwnWarehouse(WarehouseResource):
    """The warehouse through a handle of the run's own, not the process-wide one per URL: two
    runs in two threads then share no connection pool and no in-process write lock, as two
    run workers would not."""

    def get(self) -> Warehouse:
        if self._wh is None:
            self._wh = Warehouse(self.url)
        return self._wh


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def account(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """A small simulated account, synced and built through the real jobs."""
    folder = tmp_path_factory.mktemp(f"concurrent_{request.param}")
    with (
        pytest.MonkeyPatch.context() as mp,
        fresh_warehouse(request.param, folder, request) as wh,
    ):
        mp.setenv("FP_DATA_DIR", str(folder / "data"))
        mp.setenv("FP_SECRET_KEY", "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q=")
        get_settings.cache_clear()
        build_account(wh, folder / "landing", customers=4, months=2, end=END, seed=11)
        yield wh


class _Gate:
    """Holds each racing run at every outermost write transaction until the other run reaches
    its own (the k-th of one meets the k-th of the other); a run that stopped early breaks the
    gate, and the survivor goes on alone."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=20)
        self.local = threading.local()
        self.meetings = 0

    @contextlib.contextmanager
    def patched(self, mp: pytest.MonkeyPatch) -> Iterator[None]:
        original = Warehouse.begin
        gate = self

        @contextlib.contextmanager
        def begin(wh: Warehouse) -> Iterator[sa.Connection]:
            depth = getattr(gate.local, "depth", 0)
            if getattr(gate.local, "racing", False) and depth == 0:
                with contextlib.suppress(threading.BrokenBarrierError):
                    if gate.barrier.wait() == 0:
                        gate.meetings += 1
            gate.local.depth = depth + 1
            try:
                with original(wh) as conn:
                    yield conn
            finally:
                gate.local.depth = depth

        mp.setattr(Warehouse, "begin", begin)
        yield

    def run(self, fn: Any, *args: Any) -> Any:
        self.local.racing = True
        try:
            return fn(*args)
        finally:
            self.local.racing = False
            self.barrier.abort()  # the other run no longer waits for this one


def _run(job: str, wh: Warehouse, window: tuple[date, date]) -> dg.ExecuteInProcessResult:
    resource = OwnWarehouse(url=wh.url.render_as_string(False))
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            return defs.resolve_job_def(job).execute_in_process(
                instance=instance,
                resources={"warehouse": resource},
                tags=range_tags(*window),
                raise_on_error=False,
            )
    finally:
        resource.get().dispose()


def _failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        str(e.step_failure_data.error.message if e.step_failure_data.error else e.message)
        for e in result.all_events
        if e.is_step_failure
    ]


@pytest.mark.parametrize(
    ("job", "window"),
    [("rebuild_marts", DAILY), ("monthly_margins_and_forecasts", MONTHLY)],
    ids=["daily-marts", "monthly-margins"],
)
def test_two_runs_of_the_same_window_at_once_equal_one_run(
    account: Warehouse, job: str, window: tuple[date, date], monkeypatch: pytest.MonkeyPatch
) -> None:
    one = _run(job, account, window)
    assert one.success, _failures(one)
    expected = snapshot(account)
    assert expected["mart.mrr_daily"] and expected["mart.customer_margins_monthly"]

    gate = _Gate()
    with gate.patched(monkeypatch), ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(gate.run, _run, job, account, window) for _ in range(2)]
        results = [r.result(timeout=300) for r in runs]
    assert [r.success for r in results] == [True, True], [_failures(r) for r in results]
    # Every write transaction of the two runs overlapped with the other run's.
    assert gate.meetings >= 3
    # Row for row what one run leaves (stamps of when a row was written aside): no duplicate,
    # nothing missing, nothing from a half-replaced window.
    assert snapshot(account) == expected
    assert duplicate_keys(account) == {}

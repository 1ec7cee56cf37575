"""The report store: atomic files, one catalogue row per file, idempotent re-runs, no escapes."""

from __future__ import annotations

import errno
import hashlib
import os
from datetime import date
from pathlib import Path

import pytest

from finance_pipeline.reports import store
from finance_pipeline.reports.store import (
    ReportKey,
    ReportStoreError,
    ReportVersionConflict,
    list_entries,
    resolve_inside,
    store_report,
)
from finance_pipeline.warehouse import Warehouse

SEPT = ReportKey("ws1", "margins", date(2026, 9, 1), date(2026, 9, 30))


def _catalogue(wh: Warehouse) -> list[dict]:
    return wh.rows("SELECT * FROM app.report_catalogue ORDER BY version")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_store_idempotent_and_versions(warehouse: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "reports"
    first = store_report(warehouse, root, SEPT, b"a,b\r\n1,2\r\n")
    assert first.path == "ws1/2026-09/margins-2026-09.csv"
    assert first.version == 1 and first.size_bytes == 10
    assert first.sha256 == hashlib.sha256(b"a,b\r\n1,2\r\n").hexdigest()
    assert (root / first.path).read_bytes() == b"a,b\r\n1,2\r\n"
    # Same bytes again: the same entry, nothing new.
    again = store_report(warehouse, root, SEPT, b"a,b\r\n1,2\r\n")
    assert again == first and len(_catalogue(warehouse)) == 1
    # Different bytes for the stored version: refused, nothing changed.
    with pytest.raises(ReportVersionConflict):
        store_report(warehouse, root, SEPT, b"a,b\r\n1,3\r\n")
    assert (root / first.path).read_bytes() == b"a,b\r\n1,2\r\n"
    assert len(_catalogue(warehouse)) == 1
    # Asked for a new version: v2 beside v1.
    second = store_report(warehouse, root, SEPT, b"a,b\r\n1,3\r\n", new_version_if_changed=True)
    assert second.version == 2 and second.path == "ws1/2026-09/margins-2026-09.v2.csv"
    assert _files(root) == [first.path, second.path]
    # Plan filter (NULL vs a plan) and a custom range are different reports.
    plan = ReportKey("ws1", "mrr_breakdown", date(2026, 9, 3), date(2026, 9, 7), "price_1")
    third = store_report(warehouse, root, plan, b"x")
    assert third.path == "ws1/2026-09/mrr_breakdown-2026-09-03_2026-09-07-plan-price_1.csv"
    assert [e.version for e in list_entries(warehouse, "ws1", report_type="margins")] == [2, 1]
    assert len(list_entries(warehouse, "ws1", month="2026-09", latest_only=True)) == 2
    assert store.get_entry(warehouse, second.id) == second


def test_failed_write_leaves_no_file_and_no_row(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "reports"

    def broken_fsync(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(store.ReportWriteError, match="No space left on device"):
        store_report(warehouse, root, SEPT, b"partial")
    assert _files(root) == []  # neither the temp file nor the target
    assert _catalogue(warehouse) == []


def test_failed_catalogue_insert_removes_the_file(warehouse: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "reports"
    other = ReportKey("ws1", "margins", date(2026, 8, 1), date(2026, 8, 31))
    entry = store_report(warehouse, root, other, b"august")
    # A stray row already claims September's path: the insert fails after the file was written.
    with warehouse.begin() as db:
        db.execute(
            warehouse.text("UPDATE app.report_catalogue SET path = :p WHERE id = :i"),
            {"p": "ws1/2026-09/margins-2026-09.csv", "i": entry.id},
        )
    with pytest.raises(Exception, match=r"(?i)unique"):
        store_report(warehouse, root, SEPT, b"a,b\r\n")
    assert not (root / "ws1/2026-09/margins-2026-09.csv").exists()
    assert len(_catalogue(warehouse)) == 1


def test_a_temp_file_left_by_a_killed_writer_is_cleared_by_the_next_write(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    root = tmp_path / "reports"
    folder = root / "ws1" / "2026-09"
    folder.mkdir(parents=True)
    # What a writer SIGKILLed between its temp file's fsync and the rename leaves behind.
    (folder / ".margins-2026-09.csv.k1ll3d_x.tmp").write_bytes(b"half")
    # Another report's temp file is not this write's to clear.
    (folder / ".margins-2026-09.pdf.0therxyz.tmp").write_bytes(b"other")
    entry = store_report(warehouse, root, SEPT, b"a,b\r\n")
    assert _files(root) == sorted([entry.path, "ws1/2026-09/.margins-2026-09.pdf.0therxyz.tmp"])


@pytest.mark.parametrize(
    "key",
    [
        ReportKey("../etc", "margins", date(2026, 9, 1), date(2026, 9, 30)),
        ReportKey("ws1", "../x", date(2026, 9, 1), date(2026, 9, 30)),
        ReportKey("ws1", "margins", date(2026, 9, 1), date(2026, 9, 30), "../../p"),
        ReportKey("ws1", "margins", date(2026, 9, 1), date(2026, 9, 30), "a/b"),
        ReportKey("ws1", "margins", date(2026, 9, 1), date(2026, 9, 30), format="exe"),
        ReportKey("ws1", "margins", date(2026, 9, 30), date(2026, 9, 1)),
    ],
)
def test_unsafe_names_are_refused(
    sqlite_warehouse: Warehouse, tmp_path: Path, key: ReportKey
) -> None:
    with pytest.raises(ReportStoreError):
        store_report(sqlite_warehouse, tmp_path / "reports", key, b"x")
    assert not (tmp_path / "reports").exists() or _files(tmp_path / "reports") == []
    assert _catalogue(sqlite_warehouse) == []


def test_paths_never_escape(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    for bad in ("../x.csv", "/etc/passwd", "ws/../../x.csv", "link/x.csv", "."):
        with pytest.raises(ReportStoreError):
            resolve_inside(root, bad)
    assert resolve_inside(root, "ws1/2026-09/a.csv") == root.resolve() / "ws1/2026-09/a.csv"

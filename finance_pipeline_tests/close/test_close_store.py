"""A frozen report on SQLite and PostgreSQL: the store refuses new content while its close is in
force, accepts identical bytes, and takes a new version once the month is reopened."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from finance_pipeline.lib.close import FigureDiff, canonical_json
from finance_pipeline.reports.close import (
    CloseError,
    _restatement_notes,
    insert_close,
    insert_restatement,
    latest_close,
    list_closes,
    reopen,
    restatements,
)
from finance_pipeline.reports.store import ReportClosed, ReportKey, latest_entry, store_report
from finance_pipeline.warehouse import Warehouse

KEY = ReportKey("ws1", "mrr_breakdown", date(2026, 10, 1), date(2026, 10, 31))


def test_a_closed_report_is_immutable_until_reopened(warehouse: Warehouse, tmp_path: Path) -> None:
    wh, root = warehouse, tmp_path / "reports"
    v1 = store_report(wh, root, KEY, b"a,b\n1,2\n")
    manifest = {"month": "2026-10", "files": {v1.path: v1.sha256}, "figures": {"x": "1.00"}}
    row = {
        "id": "close_1",
        "workspace_id": "ws1",
        "month": "2026-10",
        "version": 1,
        "status": "closed",
        "manifest_json": canonical_json(manifest),
        "closed_at": 1_793_500_000,
        "reopened_at": None,
        "reason": None,
    }
    insert_close(wh, row, [v1.id])
    assert latest_entry(wh, KEY).close_id == "close_1"
    assert latest_close(wh, "ws1", "2026-10").manifest == manifest
    with pytest.raises(ReportClosed):
        store_report(wh, root, KEY, b"a,b\n1,3\n", new_version_if_changed=True)
    assert store_report(wh, root, KEY, b"a,b\n1,2\n").id == v1.id
    assert (root / v1.path).read_bytes() == b"a,b\n1,2\n"
    with pytest.raises(CloseError):
        reopen(wh, "ws1", "2026-10", "  ")
    reopened = reopen(wh, "ws1", "2026-10", "late refund")
    assert (reopened.status, reopened.reason) == ("reopened", "late refund")
    with pytest.raises(CloseError):
        reopen(wh, "ws1", "2026-10", "again")
    v2 = store_report(wh, root, KEY, b"a,b\n1,3\n", new_version_if_changed=True)
    assert (v2.version, v2.path) == (2, "ws1/2026-10/mrr_breakdown-2026-10.v2.csv")
    assert (root / v1.path).read_bytes() == b"a,b\n1,2\n"
    assert [(c.version, c.status) for c in list_closes(wh, "ws1")] == [(1, "reopened")]


def test_a_restatement_is_stored_and_listed_once_by_the_next_months_pack(
    warehouse: Warehouse,
) -> None:
    wh = warehouse
    manifest = {"month": "2026-10", "files": {}, "figures": {"Revenue: refunds": "-10.00"}}
    row = {
        "id": "close_oct",
        "workspace_id": "ws1",
        "month": "2026-10",
        "version": 1,
        "status": "closed",
        "manifest_json": canonical_json(manifest),
        "closed_at": 1_793_500_000,
        "reopened_at": None,
        "reason": None,
    }
    insert_close(wh, row, [])
    diff = [FigureDiff("Revenue: refunds", "-10.00", "-29.00", "-19.00")]
    rid = insert_restatement(wh, latest_close(wh, "ws1", "2026-10"), diff, "f" * 64, 1_794_000_000)
    [r] = restatements(wh, "ws1", "2026-10")
    assert (r["id"], r["alert"], r["detected_at"]) == (rid, "close_restated", 1_794_000_000)
    assert r["diff"] == [
        {
            "metric": "Revenue: refunds",
            "as_closed": "-10.00",
            "restated": "-29.00",
            "change": "-19.00",
        }
    ]
    ids, notes = _restatement_notes(wh, "ws1", "2026-11")
    assert ids == [rid] and notes[0].month == "2026-10" and notes[0].changes[0].change == "-19.00"
    assert _restatement_notes(wh, "ws1", "2026-10") == ([], ())
    # Once November's close lists it, December's pack does not list it again.
    nov = {**row, "id": "close_nov", "month": "2026-11"}
    nov["manifest_json"] = canonical_json({**manifest, "restatements_listed": [rid]})
    insert_close(wh, nov, [])
    assert _restatement_notes(wh, "ws1", "2026-12") == ([], ())

"""Every landing-file kind, fuzzed end to end: through `process_file` (what the landing asset and
`finance-pipeline ingest-file` run) on SQLite and PostgreSQL, and through the sensor and the
ingest job. A file is stored exactly (every record once) or rejected whole: moved to rejected/
beside a report naming the file and the line, with nothing written but its rejected receipt."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from finance_pipeline.definitions import defs
from finance_pipeline.ingest.landing import REJECTED, pending_files, process_file
from finance_pipeline.ingest.landing_assets import landing_folder_sensor
from finance_pipeline.ingest.manual_rows import KIND_TABLES, record_row
from finance_pipeline.lib.ingest_validation import KINDS
from finance_pipeline.resources import warehouse_for
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.fuzz.badfiles import BadFile, bad_files
from finance_pipeline_tests.fuzz.cases import fuzz_settings, tally
from finance_pipeline_tests.fuzz.stored import stored_counts

# Small enough that some generated files (long notes, many rows) are over it.
MAX_FILE_BYTES = 1500


def _land(wh: Warehouse, kind: str, org: str) -> tuple[Path, Path, str]:
    """A new workspace (FX: the landing root, emptied of rates) and the folder its files go in."""
    root = get_settings().resolved_landing_dir
    if kind == "fx_rates":
        with wh.begin() as db:
            db.execute(wh.text("DELETE FROM raw.fx_rates"))
            db.execute(wh.text("DELETE FROM raw.landing_files WHERE workspace_id = '_global'"))
        root.mkdir(parents=True, exist_ok=True)
        return root, root, "_global"
    ws = create_workspace(wh, org, "Fuzz", workspace_id=f"ws_{uuid.uuid4().hex[:10]}")
    folder = root / ws
    folder.mkdir(parents=True)
    return root, folder, ws


def _stored(wh: Warehouse, kind: str, workspace: str) -> list[dict[str, object]]:
    table, key = KIND_TABLES[kind]
    where = "" if kind == "fx_rates" else " WHERE workspace_id = :w"
    rows = wh.rows(f"SELECT * FROM {table}{where}", w=workspace)
    # ordered here, not by the database's collation
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in key))


def _expected(bad: BadFile, workspace: str) -> list[dict[str, object]]:
    return _expected_many([bad], workspace)


def _expected_many(files: list[BadFile], workspace: str) -> list[dict[str, object]]:
    """The rows accepted files of one kind store: the first of each key (later ones are kept
    out as duplicates), in key order."""
    if not files:
        return []
    _table, key = KIND_TABLES[files[0].kind]
    rows: dict[tuple[str, ...], dict[str, object]] = {}
    for bad in files:
        for record in bad.records or []:
            row = record_row(record, workspace, "x", 0)
            rows.setdefault(tuple(str(row[k]) for k in key), row)
    return [rows[k] for k in sorted(rows)]


def _same(stored: dict[str, object], expected: dict[str, object]) -> bool:
    skip = {"source", "ingested_at", "ingested_via", "occurred_at"}
    return all(
        str(stored[k])[:10] == str(v)[:10] if k in ("date", "occurred_on") else stored[k] == v
        for k, v in expected.items()
        if k not in skip
    )


def check_landed(
    wh: Warehouse,
    bad: BadFile,
    path: Path,
    workspace: str,
    oversized: bool,
    before: dict[str, int],
    outcome_status: str,
) -> str:
    """The file's outcome and what the warehouse holds afterwards match its expectation."""
    after = stored_counts(wh)
    changed = {t for t in after if after[t] != before.get(t)}
    rejected = oversized or not bad.accepted
    if rejected:
        assert outcome_status == "rejected", (bad.mutation, outcome_status)
        # nothing written but the file's receipt (status rejected)
        assert changed <= {"raw.landing_files"}, changed
        moved = path.parent / REJECTED / path.name
        assert moved.exists() and not path.exists()
        report = moved.with_name(moved.name + ".errors.txt").read_text()
        assert report.startswith(f"{path.name}: REJECTED")
        if oversized:
            assert "bytes; at most" in report
        elif bad.line is not None:
            assert f"line {bad.line}" in report
        return "rejected (oversized)" if oversized else "rejected"
    assert outcome_status == "accepted", (bad.mutation, outcome_status)
    table = KIND_TABLES[bad.kind][0]
    assert changed <= {table, "raw.landing_files"}, changed
    expected = _expected(bad, workspace)
    stored = _stored(wh, bad.kind, workspace)
    assert len(stored) == len(expected)  # every record once
    assert all(_same(s, e) for s, e in zip(stored, expected, strict=True)), (stored, expected)
    assert after[table] - before[table] == len(expected)
    return "accepted"


@pytest.mark.parametrize("kind", KINDS)
@fuzz_settings(20, shrink=False)
@given(data=st.data())
def test_landed_files_are_stored_exactly_or_rejected_whole(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, kind: str, data: st.DataObject
) -> None:
    monkeypatch.setenv("FP_LANDING_MAX_FILE_BYTES", str(MAX_FILE_BYTES))
    get_settings.cache_clear()
    org = getattr(warehouse, "_fuzz_org", None) or create_organization(warehouse, "Fuzz")
    warehouse._fuzz_org = org  # type: ignore[attr-defined]
    bad = data.draw(bad_files(kind), label="file")
    if bad.max_rows:  # the row limit is the lib's (100,000): covered by the pure fuzz
        bad = data.draw(bad_files(kind).filter(lambda b: not b.max_rows), label="file")
    root, folder, workspace = _land(warehouse, kind, org)
    path = folder / f"{kind}_{uuid.uuid4().hex[:6]}.csv"
    path.write_bytes(bad.data)
    before = stored_counts(warehouse)
    out = process_file(warehouse, path, root)
    outcome = check_landed(
        warehouse, bad, path, workspace, len(bad.data) > MAX_FILE_BYTES, before, out.status
    )
    assert pending_files(root) == []
    tally(f"landing file (process_file, {warehouse.engine.dialect.name}): {kind}", outcome)


@fuzz_settings(3, shrink=False)
@given(data=st.data())
def test_the_sensor_and_the_ingest_job_store_good_files_and_reject_bad_ones(
    data: st.DataObject,
) -> None:
    """One sensor tick over a folder of 2-3 files of any kinds: the run stores the good files, and
    fails naming the rejected ones, which wrote nothing."""
    wh = warehouse_for(get_settings().resolved_warehouse_url)  # the one the job's resource opens
    org = create_organization(wh, "Fuzz")
    kinds = data.draw(
        st.lists(st.sampled_from([k for k in KINDS if k != "fx_rates"]), min_size=2, max_size=3),
        label="kinds",
    )
    _root, folder, workspace = _land(wh, kinds[0], org)
    files = []
    for i, kind in enumerate(kinds):
        bad = data.draw(bad_files(kind).filter(lambda b: not b.max_rows), label=f"file {i}")
        path = folder / f"{kind}_{i}.csv"
        path.write_bytes(bad.data)
        files.append((bad, path))
    with dg.instance_for_test() as instance:
        tick = landing_folder_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        [request] = tick.run_requests
        job = defs.resolve_job_def("ingest_landing_files")
        result = job.execute_in_process(
            run_config=request.run_config, instance=instance, raise_on_error=False
        )
    rejected = [p for b, p in files if not b.accepted]
    assert result.success == (not rejected)
    if rejected:
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.step_failure_data.error.message
        assert f"{len(rejected)} landed file(s) rejected; nothing from them was written" in message
        assert all(p.name in message for p in rejected)
    for bad, path in files:
        assert not path.exists()
        assert (path.parent / (REJECTED if not bad.accepted else "processed") / path.name).exists()
    for kind in set(kinds):
        # every record of the accepted files once (two files may hold the same record)
        want = _expected_many([b for b, _ in files if b.kind == kind and b.accepted], workspace)
        stored = _stored(wh, kind, workspace)
        assert len(stored) == len(want)
        assert all(_same(s, e) for s, e in zip(stored, want, strict=True))
    tally("landing files (sensor + ingest job)", "run failed" if rejected else "run succeeded")


def test_an_oversized_file_is_rejected_unread_through_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from finance_pipeline.cli import main

    monkeypatch.setenv("FP_LANDING_MAX_FILE_BYTES", "1000")
    get_settings.cache_clear()
    wh = warehouse_for(get_settings().resolved_warehouse_url)
    _root, folder, _ws = _land(wh, "costs", create_organization(wh, "Fuzz"))
    path = folder / "costs_big.csv"
    path.write_text(
        "name,amount,currency,category,date\n" + "Vercel,20.00,USD,TOOLS,2024-01-15\n" * 40
    )
    before = stored_counts(wh)
    assert main(["ingest-file", str(path)]) == 1
    err = capsys.readouterr().err
    assert "rejected costs_big.csv: nothing was written" in err
    assert "the file is 1,395 bytes; at most 1,000 are accepted" in err
    after = stored_counts(wh)
    assert {t for t in after if after[t] != before[t]} == {"raw.landing_files"}
    assert (folder / REJECTED / "costs_big.csv").exists()

"""The CSV landing folder: `landing/<workspace_id>/<kind>_*.csv` files, validated whole.

A file with any bad row, or larger than FP_LANDING_MAX_FILE_BYTES, is rejected whole: it moves to `rejected/` beside an `.errors.txt` report
naming each bad row, and nothing from it is written. A good file's rows and its receipt commit in
one transaction, then the file moves to `processed/`. A file seen before (same content) is not
ingested twice. FX rate files are global and may sit in the landing root.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from finance_pipeline.ingest.manual_rows import store_records
from finance_pipeline.lib.ingest_validation import (
    error_report,
    oversized_file,
    parse_landing_file,
)
from finance_pipeline.settings import get_settings
from finance_pipeline.warehouse.db import Warehouse

PROCESSED = "processed"
REJECTED = "rejected"
GLOBAL_WORKSPACE = "_global"


@dataclass
class LandingOutcome:
    """What happened to one landed file."""

    path: str
    workspace_id: str
    status: str  # accepted | rejected | duplicate
    kind: str | None = None
    rows: int = 0
    inserted: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    moved_to: str | None = None


def pending_files(landing_root: Path) -> list[Path]:
    """CSV files waiting in the landing root or a workspace folder, oldest first."""
    if not landing_root.is_dir():
        return []
    found = [p for p in landing_root.glob("*.csv") if p.is_file()]
    for ws_dir in landing_root.iterdir():
        if ws_dir.is_dir() and ws_dir.name not in (PROCESSED, REJECTED):
            found += [p for p in ws_dir.glob("*.csv") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes: the identity of a landed file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _move(path: Path, folder: str) -> Path:
    dest_dir = path.parent / folder
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / path.name
    if dest.exists():
        dest = dest_dir / f"{path.stem}.{int(time.time() * 1000)}{path.suffix}"
    shutil.move(str(path), dest)
    return dest


def _workspace_for(path: Path, landing_root: Path) -> str | None:
    rel = path.relative_to(landing_root)
    return rel.parts[0] if len(rel.parts) == 2 else None


def landing_path_problem(path: Path, landing_root: Path) -> str | None:
    """Why `path` cannot be ingested as a landed file, or None: it must wait in the landing root or
    a workspace folder, not sit outside it or in processed/ or rejected/ (already handled)."""
    try:
        rel = path.resolve().relative_to(landing_root.resolve())
    except ValueError:
        return f"{path} is not inside the landing folder {landing_root}"
    done = [part for part in rel.parts[:-1] if part in (PROCESSED, REJECTED)]
    if done:
        return (
            f"{path} is in {done[0]}/: it was already handled and is kept there as a record. "
            f"To ingest it again, copy it to {landing_root}/<workspace_id>/"
        )
    if len(rel.parts) > 2:
        return f"{path} is too deep: put it in {landing_root}/<workspace_id>/"
    return None


def _known_workspaces(wh: Warehouse) -> set[str]:
    return {r["id"] for r in wh.rows("SELECT id FROM app.workspaces")}


def process_file(wh: Warehouse, path: Path, landing_root: Path) -> LandingOutcome:
    """Validate and ingest one landed file atomically; move it to processed/ or rejected/."""
    where = landing_path_problem(path, landing_root)
    if where:
        # Never move a file that is not waiting: it would land in processed/rejected/.
        raise ValueError(where)
    ws = _workspace_for(path, landing_root)
    limit = get_settings().landing_max_file_bytes
    size = path.stat().st_size
    if size > limit:
        # Never read whole: the verdict needs only its size, the receipt its digest.
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        result = oversized_file(path.name, size, limit)
    else:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        result = parse_landing_file(path.name, data)
    outcome = LandingOutcome(str(path), ws or GLOBAL_WORKSPACE, "accepted", kind=result.kind)
    outcome.rows = result.rows_read
    problems = [str(e) for e in result.errors]
    if result.kind != "fx_rates" and result.ok:
        if ws is None:
            problems.append(
                f"{path.name} is in the landing root; {result.kind} files belong to a workspace: "
                f"put it in landing/<workspace_id>/"
            )
        elif ws not in _known_workspaces(wh):
            problems.append(f"folder {ws!r} is not a known workspace id")
    now = int(time.time())
    already = wh.scalar(
        "SELECT status FROM raw.landing_files WHERE workspace_id = :w AND sha256 = :h",
        w=outcome.workspace_id,
        h=digest,
    )
    if already == "accepted":
        outcome.status = "duplicate"
        outcome.moved_to = str(_move(path, PROCESSED))
        return outcome
    receipt = {
        "sha256": digest,
        "workspace_id": outcome.workspace_id,
        "file_name": path.name,
        "kind": result.kind,
        "processed_at": now,
        "row_count": result.rows_read,
    }
    if problems:
        outcome.status = "rejected"
        outcome.errors = problems
        report = error_report(result, path.name) if result.errors else ""
        report += "".join(f"{p}\n" for p in problems if p not in {str(e) for e in result.errors})
        with wh.begin() as db:
            wh.upsert(
                db,
                "raw.landing_files",
                [{**receipt, "status": "rejected", "errors_json": problems}],
                key=("workspace_id", "sha256"),
            )
        dest = _move(path, REJECTED)
        dest.with_name(dest.name + ".errors.txt").write_text(report)
        outcome.moved_to = str(dest)
        return outcome
    with wh.begin() as db:
        stored = store_records(
            wh,
            db,
            result.kind or "",
            result.records,
            workspace_id=outcome.workspace_id,
            source=f"landing:{path.name}",
            now=now,
        )
        outcome.inserted = stored.inserted
        outcome.duplicates = stored.duplicates + result.duplicate_count
        wh.upsert(
            db,
            "raw.landing_files",
            [
                {
                    **receipt,
                    "status": "accepted",
                    "inserted": outcome.inserted,
                    "duplicates": outcome.duplicates,
                    "errors_json": None,
                }
            ],
            key=("workspace_id", "sha256"),
        )
    outcome.moved_to = str(_move(path, PROCESSED))
    return outcome

"""The report store: files under `<reports dir>/<workspace>/<YYYY-MM>/` plus their catalogue rows.

A file is written atomically (temp file in the same folder, fsync, `os.replace`) and its catalogue
row is inserted in the same transaction: a failed write leaves neither a file nor a row, and a
failed insert removes the file it had just put in place. Storing identical bytes again is a no-op;
different bytes for a version already stored is an error unless the caller asks for a new version,
so a stored report is never silently overwritten (the close relies on it).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from finance_pipeline.tenancy import new_id
from finance_pipeline.warehouse.db import Warehouse

FORMATS = ("csv", "pdf", "json")
# Ids and plan ids become path segments: only characters that cannot climb out or hide a file.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ReportStoreError(RuntimeError):
    """A report cannot be stored as asked (bad name, path outside the store)."""


class ReportVersionConflict(ReportStoreError):
    """Different bytes for a report version already stored; ask for a new version instead."""


class ReportClosed(ReportVersionConflict):
    """Different bytes for a report frozen by a month-end close: only a reopen allows a new one."""


@dataclass(frozen=True)
class ReportKey:
    """What a report is: its workspace, type, period, plan filter (None: all plans) and format."""

    workspace_id: str
    report_type: str
    period_start: date
    period_end: date
    plan_id: str | None = None
    format: str = "csv"

    def validate(self) -> None:
        """Refuse names that could not be stored safely (raise ReportStoreError)."""
        if not _SAFE.match(self.workspace_id):
            raise ReportStoreError(f"workspace id {self.workspace_id!r} is not a safe name")
        if not _TYPE.match(self.report_type):
            raise ReportStoreError(f"report type {self.report_type!r} is not a safe name")
        if self.plan_id is not None and not _SAFE.match(self.plan_id):
            raise ReportStoreError(f"plan id {self.plan_id!r} is not a safe name")
        if self.format not in FORMATS:
            raise ReportStoreError(f"format must be one of {', '.join(FORMATS)}")
        if self.period_end < self.period_start:
            raise ReportStoreError(f"period ends {self.period_end} before {self.period_start}")


@dataclass(frozen=True)
class CatalogueEntry:
    """One stored report file as recorded in app.report_catalogue."""

    id: str
    key: ReportKey
    version: int
    path: str  # relative to the reports dir, '/'-separated
    size_bytes: int
    sha256: str
    close_id: str | None
    export_id: str | None
    created_at: int

    def absolute(self, root: Path) -> Path:
        """The file's location under the reports dir `root`."""
        return resolve_inside(root, self.path)


def _is_whole_month(start: date, end: date) -> bool:
    following = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start.day == 1 and (following - end).days == 1


def file_name(key: ReportKey, version: int) -> str:
    """`<type>-<YYYY-MM>.csv` for a calendar month (the margins API's `margins-2026-04.csv`),
    `<type>-<start>_<end>.csv` otherwise; `-plan-<id>` for a plan filter, `.v<N>` after v1."""
    if _is_whole_month(key.period_start, key.period_end):
        period = key.period_start.strftime("%Y-%m")
    else:
        period = f"{key.period_start.isoformat()}_{key.period_end.isoformat()}"
    plan = f"-plan-{key.plan_id}" if key.plan_id else ""
    suffix = f".v{version}" if version > 1 else ""
    return f"{key.report_type}-{period}{plan}{suffix}.{key.format}"


def relative_path(key: ReportKey, version: int) -> str:
    """Where a report version lives, relative to the reports dir: `<ws>/<YYYY-MM>/<file>`."""
    key.validate()
    return f"{key.workspace_id}/{key.period_start.strftime('%Y-%m')}/{file_name(key, version)}"


def resolve_inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing anything that resolves outside `root` (.., absolute, links)."""
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target == base or not target.is_relative_to(base):
        raise ReportStoreError(f"path {relative!r} escapes the reports dir")
    return target


class ReportWriteError(ReportStoreError):
    """The reports folder refused a file (full, read-only, gone): nothing was stored."""


def write_atomic(target: Path, content: bytes) -> None:
    """Put `content` at `target` all at once: a reader sees the old file or the whole new one.
    The caller serializes writers of one target (store_report's lock). A refusal of the file
    system is a ReportWriteError naming the file, the folder and why."""
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A temp file of this target left by a writer killed before its rename or its cleanup
        # (SIGKILL, power loss). The caller holds the report's lock (store_report), so no live
        # writer owns one: the next write of the target clears it.
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ReportWriteError(
            f"cannot write {target.name} ({len(content):,} bytes) in {target.parent}: {reason}. "
            "Free space or make the reports folder (FP_REPORTS_DIR) writable, then re-run: "
            "nothing was stored."
        ) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the folder is synced (POSIX).
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_COLUMNS = (
    "id, workspace_id, report_type, date_start, date_end, plan_id, format, version, path,"
    " size_bytes, sha256, close_id, export_id, created_at"
)
_KEY_WHERE = (
    "workspace_id = :w AND report_type = :t AND date_start = :a AND date_end = :b"
    " AND COALESCE(plan_id, '') = :p AND format = :f"
)


def _lock_id(key: ReportKey) -> int:
    """A signed 64-bit advisory lock id for one report (workspace, type, period, plan, format)."""
    text = "|".join(str(v) for v in _key_params(key).values())
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _key_params(key: ReportKey) -> dict[str, Any]:
    return {
        "w": key.workspace_id,
        "t": key.report_type,
        "a": key.period_start,
        "b": key.period_end,
        "p": key.plan_id or "",
        "f": key.format,
    }


def _entry(r: dict[str, Any]) -> CatalogueEntry:
    return CatalogueEntry(
        id=r["id"],
        key=ReportKey(
            r["workspace_id"],
            r["report_type"],
            r["date_start"],
            r["date_end"],
            r["plan_id"],
            r["format"],
        ),
        version=int(r["version"]),
        path=r["path"],
        size_bytes=int(r["size_bytes"]),
        sha256=r["sha256"],
        close_id=r["close_id"],
        export_id=r["export_id"],
        created_at=int(r["created_at"]),
    )


def store_report(
    wh: Warehouse,
    root: Path,
    key: ReportKey,
    content: bytes,
    *,
    version: int | None = None,
    new_version_if_changed: bool = False,
    close_id: str | None = None,
    export_id: str | None = None,
) -> CatalogueEntry:
    """Store one report file and its catalogue row; returns the entry (existing if identical).

    Without `version` the latest stored version is compared: identical bytes return it,
    different bytes raise ReportVersionConflict unless `new_version_if_changed` (then the next
    version is written). With `version`, that version is stored or compared the same way.
    """
    key.validate()
    digest = hashlib.sha256(content).hexdigest()
    written: list[Path] = []
    try:
        return _store(
            wh,
            root,
            key,
            content,
            digest,
            version,
            new_version_if_changed,
            close_id,
            export_id,
            written,
        )
    except BaseException:
        # The row is the file's only record: a file whose row did not commit must not stay.
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _store(
    wh: Warehouse,
    root: Path,
    key: ReportKey,
    content: bytes,
    digest: str,
    version: int | None,
    new_version_if_changed: bool,
    close_id: str | None,
    export_id: str | None,
    written: list[Path],
) -> CatalogueEntry:
    """store_report's transaction; appends the path it puts in place to `written`."""
    with wh.begin() as db:
        if not wh.is_sqlite:
            # Two writers of one report would pick the same version and path, and the loser's
            # cleanup would delete the winner's file: serialize them (SQLite's BEGIN IMMEDIATE
            # already does).
            db.execute(wh.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(key)})
        stored = {
            int(r["version"]): r
            for r in wh.read(
                db,
                f"SELECT {_COLUMNS} FROM app.report_catalogue WHERE {_KEY_WHERE}",
                **_key_params(key),
            )
        }
        wanted = version if version is not None else max(stored, default=0) or 1
        existing = stored.get(wanted)
        if existing is not None:
            latest = stored[max(stored)]
            if existing["sha256"] != digest and _frozen(wh, db, latest["close_id"]):
                # A closed month's files are immutable: later changes are restatements, and new
                # content needs the month reopened first (finance-pipeline close reopen).
                raise ReportClosed(
                    f"{latest['path']} is frozen by close {latest['close_id']}; "
                    "reopen the month to store new content"
                )
            if existing["sha256"] == digest:
                entry = _entry(dict(existing))
                # Idempotent re-run; a file lost from disk is put back from the same bytes.
                target = entry.absolute(root)
                if not target.is_file():
                    write_atomic(target, content)
                return entry
            if version is not None or not new_version_if_changed:
                raise ReportVersionConflict(
                    f"{relative_path(key, wanted)} is stored with different content "
                    f"(sha256 {existing['sha256'][:12]}..., now {digest[:12]}...); "
                    "store it as a new version"
                )
            wanted = max(stored) + 1
        rel = relative_path(key, wanted)
        target = resolve_inside(root, rel)
        row = {
            "id": new_id("rpt"),
            "workspace_id": key.workspace_id,
            "report_type": key.report_type,
            "date_start": key.period_start,
            "date_end": key.period_end,
            "plan_id": key.plan_id,
            "format": key.format,
            "version": wanted,
            "path": rel,
            "size_bytes": len(content),
            "sha256": digest,
            "close_id": close_id,
            "export_id": export_id,
            "created_at": int(time.time()),
        }
        write_atomic(target, content)
        written.append(target)
        # Plain SQL, not wh.insert: reflecting the table would warn about its expression index.
        db.execute(
            wh.text(
                f"INSERT INTO app.report_catalogue ({_COLUMNS}) VALUES ("
                + ", ".join(f":{c.strip()}" for c in _COLUMNS.split(","))
                + ")"
            ),
            row,
        )
    return _entry(row)


def _frozen(wh: Warehouse, db: Any, close_id: str | None) -> bool:
    """Whether `close_id` names a close still in force (not reopened)."""
    if close_id is None:
        return False
    rows = wh.read(db, "SELECT status FROM app.closes WHERE id = :i", i=close_id)
    return bool(rows) and rows[0]["status"] == "closed"


def set_close_id(wh: Warehouse, db: Any, catalogue_ids: list[str], close_id: str) -> None:
    """Mark catalogue rows as part of a close's report set (in the close's transaction)."""
    for cid in catalogue_ids:
        db.execute(
            wh.text("UPDATE app.report_catalogue SET close_id = :c WHERE id = :i"),
            {"c": close_id, "i": cid},
        )


def get_entry(wh: Warehouse, catalogue_id: str) -> CatalogueEntry | None:
    """One catalogue entry by id, or None."""
    rows = wh.rows(f"SELECT {_COLUMNS} FROM app.report_catalogue WHERE id = :i", i=catalogue_id)
    return _entry(rows[0]) if rows else None


def list_entries(
    wh: Warehouse,
    workspace_id: str,
    *,
    report_type: str | None = None,
    month: str | None = None,
    latest_only: bool = False,
) -> list[CatalogueEntry]:
    """A workspace's catalogue, newest period first; optionally one type, one period-start month
    ("YYYY-MM") and only each report's latest version."""
    sql = f"SELECT {_COLUMNS} FROM app.report_catalogue WHERE workspace_id = :w"
    params: dict[str, Any] = {"w": workspace_id}
    if report_type is not None:
        sql += " AND report_type = :t"
        params["t"] = report_type
    if month is not None:
        first = date(int(month[:4]), int(month[5:7]), 1)
        following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
        sql += " AND date_start >= :a AND date_start < :b"
        params.update(a=first, b=following)
    entries = [_entry(r) for r in wh.rows(sql, **params)]
    entries.sort(
        key=lambda e: (
            -e.key.period_start.toordinal(),
            e.key.report_type,
            -e.key.period_end.toordinal(),
            e.key.plan_id or "",
            e.key.format,
            -e.version,
        )
    )
    if latest_only:
        seen: set[ReportKey] = set()
        entries = [e for e in entries if not (e.key in seen or seen.add(e.key))]
    return entries


def latest_entry(wh: Warehouse, key: ReportKey) -> CatalogueEntry | None:
    """The latest stored version of a report, or None."""
    rows = wh.rows(
        f"SELECT {_COLUMNS} FROM app.report_catalogue WHERE {_KEY_WHERE}"
        " ORDER BY version DESC LIMIT 1",
        **_key_params(key),
    )
    return _entry(rows[0]) if rows else None

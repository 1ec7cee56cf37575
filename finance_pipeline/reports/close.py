"""The month-end close: freeze a workspace's month (manifest, immutable report set, catalogue
close_id), record later recomputations as restatements, reopen and close again as version N+1."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from finance_pipeline.lib import close as close_lib
from finance_pipeline.lib.alerts import CLOSE_RESTATED
from finance_pipeline.lib.money import shown_units
from finance_pipeline.reports.pdf.pack_data import (
    CheckResult,
    ClosePackData,
    FigureChange,
    RestatementNote,
    close_pack_data,
)
from finance_pipeline.reports.pdf.render import render_close_pack_pages
from finance_pipeline.reports.pdf_tables import store_table_pdf
from finance_pipeline.reports.queries import ReportDataMissing
from finance_pipeline.reports.render import REPORT_TYPES, render_and_store, workspace
from finance_pipeline.reports.store import (
    CatalogueEntry,
    ReportKey,
    list_entries,
    set_close_id,
    store_report,
)
from finance_pipeline.tenancy import new_id
from finance_pipeline.warehouse.db import Warehouse

PACK_TYPE = "close_pack"
# The instant closes, reopens and restatements are recorded at: it decides the local days the
# close_restated alert stands (docs/metrics.md §14); tests pin it.
clock: Callable[[], float] = time.time
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class CloseError(RuntimeError):
    """A close action that cannot be done as asked (bad month, nothing to reopen, no data)."""


@dataclass(frozen=True)
class Close:
    """One version of a month's close (app.closes)."""

    id: str
    workspace_id: str
    month: str
    version: int
    status: str
    manifest: dict[str, Any]
    closed_at: int
    reopened_at: int | None
    reason: str | None


@dataclass(frozen=True)
class CloseOutcome:
    """What `run_close` did: closed (a new version) or found the month already closed."""

    status: str  # closed | already_closed
    close: Close
    pack: CatalogueEntry | None
    restatement_id: str | None = None
    pages: int = 0  # the pack's page count, when rendered


def month_bounds(month: str) -> tuple[date, date]:
    """First and last day of a "YYYY-MM" month (CloseError when malformed)."""
    if not _MONTH.match(month):
        raise CloseError(f"month must be YYYY-MM, got {month!r}")
    first = date(int(month[:4]), int(month[5:7]), 1)
    following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, date.fromordinal(following.toordinal() - 1)


def _doc(value: Any) -> Any:
    """A JSON column as read: decoded already (reads decode by column name) or still text."""
    return json.loads(value) if isinstance(value, str) else value


def _close(r: Mapping[str, Any]) -> Close:
    return Close(
        r["id"],
        r["workspace_id"],
        r["month"],
        int(r["version"]),
        r["status"],
        _doc(r["manifest_json"]),
        int(r["closed_at"]),
        None if r["reopened_at"] is None else int(r["reopened_at"]),
        r["reason"],
    )


def latest_close(wh: Warehouse, workspace_id: str, month: str) -> Close | None:
    """The month's newest close version, or None if it was never closed."""
    rows = wh.rows(
        "SELECT * FROM app.closes WHERE workspace_id = :w AND month = :m"
        " ORDER BY version DESC LIMIT 1",
        w=workspace_id,
        m=month,
    )
    return _close(rows[0]) if rows else None


def closed_workspaces(wh: Warehouse, month: str) -> dict[str, tuple[int, int]]:
    """The workspaces whose newest close version of the month is closed (not reopened), with that
    version and when it was closed (epoch seconds): what a new close of the month would leave
    as it is."""
    newest: dict[str, Mapping[str, Any]] = {}
    for r in wh.rows(
        "SELECT workspace_id, version, status, closed_at FROM app.closes WHERE month = :m",
        m=month,
    ):
        seen = newest.get(r["workspace_id"])
        if seen is None or int(r["version"]) > int(seen["version"]):
            newest[r["workspace_id"]] = r
    return {
        ws: (int(r["version"]), int(r["closed_at"]))
        for ws, r in sorted(newest.items())
        if r["status"] == "closed"
    }


def list_closes(wh: Warehouse, workspace_id: str | None = None) -> list[Close]:
    """Every close version, by workspace, month and version."""
    sql = "SELECT * FROM app.closes"
    params: dict[str, Any] = {}
    if workspace_id is not None:
        sql += " WHERE workspace_id = :w"
        params["w"] = workspace_id
    rows = wh.rows(sql + " ORDER BY workspace_id, month, version", **params)
    return [_close(r) for r in rows]


def code_version() -> dict[str, str]:
    """The package version and the git commit of the checkout, or "unknown" outside git."""
    try:
        version = metadata.version("finance_pipeline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"package": version, "git_commit": commit or "unknown"}


def data_watermarks(wh: Warehouse, workspace_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Newest data per Stripe stream (raw.sync_state.high_water) and per core build
    (core.build_state.watermark), Unix seconds: what the close's figures were computed from."""
    streams = {
        r["stream"]: None if r["high_water"] is None else int(r["high_water"])
        for r in wh.rows(
            "SELECT stream, high_water FROM raw.sync_state WHERE workspace_id = :w", w=workspace_id
        )
    }
    builds = {
        r["asset"]: None if r["watermark"] is None else int(r["watermark"])
        for r in wh.rows(
            "SELECT asset, watermark FROM core.build_state WHERE workspace_id = :w",
            w=workspace_id,
        )
    }
    return streams, builds


def _fx_rates(wh: Warehouse, start: date, end: date) -> list[tuple[str, str, date, str]]:
    """Every FX rate of the month's days (base, currency, day, rate as stored)."""
    rows = wh.rows(
        "SELECT base, currency, date, rate FROM core.fx_rates WHERE date >= :a AND date <= :b",
        a=start,
        b=end,
    )
    out = []
    for r in rows:
        day = r["date"] if isinstance(r["date"], date) else date.fromisoformat(str(r["date"])[:10])
        out.append((r["base"], r["currency"], day, str(r["rate"])))
    return out


def _units(shown_micros: int | None, grain: int) -> str | None:
    # As printed: the reporting currency's decimals (2 for USD, none for JPY).
    return None if shown_micros is None else str(shown_units(shown_micros, grain))


def figures(data: ClosePackData) -> dict[str, str | None]:
    """The pack's KPI figures as decimal strings (money: shown amounts; rates: percent): the MRR
    roll-forward, headline KPIs, the month's revenue, refunds, expenses, net and margins totals."""
    out: dict[str, str | None] = {}
    for line in data.roll_forward:
        out[f"MRR roll-forward: {line.label}"] = _units(line.shown, data.grain)
    for k in data.kpis:
        out[f"KPI: {k.label}"] = None if k.current_shown is None else str(k.current_shown)
    month = next((m for m in data.money_months if m.month == data.month), None)
    # §10: revenue excludes refunds (negative, apart) and net = revenue - expenses; revenue net of
    # refunds is what a late refund restates.
    shown = {
        n: getattr(month, n) if month else 0 for n in ("revenue", "refunds", "expenses", "net")
    }
    out["Revenue: revenue"] = _units(shown["revenue"], data.grain)
    out["Revenue: refunds"] = _units(shown["refunds"], data.grain)
    out["Revenue: net of refunds"] = _units(shown["revenue"] + shown["refunds"], data.grain)
    out["Revenue: expenses"] = _units(shown["expenses"], data.grain)
    out["Revenue: net (revenue - expenses)"] = _units(shown["net"], data.grain)
    out["Margins: revenue"] = _units(data.margin_total.revenue, data.grain)
    out["Margins: cost"] = _units(data.margin_total.cost, data.grain)
    out["Margins: margin"] = _units(data.margin_total.margin, data.grain)
    blended = data.blended_margin_percent
    out["Margins: blended margin %"] = None if blended is None else str(blended)
    return out


def month_reports(wh: Warehouse, workspace_id: str, month: str) -> list[CatalogueEntry]:
    """The month's report set from the catalogue: each report type's latest CSV and table PDF
    (whole month, all plans)."""
    start, end = month_bounds(month)
    return [
        e
        for e in list_entries(wh, workspace_id, month=month, latest_only=True)
        if e.key.format in ("csv", "pdf")
        and e.key.report_type in REPORT_TYPES
        and e.key.plan_id is None
        and (e.key.period_start, e.key.period_end) == (start, end)
    ]


def month_csvs(wh: Warehouse, workspace_id: str, month: str) -> list[CatalogueEntry]:
    """The CSVs of the month's report set (what the close pack attaches)."""
    return [e for e in month_reports(wh, workspace_id, month) if e.key.format == "csv"]


def render_month_csvs(wh: Warehouse, root: Path, workspace_id: str, month: str) -> int:
    """Render and store the month's six reports, CSV and table PDF (what the report assets do);
    returns how many report types were stored. A report with no data at all for the month is left out."""
    ws = workspace(wh, workspace_id)
    start, end = month_bounds(month)
    n = 0
    for report_type in REPORT_TYPES:
        try:
            _, table = render_and_store(wh, root, ws, report_type, start, end)
        except ReportDataMissing as exc:
            if exc.days_found:
                raise
            continue
        store_table_pdf(wh, root, ws, report_type, start, end, table=table)
        n += 1
    return n


def _restatement_notes(
    wh: Warehouse, workspace_id: str, month: str
) -> tuple[list[str], tuple[RestatementNote, ...]]:
    """Restatements of months before `month` that no earlier month's close pack listed yet."""
    listed: set[str] = set()
    for c in list_closes(wh, workspace_id):
        if c.month < month:
            listed.update(c.manifest.get("restatements_listed", []))
    rows = wh.rows(
        "SELECT r.id, r.month, r.detected_at, r.diff_json, c.version FROM app.restatements r"
        " JOIN app.closes c ON c.id = r.close_id WHERE r.workspace_id = :w AND r.month < :m"
        " ORDER BY r.month, r.detected_at, r.id",
        w=workspace_id,
        m=month,
    )
    rows = [r for r in rows if r["id"] not in listed]
    notes = tuple(
        RestatementNote(
            r["month"],
            int(r["version"]),
            datetime.fromtimestamp(int(r["detected_at"]), UTC),
            tuple(_change(d) for d in close_lib.diff_from_json(_doc(r["diff_json"]))),
        )
        for r in rows
    )
    return [r["id"] for r in rows], notes


def _change(d: close_lib.FigureDiff) -> FigureChange:
    return FigureChange(d.metric, d.as_closed, d.restated, d.change)


def run_close(
    wh: Warehouse,
    root: Path,
    workspace_id: str,
    month: str,
    *,
    checks: Sequence[CheckResult] = (),
) -> CloseOutcome:
    """Close the month: render and store the pack (the catalogue's CSVs attached) and freeze the
    report set as a new close version; a closed month is only checked for restatements."""
    ws = workspace(wh, workspace_id)
    start, end = month_bounds(month)
    previous = latest_close(wh, ws.id, month)
    if previous is not None and previous.status == "closed":
        return CloseOutcome("already_closed", previous, None, record_restatement(wh, previous))
    reports = month_reports(wh, ws.id, month)
    csvs = [e for e in reports if e.key.format == "csv"]
    if not csvs:
        raise CloseError(f"no CSV reports of {month} in the catalogue for {ws.id}; run them first")
    streams, builds = data_watermarks(wh, ws.id)
    generated_at = close_lib.data_as_of(month, streams, builds)
    data = close_pack_data(wh, ws.id, start, generated_at=generated_at, checks=checks)
    figs = figures(data)
    version = 1 if previous is None else previous.version + 1
    listed, notes = _restatement_notes(wh, ws.id, month)
    restated: tuple[FigureChange, ...] = ()
    if previous is not None:
        diffs = close_lib.diff_figures(previous.manifest["figures"], figs)
        restated = tuple(_change(d) for d in diffs)
    data = replace(
        data,
        close_version=version,
        reopen_reason=previous.reason if previous else None,
        restated=restated,
        restatements=notes,
    )
    attachments = {Path(e.path).name: e.absolute(root).read_bytes() for e in csvs}
    pdf, pages = render_close_pack_pages(data, attachments)
    pack = store_report(
        wh, root, ReportKey(ws.id, PACK_TYPE, start, end, None, "pdf"), pdf,
        new_version_if_changed=True,
    )  # fmt: skip
    report_set = [*reports, pack]
    manifest = close_lib.build_manifest(
        workspace_id=ws.id,
        month=month,
        version=version,
        streams=streams,
        builds=builds,
        fx_rates=_fx_rates(wh, start, end),
        code_version=code_version(),
        checks={c.name: c.passed for c in data.checks},
        files={e.path: e.sha256 for e in report_set},
        figures=figs,
        restatements_listed=listed,
        reopened_from=previous.id if previous else None,
    )
    manifest["generated_at"] = generated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    row = {
        "id": new_id("close"),
        "workspace_id": ws.id,
        "month": month,
        "version": version,
        "status": "closed",
        "manifest_json": close_lib.canonical_json(manifest),
        "closed_at": int(clock()),
        "reopened_at": None,
        "reason": None,
    }
    insert_close(wh, row, [e.id for e in report_set])
    return CloseOutcome("closed", _close(row), pack, pages=pages)


def insert_close(wh: Warehouse, row: Mapping[str, Any], catalogue_ids: list[str]) -> None:
    """Record a close version and tag its report set's catalogue rows, in one transaction."""
    with wh.begin() as db:
        db.execute(
            wh.text(
                "INSERT INTO app.closes (id, workspace_id, month, version, status, manifest_json,"
                " closed_at, reopened_at, reason) VALUES (:id, :workspace_id, :month, :version,"
                " :status, :manifest_json, :closed_at, :reopened_at, :reason)"
            ),
            dict(row),
        )
        set_close_id(wh, db, catalogue_ids, row["id"])


def reopen(wh: Warehouse, workspace_id: str, month: str, reason: str) -> Close:
    """Reopen a closed month so the next close run can issue version N+1 (reason required)."""
    month_bounds(month)
    if not reason.strip():
        raise CloseError("a reopen needs a reason")
    current = latest_close(wh, workspace_id, month)
    if current is None or current.status != "closed":
        raise CloseError(f"{workspace_id} {month} is not closed; nothing to reopen")
    now = int(clock())
    with wh.begin() as db:
        db.execute(
            wh.text(
                "UPDATE app.closes SET status = 'reopened', reopened_at = :t, reason = :r"
                " WHERE id = :i AND status = 'closed'"
            ),
            {"t": now, "r": reason.strip(), "i": current.id},
        )
    return replace(current, status="reopened", reopened_at=now, reason=reason.strip())


def record_restatement(wh: Warehouse, close: Close, *, now: int | None = None) -> str | None:
    """Recompute a closed month's figures; a new difference from as-closed is stored in
    app.restatements and its id returned. Closed files are not touched. The mart.alerts asset raises
    close_restated from the row until the month is closed again (docs/metrics.md §14)."""
    start, _ = month_bounds(close.month)
    generated_at = datetime.strptime(close.manifest["generated_at"], "%Y-%m-%dT%H:%M:%SZ")
    data = close_pack_data(
        wh, close.workspace_id, start, generated_at=generated_at.replace(tzinfo=UTC)
    )
    figs = figures(data)
    diffs = close_lib.diff_figures(close.manifest["figures"], figs)
    if not diffs:
        return None
    digest = close_lib.figures_sha256(figs)
    last = wh.rows(
        "SELECT figures_sha256 FROM app.restatements WHERE close_id = :c"
        " ORDER BY detected_at DESC, id DESC LIMIT 1",
        c=close.id,
    )
    if last and last[0]["figures_sha256"] == digest:
        return None  # already recorded: the same restated figures raise one alert, not one a day
    return insert_restatement(wh, close, diffs, digest, int(clock()) if now is None else now)


def insert_restatement(
    wh: Warehouse, close: Close, diffs: Sequence[close_lib.FigureDiff], digest: str, now: int
) -> str:
    """Store one restatement of a close (its `alert` column names the alert type it raises);
    returns its id."""
    rid = new_id("rst")
    with wh.begin() as db:
        db.execute(
            wh.text(
                "INSERT INTO app.restatements (id, workspace_id, month, close_id, detected_at,"
                " diff_json, figures_sha256, alert) VALUES (:i, :w, :m, :c, :t, :d, :s, :a)"
            ),
            {
                "i": rid,
                "w": close.workspace_id,
                "m": close.month,
                "c": close.id,
                "t": now,
                "d": json.dumps(close_lib.diff_json(diffs), sort_keys=True),
                "s": digest,
                "a": CLOSE_RESTATED,
            },
        )
    return rid


def check_closed_months(wh: Warehouse, workspace_id: str | None = None) -> list[str]:
    """Compare every closed month (in force) with its recomputed figures; new restatement ids."""
    out = []
    for c in list_closes(wh, workspace_id):
        if c.status == "closed":
            rid = record_restatement(wh, c)
            if rid:
                out.append(rid)
    return out


def restatements(wh: Warehouse, workspace_id: str, month: str | None = None) -> list[dict]:
    """Recorded restatements (newest last) with their diff decoded."""
    sql = "SELECT * FROM app.restatements WHERE workspace_id = :w"
    params: dict[str, Any] = {"w": workspace_id}
    if month is not None:
        sql += " AND month = :m"
        params["m"] = month
    rows = wh.rows(sql + " ORDER BY detected_at, id", **params)
    return [{**r, "diff": _doc(r["diff_json"])} for r in rows]


def file_sha256(path: Path) -> str:
    """sha256 of a file on disk (to verify a closed file is byte-unchanged)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()

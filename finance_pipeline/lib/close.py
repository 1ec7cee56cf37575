"""The month-end close's pure logic: the manifest a close freezes, the moment its data is as of,
and the per-metric diff of restated versus as-closed figures (exact decimal strings)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

MANIFEST_KIND = "month_end_close"


@dataclass(frozen=True)
class FigureDiff:
    """One pack figure that moved: as closed, restated, and restated minus as-closed."""

    metric: str
    as_closed: str | None
    restated: str | None
    change: str | None  # None when either side is empty (a rate with a zero denominator)


def canonical_json(doc: Any) -> str:
    """Sorted, indented JSON: the same manifest always has the same text (and hash)."""
    return json.dumps(doc, sort_keys=True, indent=2, separators=(",", ": ")) + "\n"


def figures_sha256(figures: Mapping[str, str | None]) -> str:
    """A fingerprint of a set of figures, to tell a new restatement from one already recorded."""
    return hashlib.sha256(canonical_json(dict(figures)).encode()).hexdigest()


def build_manifest(
    *,
    workspace_id: str,
    month: str,
    version: int,
    streams: Mapping[str, int | None],
    builds: Mapping[str, int | None],
    fx_rates: Sequence[tuple[str, str, date, str]],
    code_version: Mapping[str, str],
    checks: Mapping[str, bool],
    files: Mapping[str, str],
    figures: Mapping[str, str | None],
    restatements_listed: Sequence[str] = (),
    reopened_from: str | None = None,
) -> dict[str, Any]:
    """What a close froze: data watermarks (Unix seconds), FX rates, code version, checks, each
    report file's sha256 (by path), the as-closed figures and the restatements its pack lists."""
    rates: dict[str, dict[str, str]] = {}
    for base, currency, day, rate in sorted(fx_rates, key=lambda r: (r[0], r[1], r[2])):
        rates.setdefault(f"{base.lower()}/{currency.lower()}", {})[day.isoformat()] = str(rate)
    return {
        "kind": MANIFEST_KIND,
        "workspace_id": workspace_id,
        "month": month,
        "version": version,
        "watermarks": {
            "streams": dict(sorted(streams.items())),
            "builds": dict(sorted(builds.items())),
        },
        "fx_rates": rates,
        "code_version": dict(sorted(code_version.items())),
        "checks": dict(sorted(checks.items())),
        "files": dict(sorted(files.items())),
        "figures": dict(sorted(figures.items())),
        "restatements_listed": sorted(restatements_listed),
        "reopened_from": reopened_from,
    }


def data_as_of(
    month: str, streams: Mapping[str, int | None], builds: Mapping[str, int | None]
) -> datetime:
    """The close's generated_at: the newest data watermark (UTC, to the second), or midnight UTC
    after the month's last day when nothing has one. Deterministic, so a re-render is identical."""
    marks = [v for v in (*streams.values(), *builds.values()) if v is not None]
    if marks:
        return datetime.fromtimestamp(max(marks), UTC)
    first = date(int(month[:4]), int(month[5:7]), 1)
    following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return datetime(following.year, following.month, following.day, tzinfo=UTC)


def diff_figures(
    as_closed: Mapping[str, str | None], restated: Mapping[str, str | None]
) -> list[FigureDiff]:
    """Every figure whose value differs, in as-closed order then new figures; change is exact."""
    out = []
    for metric in [*as_closed, *(k for k in restated if k not in as_closed)]:
        before, after = as_closed.get(metric), restated.get(metric)
        if before == after:
            continue
        # Values, not spellings: a JPY month closed as "1234.00" is not restated by "1234".
        if before is not None and after is not None and Decimal(before) == Decimal(after):
            continue
        change = None
        if before is not None and after is not None:
            change = _signed(Decimal(after) - Decimal(before))
        out.append(FigureDiff(metric, before, after, change))
    return out


def _signed(value: Decimal) -> str:
    return f"+{value}" if value > 0 else str(value)


def diff_json(diffs: Sequence[FigureDiff]) -> list[dict[str, str | None]]:
    """The diff as stored in app.restatements.diff_json."""
    return [
        {"metric": d.metric, "as_closed": d.as_closed, "restated": d.restated, "change": d.change}
        for d in diffs
    ]


def diff_from_json(rows: Sequence[Mapping[str, Any]]) -> list[FigureDiff]:
    """The stored diff back as FigureDiff lines."""
    return [FigureDiff(r["metric"], r["as_closed"], r["restated"], r["change"]) for r in rows]

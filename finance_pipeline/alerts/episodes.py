"""mart.alert_episodes: the episodes of mart.alerts, rebuilt after each window write (docs/metrics.md §14).

A run records the days it evaluated (mart.alert_evaluated_days), then rebuilds, from the stored daily
rows, the episodes that overlap the window or its neighbouring days, whole (lib.alerts
refresh_episodes), and links each daily row of those episodes to its episode. Every other episode
is untouched and stays valid, so the stored episodes always equal those of one run over all stored
days, whatever the order and split of the runs.

Rows written before migration 0012 have no episode and their days no evaluation record: episodes
start at the first day evaluated since, until one backfill of mart.alerts over the history.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import date, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from finance_pipeline.lib.alerts import (
    Alert,
    Episode,
    candidate_event_ids,
    episode_spans,
    refresh_episodes,
)
from finance_pipeline.lib.cfo_daily import as_date
from finance_pipeline.warehouse.db import Warehouse

_DAY = timedelta(days=1)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def stored_alert(row: dict[str, Any]) -> Alert:
    """A mart.alerts row as the lib.alerts Alert it was written from."""
    return Alert(
        row["alert_id"],
        row["workspace_id"],
        as_date(row["day"]),
        row["type"],
        row["severity"],
        row["message"],
        _json(row["payload_json"]) or {},
        row["subject"],
    )


def stored_episode(row: dict[str, Any]) -> Episode:
    """A mart.alert_episodes row as a lib.alerts Episode (first / last alerts rebuilt from it)."""
    ws, kind, subject = row["workspace_id"], row["type"], row["subject"]
    opened, last = as_date(row["opened_on"]), as_date(row["last_active_on"])
    return Episode(
        row["episode_id"],
        ws,
        kind,
        subject,
        opened,
        last,
        None if row["resolved_on"] is None else as_date(row["resolved_on"]),
        row["peak_severity"],
        row["severity"],
        Alert(
            row["first_alert_id"],
            ws,
            opened,
            kind,
            row["first_severity"],
            row["first_message"],
            _json(row["first_payload_json"]) or {},
            subject,
        ),
        Alert(
            row["last_alert_id"],
            ws,
            last,
            kind,
            row["severity"],
            row["last_message"],
            _json(row["last_payload_json"]) or {},
            subject,
        ),
    )


def episode_row(ep: Episode) -> dict[str, Any]:
    """A mart.alert_episodes row."""
    return {
        "workspace_id": ep.workspace_id,
        "episode_id": ep.id,
        "type": ep.type,
        "subject": ep.subject,
        "opened_on": ep.opened_on,
        "last_active_on": ep.last_active_on,
        "resolved_on": ep.resolved_on,
        "status": ep.status,
        "peak_severity": ep.peak_severity,
        "severity": ep.severity,
        "first_severity": ep.first.severity,
        "first_alert_id": ep.first.id,
        "last_alert_id": ep.last.id,
        "first_message": ep.first.message,
        "last_message": ep.last.message,
        "first_payload_json": ep.first.payload,
        "last_payload_json": ep.last.payload,
    }


def _rows(db: Connection, wh: Warehouse, sql: str, **params: Any) -> list[dict[str, Any]]:
    # Reads go through the writing connection: they must see this transaction's own rows.
    return [dict(r._mapping) for r in db.execute(wh.text(sql), params)]


def rebuild_episodes(
    db: Connection, wh: Warehouse, workspace_id: str, start: date, end: date
) -> list[Episode]:
    """After the window start..end of a workspace was rewritten (same transaction): record its days
    as evaluated, rebuild the episodes it can change and link their daily rows. Returns them."""
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    wh.upsert(
        db,
        "mart.alert_evaluated_days",
        [{"workspace_id": workspace_id, "day": d} for d in days],
        key=("workspace_id", "day"),
    )
    touching = [
        (
            (workspace_id, r["type"], r["subject"]),
            as_date(r["opened_on"]),
            as_date(r["last_active_on"]),
        )
        for r in _rows(
            db,
            wh,
            "SELECT type, subject, opened_on, last_active_on FROM mart.alert_episodes"
            " WHERE workspace_id = :w AND last_active_on >= :a AND opened_on <= :b",
            w=workspace_id,
            a=start - _DAY,
            b=end + _DAY,
        )
    ]
    lo = min([start] + [t[1] for t in touching])
    hi = max([end] + [t[2] for t in touching])
    stored = _rows(
        db,
        wh,
        "SELECT * FROM mart.alerts WHERE workspace_id = :w AND day >= :a AND day <= :b",
        w=workspace_id,
        a=start,
        b=end,
    )
    # Outside the window only the types whose episodes reach out are read, over their reach: a
    # year-long runway episode must not make every run read a year of per-customer alerts.
    reach: dict[str, tuple[date, date]] = {}
    for (_, kind, _), (a, b) in episode_spans(touching, start, end).items():
        ra, rb = reach.get(kind, (a, b))
        reach[kind] = (min(ra, a), max(rb, b))
    for kind, (a, b) in sorted(reach.items()):
        if a < start or b > end:
            stored += _rows(
                db,
                wh,
                "SELECT * FROM mart.alerts WHERE workspace_id = :w AND type = :t"
                " AND day >= :a AND day <= :b AND (day < :s OR day > :e)",
                w=workspace_id,
                t=kind,
                a=a,
                b=b,
                s=start,
                e=end,
            )
    evaluated = {
        as_date(r["day"])
        for r in _rows(
            db,
            wh,
            "SELECT day FROM mart.alert_evaluated_days"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b",
            w=workspace_id,
            a=lo,
            b=hi + _DAY,
        )
    }
    spans, fresh = refresh_episodes(
        touching, [stored_alert(r) for r in stored], evaluated, start, end
    )
    for (_, kind, subject), (a, b) in sorted(spans.items()):
        db.execute(
            wh.text(
                "DELETE FROM mart.alert_episodes WHERE workspace_id = :w AND type = :t"
                " AND subject = :s AND opened_on >= :a AND opened_on <= :b"
            ),
            {"w": workspace_id, "t": kind, "s": subject, "a": a, "b": b},
        )
    if fresh:
        db.execute(wh.table("mart.alert_episodes").insert(), [episode_row(e) for e in fresh])
    _link(db, wh, stored, fresh)
    return fresh


def _link(
    db: Connection, wh: Warehouse, stored: list[dict[str, Any]], episodes: Iterable[Episode]
) -> None:
    """Set episode_id / opens_episode on the daily rows of `episodes` where they differ."""
    by_key: dict[tuple[str, str, date], tuple[str, bool]] = {}
    for ep in episodes:
        d = ep.opened_on
        while d <= ep.last_active_on:
            by_key[(ep.type, ep.subject, d)] = (ep.id, d == ep.opened_on)
            d += _DAY
    updates = []
    for r in stored:
        target = by_key.get((r["type"], r["subject"], as_date(r["day"])))
        if target is None:
            continue
        if (r["episode_id"], bool(r["opens_episode"])) != target:
            updates.append(
                {
                    "w": r["workspace_id"],
                    "d": as_date(r["day"]),
                    "a": r["alert_id"],
                    "e": target[0],
                    "o": target[1],
                }
            )
    if updates:
        db.execute(
            wh.text(
                "UPDATE mart.alerts SET episode_id = :e, opens_episode = :o"
                " WHERE workspace_id = :w AND day = :d AND alert_id = :a"
            ),
            updates,
        )


def episodes_due(wh: Warehouse, workspace_id: str, day: date) -> list[Episode]:
    """The episodes a webhook may tell about on `day`: active on it or resolved on it."""
    return [
        stored_episode(r)
        for r in wh.rows(
            "SELECT * FROM mart.alert_episodes WHERE workspace_id = :w"
            " AND (last_active_on = :d OR resolved_on = :d) ORDER BY type, subject, opened_on",
            w=workspace_id,
            d=day,
        )
    ]


def delivered_event_ids(
    wh: Warehouse, workspace_id: str, episodes: Collection[Episode]
) -> set[str]:
    """Which events these episodes could have been sent under the delivery log records as
    delivered (whatever day they were sent on)."""
    ids = {eid for ep in episodes for eid in candidate_event_ids(ep)}
    if not ids:
        return set()
    rows = wh.rows_in(
        "SELECT alert_id FROM app.alert_deliveries WHERE workspace_id = :w"
        " AND status = 'delivered'",
        "alert_id",
        ids,
        w=workspace_id,
    )
    return {r["alert_id"] for r in rows}

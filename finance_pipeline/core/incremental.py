"""Incremental builds of the core tables: per workspace, what raw held at the last build, and which
source objects changed since then.

Each raw row carries the instant it was written: `synced_at` (the sync's clock when its pass
started; every upsert sets it, changed or not) or `ingested_at` (landing and API rows, insert-only).
core.build_state keeps, per workspace and asset, the largest such instant already built from each
source table. A run reads the new largest instants first, so rows written while it runs are seen
by the next one. A source table with a Stripe pass still running keeps its watermark below that
pass's clock: the pass writes more rows stamped with it after this run has read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from finance_pipeline.lib.ledger import ledger_entry_id
from finance_pipeline.stripe_sync.streams import STREAMS
from finance_pipeline.tenancy import Workspace
from finance_pipeline.warehouse.db import Warehouse

# Bump to rebuild every workspace fully on the next run after the builder's logic changed.
BUILD_VERSION = "1"
FX_SOURCE = "core.fx_rates"

LEDGER_SOURCES: dict[str, str] = {
    "raw.stripe_charges": "synced_at",
    "raw.stripe_refunds": "synced_at",
    "raw.stripe_invoices": "synced_at",
    "raw.stripe_invoice_payments": "synced_at",
    "raw.stripe_balance_transactions": "synced_at",
    "raw.manual_revenue": "ingested_at",
    "raw.cost_records": "ingested_at",
    "raw.expense_events": "ingested_at",
    "raw.usage_costs": "ingested_at",
}
HISTORY_SOURCES: dict[str, str] = {
    "raw.stripe_subscriptions": "synced_at",
    "raw.stripe_subscription_items": "synced_at",
    "raw.stripe_events": "synced_at",
    "raw.stripe_invoices": "synced_at",
    "raw.stripe_invoice_lines": "synced_at",
    "raw.stripe_invoice_payments": "synced_at",
    "raw.stripe_charges": "synced_at",
    "raw.stripe_prices": "synced_at",
}
# Landing rows (insert-only, keyed by external_id), one ledger entry each, in LedgerBuilder.manual order.
MANUAL_TABLES = ("raw.manual_revenue", "raw.cost_records", "raw.expense_events", "raw.usage_costs")


def _stream_tables() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in STREAMS.values():
        out[s.name] = [s.table, *[sub.table for sub in s.sublists]]
    return out


# A watermark is [largest stamp, rows carrying exactly that stamp]: stamps are whole seconds, so
# rows written later in the same second as the last build's largest one are known by the count.
Mark = tuple[int, int] | None


@dataclass
class BuildPlan:
    """What one run does for one workspace and asset."""

    workspace_id: str
    mode: str  # full | incremental
    reason: str
    settings_hash: str
    watermarks: dict[str, Mark]
    # source -> rows stamped after this were not built yet
    since_stamp: dict[str, int] = field(default_factory=dict)

    def since(self, source: str) -> int:
        """Rows of `source` stamped after this were not built yet."""
        return self.since_stamp.get(source, -1)


def settings_hash(asset: str, ws: Workspace) -> str:
    """The workspace settings an asset's rows depend on, hashed (with the build version)."""
    used: dict[str, Any] = {"version": BUILD_VERSION}
    if asset == "core.ledger":
        used |= {"reporting_currency": ws.reporting_currency, "time_zone": ws.time_zone}
    return hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()[:16]


def _scope(source: str, ws: Workspace) -> tuple[str, dict[str, Any]]:
    """The rows of `source` a workspace's build reads (FX rates are global, per base)."""
    if source == FX_SOURCE:
        return "base = :s", {"s": ws.reporting_currency}
    return "workspace_id = :s", {"s": ws.id}


def _column(source: str, sources: Mapping[str, str]) -> str:
    return "ingested_at" if source == FX_SOURCE else sources[source]


def _count_at(wh: Warehouse, ws: Workspace, source: str, column: str, stamp: int) -> int:
    where, params = _scope(source, ws)
    return int(
        wh.scalar(
            f"SELECT COUNT(*) FROM {source} WHERE {where} AND {column} = :t", t=stamp, **params
        )
        or 0
    )


def current_watermarks(
    wh: Warehouse, ws: Workspace, sources: Mapping[str, str], fx: bool
) -> dict[str, Mark]:
    """The largest stamp in each source table now (capped below the clock of a running pass),
    with the number of rows carrying it."""
    running: dict[str, int] = {}
    tables = _stream_tables()
    for r in wh.rows(
        "SELECT stream, last_attempt_at FROM raw.sync_state"
        " WHERE workspace_id = :w AND status = 'running'",
        w=ws.id,
    ):
        if r["last_attempt_at"] is not None:
            for table in tables.get(r["stream"], ()):
                # The pass stamps every row with its start clock and is still writing: rows
                # with that stamp are built again by the next run.
                running[table] = min(running.get(table, 2**62), int(r["last_attempt_at"]) - 1)
    marks: dict[str, Mark] = {}
    for source in [*sources, *([FX_SOURCE] if fx else [])]:
        column = _column(source, sources)
        where, params = _scope(source, ws)
        cap = running.get(source)
        value = wh.scalar(
            f"SELECT MAX({column}) FROM {source} WHERE {where}"
            + ("" if cap is None else f" AND {column} <= :cap"),
            **params,
            **({} if cap is None else {"cap": cap}),
        )
        marks[source] = (
            None if value is None else (int(value), _count_at(wh, ws, source, column, int(value)))
        )
    return marks


def plan_build(
    wh: Warehouse,
    ws: Workspace,
    asset: str,
    sources: Mapping[str, str],
    *,
    fx: bool,
    force_full: bool,
) -> BuildPlan:
    """Full or incremental, and the watermarks this run will store."""
    marks = current_watermarks(wh, ws, sources, fx)
    digest = settings_hash(asset, ws)
    rows = wh.rows(
        "SELECT settings_hash, watermarks_json FROM core.build_state"
        " WHERE workspace_id = :w AND asset = :a",
        w=ws.id,
        a=asset,
    )
    plan = BuildPlan(ws.id, "full", "", digest, marks)
    if force_full:
        plan.reason = "full rebuild requested"
        return plan
    if not rows:
        plan.reason = "no earlier build"
        return plan
    if rows[0]["settings_hash"] != digest:
        plan.reason = "workspace settings (reporting currency, time zone) changed"
        return plan
    previous = dict(rows[0]["watermarks_json"])
    if set(previous) != set(marks):
        plan.reason = "sources differ from the last build"
        return plan
    for source, mark in previous.items():
        if mark is None:
            plan.since_stamp[source] = -1
            continue
        stamp, count = int(mark[0]), int(mark[1])
        column = _column(source, sources)
        # More rows with the last build's largest stamp: some came after it read, in that second
        # (fewer is no sign: rows upserted again since carry a later stamp, seen anyway).
        again = _count_at(wh, ws, source, column, stamp) > count
        plan.since_stamp[source] = stamp - 1 if again else stamp
    plan.mode, plan.reason = "incremental", "changes since last build"
    return plan


def save_state(db: sa.Connection, wh: Warehouse, asset: str, plan: BuildPlan, now: int) -> None:
    """Record the watermarks this run built up to (inside the run's transaction)."""
    known = [m[0] for m in plan.watermarks.values() if m is not None]
    wh.upsert(
        db,
        "core.build_state",
        [
            {
                "workspace_id": plan.workspace_id,
                "asset": asset,
                "watermark": max(known) if known else None,
                "built_at": now,
                "mode": plan.mode,
                "settings_hash": plan.settings_hash,
                "watermarks_json": {
                    k: None if m is None else list(m) for k, m in plan.watermarks.items()
                },
            }
        ],
        key=("workspace_id", "asset"),
    )


def _changed(wh: Warehouse, plan: BuildPlan, table: str, columns: str, column: str = "synced_at"):
    return wh.rows(
        f"SELECT {columns} FROM {table} WHERE workspace_id = :w AND {column} > :lo",
        w=plan.workspace_id,
        lo=plan.since(table),
    )


# ------------------------------------------------------------------------------------ ledger


def ledger_changes(wh: Warehouse, ws: Workspace, plan: BuildPlan) -> dict[str, set[str]]:
    """Source objects whose ledger entries must be rebuilt: source table -> ids.

    A charge's entry reads its invoice (tax ratio) through its invoice payment, and a refund's
    reads its charge's; an entry in a foreign currency reads the rate of its (currency, day).
    """
    w = ws.id
    charges = {r["id"] for r in _changed(wh, plan, "raw.stripe_charges", "id")}
    charges |= {
        r["charge"]
        for r in _changed(wh, plan, "raw.stripe_invoice_payments", "charge")
        if r["charge"] is not None
    }
    invoices = {r["id"] for r in _changed(wh, plan, "raw.stripe_invoices", "id")}
    charges |= {
        r["charge"]
        for r in wh.rows_in(
            "SELECT charge FROM raw.stripe_invoice_payments WHERE workspace_id = :w"
            " AND charge IS NOT NULL",
            "invoice",
            invoices,
            w=w,
        )
    }
    out: dict[str, set[str]] = {
        "raw.stripe_charges": charges,
        "raw.stripe_refunds": {r["id"] for r in _changed(wh, plan, "raw.stripe_refunds", "id")},
        "raw.stripe_balance_transactions": {
            r["id"] for r in _changed(wh, plan, "raw.stripe_balance_transactions", "id")
        },
    }
    out["raw.stripe_refunds"] |= {
        r["id"]
        for r in wh.rows_in(
            "SELECT id FROM raw.stripe_refunds WHERE workspace_id = :w", "charge", charges, w=w
        )
    }
    for table in MANUAL_TABLES:
        out[table] = {
            r["external_id"] for r in _changed(wh, plan, table, "external_id", "ingested_at")
        }
    # Entries on a (currency, day) whose rate arrived since: including those skipped for want of it.
    pairs = {
        (r["currency"], r["date"])
        for r in wh.rows(
            f"SELECT currency, date FROM {FX_SOURCE} WHERE base = :b AND ingested_at > :lo",
            b=ws.reporting_currency,
            lo=plan.since(FX_SOURCE),
        )
        if r["currency"] != ws.reporting_currency
    }
    if pairs:
        days = sorted(d for _, d in pairs)
        for r in wh.rows_in(
            "SELECT currency, day, source_table, source_id FROM core.ledger"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b",
            "currency",
            {c for c, _ in pairs},
            w=w,
            a=days[0],
            b=days[-1],
        ):
            if (r["currency"], r["day"]) in pairs:
                out.setdefault(r["source_table"], set()).add(r["source_id"])
    return out


def ledger_entry_ids(changes: Mapping[str, Collection[str]]) -> list[str]:
    """Every entry id the changed source objects may have had (deleted before the rebuild)."""
    return [ledger_entry_id(t, i) for t, ids in changes.items() for i in ids]


# ------------------------------------------------------------------------ subscription history


def history_changes(wh: Warehouse, ws: Workspace, plan: BuildPlan, now: int) -> set[str]:
    """Subscriptions whose history must be rebuilt.

    A subscription's history reads its own row, items, events, invoices, invoice lines and the
    payment attempts (payments and charges) of its invoices, the prices it names, and discount
    objects, which may be copied on any invoice, subscription or event of the same customer. So
    every change is traced to its customer, and all subscriptions of those customers are rebuilt
    (an invoice line removed from an invoice is known only through the invoice's customer). Plus
    the subscriptions whose stored history was valid only until a past instant.
    """
    w = ws.id
    subs: set[str] = set()
    customers: set[str] = set()
    for r in _changed(wh, plan, "raw.stripe_subscriptions", "id, customer"):
        subs.add(r["id"])
        customers.add(r["customer"])
    subs |= {
        r["subscription"]
        for r in _changed(wh, plan, "raw.stripe_subscription_items", "DISTINCT subscription")
    }
    for r in wh.rows(
        "SELECT object_type, object_id, payload FROM raw.stripe_events WHERE workspace_id = :w"
        " AND synced_at > :lo AND object_type IN ('subscription', 'discount')",
        w=w,
        lo=plan.since("raw.stripe_events"),
    ):
        if r["object_type"] == "subscription":
            subs.add(r["object_id"])
            continue
        obj = (r["payload"].get("data") or {}).get("object") or {}
        for ref, into in ((obj.get("customer"), customers), (obj.get("subscription"), subs)):
            ref = ref.get("id") if isinstance(ref, Mapping) else ref
            if ref is not None:
                into.add(str(ref))
    invoices: set[str] = set()
    for r in _changed(wh, plan, "raw.stripe_invoice_lines", "DISTINCT invoice, subscription"):
        invoices.add(r["invoice"])
        if r["subscription"] is not None:
            subs.add(r["subscription"])
    for r in _changed(wh, plan, "raw.stripe_invoices", "id, customer, subscription"):
        customers.add(r["customer"])
        if r["subscription"] is not None:
            subs.add(r["subscription"])
    invoices |= {
        r["invoice"]
        for r in _changed(wh, plan, "raw.stripe_invoice_payments", "invoice")
        if r["invoice"] is not None
    }
    customers |= {r["customer"] for r in _changed(wh, plan, "raw.stripe_charges", "customer")}
    customers |= {
        r["customer"]
        for r in wh.rows_in(
            "SELECT customer FROM raw.stripe_invoices WHERE workspace_id = :w",
            "id",
            invoices,
            w=w,
        )
    }
    prices = {r["id"] for r in _changed(wh, plan, "raw.stripe_prices", "id")}
    if prices:
        subs |= _subscriptions_naming_prices(wh, w, prices)
    subs |= {
        r["subscription_id"]
        for r in wh.rows(
            "SELECT subscription_id FROM core.subscription_history_due"
            " WHERE workspace_id = :w AND due_at < :now",
            w=w,
            now=now,
        )
    }
    customers |= {
        r["customer"]
        for r in wh.rows_in(
            "SELECT customer FROM raw.stripe_subscriptions WHERE workspace_id = :w",
            "id",
            subs,
            w=w,
        )
    }
    customers.discard(None)  # type: ignore[arg-type]
    subs |= {
        r["id"]
        for r in wh.rows_in(
            "SELECT id FROM raw.stripe_subscriptions WHERE workspace_id = :w",
            "customer",
            customers,
            w=w,
        )
    }
    subs.discard(None)  # type: ignore[arg-type]
    return subs


def _subscriptions_naming_prices(
    wh: Warehouse, workspace_id: str, prices: Iterable[str]
) -> set[str]:
    """Subscriptions whose items, invoice lines or events name one of `prices` (events embed
    prices in their items: matched on the payload text, which can only over-select)."""
    ids = sorted(prices)
    out = {
        r["subscription"]
        for r in wh.rows_in(
            "SELECT subscription FROM raw.stripe_subscription_items WHERE workspace_id = :w",
            "price",
            ids,
            w=workspace_id,
        )
    }
    out |= {
        r["subscription"]
        for r in wh.rows_in(
            "SELECT subscription FROM raw.stripe_invoice_lines WHERE workspace_id = :w"
            " AND subscription IS NOT NULL",
            "price",
            ids,
            w=workspace_id,
        )
    }
    for start in range(0, len(ids), 50):
        chunk = ids[start : start + 50]
        likes = " OR ".join(f"CAST(payload AS TEXT) LIKE :p{i}" for i in range(len(chunk)))
        out |= {
            r["object_id"]
            for r in wh.rows(
                "SELECT DISTINCT object_id FROM raw.stripe_events WHERE workspace_id = :w"
                f" AND object_type = 'subscription' AND ({likes})",
                w=workspace_id,
                **{f"p{i}": f'%"{p}"%' for i, p in enumerate(chunk)},
            )
        }
    return out

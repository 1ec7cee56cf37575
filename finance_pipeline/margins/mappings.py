"""Customer <-> cost tag mappings in the warehouse (docs/metrics.md §11, margins API mappings).

A mapping ties a Stripe customer to the tag value its costs carry. People own manual mappings and
decide on auto-match proposals; only decided mappings (manual, or auto and accepted) attribute
cost in the margins. The workflow:
- `refresh_auto_matches` stores the matcher's proposals (`lib.margins.propose_auto_matches`) as
  pending auto rows with deterministic ids: it adds new ones, updates their confidence, and drops
  pending rows the matcher no longer proposes. Decided rows and rejections are never touched, so a
  re-run with the same inputs writes nothing. The workspace switch
  `mapping_auto_accept_confidence` (default None: never) stores proposals at or above that
  confidence as accepted instead.
- `upsert_mapping` (POST /api/customer-mappings: upsert on workspace, customer, tag key),
  `accept_mapping`, `reject_mapping`, `delete_mapping` and `list_mappings`.
- `unmatched` is the GET /api/margins/unmatched `data`.

Errors are `MappingError` (a ValueError) subclasses carrying the API status and code; every write
is one transaction, so a failed call writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from finance_pipeline.lib.margins import (
    DEFAULT_TAG_KEY,
    CostRecord,
    CustomerMapping,
    StripeCustomer,
    proposal_id,
    propose_auto_matches,
    shift_month,
    unmatched_report,
    validate_period,
)
from finance_pipeline.lib.recognition import month_key
from finance_pipeline.tenancy import Workspace, list_workspaces
from finance_pipeline.warehouse.db import Warehouse

MAPPINGS = "app.customer_mappings"
REJECTIONS = "app.customer_mapping_rejections"
STATUSES = ("pending", "accepted", "rejected")
MATCH_TYPES = ("manual", "auto")
COST_SOURCES = ("raw.usage_costs", "raw.cost_records")
_MAX_ID_LEN = 255
_MAX_TAG_LEN = 500


class MappingError(ValueError):
    """A mapping request the API answers with `status` / `code` (400 validation_error)."""

    status = 400
    code = "validation_error"


class MappingValidationError(MappingError):
    """Bad input: a missing or malformed field (400 validation_error)."""


class MappingNotFoundError(MappingError):
    """No such workspace or mapping in this workspace (404 not_found)."""

    status = 404
    code = "not_found"


class MappingConflictError(MappingError):
    """The request contradicts a decision already stored (409 conflict)."""

    status = 409
    code = "conflict"


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one auto-match refresh wrote for a workspace."""

    created: int
    updated: int
    removed: int
    auto_accepted: int
    pending: int


# --- reading -------------------------------------------------------------------------------------


def _rows(conn: Connection, wh: Warehouse, sql: str, **params: Any) -> list[dict[str, Any]]:
    return wh.read(conn, sql, **params)


def _iso(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    ts = datetime.fromtimestamp(int(epoch), UTC)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _confidence(value: Any) -> float | None:
    return None if value is None else float(value)


def workspace(wh: Warehouse, workspace_id: str) -> Workspace:
    """The workspace with this id, or MappingNotFoundError (404)."""
    found = next((w for w in list_workspaces(wh) if w.id == workspace_id), None)
    if found is None:
        raise MappingNotFoundError(f"workspace {workspace_id!r} not found")
    return found


def stripe_customers(conn: Connection, wh: Warehouse, ws_id: str) -> list[StripeCustomer]:
    """The workspace's live Stripe customers with name, email and metadata, by id."""
    return [
        StripeCustomer(
            r["id"], r["name"], r["email"], metadata=(r["payload"] or {}).get("metadata")
        )
        for r in _rows(
            conn,
            wh,
            "SELECT id, name, email, payload FROM raw.stripe_customers"
            " WHERE workspace_id = :w AND deleted = :f ORDER BY id",
            w=ws_id,
            f=False,
        )
    ]


def stored_mappings(
    conn: Connection, wh: Warehouse, ws_id: str, tag_key: str = DEFAULT_TAG_KEY
) -> list[CustomerMapping]:
    """Every stored mapping of one tag key (cost tags are `customer` tags), pending included."""
    return [
        CustomerMapping(
            stripe_customer_id=r["stripe_customer_id"],
            tag_value=r["tag_value"],
            match_type=r["match_type"],
            status=r["status"],
            id=r["id"],
            confidence=_confidence(r["confidence"]),
            tag_key=r["tag_key"],
            match_reason=r["match_reason"],
        )
        for r in _rows(
            conn,
            wh,
            f"SELECT * FROM {MAPPINGS} WHERE workspace_id = :w AND tag_key = :k ORDER BY id",
            w=ws_id,
            k=tag_key,
        )
    ]


def rejected_pairs(
    conn: Connection, wh: Warehouse, ws_id: str, tag_key: str = DEFAULT_TAG_KEY
) -> set[tuple[str, str]]:
    """(Stripe customer id, tag value) pairs someone rejected as auto matches."""
    return {
        (r["stripe_customer_id"], r["tag_value"])
        for r in _rows(
            conn,
            wh,
            f"SELECT stripe_customer_id, tag_value FROM {REJECTIONS}"
            " WHERE workspace_id = :w AND tag_key = :k",
            w=ws_id,
            k=tag_key,
        )
    }


def cost_records(
    conn: Connection, wh: Warehouse, ws_id: str, start: date | None, end_excl: date | None
) -> tuple[list[CostRecord], dict[str, dict[str, int]]]:
    """Tagged and untagged costs (usage events and cost records) from the ledger in [start, end).

    Returns the records in reporting micros and, per month and currency, how many records were
    left out for lack of an FX rate (docs/metrics.md §2 skipped_currencies). None means no bound.
    """
    where = ["l.workspace_id = :w", "l.kind = 'expense'", "l.source_table IN (:s1, :s2)"]
    params: dict[str, Any] = {"w": ws_id, "s1": COST_SOURCES[0], "s2": COST_SOURCES[1]}
    if start is not None:
        where.append("l.day >= :a")
        params["a"] = start
    if end_excl is not None:
        where.append("l.day < :b")
        params["b"] = end_excl
    rows = _rows(
        conn,
        wh,
        "SELECT l.day, l.customer_id, l.amount_reporting_micros, l.currency,"
        " u.request_count, u.model"
        " FROM core.ledger l LEFT JOIN raw.usage_costs u ON l.source_table = 'raw.usage_costs'"
        " AND u.workspace_id = l.workspace_id AND u.external_id = l.source_id"
        f" WHERE {' AND '.join(where)} ORDER BY l.entry_id",
        **params,
    )
    costs: list[CostRecord] = []
    skipped: dict[str, dict[str, int]] = {}
    for c in rows:
        period = month_key(c["day"])
        if c["amount_reporting_micros"] is None:
            month = skipped.setdefault(period, {})
            month[c["currency"]] = month.get(c["currency"], 0) + 1
            continue
        costs.append(
            CostRecord(
                tag_value=c["customer_id"] or None,
                period=period,
                cost_micros=int(c["amount_reporting_micros"]),
                model=c["model"],
                request_count=int(c["request_count"] or 0),
            )
        )
    return costs, skipped


def cost_tags(conn: Connection, wh: Warehouse, ws_id: str) -> list[str]:
    """Every distinct cost tag value the workspace's costs have ever carried."""
    return [
        r["customer_id"]
        for r in _rows(
            conn,
            wh,
            "SELECT DISTINCT customer_id FROM core.ledger WHERE workspace_id = :w"
            " AND kind = 'expense' AND source_table IN (:s1, :s2)"
            " AND customer_id IS NOT NULL AND customer_id <> '' ORDER BY customer_id",
            w=ws_id,
            s1=COST_SOURCES[0],
            s2=COST_SOURCES[1],
        )
    ]


# --- auto matches --------------------------------------------------------------------------------


def _auto_accept_threshold(ws: Workspace) -> Decimal | None:
    raw = ws.settings.get("mapping_auto_accept_confidence")
    if raw is None:
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation as exc:
        raise MappingValidationError(
            f"workspace {ws.id}: mapping_auto_accept_confidence must be a number, got {raw!r}"
        ) from exc


def refresh_auto_matches(wh: Warehouse, ws: Workspace, *, now: int | None = None) -> RefreshResult:
    """Store the matcher's current proposals for one workspace as pending auto mappings.

    Idempotent: the same customers, tags and decisions give the same rows (deterministic ids);
    manual, accepted and rejected decisions are never changed.
    """
    now = int(time.time()) if now is None else now
    threshold = _auto_accept_threshold(ws)
    created = updated = removed = accepted = 0
    with wh.begin() as db:
        stored = stored_mappings(db, wh, ws.id)
        proposals = propose_auto_matches(
            stripe_customers(db, wh, ws.id),
            cost_tags(db, wh, ws.id),
            stored,
            rejected_pairs(db, wh, ws.id),
            scope=ws.id,
        )
        wanted = {p.id: p for p in proposals}
        pending = {m.id: m for m in stored if not m.decided}
        # Stale proposals go first: a customer's one row per tag key may be proposed anew.
        stale = sorted(i for i in pending if i not in wanted)
        for mid in stale:
            db.execute(wh.text(f"DELETE FROM {MAPPINGS} WHERE id = :i"), {"i": mid})
        removed = len(stale)
        for p in proposals:
            auto_accept = threshold is not None and Decimal(str(p.confidence)) >= threshold
            status = "accepted" if auto_accept else "pending"
            accepted += auto_accept
            old = pending.get(p.id)
            if old is None:
                db.execute(
                    sa.insert(wh.table(MAPPINGS)),
                    {
                        "id": p.id,
                        "workspace_id": ws.id,
                        "stripe_customer_id": p.stripe_customer_id,
                        "tag_key": p.tag_key,
                        "tag_value": p.tag_value,
                        "match_type": "auto",
                        "status": status,
                        "confidence": str(p.confidence),
                        "match_reason": p.match_reason,
                        "created_at": now,
                        "decided_at": now if auto_accept else None,
                    },
                )
                created += 1
            elif (old.confidence, old.match_reason, old.status) != (
                p.confidence,
                p.match_reason,
                status,
            ):
                db.execute(
                    wh.text(
                        f"UPDATE {MAPPINGS} SET confidence = :c, match_reason = :r, status = :s,"
                        " decided_at = :d WHERE id = :i"
                    ),
                    {
                        "c": str(p.confidence),
                        "r": p.match_reason,
                        "s": status,
                        "d": now if auto_accept else None,
                        "i": p.id,
                    },
                )
                updated += 1
    return RefreshResult(created, updated, removed, accepted, len(proposals) - accepted)


# --- mapping workflow ----------------------------------------------------------------------------


def _text_field(name: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MappingValidationError(f"{name} is required and must be a non-empty string")
    if len(value) > max_len:
        raise MappingValidationError(f"{name} is longer than {max_len} characters")
    if value != value.strip():
        raise MappingValidationError(f"{name} must not start or end with whitespace")
    return value


def _mapping_row(conn: Connection, wh: Warehouse, ws_id: str, mapping_id: str) -> dict[str, Any]:
    if not isinstance(mapping_id, str) or not mapping_id:
        raise MappingValidationError("id is required")
    rows = _rows(
        conn,
        wh,
        f"SELECT * FROM {MAPPINGS} WHERE workspace_id = :w AND id = :i",
        w=ws_id,
        i=mapping_id,
    )
    if not rows:
        raise MappingNotFoundError(f"customer mapping {mapping_id!r} not found")
    return rows[0]


def _names(
    conn: Connection, wh: Warehouse, ws_id: str, customer: str | None = None
) -> dict[str, str]:
    """Stripe customer id -> name, of one customer or of the whole workspace."""
    sql = "SELECT id, name FROM raw.stripe_customers WHERE workspace_id = :w"
    params = {"w": ws_id}
    if customer is not None:
        sql += " AND id = :c"
        params["c"] = customer
    return {r["id"]: r["name"] for r in _rows(conn, wh, sql, **params) if r["name"]}


def _mapping_out(row: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """A stored mapping in the API's camelCase shape (margins API field names)."""
    return {
        "id": row["id"],
        "stripeCustomerId": row["stripe_customer_id"],
        "customerName": names.get(row["stripe_customer_id"]),
        "tagKey": row["tag_key"],
        "tagValue": row["tag_value"],
        "matchType": row["match_type"],
        "status": row["status"],
        "confidence": _confidence(row["confidence"]),
        "matchReason": row["match_reason"],
        "createdAt": _iso(row["created_at"]),
        "decidedAt": _iso(row["decided_at"]),
    }


def _rejection_out(row: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """A stored rejection in the mapping shape: an auto match with status rejected."""
    at = row["rejected_at"]
    as_mapping = {**row, "match_type": "auto", "status": "rejected"}
    return _mapping_out({**as_mapping, "created_at": at, "decided_at": at}, names)


def _decided_elsewhere(
    conn: Connection, wh: Warehouse, ws_id: str, tag_key: str, tag_value: str, customer: str
) -> list[dict[str, Any]]:
    """Decided mappings of the same tag to another customer."""
    return _rows(
        conn,
        wh,
        f"SELECT * FROM {MAPPINGS} WHERE workspace_id = :w AND tag_key = :k AND tag_value = :t"
        " AND stripe_customer_id <> :c AND (match_type = 'manual' OR status = 'accepted')"
        " ORDER BY stripe_customer_id",
        w=ws_id,
        k=tag_key,
        t=tag_value,
        c=customer,
    )


def upsert_mapping(
    wh: Warehouse,
    workspace_id: str,
    stripe_customer_id: Any,
    tag_value: Any,
    tag_key: Any = DEFAULT_TAG_KEY,
    match_type: Any = "manual",
    *,
    now: int | None = None,
) -> dict[str, Any]:
    """Create or update a person's mapping (POST /api/customer-mappings), upserting on
    (workspace, customer, tag key); it is in force at once (status accepted).

    Pending proposals of the same tag, or of another tag for this customer, are dropped (decided
    now). A tag already mapped manually to another customer is a conflict: delete that first.
    """
    cust = _text_field("stripeCustomerId", stripe_customer_id, _MAX_ID_LEN)
    tag = _text_field("tagValue", tag_value, _MAX_TAG_LEN)
    key = _text_field("tagKey", DEFAULT_TAG_KEY if tag_key is None else tag_key, _MAX_ID_LEN)
    kind = "manual" if match_type is None else match_type
    if kind not in MATCH_TYPES:
        raise MappingValidationError(f"matchType must be 'manual' or 'auto', got {match_type!r}")
    ws = workspace(wh, workspace_id)
    now = int(time.time()) if now is None else now
    with wh.begin() as db:
        known = _rows(
            db,
            wh,
            "SELECT id FROM raw.stripe_customers WHERE workspace_id = :w AND id = :c"
            " AND deleted = :f",
            w=ws.id,
            c=cust,
            f=False,
        )
        if not known:
            raise MappingValidationError(
                f"stripeCustomerId {cust!r} is not a Stripe customer of this workspace"
            )
        others = [
            r
            for r in _decided_elsewhere(db, wh, ws.id, key, tag, cust)
            if r["match_type"] == "manual"
        ]
        if others:
            raise MappingConflictError(
                f"tag {key}={tag!r} is already mapped manually to {others[0]['stripe_customer_id']}"
                "; delete that mapping first"
            )
        existing = _rows(
            db,
            wh,
            f"SELECT * FROM {MAPPINGS} WHERE workspace_id = :w AND stripe_customer_id = :c"
            " AND tag_key = :k",
            w=ws.id,
            c=cust,
            k=key,
        )
        db.execute(
            wh.text(
                f"DELETE FROM {MAPPINGS} WHERE workspace_id = :w AND tag_key = :k"
                " AND tag_value = :t AND status = 'pending' AND stripe_customer_id <> :c"
            ),
            {"w": ws.id, "k": key, "t": tag, "c": cust},
        )
        old = existing[0] if existing else None
        if old is not None and old["status"] == "pending" and old["tag_value"] != tag:
            # A proposal of another tag for this customer: the person's mapping replaces it.
            db.execute(wh.text(f"DELETE FROM {MAPPINGS} WHERE id = :i"), {"i": old["id"]})
            old = None
        if old is not None:
            # The upsert keeps the row's id. Accepting a proposal by POST keeps its confidence;
            # anything else is a person's call without one.
            keep = kind == "auto" and old["tag_value"] == tag and old["match_type"] == "auto"
            db.execute(
                wh.text(
                    f"UPDATE {MAPPINGS} SET tag_value = :t, match_type = :m, status = 'accepted',"
                    " confidence = :conf, match_reason = :r, decided_at = :d WHERE id = :i"
                ),
                {
                    "t": tag,
                    "m": kind,
                    "conf": old["confidence"] if keep else None,
                    "r": old["match_reason"] if keep else None,
                    "d": now,
                    "i": old["id"],
                },
            )
            mid = old["id"]
        else:
            mid = proposal_id(cust, tag, key, ws.id)
            db.execute(
                sa.insert(wh.table(MAPPINGS)),
                {
                    "id": mid,
                    "workspace_id": ws.id,
                    "stripe_customer_id": cust,
                    "tag_key": key,
                    "tag_value": tag,
                    "match_type": kind,
                    "status": "accepted",
                    "confidence": None,
                    "match_reason": None,
                    "created_at": now,
                    "decided_at": now,
                },
            )
        row = _mapping_row(db, wh, ws.id, mid)
        return _mapping_out(row, _names(db, wh, ws.id, cust))


def list_mappings(
    wh: Warehouse, workspace_id: str, status: str | None = None
) -> list[dict[str, Any]]:
    """The workspace's mappings (GET /api/customer-mappings), optionally of one status:
    pending, accepted (manual ones included) or rejected; by tag key, tag value, customer."""
    if status is not None and status not in STATUSES:
        raise MappingValidationError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    ws = workspace(wh, workspace_id)
    with wh.engine.connect() as conn:
        out: list[dict[str, Any]] = []
        names = _names(conn, wh, ws.id)
        if status != "rejected":
            rows = _rows(conn, wh, f"SELECT * FROM {MAPPINGS} WHERE workspace_id = :w", w=ws.id)
            out += [_mapping_out(r, names) for r in rows if status in (None, r["status"])]
        if status in (None, "rejected"):
            rows = _rows(conn, wh, f"SELECT * FROM {REJECTIONS} WHERE workspace_id = :w", w=ws.id)
            out += [_rejection_out(r, names) for r in rows]
    out.sort(key=lambda m: (m["tagKey"], m["tagValue"], m["stripeCustomerId"], m["status"]))
    return out


def accept_mapping(
    wh: Warehouse, workspace_id: str, mapping_id: str, *, now: int | None = None
) -> dict[str, Any]:
    """Accept a pending auto-match proposal: from now on its tag's cost counts for the customer.

    Accepting a mapping already in force returns it unchanged.
    """
    ws = workspace(wh, workspace_id)
    now = int(time.time()) if now is None else now
    with wh.begin() as db:
        row = _mapping_row(db, wh, ws.id, mapping_id)
        if row["status"] == "pending":
            clash = _decided_elsewhere(
                db, wh, ws.id, row["tag_key"], row["tag_value"], row["stripe_customer_id"]
            )
            if clash:
                raise MappingConflictError(
                    f"tag {row['tag_key']}={row['tag_value']!r} is already mapped to "
                    f"{clash[0]['stripe_customer_id']}"
                )
            db.execute(
                wh.text(
                    f"UPDATE {MAPPINGS} SET status = 'accepted', decided_at = :d WHERE id = :i"
                ),
                {"d": now, "i": mapping_id},
            )
            row = _mapping_row(db, wh, ws.id, mapping_id)
        return _mapping_out(row, _names(db, wh, ws.id, row["stripe_customer_id"]))


def reject_mapping(
    wh: Warehouse, workspace_id: str, mapping_id: str, *, now: int | None = None
) -> dict[str, Any]:
    """Reject a pending auto-match proposal: it is removed and never proposed again.

    Rejecting an already rejected proposal returns the rejection; a mapping in force cannot be
    rejected (409: delete it instead).
    """
    ws = workspace(wh, workspace_id)
    now = int(time.time()) if now is None else now
    with wh.begin() as db:
        done = _rows(
            db,
            wh,
            f"SELECT * FROM {REJECTIONS} WHERE workspace_id = :w AND id = :i",
            w=ws.id,
            i=mapping_id,
        )
        if done:
            return _rejection_out(done[0], _names(db, wh, ws.id, done[0]["stripe_customer_id"]))
        row = _mapping_row(db, wh, ws.id, mapping_id)
        if row["status"] != "pending":
            raise MappingConflictError(
                f"customer mapping {mapping_id!r} is {row['match_type']} and in force; only a "
                "pending auto match can be rejected (delete the mapping instead)"
            )
        db.execute(wh.text(f"DELETE FROM {MAPPINGS} WHERE id = :i"), {"i": mapping_id})
        rejection = {
            "id": mapping_id,
            "workspace_id": ws.id,
            "stripe_customer_id": row["stripe_customer_id"],
            "tag_key": row["tag_key"],
            "tag_value": row["tag_value"],
            "confidence": row["confidence"],
            "match_reason": row["match_reason"],
            "rejected_at": now,
        }
        wh.upsert(
            db,
            REJECTIONS,
            [rejection],
            key=("workspace_id", "stripe_customer_id", "tag_key", "tag_value"),
        )
        return _rejection_out(rejection, _names(db, wh, ws.id, row["stripe_customer_id"]))


def delete_mapping(wh: Warehouse, workspace_id: str, mapping_id: str) -> None:
    """Delete a mapping by id (DELETE /api/customer-mappings?id=); deleting a rejection's id
    forgets the rejection, so the pair may be proposed again. 404 if neither exists."""
    ws = workspace(wh, workspace_id)
    if not isinstance(mapping_id, str) or not mapping_id:
        raise MappingValidationError("id is required")
    with wh.begin() as db:
        gone = 0
        for table in (MAPPINGS, REJECTIONS):
            gone += db.execute(
                wh.text(f"DELETE FROM {table} WHERE workspace_id = :w AND id = :i"),
                {"w": ws.id, "i": mapping_id},
            ).rowcount
        if not gone:
            raise MappingNotFoundError(f"customer mapping {mapping_id!r} not found")


def unmatched(wh: Warehouse, workspace_id: str, period: str | None = None) -> dict[str, Any]:
    """The GET /api/margins/unmatched `data`: Stripe customers without a decided mapping (with
    their recognized revenue), unmapped tag values (cost, requests), pending auto matches.

    Totals cover every month, or only `period` ("YYYY-MM") when given. Reads only.
    """
    if period is not None:
        validate_period(period)
    ws = workspace(wh, workspace_id)
    start = end = None
    if period is not None:
        start = date(int(period[:4]), int(period[5:]), 1)
        nxt = shift_month(period, 1)
        end = date(int(nxt[:4]), int(nxt[5:]), 1)
    with wh.engine.connect() as conn:
        revenue: dict[tuple[str, str], int] = {}
        for r in _rows(
            conn,
            wh,
            "SELECT customer_id, month, amount_reporting_micros"
            " FROM core.recognized_revenue_monthly WHERE workspace_id = :w"
            + (" AND month = :m" if period else ""),
            **({"w": ws.id, "m": period} if period else {"w": ws.id}),
        ):
            if r["amount_reporting_micros"] is None:
                continue  # no FX rate: left out of converted totals (docs/metrics.md §2)
            key = (r["customer_id"], r["month"])
            revenue[key] = revenue.get(key, 0) + int(r["amount_reporting_micros"])
        costs, _ = cost_records(conn, wh, ws.id, start, end)
        return unmatched_report(
            stripe_customers(conn, wh, ws.id),
            revenue,
            costs,
            stored_mappings(conn, wh, ws.id),
            rejected_pairs(conn, wh, ws.id),
            scope=ws.id,
        )

"""Customer mapping workflow in the warehouse (docs/metrics.md §11), SQLite and PostgreSQL:
stored auto-match proposals, manual upsert, accept / reject, unmatched lists, and margins that count
only decided mappings (through the margins asset)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from finance_pipeline.lib.margins import proposal_id
from finance_pipeline.margins.assets import customer_margins_monthly
from finance_pipeline.margins.mappings import (
    MappingConflictError,
    MappingError,
    MappingNotFoundError,
    MappingValidationError,
    RefreshResult,
    accept_mapping,
    delete_mapping,
    list_mappings,
    refresh_auto_matches,
    reject_mapping,
    unmatched,
    upsert_mapping,
    workspace,
)
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse

M = 1_000_000
WS = "ws1"
NOW = 1_790_000_000  # 2026-09-21T14:13:20Z
NOW_ISO = "2026-09-21T14:13:20.000Z"
LATER = NOW + 60
LATER_ISO = "2026-09-21T14:14:20.000Z"

# (id, name, email, metadata, deleted)
CUSTOMERS = [
    ("cus_acme", "Acme Corp", "billing@acme.com", {}, False),
    ("cus_beta", "BetaCo", "ops@beta.co", {}, False),
    ("cus_delta", "Delta LLC", "billing@delta.io", {}, False),
    ("cus_eps", "Epsilon LLC", None, {}, False),
    ("cus_gam", "Gamma Inc", None, {"customer": "gamma-prod"}, False),
    ("cus_gmail", "Solo Dev", "solo@gmail.com", {}, False),
    ("cus_man", "Manual Co", None, {}, False),
    ("cus_twin1", "Twin", None, {}, False),
    ("cus_twin2", "TWIN", None, {}, False),
    ("cus_gone", "Gone Corp", None, {}, True),
]
# Tagged costs in September 2026 (micros); None is untagged. Two usage events carry requests.
COSTS: list[tuple[str | None, int, int]] = [
    ("cus_acme", 10 * M, 100),
    ("acme-corp", 4 * M, 0),
    ("beta", 6 * M, 0),
    ("billing@delta.io", 2 * M, 0),
    ("epsilon_llc", 3 * M, 0),
    ("gamma-prod", 1 * M, 0),
    ("twin", 2_500_000, 7),
    ("gmail", 500_000, 0),
    ("man-tag", 5 * M, 0),
    ("cus_man", 1_500_000, 0),
    (None, 700_000, 0),
]
REVENUE = {"cus_acme": 100 * M, "cus_beta": 50 * M, "cus_man": 20 * M, "cus_twin1": 5 * M}


def _insert(wh: Warehouse, table: str, rows: list[dict[str, Any]]) -> None:
    with wh.begin() as db:
        db.execute(sa.insert(wh.table(table)), rows)


def seed(wh: Warehouse) -> None:
    """ws1 with the customers, costs and September revenue above and one manual mapping
    (cus_man <- "man-tag"); ws2 shares customer ids and tags but has no data of its own."""
    org = create_organization(wh, "o", org_id="o")
    create_workspace(wh, org, "w", workspace_id=WS)
    create_workspace(wh, org, "w2", workspace_id="ws2")
    _insert(
        wh,
        "raw.stripe_customers",
        [
            {
                "workspace_id": WS, "id": cid, "account_id": "acct_1", "livemode": False,
                "name": name, "email": email, "deleted": deleted,
                "payload": {"id": cid, "metadata": meta}, "synced_at": 0,
            }
            for cid, name, email, meta, deleted in CUSTOMERS
        ],
    )  # fmt: skip
    day = date(2026, 9, 12)
    ledger, usage = [], []
    for i, (tag, micros, requests) in enumerate(COSTS):
        eid = f"e{i}"
        source = "raw.usage_costs" if requests else "raw.cost_records"
        ledger.append(
            {
                "workspace_id": WS, "entry_id": eid, "day": day, "occurred_at": None,
                "kind": "expense", "subtype": "recurring_expense", "category": None,
                "customer_id": tag, "amount_micros": micros, "currency": "usd",
                "amount_reporting_micros": micros, "reporting_currency": "usd", "fx_rate": "1",
                "source_table": source, "source_id": eid,
            }
        )  # fmt: skip
        if requests:
            usage.append(
                {
                    "workspace_id": WS, "external_id": eid, "customer_tag": tag or "",
                    "model": "gpt-4o", "cost_micros": micros, "currency": "usd",
                    "request_count": requests, "occurred_on": day, "source": "t",
                    "ingested_at": 0,
                }
            )  # fmt: skip
    _insert(wh, "core.ledger", ledger)
    _insert(wh, "raw.usage_costs", usage)
    _insert(
        wh,
        "core.recognized_revenue_monthly",
        [
            {
                "workspace_id": WS, "customer_id": c, "month": "2026-09", "currency": "usd",
                "amount_micros": v, "amount_reporting_micros": v, "reporting_currency": "usd",
                "skipped_lines": 0,
            }
            for c, v in REVENUE.items()
        ],
    )  # fmt: skip
    upsert_mapping(wh, WS, "cus_man", "man-tag", now=NOW)


@pytest.fixture
def wh(warehouse: Warehouse) -> Warehouse:
    seed(warehouse)
    return warehouse


def pid(customer: str, tag: str) -> str:
    return proposal_id(customer, tag, "customer", WS)


def _table(wh: Warehouse) -> list[tuple[Any, ...]]:
    """Both mapping tables as comparable tuples (confidence as stored text)."""
    rows = wh.rows(
        "SELECT id, workspace_id, stripe_customer_id, tag_key, tag_value, match_type, status,"
        " confidence, match_reason, created_at, decided_at FROM app.customer_mappings"
        " ORDER BY id"
    )
    rej = wh.rows("SELECT * FROM app.customer_mapping_rejections ORDER BY id")
    return [tuple(r.values()) for r in rows] + [tuple(r.values()) for r in rej]


PROPOSED = [  # (tag, customer, confidence, reason), by tag
    ("beta", "cus_beta", 0.7, "email_domain"),
    ("billing@delta.io", "cus_delta", 0.9, "email"),
    ("cus_acme", "cus_acme", 1.0, "exact_id"),
    ("epsilon_llc", "cus_eps", 0.8, "name"),
    ("gamma-prod", "cus_gam", 0.95, "metadata"),
]
NAMES = {c[0]: c[1] for c in CUSTOMERS}
PROPOSED_PENDING_AFTER_ACME = [p for p in PROPOSED if p[1] != "cus_acme"]


def _pending(wh: Warehouse) -> list[tuple[str, str, float | None, str | None]]:
    return [
        (m["tagValue"], m["stripeCustomerId"], m["confidence"], m["matchReason"])
        for m in list_mappings(wh, WS, "pending")
    ]


def test_refresh_stores_proposals_idempotently(wh: Warehouse) -> None:
    ws = workspace(wh, WS)
    assert refresh_auto_matches(wh, ws, now=NOW) == RefreshResult(5, 0, 0, 0, 5)
    assert _pending(wh) == PROPOSED
    first = _table(wh)
    # Same inputs: nothing written, same rows and ids; a later clock changes nothing.
    assert refresh_auto_matches(wh, ws, now=LATER) == RefreshResult(0, 0, 0, 0, 5)
    assert _table(wh) == first
    assert list_mappings(wh, WS, "pending")[2] == {
        "id": pid("cus_acme", "cus_acme"),
        "stripeCustomerId": "cus_acme",
        "customerName": "Acme Corp",
        "tagKey": "customer",
        "tagValue": "cus_acme",
        "matchType": "auto",
        "status": "pending",
        "confidence": 1.0,
        "matchReason": "exact_id",
        "createdAt": NOW_ISO,
        "decidedAt": None,
    }
    assert [m["tagValue"] for m in list_mappings(wh, WS, "accepted")] == ["man-tag"]
    # Another workspace with the same customer ids has its own ids (the primary key is global).
    assert refresh_auto_matches(wh, workspace(wh, "ws2"), now=NOW) == RefreshResult(0, 0, 0, 0, 0)


def test_refresh_drops_stale_proposals_and_auto_accept_switch(wh: Warehouse) -> None:
    ws = workspace(wh, WS)
    refresh_auto_matches(wh, ws, now=NOW)
    # The customer's email changes: the email proposal is gone, the domain one is not its best.
    with wh.begin() as db:
        db.execute(wh.text("UPDATE raw.stripe_customers SET email = NULL WHERE id = 'cus_delta'"))
    assert refresh_auto_matches(wh, ws, now=LATER) == RefreshResult(0, 0, 1, 0, 4)
    assert [t for t, *_ in _pending(wh)] == ["beta", "cus_acme", "epsilon_llc", "gamma-prod"]
    # Switch on: proposals of confidence >= 0.9 are stored as accepted; the rest stay pending.
    create_workspace(
        wh, "o", "w", workspace_id=WS, settings={"mapping_auto_accept_confidence": "0.9"}
    )
    assert refresh_auto_matches(wh, workspace(wh, WS), now=LATER) == RefreshResult(0, 2, 0, 2, 2)
    accepted = [(m["tagValue"], m["decidedAt"]) for m in list_mappings(wh, WS, "accepted")]
    assert accepted == [("cus_acme", LATER_ISO), ("gamma-prod", LATER_ISO), ("man-tag", NOW_ISO)]
    assert [t for t, *_ in _pending(wh)] == ["beta", "epsilon_llc"]


def test_accept_and_reject_flow(wh: Warehouse) -> None:
    ws = workspace(wh, WS)
    refresh_auto_matches(wh, ws, now=NOW)
    got = accept_mapping(wh, WS, pid("cus_acme", "cus_acme"), now=LATER)
    assert (got["status"], got["matchType"], got["confidence"], got["decidedAt"]) == (
        "accepted",
        "auto",
        1.0,
        LATER_ISO,
    )
    assert accept_mapping(wh, WS, got["id"], now=LATER + 99) == got  # already in force
    rejected = reject_mapping(wh, WS, pid("cus_beta", "beta"), now=LATER)
    assert rejected == {
        "id": pid("cus_beta", "beta"),
        "stripeCustomerId": "cus_beta",
        "customerName": "BetaCo",
        "tagKey": "customer",
        "tagValue": "beta",
        "matchType": "auto",
        "status": "rejected",
        "confidence": 0.7,
        "matchReason": "email_domain",
        "createdAt": LATER_ISO,
        "decidedAt": LATER_ISO,
    }
    assert reject_mapping(wh, WS, rejected["id"], now=LATER + 99) == rejected  # idempotent
    # Re-running never re-proposes the rejected pair nor touches the accepted one.
    before = _table(wh)
    assert refresh_auto_matches(wh, ws, now=LATER + 120) == RefreshResult(0, 0, 0, 0, 3)
    assert _table(wh) == before
    assert [m["tagValue"] for m in list_mappings(wh, WS, "rejected")] == ["beta"]
    assert [(m["tagValue"], m["status"]) for m in list_mappings(wh, WS)] == [
        ("beta", "rejected"),
        ("billing@delta.io", "pending"),
        ("cus_acme", "accepted"),
        ("epsilon_llc", "pending"),
        ("gamma-prod", "pending"),
        ("man-tag", "accepted"),
    ]
    # Deleting the rejection forgets it: the pair is proposed again with the same id.
    delete_mapping(wh, WS, rejected["id"])
    assert refresh_auto_matches(wh, ws, now=LATER + 180) == RefreshResult(1, 0, 0, 0, 4)
    assert pid("cus_beta", "beta") in [m["id"] for m in list_mappings(wh, WS, "pending")]


def test_errors_are_clear_and_write_nothing(wh: Warehouse) -> None:
    ws = workspace(wh, WS)
    refresh_auto_matches(wh, ws, now=NOW)
    before = _table(wh)
    cases: list[tuple[Any, type[MappingError], str]] = [
        (lambda: upsert_mapping(wh, WS, "", "x"), MappingValidationError, "stripeCustomerId"),
        (lambda: upsert_mapping(wh, WS, None, "x"), MappingValidationError, "stripeCustomerId"),
        (lambda: upsert_mapping(wh, WS, "cus_eps", "  "), MappingValidationError, "tagValue"),
        (lambda: upsert_mapping(wh, WS, "cus_eps", " x"), MappingValidationError, "whitespace"),
        (lambda: upsert_mapping(wh, WS, "cus_eps", "x" * 501), MappingValidationError, "500"),
        (lambda: upsert_mapping(wh, WS, "cus_eps", "x", "", "manual"), MappingValidationError,
         "tagKey"),
        (lambda: upsert_mapping(wh, WS, "cus_eps", "x", match_type="fuzzy"),
         MappingValidationError, "matchType"),
        (lambda: upsert_mapping(wh, WS, "cus_nope", "x"), MappingValidationError, "cus_nope"),
        (lambda: upsert_mapping(wh, WS, "cus_gone", "x"), MappingValidationError, "cus_gone"),
        (lambda: upsert_mapping(wh, "ws_nope", "cus_eps", "x"), MappingNotFoundError,
         "ws_nope"),
        (lambda: upsert_mapping(wh, WS, "cus_eps", "man-tag"), MappingConflictError, "cus_man"),
        (lambda: list_mappings(wh, WS, "maybe"), MappingValidationError, "status"),
        (lambda: accept_mapping(wh, WS, "nope"), MappingNotFoundError, "nope"),
        (lambda: accept_mapping(wh, "ws2", pid("cus_eps", "epsilon_llc")), MappingNotFoundError,
         "not found"),
        (lambda: reject_mapping(wh, WS, "nope"), MappingNotFoundError, "nope"),
        (lambda: reject_mapping(wh, WS, list_mappings(wh, WS, "accepted")[0]["id"]),
         MappingConflictError, "delete the mapping instead"),
        (lambda: delete_mapping(wh, WS, "nope"), MappingNotFoundError, "nope"),
        (lambda: unmatched(wh, WS, "2026-9"), ValueError, "YYYY-MM"),
    ]  # fmt: skip
    for call, error, text in cases:
        with pytest.raises(error, match=text):
            call()
    assert (MappingValidationError.status, MappingNotFoundError.status) == (400, 404)
    assert (MappingConflictError.status, MappingConflictError.code) == (409, "conflict")
    assert issubclass(MappingError, ValueError)
    assert _table(wh) == before


def test_manual_upsert_wins_and_keeps_its_id(wh: Warehouse) -> None:
    ws = workspace(wh, WS)
    refresh_auto_matches(wh, ws, now=NOW)
    # A manual mapping of an ambiguous tag; the twin is never proposed for it.
    twin = upsert_mapping(wh, WS, "cus_twin1", "twin", now=LATER)
    assert twin == {
        "id": pid("cus_twin1", "twin"),
        "stripeCustomerId": "cus_twin1",
        "customerName": "Twin",
        "tagKey": "customer",
        "tagValue": "twin",
        "matchType": "manual",
        "status": "accepted",
        "confidence": None,
        "matchReason": None,
        "createdAt": LATER_ISO,
        "decidedAt": LATER_ISO,
    }
    # The same customer re-mapped: upsert on (workspace, customer, tag key) keeps the row id.
    moved = upsert_mapping(wh, WS, "cus_twin1", "twin-a", now=LATER + 1)
    assert (moved["id"], moved["tagValue"], moved["createdAt"]) == (twin["id"], "twin-a", LATER_ISO)
    upsert_mapping(wh, WS, "cus_twin1", "twin", now=LATER + 2)
    # A manual mapping over a customer's pending proposal of another tag replaces it (new id);
    # one of a tag other customers' proposals hold takes the tag from them.
    acme = upsert_mapping(wh, WS, "cus_acme", "acme-corp", now=LATER)
    assert acme["id"] == pid("cus_acme", "acme-corp")
    assert _pending(wh) == PROPOSED_PENDING_AFTER_ACME
    beta = upsert_mapping(wh, WS, "cus_delta", "beta", now=LATER)
    assert beta["matchType"] == "manual"
    # POST matchType auto of a pending proposal accepts it and keeps its confidence.
    gam = upsert_mapping(wh, WS, "cus_gam", "gamma-prod", match_type="auto", now=LATER)
    assert (gam["id"], gam["status"], gam["confidence"]) == (
        pid("cus_gam", "gamma-prod"),
        "accepted",
        0.95,
    )
    assert _pending(wh) == [("epsilon_llc", "cus_eps", 0.8, "name")]
    # The refresh agrees: nothing to add or drop.
    assert refresh_auto_matches(wh, ws, now=LATER + 5) == RefreshResult(0, 0, 0, 0, 1)
    assert _pending(wh) == [("epsilon_llc", "cus_eps", 0.8, "name")]
    assert [(m["tagValue"], m["stripeCustomerId"]) for m in list_mappings(wh, WS, "accepted")] == [
        ("acme-corp", "cus_acme"),
        ("beta", "cus_delta"),
        ("gamma-prod", "cus_gam"),
        ("man-tag", "cus_man"),
        ("twin", "cus_twin1"),
    ]


def test_unmatched_lists(wh: Warehouse) -> None:
    # Before a refresh the proposals are computed on the fly, with the ids a refresh stores.
    fresh = unmatched(wh, WS)
    refresh_auto_matches(wh, workspace(wh, WS), now=NOW)
    report = unmatched(wh, WS)
    assert fresh == report
    assert report["unmatchedStripeCustomers"] == [
        {
            "stripeCustomerId": cid,
            "customerName": NAMES[cid],
            "customerEmail": next(c[2] for c in CUSTOMERS if c[0] == cid),
            "totalRevenueMicrodollars": rev,
        }
        for cid, rev in (
            ("cus_acme", 100 * M),
            ("cus_beta", 50 * M),
            ("cus_twin1", 5 * M),
            ("cus_delta", 0),
            ("cus_eps", 0),
            ("cus_gam", 0),
            ("cus_gmail", 0),
            ("cus_twin2", 0),
        )
    ]
    assert report["unmappedTagValues"] == [
        {"tagValue": "cus_acme", "totalCostMicrodollars": 10 * M, "requestCount": 100},
        {"tagValue": "beta", "totalCostMicrodollars": 6 * M, "requestCount": 0},
        {"tagValue": "acme-corp", "totalCostMicrodollars": 4 * M, "requestCount": 0},
        {"tagValue": "epsilon_llc", "totalCostMicrodollars": 3 * M, "requestCount": 0},
        {"tagValue": "twin", "totalCostMicrodollars": 2_500_000, "requestCount": 7},
        {"tagValue": "billing@delta.io", "totalCostMicrodollars": 2 * M, "requestCount": 0},
        {"tagValue": "cus_man", "totalCostMicrodollars": 1_500_000, "requestCount": 0},
        {"tagValue": "gamma-prod", "totalCostMicrodollars": 1 * M, "requestCount": 0},
        {"tagValue": "gmail", "totalCostMicrodollars": 500_000, "requestCount": 0},
    ]
    assert report["pendingAutoMatches"] == [
        {
            "id": pid(cust, tag),
            "stripeCustomerId": cust,
            "customerName": NAMES[cust],
            "tagValue": tag,
            "confidence": conf,
            "matchReason": reason,
        }
        for tag, cust, conf, reason in PROPOSED
    ]
    assert report["customerNames"] == {c[0]: c[1] for c in CUSTOMERS if not c[4]}
    # One month only: August has no costs; September has them all.
    assert unmatched(wh, WS, "2026-08")["unmappedTagValues"] == []
    assert [p["id"] for p in unmatched(wh, WS, "2026-09")["pendingAutoMatches"]] == [
        pid(c, t) for t, c, *_ in PROPOSED
    ]


def _materialize(wh: Warehouse) -> dg.MaterializeResult:
    res = {"warehouse": WarehouseResource(url=wh.url.render_as_string(hide_password=False))}
    result = dg.materialize([customer_margins_monthly], resources=res, partition_key="2026-09-01")
    assert result.success
    return result.asset_materializations_for_node("customer_margins_monthly")[0]


def _costs(wh: Warehouse) -> tuple[dict[str, int], int, int]:
    rows = wh.rows(
        "SELECT stripe_customer_id, cost_micros FROM mart.customer_margins_monthly"
        " WHERE workspace_id = :w AND month = '2026-09'",
        w=WS,
    )
    s = wh.rows(
        "SELECT cost_micros, unmapped_cost_micros FROM mart.customer_margins_summary_monthly"
        " WHERE workspace_id = :w AND month = '2026-09'",
        w=WS,
    )[0]
    return (
        {r["stripe_customer_id"]: r["cost_micros"] for r in rows},
        s["cost_micros"],
        s["unmapped_cost_micros"],
    )


def test_pending_mappings_count_in_margins_only_once_accepted(wh: Warehouse) -> None:
    mat = _materialize(wh)
    assert mat.metadata["auto_matches_created"] == dg.IntMetadataValue(5)
    assert mat.metadata["auto_matches_pending"] == dg.IntMetadataValue(5)
    # Pending proposals attribute nothing: only the manual "man-tag" counts.
    unmapped = 10 * M + 4 * M + 6 * M + 2 * M + 3 * M + 1 * M + 2_500_000 + 500_000 + 1_500_000
    assert _costs(wh) == (
        {"cus_acme": 0, "cus_beta": 0, "cus_man": 5 * M, "cus_twin1": 0},
        5 * M,
        unmapped,
    )
    accept_mapping(wh, WS, pid("cus_acme", "cus_acme"), now=LATER)
    accept_mapping(wh, WS, pid("cus_eps", "epsilon_llc"), now=LATER)
    mat = _materialize(wh)
    assert mat.metadata["auto_matches_created"] == dg.IntMetadataValue(0)
    assert mat.metadata["auto_matches_pending"] == dg.IntMetadataValue(3)
    # cus_eps has cost and no revenue now: a (critical) row of its own.
    assert _costs(wh) == (
        {"cus_acme": 10 * M, "cus_beta": 0, "cus_eps": 3 * M, "cus_man": 5 * M, "cus_twin1": 0},
        18 * M,
        unmapped - 13 * M,
    )
    summary = wh.rows(
        "SELECT unmatched_json FROM mart.customer_margins_summary_monthly WHERE workspace_id = :w",
        w=WS,
    )[0]["unmatched_json"]
    pending = json.loads(summary) if isinstance(summary, str) else summary
    assert [p["tagValue"] for p in pending["pendingAutoMatches"]] == [
        "beta",
        "billing@delta.io",
        "gamma-prod",
    ]

"""The 003 margins API over real HTTP: margins (JSON and the reports' CSV), one customer, the
unmatched lists, customer mappings and revenue sync, in the seed's shapes, microdollar units and
codes; values equal to the marts digit for digit; the tier gate, roles and tenancy."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import dagster as dg
import httpx
import pytest

from finance_pipeline.api.margins.margins import EncodedAnswers
from finance_pipeline.lib.report_csv import FORMULA_PREFIXES
from finance_pipeline.margins.assets import customer_margins_monthly
from finance_pipeline.margins.mappings import unmatched
from finance_pipeline.reports.render import build_csv
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.tenancy import connect_stripe, get_workspace
from finance_pipeline_tests.api.conftest import ApiServer, _factory, bearer
from finance_pipeline_tests.api.margins_fixtures import (
    CRON_SECRET,
    M,
    Org,
    assert_error,
    member,
    new_org,
    seed_margins,
)

SEP = {"period": "2026-09"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server that queues sync requests without running them (no Dagster run in these tests):
    nothing would finish, so reads and the revenue sync do not wait (FP_API_READ_WAIT_SECONDS=0)."""
    make, started = _factory(tmp_path_factory.mktemp("margins"))
    yield make(requests_inline=False, cron_secret=CRON_SECRET, api_read_wait_seconds=0)
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def org(api: ApiServer) -> Org:
    """The pro-tier organization with the margins of August and September 2026 materialized."""
    o = new_org(api)
    seed_margins(api.wh, o.workspace_id)
    return o


def body(r: httpx.Response) -> Any:
    """The JSON body with every number as a Decimal when it has a fraction (exactness checks)."""
    return json.loads(r.text, parse_float=Decimal)


def test_margins_in_the_seed_shape_equal_to_the_marts(api: ApiServer, org: Org) -> None:
    r = api.client.get("/api/margins", params=SEP, headers=org.headers)
    assert r.status_code == 200, r.text
    data = body(r)["data"]
    summary = data["summary"]
    assert set(summary) >= {
        "blendedMarginPercent", "totalRevenueMicrodollars", "totalCostMicrodollars",
        "criticalCount", "atRiskCount", "lastSyncAt", "syncStatus", "skippedCurrencies",
    }  # fmt: skip
    # Revenue 150, attributed cost 30 (gamma-inc is unmapped): blended (150 - 30) / 150 = 80%.
    assert summary["totalRevenueMicrodollars"] == 150 * M
    assert summary["totalCostMicrodollars"] == 30 * M
    assert summary["blendedMarginPercent"] == Decimal("80.00")
    assert '"blendedMarginPercent":80.00' in r.text  # an exact number, never "80.00" or 80.0
    assert (summary["criticalCount"], summary["atRiskCount"]) == (0, 0)
    assert summary["skippedCurrencies"] == {}
    assert summary["unmappedCostMicrodollars"] == 15 * M
    assert (summary["lastSyncAt"], summary["syncStatus"]) == (None, None)  # not connected
    acme, beta = data["customers"]
    assert set(acme) >= {
        "stripeCustomerId", "customerName", "avatarUrl", "tagValue", "revenueMicrodollars",
        "costMicrodollars", "marginMicrodollars", "marginPercent", "healthTier", "sparkline",
        "projectedTierWorsening", "budgetSuggestionMicrodollars",
    }  # fmt: skip
    assert (acme["stripeCustomerId"], acme["customerName"], acme["tagValue"]) == (
        "cus_acme",
        "Acme Corp",
        "acme-corp",
    )
    assert (acme["revenueMicrodollars"], acme["costMicrodollars"]) == (100 * M, 30 * M)
    assert (acme["marginMicrodollars"], acme["marginPercent"]) == (70 * M, Decimal("70.00"))
    assert acme["healthTier"] == "healthy" and acme["avatarUrl"] is None
    assert [p["period"] for p in acme["sparkline"][:3]] == ["2026-07", "2026-08", "2026-09"]
    assert acme["sparkline"][1] == {"period": "2026-08", "marginPercent": Decimal("72.22")}
    assert all("projected" not in p for p in acme["sparkline"][:3])
    assert beta["stripeCustomerId"] == "cus_beta" and beta["tagValue"] is None
    # Every figure is the mart's, in the mart's order.
    mart = api.wh.rows(
        "SELECT * FROM mart.customer_margins_monthly WHERE workspace_id = :w AND month = :m"
        " ORDER BY sort_order",
        w=org.workspace_id,
        m="2026-09",
    )
    assert [
        (c["stripeCustomerId"], c["revenueMicrodollars"], c["costMicrodollars"],
         c["marginMicrodollars"], c["marginPercent"], c["healthTier"])
        for c in data["customers"]
    ] == [
        (m["stripe_customer_id"], m["revenue_micros"], m["cost_micros"], m["margin_micros"],
         Decimal(m["margin_percent"]), m["health_tier"])
        for m in mart
    ]  # fmt: skip
    s = api.wh.rows(
        "SELECT * FROM mart.customer_margins_summary_monthly WHERE workspace_id = :w"
        " AND month = '2026-09'",
        w=org.workspace_id,
    )[0]
    assert (summary["totalRevenueMicrodollars"], summary["totalCostMicrodollars"]) == (
        s["revenue_micros"],
        s["cost_micros"],
    )
    assert summary["blendedMarginPercent"] == Decimal(s["blended_margin_percent"])


def test_a_month_without_margins_is_empty_and_default_is_this_month(
    api: ApiServer, org: Org
) -> None:
    r = api.client.get("/api/margins", params={"period": "2025-01"}, headers=org.headers)
    assert r.json()["data"]["customers"] == []
    assert r.json()["data"]["summary"]["totalRevenueMicrodollars"] == 0
    assert r.json()["data"]["summary"]["blendedMarginPercent"] is None
    assert api.client.get("/api/margins", headers=org.headers).status_code == 200


def test_margins_csv_is_the_reports_file(api: ApiServer, org: Org) -> None:
    r = api.client.get(
        "/api/margins", params={"period": "2026-09", "format": "csv"}, headers=org.headers
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="margins-2026-09.csv"'
    ws = get_workspace(api.wh, org.workspace_id)
    assert ws is not None
    expected = build_csv(api.wh, ws, "margins", date(2026, 9, 1), date(2026, 9, 30)).render()
    assert r.content == expected
    header, first = r.text.splitlines()[:2]
    assert header == (
        "Customer,Stripe ID,Tag Value,Revenue ($),Cost ($),Margin (%),Margin ($),Health Tier"
    )
    assert first == "Acme Corp,cus_acme,acme-corp,100.00,30.00,70.00,70.00,healthy"


def test_margins_csv_neutralizes_formulas_in_names_and_tags(api: ApiServer) -> None:
    """Customer names come from Stripe and tags from cost files: in the served CSV a cell that
    would start a spreadsheet formula starts with an apostrophe instead."""
    o = new_org(api)
    seed_margins(api.wh, o.workspace_id)
    hostile = {
        "customer_name": '=HYPERLINK("http://evil.example","open")',
        "tag_value": "@SUM(1+1)*cmd|' /C calc'!A0",
    }
    with api.wh.begin() as db:
        db.execute(
            api.wh.text(
                "UPDATE mart.customer_margins_monthly SET customer_name = :n, tag_value = :t"
                " WHERE workspace_id = :w AND month = '2026-09' AND stripe_customer_id = 'cus_acme'"
            ),
            {"n": hostile["customer_name"], "t": hostile["tag_value"], "w": o.workspace_id},
        )
    r = api.client.get(
        "/api/margins", params={"period": "2026-09", "format": "csv"}, headers=o.headers
    )
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.text, newline="")))
    acme = next(row for row in rows if row[1] == "cus_acme")
    assert acme[0] == "'" + hostile["customer_name"]
    assert acme[2] == "'" + hostile["tag_value"]
    assert not any(cell.startswith(FORMULA_PREFIXES) for row in rows for cell in row[:3])


def test_one_customer_in_the_seed_shape(api: ApiServer, org: Org) -> None:
    r = api.client.get("/api/margins/acme-corp", params=SEP, headers=org.headers)
    assert r.status_code == 200, r.text
    data = body(r)["data"]
    assert data == {
        "stripeCustomerId": "cus_acme",
        "customerName": "Acme Corp",
        "avatarUrl": None,
        "tagValue": "acme-corp",
        "healthTier": "healthy",
        "marginPercent": Decimal("70.00"),
        "revenueMicrodollars": 100 * M,
        "costMicrodollars": 30 * M,
        "marginMicrodollars": 70 * M,
        "revenueOverTime": [
            {"period": "2026-07", "revenue": 0, "cost": 0},
            {"period": "2026-08", "revenue": 90 * M, "cost": 25 * M},
            {"period": "2026-09", "revenue": 100 * M, "cost": 30 * M},
        ],
        "modelBreakdown": [
            {"model": "gpt-4o", "cost": 20 * M, "requestCount": 150},
            {"model": "gpt-4o-mini", "cost": 10 * M, "requestCount": 800},
        ],
    }
    # An unmapped tag has no customer mapping: 404 not_found.
    r = api.client.get("/api/margins/gamma-inc", params=SEP, headers=org.headers)
    assert_error(r, 404, "not_found", "customer")


def test_unmatched_in_the_seed_shape(api: ApiServer, org: Org) -> None:
    r = api.client.get("/api/margins/unmatched", headers=org.headers)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) == {
        "unmatchedStripeCustomers",
        "unmappedTagValues",
        "pendingAutoMatches",
        "customerNames",
    }
    assert data["unmatchedStripeCustomers"] == [
        {
            "stripeCustomerId": "cus_beta",
            "customerName": "BetaCo",
            "customerEmail": "billing@beta.co",
            "totalRevenueMicrodollars": 90 * M,
        },
        {
            "stripeCustomerId": "cus_delta",
            "customerName": "Delta LLC",
            "customerEmail": "ops@delta.io",
            "totalRevenueMicrodollars": 0,
        },
    ]
    assert data["unmappedTagValues"] == [
        {"tagValue": "gamma-inc", "totalCostMicrodollars": 15 * M, "requestCount": 200}
    ]
    assert data["customerNames"] == {
        "cus_acme": "Acme Corp",
        "cus_beta": "BetaCo",
        "cus_delta": "Delta LLC",
    }
    assert data == unmatched(api.wh, org.workspace_id)
    r = api.client.get("/api/margins/unmatched", params=SEP, headers=org.headers)
    assert r.json()["data"] == unmatched(api.wh, org.workspace_id, "2026-09")


def test_bad_input_is_400_validation_error_naming_the_field(api: ApiServer, org: Org) -> None:
    h = org.headers
    for params, field in (
        ({"period": "2026-13"}, "period"),
        ({"period": "Sept"}, "period"),
        ({"format": "xml"}, "format"),
        ({"perod": "2026-09"}, "perod"),
    ):
        assert_error(api.client.get("/api/margins", params=params, headers=h), 400,
                     "validation_error", field)  # fmt: skip
    r = api.client.get("/api/margins/acme-corp", params={"period": "2026-9"}, headers=h)
    assert_error(r, 400, "validation_error", "period")
    assert_error(api.client.get("/api/nothing", headers=h), 404, "not_found")
    assert_error(api.client.get("/api/margins"), 401, "authentication_required")
    r = api.client.get("/api/margins", headers=bearer("not-a-token"))
    assert_error(r, 401, "authentication_required")


def test_customer_mappings_list_upsert_delete(api: ApiServer) -> None:
    o = new_org(api)
    from finance_pipeline_tests.api.margins_fixtures import seed_customers

    seed_customers(api.wh, o.workspace_id)
    h = o.headers
    r = api.client.post(
        "/api/customer-mappings",
        json={"stripeCustomerId": "cus_beta", "tagValue": "beta", "tagKey": "customer",
              "matchType": "manual"},
        headers=h,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    created = r.json()["data"]
    assert {k: created[k] for k in ("stripeCustomerId", "tagValue", "tagKey", "matchType")} == {
        "stripeCustomerId": "cus_beta",
        "tagValue": "beta",
        "tagKey": "customer",
        "matchType": "manual",
    }
    assert created["status"] == "accepted" and created["customerName"] == "BetaCo"
    assert created["createdAt"].endswith("Z")
    # Upsert on (customer, tag key): the same row, a new tag; defaults tagKey and matchType.
    r = api.client.post(
        "/api/customer-mappings",
        json={"stripeCustomerId": "cus_beta", "tagValue": "beta-co"},
        headers=h,
    )
    assert r.json()["data"]["id"] == created["id"]
    assert r.json()["data"]["tagValue"] == "beta-co"
    listed = api.client.get("/api/customer-mappings", headers=h).json()["data"]
    assert [(m["id"], m["tagValue"]) for m in listed] == [(created["id"], "beta-co")]
    stored = api.wh.rows(
        "SELECT stripe_customer_id, tag_value FROM app.customer_mappings WHERE workspace_id = :w",
        w=o.workspace_id,
    )
    assert stored == [{"stripe_customer_id": "cus_beta", "tag_value": "beta-co"}]
    # Bad input names the field and writes nothing.
    for payload, field in (
        ({"stripeCustomerId": "cus_beta"}, "tagValue"),
        ({"tagValue": "x"}, "stripeCustomerId"),
        ({"stripeCustomerId": "cus_beta", "tagValue": "x", "matchType": "fuzzy"}, "matchType"),
        ({"stripeCustomerId": "cus_beta", "tagValue": "x", "color": "red"}, "color"),
        ({"stripeCustomerId": "cus_beta", "tagValue": " padded"}, "tagValue"),
    ):
        r = api.client.post("/api/customer-mappings", json=payload, headers=h)
        assert_error(r, 400, "validation_error", field)
    r = api.client.post(
        "/api/customer-mappings",
        json={"stripeCustomerId": "cus_nobody", "tagValue": "x"},
        headers=h,
    )
    assert_error(r, 404, "not_found", "stripeCustomerId")
    # A tag mapped manually to another customer: 409 conflict.
    r = api.client.post(
        "/api/customer-mappings",
        json={"stripeCustomerId": "cus_acme", "tagValue": "beta-co"},
        headers=h,
    )
    assert_error(r, 409, "conflict")
    assert (
        api.wh.rows(
            "SELECT stripe_customer_id, tag_value FROM app.customer_mappings WHERE workspace_id = :w",
            w=o.workspace_id,
        )
        == stored
    )
    assert_error(api.client.delete("/api/customer-mappings", headers=h), 400,
                 "validation_error", "id")  # fmt: skip
    r = api.client.delete("/api/customer-mappings", params={"id": "nope"}, headers=h)
    assert_error(r, 404, "not_found", "id")
    r = api.client.delete("/api/customer-mappings", params={"id": created["id"]}, headers=h)
    assert r.status_code == 200 and r.json() == {"data": {"deleted": True}}
    assert api.client.get("/api/customer-mappings", headers=h).json() == {"data": []}


def test_free_tier_is_403_forbidden_with_an_upgrade_pointer(api: ApiServer) -> None:
    free = new_org(api, tier="free")
    h = free.headers
    calls = [
        api.client.get("/api/margins", headers=h),
        api.client.get("/api/margins", params={"format": "csv"}, headers=h),
        api.client.get("/api/margins/acme-corp", headers=h),
        api.client.get("/api/margins/unmatched", headers=h),
        api.client.get("/api/customer-mappings", headers=h),
        api.client.post(
            "/api/customer-mappings", json={"stripeCustomerId": "c", "tagValue": "t"}, headers=h
        ),
        api.client.delete("/api/customer-mappings", params={"id": "x"}, headers=h),
        api.client.post("/api/stripe/connect", json={"stripeKey": "rk_test_abcdef"}, headers=h),
        api.client.delete("/api/stripe/disconnect", headers=h),
        api.client.get("/api/stripe/revenue-sync", headers=h),
    ]
    for r in calls:
        err = assert_error(r, 403, "forbidden", "tier")
        assert "Pro" in err["message"] and "upgrade" in err["message"].lower()
    # The same organization on pro passes the gate.
    from finance_pipeline.tenancy import set_org_tier

    set_org_tier(api.wh, free.owner.org_id, "pro")
    assert api.client.get("/api/margins", headers=h).status_code == 200


def test_roles(api: ApiServer, org: Org) -> None:
    reader = member(api, org, "member")
    finance = member(api, org, "finance")
    assert api.client.get("/api/margins", params=SEP, headers=reader).status_code == 200
    assert api.client.get("/api/customer-mappings", headers=reader).status_code == 200
    r = api.client.post(
        "/api/customer-mappings",
        json={"stripeCustomerId": "cus_beta", "tagValue": "beta"},
        headers=reader,
    )
    assert_error(r, 403, "forbidden")
    r = api.client.delete("/api/customer-mappings", params={"id": "x"}, headers=reader)
    assert_error(r, 403, "forbidden")
    for h in (reader, finance):
        r = api.client.post("/api/stripe/connect", json={"stripeKey": "rk_test_abcd"}, headers=h)
        assert_error(r, 403, "forbidden")
        assert_error(api.client.delete("/api/stripe/disconnect", headers=h), 403, "forbidden")


def test_another_orgs_workspace_and_mappings_are_404_and_never_listed(
    api: ApiServer, org: Org
) -> None:
    other = new_org(api, name="Other Inc")
    theirs = {**other.headers, "X-Workspace-Id": org.workspace_id}
    for r in (
        api.client.get("/api/margins", params=SEP, headers=theirs),
        api.client.get("/api/margins/acme-corp", params=SEP, headers=theirs),
        api.client.get("/api/margins/unmatched", headers=theirs),
        api.client.get("/api/customer-mappings", headers=theirs),
        api.client.get("/api/stripe/revenue-sync", headers=theirs),
    ):
        assert_error(r, 404, "not_found", "X-Workspace-Id")
    # Their own workspace shows none of ours; our mapping id is a 404 there.
    assert (
        api.client.get("/api/margins", params=SEP, headers=other.headers).json()["data"][
            "customers"
        ]
        == []
    )
    assert api.client.get("/api/customer-mappings", headers=other.headers).json() == {"data": []}
    mine = api.client.get("/api/customer-mappings", headers=org.headers).json()["data"]
    assert mine
    r = api.client.delete(
        "/api/customer-mappings", params={"id": mine[0]["id"]}, headers=other.headers
    )
    assert_error(r, 404, "not_found")
    assert api.wh.scalar("SELECT COUNT(*) FROM app.customer_mappings WHERE id = :i",
                         i=mine[0]["id"]) == 1  # fmt: skip


def test_revenue_sync_by_a_member_and_by_the_cron(api: ApiServer) -> None:
    o = new_org(api)
    reader = member(api, o, "member")
    # Nothing to sync before Stripe is connected.
    r = api.client.get("/api/stripe/revenue-sync", headers=reader)
    assert_error(r, 409, "conflict")
    connect_stripe(
        api.wh, o.workspace_id, account_id="acct_1", livemode=False, api_key="rk_test_abcdef",
        settings=api.settings,
    )  # fmt: skip
    r = api.client.get("/api/stripe/revenue-sync", headers=reader)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (data["orgId"], data["workspaceId"], data["status"]) == (
        o.owner.org_id,
        o.workspace_id,
        "queued",
    )
    assert data["requestId"].startswith("sync_")
    # The seed's counters come from the sync's run, which has not happened within the read wait
    # (test_margins_revenue_sync.py runs it).
    assert data["customersProcessed"] is None and data["durationMs"] is None
    row = api.wh.rows("SELECT * FROM app.pipeline_requests WHERE id = :i", i=data["requestId"])
    assert (row[0]["kind"], row[0]["status"], row[0]["workspace_id"]) == (
        "stripe_sync",
        "queued",
        o.workspace_id,
    )
    # A second call while it waits reuses the queued request.
    again = api.client.get("/api/stripe/revenue-sync", headers=reader).json()["data"]
    assert again["requestId"] == data["requestId"]
    # The cron: every paid-tier workspace with Stripe connected; a free one is skipped.
    free = new_org(api, tier="free")
    connect_stripe(
        api.wh, free.workspace_id, account_id="acct_2", livemode=False, api_key="rk_test_free1",
        settings=api.settings,
    )  # fmt: skip
    r = api.client.get("/api/stripe/revenue-sync", headers=bearer(CRON_SECRET))
    assert r.status_code == 200, r.text
    assert r.json() == {"data": {"synced": 1, "errors": 0}}
    assert (
        api.wh.scalar(
            "SELECT COUNT(*) FROM app.pipeline_requests WHERE workspace_id = :w",
            w=free.workspace_id,
        )
        == 0
    )
    r = api.client.get("/api/stripe/revenue-sync", headers=bearer(CRON_SECRET + "x"))
    assert_error(r, 401, "authentication_required")


def test_a_month_answer_is_served_again_until_the_month_is_rewritten(api: ApiServer) -> None:
    """The encoded answer is kept per month write (summary write_id) and sync state: served again
    while they hold, recomputed as soon as the margins asset rewrites the month."""
    o = new_org(api)
    seed_margins(api.wh, o.workspace_id)

    def write_id() -> str:
        return api.wh.scalar(
            "SELECT write_id FROM mart.customer_margins_summary_monthly"
            " WHERE workspace_id = :w AND month = '2026-09'",
            w=o.workspace_id,
        )

    first = api.client.get("/api/margins", params=SEP, headers=o.headers)
    assert first.status_code == 200 and len(first.json()["data"]["customers"]) == 2
    written = write_id()
    assert written

    def behind_the_asset(sql: str) -> None:
        with api.wh.begin() as db:
            db.execute(api.wh.text(sql), {"w": o.workspace_id})

    # A row removed behind the asset's back (no new write id) does not show: the same bytes.
    behind_the_asset(
        "DELETE FROM mart.customer_margins_monthly WHERE workspace_id = :w"
        " AND month = '2026-09' AND stripe_customer_id = 'cus_beta'"
    )
    again = api.client.get("/api/margins", params=SEP, headers=o.headers)
    assert again.content == first.content
    # A new write of the month (its id changes) is read at once.
    behind_the_asset(
        "UPDATE mart.customer_margins_summary_monthly SET write_id = 'w2'"
        " WHERE workspace_id = :w AND month = '2026-09'"
    )
    fresh = api.client.get("/api/margins", params=SEP, headers=o.headers)
    assert [c["stripeCustomerId"] for c in fresh.json()["data"]["customers"]] == ["cus_acme"]
    # The asset gives every write of the month a new id: rewritten, the month is whole again.
    res = {"warehouse": WarehouseResource(url=api.wh.url.render_as_string(hide_password=False))}
    assert dg.materialize([customer_margins_monthly], resources=res, partition_key="2026-09-01")
    assert write_id() not in (written, "w2")
    rebuilt = api.client.get("/api/margins", params=SEP, headers=o.headers)
    assert rebuilt.content == first.content
    # The sync state is part of what decides the answer: connecting Stripe shows at once.
    connect_stripe(
        api.wh, o.workspace_id, account_id="acct_x", livemode=False, api_key="sk_test_x",
        settings=api.settings,
    )  # fmt: skip
    connected = api.client.get("/api/margins", params=SEP, headers=o.headers)
    assert connected.json()["data"]["summary"]["syncStatus"] == "active"


def test_encoded_answers_keep_the_most_recently_used_within_their_budget() -> None:
    answers = EncodedAnswers(max_bytes=10)
    answers.put(("a",), b"12345")
    answers.put(("b",), b"12345")
    assert answers.get(("a",)) == b"12345"  # now the most recently used
    answers.put(("c",), b"123")  # 13 bytes: the least recently used, b, goes
    assert answers.get(("b",)) is None
    assert (answers.get(("a",)), answers.get(("c",))) == (b"12345", b"123")
    answers.put(("big",), b"x" * 11)  # larger than the whole budget: never kept
    assert answers.get(("big",)) is None and answers.get(("a",)) == b"12345"
    answers.put(("a",), b"1")  # replacing a body counts only the new one
    answers.put(("d",), b"123456")
    assert [answers.get((k,)) for k in "acd"] == [b"1", b"123", b"123456"]

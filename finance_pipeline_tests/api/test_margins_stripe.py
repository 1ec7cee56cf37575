"""The 003 margins API's Stripe connection over real HTTP against the local Stripe stand-in:
restricted-key rules, validation with one customers list call, 409 when connected, and the
disconnect cascade (this workspace's Stripe data, mappings and margins; nobody else's)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from finance_pipeline_dev.pytest_plugin import TestStandIn

from finance_pipeline.secrets import decrypt_secret
from finance_pipeline.tenancy import stripe_connections
from finance_pipeline_tests.api.conftest import ApiServer, ServerFactory
from finance_pipeline_tests.api.margins_fixtures import assert_error, new_org, seed_margins


@pytest.fixture
def server(api_server_factory: ServerFactory, stripe_standin: TestStandIn) -> ApiServer:
    """An API whose Stripe base is the stand-in."""
    return api_server_factory(stripe_api_base=stripe_standin.url, requests_inline=False)


def test_connect_validates_and_stores_the_restricted_key(
    server: ApiServer, stripe_standin: TestStandIn
) -> None:
    o = new_org(server)
    key = stripe_standin.restricted_key
    r = server.client.post("/api/stripe/connect", json={"stripeKey": key}, headers=o.headers)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert set(data) == {"id", "keyPrefix", "status", "createdAt"}
    assert data["id"] == o.workspace_id and data["status"] == "active"
    assert data["keyPrefix"] == f"rk_test_****{key[-4:]}"
    assert data["createdAt"].endswith(".000Z")
    row = server.wh.rows(
        "SELECT * FROM app.stripe_connections WHERE workspace_id = :w", w=o.workspace_id
    )[0]
    assert key not in str(row)  # stored encrypted
    assert decrypt_secret(row["key_ciphertext"], server.settings) == key
    assert (row["account_id"], row["api_base"], bool(row["livemode"])) == (
        stripe_standin.account_id,
        stripe_standin.url,
        False,
    )
    assert [c.workspace_id for c in stripe_connections(server.wh, server.settings)] == [
        o.workspace_id
    ]
    r = server.client.post("/api/stripe/connect", json={"stripeKey": key}, headers=o.headers)
    assert_error(r, 409, "conflict")


def test_bad_keys_are_refused_and_nothing_is_stored(
    server: ApiServer, stripe_standin: TestStandIn
) -> None:
    o = new_org(server)
    for payload in (
        {},
        {"stripeKey": ""},
        {"stripeKey": "pk_live_abcdef"},
        {"stripeKey": "sk_live_abcdef"},
        {"stripeKey": "rk_test_bad key"},
        {"stripeKey": 42},
        {"stripeKey": "rk_test_abcdef", "extra": 1},
    ):
        r = server.client.post("/api/stripe/connect", json=payload, headers=o.headers)
        field = "extra" if "extra" in payload else "stripeKey"
        assert_error(r, 400, "validation_error", field)
    # Well formed, but Stripe refuses it.
    r = server.client.post(
        "/api/stripe/connect", json={"stripeKey": "rk_test_unknown_key_1234"}, headers=o.headers
    )
    assert_error(r, 400, "stripe_validation_failed", "stripeKey")
    assert server.wh.scalar("SELECT COUNT(*) FROM app.stripe_connections") == 0
    # The full test key is allowed outside production.
    r = server.client.post(
        "/api/stripe/connect", json={"stripeKey": stripe_standin.api_key}, headers=o.headers
    )
    assert r.status_code == 201, r.text


def test_full_keys_are_refused_in_production(
    server: ApiServer, stripe_standin: TestStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    o = new_org(server)
    monkeypatch.setenv("FP_DEPLOYMENT", "production")
    r = server.client.post(
        "/api/stripe/connect", json={"stripeKey": stripe_standin.api_key}, headers=o.headers
    )
    assert_error(r, 400, "validation_error", "stripeKey")


def _count(server: ApiServer, table: str, ws: str) -> int:
    return int(server.wh.scalar(f"SELECT COUNT(*) FROM {table} WHERE workspace_id = :w", w=ws))


def test_disconnect_cascades_only_this_workspace(
    server: ApiServer, stripe_standin: TestStandIn
) -> None:
    mine, other = new_org(server), new_org(server, name="Other Inc")
    key = stripe_standin.restricted_key
    for o in (mine, other):
        seed_margins(server.wh, o.workspace_id)
        r = server.client.post("/api/stripe/connect", json={"stripeKey": key}, headers=o.headers)
        assert r.status_code == 201, r.text
    with server.wh.begin() as db:
        db.execute(
            sa.insert(server.wh.table("raw.stripe_invoices")),
            [
                {
                    "workspace_id": mine.workspace_id, "id": "in_1", "account_id": "acct_1",
                    "livemode": False, "customer": "cus_acme", "status": "paid",
                    "currency": "usd", "payload": {}, "synced_at": 0,
                }
            ],
        )  # fmt: skip
    cascaded = (
        "raw.stripe_customers",
        "app.customer_mappings",
        "core.recognized_revenue_monthly",
        "mart.customer_margins_monthly",
        "mart.customer_margins_summary_monthly",
    )
    before = {t: _count(server, t, other.workspace_id) for t in cascaded}
    assert all(before.values())
    r = server.client.delete("/api/stripe/disconnect", headers=mine.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": {"deleted": True}}
    for t in (*cascaded, "raw.stripe_invoices", "app.stripe_connections"):
        assert _count(server, t, mine.workspace_id) == 0, t
    assert {t: _count(server, t, other.workspace_id) for t in cascaded} == before
    assert _count(server, "app.stripe_connections", other.workspace_id) == 1
    # Costs are not Stripe data: they stay.
    assert _count(server, "core.ledger", mine.workspace_id) > 0
    assert_error(server.client.delete("/api/stripe/disconnect", headers=mine.headers), 404,
                 "not_found")  # fmt: skip

"""Authentication, restricted-key permissions, Stripe-Account and livemode, through the SDK."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import stripe
from finance_pipeline_dev.pytest_plugin import CONNECTED_ACCOUNT, TEST_ACCOUNT
from finance_pipeline_dev.standin import shapes
from finance_pipeline_dev.standin.store import redact_key

from finance_pipeline_tests.stripe_standin.sample import sample_fixture


def test_unknown_and_missing_keys_are_401(stripe_standin: Any) -> None:
    bad = "sk_test_51HnotARealKeyAtAll9876"
    with pytest.raises(stripe.AuthenticationError) as exc:
        stripe_standin.client(bad).v1.customers.list()
    assert exc.value.http_status == 401
    assert exc.value.user_message == "Invalid API Key provided: sk_test_****9876"
    assert bad not in str(exc.value.json_body)
    resp = requests.get(f"{stripe_standin.url}/v1/customers", timeout=5)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in resp.json()["error"]["message"]


def test_restricted_key_permissions(stripe_standin_factory: Any) -> None:
    standin = stripe_standin_factory(sample_fixture())
    client = standin.client(standin.restricted_key)
    assert [c.id for c in client.v1.customers.list({"limit": 1}).data] == ["cus_C"]
    assert client.v1.invoices.line_items.list("in_A1").data
    for call in (
        lambda: client.v1.charges.list(),
        lambda: client.v1.charges.retrieve("ch_A1"),
        lambda: client.v1.balance_transactions.list(),
    ):
        with pytest.raises(stripe.PermissionError) as exc:
            call()
        assert exc.value.http_status == 403
    with pytest.raises(stripe.PermissionError) as exc:
        client.v1.refunds.list()
    assert exc.value.user_message == (
        f"The provided key '{redact_key(standin.restricted_key)}' does not have the required "
        f"permissions for this endpoint on account '{TEST_ACCOUNT}'. Having the 'rak_refund_read' "
        "permission would allow this request to continue."
    )
    log = standin.requests()
    assert [e["status"] for e in log[-4:]] == [403, 403, 403, 403]
    assert standin.restricted_key not in repr(log)


def test_stripe_account_header_selects_connected_account(stripe_standin_factory: Any) -> None:
    standin = stripe_standin_factory(sample_fixture())
    platform = standin.client()
    connected = standin.client(stripe_account=CONNECTED_ACCOUNT)
    assert [c.id for c in connected.v1.customers.list().data] == ["cus_conn"]
    assert "cus_conn" not in {c.id for c in platform.v1.customers.list({"limit": 100}).data}
    assert connected.v1.accounts.retrieve_current().id == CONNECTED_ACCOUNT
    assert platform.v1.accounts.retrieve_current().id == TEST_ACCOUNT
    # per-request option too
    per_request = platform.v1.customers.list(options={"stripe_account": CONNECTED_ACCOUNT})
    assert [c.id for c in per_request.data] == ["cus_conn"]
    with pytest.raises(stripe.PermissionError) as exc:
        standin.client(stripe_account="acct_1NotConnected0000").v1.customers.list()
    assert "acct_1NotConnected0000" in str(exc.value.user_message)
    entries = [e for e in standin.requests() if e["path"] == "/v1/customers"]
    assert entries[0]["account"] == CONNECTED_ACCOUNT
    assert entries[-1]["stripe_account"] == "acct_1NotConnected0000"
    assert entries[-1]["status"] == 403


def test_multiple_accounts_and_livemode(stripe_standin_factory: Any) -> None:
    doc = {
        "clock": 1763856000,
        "accounts": {
            "acct_1Live": {
                "livemode": True,
                "keys": {"sk_live_livekey00000000001": {"permissions": None}},
                "objects": [shapes.make_customer("cus_L", created=1, livemode=False)],
            },
            "acct_1Test": {
                "livemode": False,
                "keys": {"sk_test_testkey00000000001": {"permissions": None}},
                "objects": [shapes.make_customer("cus_T", created=1)],
            },
        },
    }
    standin = stripe_standin_factory(doc)
    live = standin.client("sk_live_livekey00000000001").v1.customers.list().data
    test = standin.client("sk_test_testkey00000000001").v1.customers.list().data
    assert [(c.id, c.livemode) for c in live] == [("cus_L", True)]
    assert [(c.id, c.livemode) for c in test] == [("cus_T", False)]

"""Store mutations emit Stripe events; dump/load round-trips; the HTTP control plane."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import stripe
from finance_pipeline_dev.pytest_plugin import DEFAULT_CLOCK, TEST_ACCOUNT
from finance_pipeline_dev.standin import shapes
from finance_pipeline_dev.standin.server import RemoteStandIn
from finance_pipeline_dev.standin.store import Store, StoreError, redact_key

from finance_pipeline_tests.stripe_standin.sample import sample_fixture


def test_update_emits_event_with_previous_attributes(stripe_standin_factory: Any) -> None:
    standin = stripe_standin_factory(sample_fixture())
    standin.advance_clock(3600)
    items = standin.store.get(TEST_ACCOUNT, "sub_A")["items"]["data"]
    items[1] = {**items[1], "quantity": 5}
    event = standin.update(
        TEST_ACCOUNT,
        "sub_A",
        {"items": {"data": items}, "metadata": {"tier": "gold"}, "cancel_at_period_end": False},
        "customer.subscription.updated",
    )
    assert event["created"] == DEFAULT_CLOCK + 3600
    assert event["type"] == "customer.subscription.updated"
    # cancel_at_period_end did not change, so it is not a previous attribute
    assert set(event["data"]["previous_attributes"]) == {"items", "metadata"}
    assert event["data"]["previous_attributes"]["metadata"] == {}
    old_items = event["data"]["previous_attributes"]["items"]["data"]
    assert old_items[1]["quantity"] == 1
    client = standin.client()
    served = client.v1.events.list({"limit": 1}).data[0]
    assert served.id == event["id"] and served.id.startswith("evt_")
    assert served.api_version == shapes.API_VERSION and served.livemode is False
    assert served.pending_webhooks == 0 and served.request.id is None
    served_data = served.to_dict()["data"]
    assert served_data["object"]["metadata"] == {"tier": "gold"}
    assert served_data["previous_attributes"]["metadata"] == {}
    assert shapes.conformance_errors(served.to_dict()) == []
    sub = client.v1.subscriptions.retrieve("sub_A")
    assert sub.metadata.to_dict() == {"tier": "gold"}
    assert [it.quantity for it in sub["items"].auto_paging_iter()][1] == 5
    assert client.v1.subscription_items.retrieve("si_A01").quantity == 5
    # nested dict changes merge: other keys survive
    standin.update(TEST_ACCOUNT, "sub_A", {"metadata": {"seats": "9"}}, None)
    assert client.v1.subscriptions.retrieve("sub_A").metadata.to_dict() == {
        "tier": "gold",
        "seats": "9",
    }
    assert client.v1.events.list({"limit": 1}).data[0].id == event["id"]  # no event for None


def test_create_and_delete(stripe_standin: Any) -> None:
    created = stripe_standin.add(
        {**shapes.make_customer("cus_new", created=0), "created": None} | {"created": 5},
        event_type="customer.created",
    )
    assert created["id"] == "cus_new"
    auto = stripe_standin.add({"object": "coupon", "percent_off": 5.0})
    assert auto["id"].startswith("co_") and auto["created"] == DEFAULT_CLOCK
    client = stripe_standin.client()
    evt = client.v1.events.list().data[0]
    assert (evt.type, evt.data.object["id"]) == ("customer.created", "cus_new")
    assert "previous_attributes" not in evt.data.to_dict()
    stripe_standin.delete(TEST_ACCOUNT, "cus_new", "customer.deleted")
    gone = client.v1.customers.retrieve("cus_new")
    assert gone.to_dict() == {"id": "cus_new", "object": "customer", "deleted": True}
    assert client.v1.customers.list().data == []
    assert client.v1.events.list().data[0].type == "customer.deleted"
    with pytest.raises(StoreError):
        stripe_standin.add(shapes.make_customer(auto["id"], created=1))
    with pytest.raises(StoreError):
        stripe_standin.update(TEST_ACCOUNT, "cus_missing", {"name": "x"}, None)


def test_dump_load_round_trip(tmp_path: Path, stripe_standin_factory: Any) -> None:
    standin = stripe_standin_factory(sample_fixture())
    standin.update(TEST_ACCOUNT, "cus_A", {"name": "Acme Inc"}, "customer.updated")
    standin.delete(TEST_ACCOUNT, "cus_C")
    doc = standin.dump()
    assert doc["clock"] == DEFAULT_CLOCK
    assert json.loads(json.dumps(doc)) == doc
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(doc))
    again = Store.load(path)
    assert again.dump() == doc
    copy = stripe_standin_factory(doc)
    for path_ in ("/v1/customers", "/v1/events", "/v1/invoices", "/v1/subscriptions"):
        a = standin.client().raw_request("get", path_, limit=100).data
        b = copy.client().raw_request("get", path_, limit=100).data
        assert a == b
    assert copy.client().v1.customers.retrieve("cus_C").deleted is True
    keys = doc["accounts"][TEST_ACCOUNT]["keys"]
    assert keys[standin.api_key] == {"permissions": None}


def test_fixture_validation() -> None:
    obj = shapes.make_customer("cus_dup", created=1)
    with pytest.raises(StoreError, match="duplicate"):
        Store.load({"accounts": {"acct_x": {"keys": {}, "objects": [obj, obj]}}})
    with pytest.raises(StoreError, match="'id' and 'object'"):
        Store.load({"accounts": {"acct_x": {"keys": {}, "objects": [{"id": "x"}]}}})
    with pytest.raises(StoreError, match="already registered"):
        Store.load(
            {
                "accounts": {
                    "acct_x": {"keys": {"sk_test_same": None}},
                    "acct_y": {"keys": {"sk_test_same": None}},
                }
            }
        )
    with pytest.raises(StoreError, match="accounts"):
        Store.load({})


def test_redact_key() -> None:
    assert redact_key("sk_test_51HabcdefghijklmnWXYZ") == "sk_test_****WXYZ"
    assert redact_key("sk_test_abc") == "sk_test_****"
    assert redact_key("rk_live_0123456789abcdef") == "rk_live_****cdef"
    assert redact_key("weird") == "****"


def event_ids(doc: dict[str, Any]) -> list[str]:
    return [o["id"] for o in doc["accounts"][TEST_ACCOUNT]["objects"] if o["object"] == "event"]


def test_remote_control_plane(stripe_standin: Any) -> None:
    remote = RemoteStandIn(stripe_standin.url)
    assert remote.now() == DEFAULT_CLOCK
    assert remote.advance_clock(60) == DEFAULT_CLOCK + 60
    remote.set_clock(DEFAULT_CLOCK)
    remote.create(TEST_ACCOUNT, shapes.make_customer("cus_r", created=1), "customer.created")
    event = remote.update(TEST_ACCOUNT, "cus_r", {"email": "r@example.com"}, "customer.updated")
    assert event is not None and event["data"]["previous_attributes"] == {"email": None}
    client = stripe_standin.client()
    assert client.v1.customers.retrieve("cus_r").email == "r@example.com"
    remote.fail_next(1, "server_error")
    with pytest.raises(stripe.APIError):
        client.v1.customers.list()
    snapshot = remote.configure_faults(delay_ms=0, error_rate=0.0)
    assert snapshot["pending"] == [] and snapshot["error_rate"] == 0.0
    log = remote.requests()
    assert [e["status"] for e in log] == [200, 500]
    remote.clear_requests()
    assert remote.requests() == []
    doc = remote.dump()
    assert [o["id"] for o in doc["accounts"][TEST_ACCOUNT]["objects"]] == ["cus_r", *event_ids(doc)]
    remote.load(sample_fixture())
    assert client.v1.invoices.retrieve("in_A1").lines.total_count == 25
    with pytest.raises(RuntimeError, match="unknown control endpoint"):
        remote._call("GET", "/nope")

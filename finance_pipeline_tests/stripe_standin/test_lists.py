"""List semantics through the real SDK: order, pagination, cursors, filters, sub-lists, events."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from finance_pipeline_dev.pytest_plugin import DEFAULT_CLOCK, TEST_ACCOUNT
from finance_pipeline_dev.standin import shapes
from finance_pipeline_dev.standin.store import Store
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline_tests.stripe_standin.sample import sample_fixture

DAY = 86400


def _customers(n: int) -> list[dict[str, Any]]:
    # every third customer shares its created second with the next: insertion order breaks ties
    return [
        shapes.make_customer(f"cus_{i:04d}", created=1_700_000_000 + (i // 3) * 7) for i in range(n)
    ]


def _expected_order(objs: list[dict[str, Any]]) -> list[str]:
    indexed = list(enumerate(objs))
    indexed.sort(key=lambda p: (-p[1]["created"], -p[0]))
    return [o["id"] for _, o in indexed]


@pytest.fixture
def many(stripe_standin: Any) -> Any:
    stripe_standin.add_many(_customers(250))
    return stripe_standin


def test_pagination_newest_first_exactly_once(many: Any) -> None:
    client = many.client()
    pages, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if after:
            params["starting_after"] = after
        page = client.v1.customers.list(params)
        pages.append(page)
        if not page.has_more:
            break
        after = page.data[-1].id
    assert [len(p.data) for p in pages] == [100, 100, 50]
    assert [p.has_more for p in pages] == [True, True, False]
    assert all(p.url == "/v1/customers" for p in pages)
    ids = [c.id for p in pages for c in p.data]
    assert ids == _expected_order(_customers(250))
    assert len(set(ids)) == 250
    # ending_before walks back: the page before page 3's first item is page 2
    back = client.v1.customers.list({"limit": 100, "ending_before": pages[2].data[0].id})
    assert [c.id for c in back.data] == [c.id for c in pages[1].data]
    assert back.has_more is True
    back2 = client.v1.customers.list({"limit": 100, "ending_before": ids[99]})
    assert [c.id for c in back2.data] == ids[:99] and back2.has_more is False
    assert len(list(client.v1.customers.list({"limit": 100}).auto_paging_iter())) == 250
    assert len(client.v1.customers.list().data) == 10  # default limit


def test_list_parameter_errors(many: Any) -> None:
    client = many.client()
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.list({"starting_after": "cus_0001", "ending_before": "cus_0002"})
    assert exc.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.list({"starting_after": "cus_nope"})
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (
        404,
        "resource_missing",
        "starting_after",
    )
    assert "cus_nope" in str(exc.value.user_message)
    for bad in (0, 101):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.customers.list({"limit": bad})
        assert (exc.value.http_status, exc.value.param) == (400, "limit")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.list({"colour": "red"})  # type: ignore[typeddict-unknown-key]
    assert (exc.value.http_status, exc.value.param) == (400, "colour")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.retrieve("cus_nope")
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (
        404,
        "resource_missing",
        "id",
    )
    assert exc.value.user_message == "No such customer: 'cus_nope'"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("get", "/v1/widgets")
    assert exc.value.http_status == 404
    with pytest.raises(stripe.APIError) as exc2:
        client.v1.customers.create({"email": "x@example.com"})
    assert exc2.value.http_status == 405


def test_created_filters(many: Any) -> None:
    client = many.client()
    objs = _customers(250)
    lo, hi = 1_700_000_000 + 10 * 7, 1_700_000_000 + 20 * 7

    def ids(params: dict[str, Any]) -> list[str]:
        return [c.id for c in client.v1.customers.list({"limit": 100, **params}).auto_paging_iter()]

    def want(pred: Any) -> list[str]:
        return [i for i in _expected_order(objs) if pred(next(o for o in objs if o["id"] == i))]

    assert ids({"created": {"gte": lo, "lt": hi}}) == want(lambda o: lo <= o["created"] < hi)
    assert len(ids({"created": {"gte": lo, "lt": hi}})) == 30
    assert ids({"created": {"gt": lo, "lte": hi}}) == want(lambda o: lo < o["created"] <= hi)
    assert ids({"created": lo}) == ["cus_0032", "cus_0031", "cus_0030"]
    # a created window combines with cursors
    first = client.v1.customers.list({"limit": 5, "created": {"lte": hi}})
    nxt = client.v1.customers.list(
        {"limit": 5, "created": {"lte": hi}, "starting_after": first.data[-1].id}
    )
    assert [c.id for c in first.data + nxt.data] == want(lambda o: o["created"] <= hi)[:10]


def test_subscription_status_filters(stripe_standin_factory: Any) -> None:
    client = stripe_standin_factory(sample_fixture()).client()
    default = {s.id for s in client.v1.subscriptions.list().data}
    assert default == {"sub_A", "sub_B"}  # canceled hidden by default
    assert {s.id for s in client.v1.subscriptions.list({"status": "all"}).data} == {
        "sub_A",
        "sub_B",
        "sub_C",
    }
    assert [s.id for s in client.v1.subscriptions.list({"status": "canceled"}).data] == ["sub_C"]
    assert [s.id for s in client.v1.subscriptions.list({"status": "trialing"}).data] == ["sub_B"]
    assert [s.id for s in client.v1.subscriptions.list({"customer": "cus_A"}).data] == ["sub_A"]
    assert [
        s.id for s in client.v1.subscriptions.list({"price": "price_pro_y", "status": "all"}).data
    ] == ["sub_C"]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.list({"status": "bogus"})  # type: ignore[typeddict-item]
    assert exc.value.param == "status"


def test_resource_filters(stripe_standin_factory: Any) -> None:
    client = stripe_standin_factory(sample_fixture()).client()

    def ids(service: Any, params: dict[str, Any]) -> list[str]:
        return [o.id for o in service.list({"limit": 100, **params}).data]

    v1 = client.v1
    assert ids(v1.invoices, {"customer": "cus_A"}) == ["in_A2", "in_A1"]
    assert ids(v1.invoices, {"subscription": "sub_B"}) == ["in_B1"]
    assert ids(v1.invoices, {"status": "void"}) == ["in_C1"]
    assert ids(v1.charges, {"customer": "cus_B"}) == ["ch_B1"]
    assert ids(v1.refunds, {"charge": "ch_A1"}) == ["re_A1"]
    assert ids(v1.credit_notes, {"invoice": "in_A1"}) == ["cn_A1"]
    assert ids(v1.credit_notes, {"customer": "cus_B"}) == []
    assert ids(v1.invoice_payments, {"invoice": "in_B1"}) == ["inpay_B1"]
    assert ids(v1.prices, {"product": "prod_Seat"}) == ["price_setup", "price_seat_m"]
    assert ids(v1.prices, {"lookup_keys": ["pro_monthly"]}) == ["price_pro_m"]
    assert ids(v1.balance_transactions, {"type": "refund"}) == ["txn_A1r"]


def test_embedded_sublists_capped_and_paginated(stripe_standin_factory: Any) -> None:
    client = stripe_standin_factory(sample_fixture()).client()
    inv = client.v1.invoices.retrieve("in_A1")
    assert len(inv.lines.data) == 10
    assert (inv.lines.has_more, inv.lines.total_count, inv.lines.url) == (
        True,
        25,
        "/v1/invoices/in_A1/lines",
    )
    listed = next(i for i in client.v1.invoices.list().data if i.id == "in_A1")
    assert len(listed.lines.data) == 10 and listed.lines.has_more
    # follow the sub-list endpoint: 3 pages of 10 -> all 25 in invoice order
    got, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 10}
        if after:
            params["starting_after"] = after
        page = client.v1.invoices.line_items.list("in_A1", params)
        got += [ln.id for ln in page.data]
        if not page.has_more:
            break
        after = page.data[-1].id
    assert got == [f"il_A1_{i:02d}" for i in range(25)]
    assert [ln.id for ln in inv.lines.auto_paging_iter()] == got
    before = client.v1.invoices.line_items.list("in_A1", {"ending_before": "il_A1_12", "limit": 5})
    assert [ln.id for ln in before.data] == [f"il_A1_{i:02d}" for i in range(7, 12)]
    assert before.has_more is True
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.line_items.list("in_A1", {"starting_after": "il_nope"})
    assert (exc.value.http_status, exc.value.param) == (404, "starting_after")

    sub = client.v1.subscriptions.retrieve("sub_A")
    assert len(sub["items"].data) == 10 and sub["items"].has_more
    assert sub["items"].url == "/v1/subscription_items?subscription=sub_A"
    items = [it.id for it in sub["items"].auto_paging_iter()]
    assert items == [f"si_A{i:02d}" for i in range(12)]
    page = client.v1.subscription_items.list({"subscription": "sub_A", "limit": 100})
    assert [it.id for it in page.data] == items and page.url == "/v1/subscription_items"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.raw_request("get", "/v1/subscription_items")
    assert (exc.value.http_status, exc.value.param) == (400, "subscription")

    cn = client.v1.credit_notes.retrieve("cn_A1")
    assert len(cn.lines.data) == 10 and cn.lines.has_more and cn.lines.total_count == 12
    all_cn = client.v1.credit_notes.line_items.list("cn_A1", {"limit": 100}).data
    assert [ln.id for ln in all_cn] == [f"cnli_A1_{i:02d}" for i in range(12)]
    # events carry the same capped snapshot
    evt = client.v1.events.retrieve("evt_inv_paid")
    assert len(evt.data.object["lines"]["data"]) == 10
    assert evt.data.object["lines"]["has_more"] is True


def test_events_retention_and_type_filters(stripe_standin_factory: Any) -> None:
    standin = stripe_standin_factory(sample_fixture())
    client = standin.client()
    listed = [e.id for e in client.v1.events.list({"limit": 100}).data]
    assert listed == ["evt_sub_del", "evt_cn", "evt_inv_paid", "evt_sub_upd"]  # evt_old expired
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.events.retrieve("evt_old")
    assert exc.value.http_status == 404
    wildcard = client.v1.events.list({"type": "customer.subscription.*"}).data
    assert [e.id for e in wildcard] == ["evt_sub_del", "evt_sub_upd"]
    assert [e.id for e in client.v1.events.list({"type": "invoice.paid"}).data] == ["evt_inv_paid"]
    types = client.v1.events.list({"types": ["credit_note.created", "invoice.paid"]}).data
    assert [e.id for e in types] == ["evt_cn", "evt_inv_paid"]
    # 21 days later the 10-day-old events are 31 days old: gone from list and retrieve
    standin.advance_clock(21 * DAY)
    assert [e.id for e in client.v1.events.list({"limit": 100}).data] == ["evt_sub_del", "evt_cn"]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve("evt_inv_paid")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.events.list({"starting_after": "evt_sub_upd"})
    assert exc.value.http_status == 404
    standin.set_clock(DEFAULT_CLOCK)
    assert len(client.v1.events.list({"limit": 100}).data) == 4


def test_expand(stripe_standin_factory: Any) -> None:
    client = stripe_standin_factory(sample_fixture()).client()
    sub = client.v1.subscriptions.retrieve("sub_A", {"expand": ["customer", "discounts"]})
    assert isinstance(sub.customer, stripe.Customer) and sub.customer.email == "a@example.com"
    assert sub.discounts[0].source.coupon.percent_off == 20.0
    subs = client.v1.subscriptions.list(
        {"expand": ["data.customer", "data.items.data.price.product"]}
    ).data
    assert {s.customer.id for s in subs} == {"cus_A", "cus_B"}
    assert subs[-1]["items"].data[0].price.product.name == "Pro plan"
    ch = client.v1.charges.retrieve("ch_A1", {"expand": ["balance_transaction", "customer"]})
    assert ch.balance_transaction.fee == 1234
    # unknown or unexpandable paths are ignored, never a crash
    inv = client.v1.invoices.retrieve("in_A1", {"expand": ["nope", "lines.data.nothing"]})
    assert inv.id == "in_A1"


@settings(max_examples=40, deadline=None)
@given(
    created=st.lists(st.integers(min_value=0, max_value=20), min_size=0, max_size=60),
    limit=st.integers(min_value=1, max_value=100),
    gte=st.none() | st.integers(min_value=0, max_value=20),
)
def test_store_pages_partition_the_window(created: list[int], limit: int, gte: int | None) -> None:
    """Invariant: following starting_after yields the filtered, ordered set exactly once."""
    store = Store.load({"accounts": {TEST_ACCOUNT: {"keys": {}, "objects": []}}})
    objs = [shapes.make_customer(f"cus_{i}", created=c) for i, c in enumerate(created)]
    store.put_many(TEST_ACCOUNT, objs)
    window = None if gte is None else {"gte": gte}
    want = [
        o["id"]
        for i, o in sorted(enumerate(objs), key=lambda p: (-p[1]["created"], -p[0]))
        if gte is None or o["created"] >= gte
    ]
    got: list[str] = []
    after = None
    while True:
        page, more = store.page(
            TEST_ACCOUNT, "customer", limit=limit, starting_after=after, created=window
        )
        got += [o["id"] for o in page]
        assert len(page) <= limit
        if not more:
            break
        assert len(page) == limit
        after = page[-1]["id"]
    assert got == want
    # walking back with ending_before from the oldest item gives the same sequence
    if want:
        back: list[str] = [want[-1]]
        before = want[-1]
        while True:
            page, more = store.page(
                TEST_ACCOUNT, "customer", limit=limit, ending_before=before, created=window
            )
            back = [o["id"] for o in page] + back
            if not more:
                break
            before = page[0]["id"]
        assert back == want

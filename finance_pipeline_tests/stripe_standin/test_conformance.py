"""Shapes served by the stand-in match the pinned SDK's resource classes (API 2026-10-28.endive)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import pytest
import stripe
from finance_pipeline_dev.standin import shapes
from finance_pipeline_dev.standin.shapes import conformance_errors

from finance_pipeline_tests.stripe_standin.sample import sample_fixture

SDK_DIR = Path(stripe.__file__).parent

# (list path, one id, SDK module, class) for every object type the stand-in serves
SERVED = [
    ("/v1/customers", "cus_A", "_customer", "Customer", stripe.Customer),
    ("/v1/products", "prod_Pro", "_product", "Product", stripe.Product),
    ("/v1/prices", "price_pro_m", "_price", "Price", stripe.Price),
    ("/v1/coupons", "co_10usd", "_coupon", "Coupon", stripe.Coupon),
    ("/v1/subscriptions", "sub_A", "_subscription", "Subscription", stripe.Subscription),
    ("/v1/invoices", "in_A1", "_invoice", "Invoice", stripe.Invoice),
    (
        "/v1/invoice_payments",
        "inpay_A1",
        "_invoice_payment",
        "InvoicePayment",
        stripe.InvoicePayment,
    ),
    ("/v1/charges", "ch_A1", "_charge", "Charge", stripe.Charge),
    ("/v1/refunds", "re_A1", "_refund", "Refund", stripe.Refund),
    ("/v1/credit_notes", "cn_A1", "_credit_note", "CreditNote", stripe.CreditNote),
    ("/v1/events", "evt_inv_paid", "_event", "Event", stripe.Event),
    (
        "/v1/balance_transactions",
        "txn_A1",
        "_balance_transaction",
        "BalanceTransaction",
        stripe.BalanceTransaction,
    ),
]


def top_level_annotations(module: str, cls: str) -> dict[str, bool]:
    """Independent of the shapes package: field -> is Optional, from an ast walk of the SDK class."""
    tree = ast.parse((SDK_DIR / f"{module}.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    out: dict[str, bool] = {}
    for n in node.body:
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            text = ast.unparse(n.annotation)
            if text.startswith("ClassVar"):
                continue
            out[n.target.id] = text.startswith("Optional[")
    return out


@pytest.fixture
def served(stripe_standin_factory: Any) -> Any:
    return stripe_standin_factory(sample_fixture())


def _raw(client: Any, path: str, **params: Any) -> dict[str, Any]:
    return dict(client.raw_request("get", path, **params).data)


@pytest.mark.parametrize(("path", "obj_id", "module", "cls", "sdk_cls"), SERVED)
def test_retrieved_and_listed_objects_conform(
    served: Any, path: str, obj_id: str, module: str, cls: str, sdk_cls: type
) -> None:
    client = served.client()
    raw = _raw(client, f"{path}/{obj_id}")
    # top level, checked by this test's own ast walk
    fields = top_level_annotations(module, cls)
    assert set(raw) <= set(fields), set(raw) - set(fields)
    required = {name for name, optional in fields.items() if not optional}
    assert required <= set(raw), required - set(raw)
    # recursively (lines, items, price, parent...), by the shared checker
    assert conformance_errors(raw) == []
    # the SDK hydrates it into its resource class
    typed = client.raw_request("get", f"{path}/{obj_id}")
    assert isinstance(client.deserialize(typed, api_mode="V1"), sdk_cls)
    listing = _raw(client, path, limit=100, status="all") if "subscriptions" in path else None
    listing = listing or _raw(client, path, limit=100)
    assert listing["data"], path
    for item in listing["data"]:
        assert conformance_errors(item) == []


def test_sublists_account_and_items_conform(served: Any) -> None:
    client = served.client()
    for path, kind in [
        ("/v1/invoices/in_A1/lines", "line_item"),
        ("/v1/credit_notes/cn_A1/lines", "credit_note_line_item"),
    ]:
        page = _raw(client, path, limit=100)
        assert {o["object"] for o in page["data"]} == {kind}
        assert all(conformance_errors(o) == [] for o in page["data"])
    items = _raw(client, "/v1/subscription_items", subscription="sub_A", limit=100)["data"]
    assert len(items) == 12
    assert all(conformance_errors(o) == [] for o in items)
    item = _raw(client, "/v1/subscription_items/si_A03")
    assert conformance_errors(item) == []
    assert isinstance(client.v1.subscription_items.retrieve("si_A03"), stripe.SubscriptionItem)
    account = _raw(client, "/v1/account")
    assert account["id"] == served.account_id
    assert conformance_errors(account) == []


def test_current_shapes(served: Any) -> None:
    client = served.client()
    inv = client.v1.invoices.retrieve("in_A1")
    raw = inv.to_dict()
    assert "subscription" not in raw and "charge" not in raw
    assert inv.parent.type == "subscription_details"
    assert inv.parent.subscription_details.subscription == "sub_A"
    line = inv.lines.data[0]
    assert line.pricing.price_details.price == "price_pro_m"
    assert line.pricing.price_details.product == "prod_Pro"
    assert line.parent.subscription_item_details.subscription_item == "si_A00"
    assert line.parent.subscription_item_details.proration is False
    lines = list(client.v1.invoices.line_items.list("in_A1", {"limit": 100}).data)
    assert [ln.parent.subscription_item_details.proration for ln in lines].count(True) == 13
    sub = client.v1.subscriptions.retrieve("sub_A")
    assert "current_period_start" not in sub.to_dict()
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (
        sample_fixture()["clock"] - 10 * 86400,
        sample_fixture()["clock"] + 20 * 86400,
    )
    assert item.price.id == "price_pro_m" and item.price.unit_amount == 4900
    pays = client.v1.invoice_payments.list({"invoice": "in_A1"}).data
    assert [(p.id, p.payment.type, p.payment.payment_intent) for p in pays] == [
        ("inpay_A1", "payment_intent", "pi_A1")
    ]


def test_checker_rejects_legacy_and_incomplete_shapes() -> None:
    doc = sample_fixture()
    objs = {o["id"]: o for o in next(iter(doc["accounts"].values()))["objects"]}
    inv = copy.deepcopy(objs["in_A1"])
    inv["subscription"] = "sub_A"
    inv["charge"] = "ch_A1"
    del inv["total"]
    inv["lines"]["data"][3]["parent"]["subscription_item_details"].pop("proration")
    errors = conformance_errors(inv)
    assert any(e.endswith(".subscription: not declared on stripe.Invoice") for e in errors)
    assert any(e.endswith(".charge: not declared on stripe.Invoice") for e in errors)
    assert any(".total: missing" in e for e in errors)
    assert any(
        "lines.data[3].parent.subscription_item_details.proration: missing" in e for e in errors
    )
    sub = copy.deepcopy(objs["sub_A"])
    sub["current_period_end"] = 1
    sub["items"]["data"][0]["price"]["unit_amount"] = "4900"
    errors = conformance_errors(sub)
    assert any("current_period_end: not declared" in e for e in errors)
    assert any("items.data[0].price.unit_amount" in e for e in errors)
    assert conformance_errors({"object": "widget"}) == ["?: unknown object type 'widget'"]


def test_builders_cover_every_served_type() -> None:
    served_types = {
        o["object"] for o in next(iter(sample_fixture()["accounts"].values()))["objects"]
    }
    assert served_types >= {
        "customer",
        "product",
        "price",
        "coupon",
        "subscription",
        "invoice",
        "invoice_payment",
        "charge",
        "refund",
        "credit_note",
        "event",
        "balance_transaction",
    }
    assert stripe.api_version == shapes.API_VERSION
